//! `/api/alerts` and `/api/alert-thresholds`: alerts of the devices a person may read, their
//! acknowledgement and clearing, and the limits they are raised at (hospital defaults set by
//! admins, per-patient overrides set by the patient's doctors).

use chrono::Utc;
use nc_access::policy::DeviceScope;
use nc_access::{audit, HospitalAction, PatientAction};
use nc_domain::*;
use nc_entities::{alert_thresholds, alerts};
use nc_ingest::alerts::AlertError;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::dto::{fetch_page, page};
use crate::error::{ApiError, ErrorResponse};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

type Result<T> = std::result::Result<T, ErrorResponse>;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AlertOut {
    pub id: AlertId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub patient_id: Option<PatientId>,
    pub session_id: Option<SessionId>,
    pub kind: AlertKind,
    /// The condition, e.g. `systolic_bp_low`, `system_status_danger`, `device_offline`, `maintenance_due`.
    pub code: String,
    pub metric: Option<String>,
    pub priority: AlertPriority,
    pub state: AlertState,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub raised_at: chrono::DateTime<Utc>,
    pub acknowledged_at: Option<chrono::DateTime<Utc>>,
    pub acknowledged_by: Option<UserId>,
    pub cleared_at: Option<chrono::DateTime<Utc>>,
    /// Absent with `clearedAt` set: cleared automatically when the condition cleared.
    pub cleared_by: Option<UserId>,
}

impl From<alerts::Model> for AlertOut {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: a.id,
            hospital_id: a.hospital_id,
            device_id: a.device_id,
            patient_id: a.patient_id,
            session_id: a.session_id,
            kind: a.kind,
            code: a.code,
            metric: a.metric,
            priority: a.priority,
            state: a.state,
            message: a.message,
            value: a.value,
            threshold: a.threshold,
            raised_at: a.raised_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            cleared_at: a.cleared_at,
            cleared_by: a.cleared_by,
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AlertPage {
    pub items: Vec<AlertOut>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ThresholdOut {
    pub id: ThresholdId,
    /// Absent for a hospital default.
    pub patient_id: Option<PatientId>,
    pub metric: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub priority: AlertPriority,
    pub delay_seconds: i32,
    pub hysteresis: f64,
    pub enabled: bool,
}

impl From<alert_thresholds::Model> for ThresholdOut {
    fn from(t: alert_thresholds::Model) -> Self {
        Self {
            id: t.id,
            patient_id: t.patient_id,
            metric: t.metric,
            low: t.low,
            high: t.high,
            priority: t.priority,
            delay_seconds: t.delay_seconds,
            hysteresis: t.hysteresis,
            enabled: t.enabled,
        }
    }
}

/// A limit to set (replaces the current one for the metric).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThresholdIn {
    /// A `health_metrics` column: heart_rate, temperature_f, systolic_bp, diastolic_bp, spo2,
    /// blood_flow_rate, dialysate_flow_rate, arterial_pressure, venous_pressure,
    /// transmembrane_pressure, dialysate_conductivity, dialysate_temperature_c, uf_rate_ml_h.
    #[oai(validator(max_length = 64, custom = "crate::validate::NoNul"))]
    pub metric: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub priority: AlertPriority,
    /// Seconds the condition must persist before an alert is raised (0 to 3600).
    #[oai(validator(minimum(value = "0"), maximum(value = "3600")))]
    pub delay_seconds: Option<i32>,
    /// How far back inside the limit the value must come before the alert clears.
    #[oai(validator(minimum(value = "0")))]
    pub hysteresis: Option<f64>,
    pub enabled: Option<bool>,
}

const METRICS: &[&str] = &[
    "heart_rate",
    "temperature_f",
    "systolic_bp",
    "diastolic_bp",
    "spo2",
    "blood_flow_rate",
    "dialysate_flow_rate",
    "arterial_pressure",
    "venous_pressure",
    "transmembrane_pressure",
    "dialysate_conductivity",
    "dialysate_temperature_c",
    "uf_rate_ml_h",
];

fn alert_error(e: AlertError) -> ApiError {
    match e {
        AlertError::NotFound => ApiError::NotFound("alert"),
        AlertError::AlreadyCleared => {
            ApiError::Conflict { code: "already_cleared", message: "the alert is already cleared".into() }
        }
        AlertError::Db(e) => ApiError::internal(e),
    }
}

pub struct AlertsApi;

impl AlertsApi {
    /// The alert, if the caller may act on its device's clinical data (doctors and
    /// technicians; patients may read but not act).
    async fn alert_for(
        state: &ApiState,
        auth: &BearerAuth,
        id: AlertId,
        act: bool,
    ) -> std::result::Result<alerts::Model, ApiError> {
        let alert = alerts::Entity::find_by_id(id)
            .one(&state.db)
            .await?
            .filter(|a| a.hospital_id == auth.0.hospital)
            .ok_or(ApiError::NotFound("alert"))?;
        let view = state
            .policy
            .clinical_view(&auth.subject(), alert.device_id)
            .await
            .map_err(|e| ApiError::policy(e, "alert"))?;
        if !view.shows(alert.patient_id) {
            // Another patient's alert on a shared machine: it does not exist for this caller.
            return Err(ApiError::NotFound("alert"));
        }
        if let nc_access::policy::ReadScope::Windows(w) = state.policy.read_scope(&auth.subject()).await? {
            // A technician: only alerts raised while it is responsible for the device.
            if !w.iter().any(|w| w.device == alert.device_id && alert.raised_at >= w.from && alert.raised_at < w.to) {
                return Err(ApiError::NotFound("alert"));
            }
        }
        if act && !matches!(auth.0.role, Role::Doctor | Role::Technician) {
            return Err(ApiError::Forbidden("only doctors and technicians acknowledge or clear alerts".into()));
        }
        Ok(alert)
    }

    async fn set_threshold(
        state: &ApiState,
        auth: &BearerAuth,
        patient: Option<PatientId>,
        b: ThresholdIn,
    ) -> std::result::Result<ThresholdOut, ApiError> {
        if !METRICS.contains(&b.metric.as_str()) {
            return Err(ApiError::field("metric", format!("unknown metric; one of: {}", METRICS.join(", "))));
        }
        match (b.low, b.high) {
            (None, None) => return Err(ApiError::field("low", "give a low or a high limit (or both)")),
            (Some(l), Some(h)) if l >= h => return Err(ApiError::field("low", "must be below high")),
            _ => {}
        }
        let delay = b.delay_seconds.unwrap_or(0);
        if !(0..=3600).contains(&delay) {
            return Err(ApiError::field("delaySeconds", "must be between 0 and 3600"));
        }
        let hysteresis = b.hysteresis.unwrap_or(0.0);
        if !(hysteresis >= 0.0 && hysteresis.is_finite()) {
            return Err(ApiError::field("hysteresis", "must be 0 or more"));
        }
        let mut existing = alert_thresholds::Entity::find()
            .filter(alert_thresholds::Column::HospitalId.eq(auth.0.hospital))
            .filter(alert_thresholds::Column::Metric.eq(b.metric.clone()));
        existing = match patient {
            Some(p) => existing.filter(alert_thresholds::Column::PatientId.eq(p)),
            None => existing.filter(alert_thresholds::Column::PatientId.is_null()),
        };
        let now = Utc::now();
        let previous = existing.one(&state.db).await?;
        let before = previous.as_ref().map(threshold_json);
        let row = match previous {
            Some(t) => {
                let mut a: alert_thresholds::ActiveModel = t.into();
                a.low = Set(b.low);
                a.high = Set(b.high);
                a.priority = Set(b.priority);
                a.delay_seconds = Set(delay);
                a.hysteresis = Set(hysteresis);
                a.enabled = Set(b.enabled.unwrap_or(true));
                a.updated_by = Set(Some(auth.0.id));
                a.updated_at = Set(now);
                a.update(&state.db).await?
            }
            None => {
                alert_thresholds::ActiveModel {
                    id: Set(ThresholdId::new()),
                    hospital_id: Set(auth.0.hospital),
                    patient_id: Set(patient),
                    metric: Set(b.metric),
                    low: Set(b.low),
                    high: Set(b.high),
                    priority: Set(b.priority),
                    delay_seconds: Set(delay),
                    hysteresis: Set(hysteresis),
                    enabled: Set(b.enabled.unwrap_or(true)),
                    updated_by: Set(Some(auth.0.id)),
                    updated_at: Set(now),
                }
                .insert(&state.db)
                .await?
            }
        };
        // Changing (or disabling) an alert limit changes what raises alarms: audited with
        // the old and the new rule.
        audit::record_with(
            &state.db,
            audit::Access {
                subject: &auth.subject(),
                action: AuditAction::Update,
                resource: "alert_threshold",
                patient,
                device: None,
                interface: Interface::Rest,
                client_addr: None,
            },
            Some(serde_json::json!({"metric": row.metric, "before": before, "after": threshold_json(&row)})),
        )
        .await?;
        Ok(row.into())
    }
}

fn threshold_json(t: &alert_thresholds::Model) -> serde_json::Value {
    serde_json::json!({"low": t.low, "high": t.high, "priority": t.priority, "delaySeconds": t.delay_seconds,
        "hysteresis": t.hysteresis, "enabled": t.enabled})
}

#[OpenApi(tag = "Tag::Alerts")]
impl AlertsApi {
    /// Alerts of the devices whose clinical data you may read, newest first.
    #[oai(path = "/api/alerts", method = "get", operation_id = "listAlerts")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        /// Only alerts in this state.
        #[oai(name = "state")]
        state_filter: Query<Option<AlertState>>,
        /// Only alerts that are not cleared.
        #[oai(name = "openOnly")]
        open_only: Query<Option<bool>>,
        #[oai(name = "deviceId")] device_id: Query<Option<DeviceId>>,
        #[oai(name = "patientId")] patient_id: Query<Option<PatientId>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<u64>>,
        #[oai(validator(maximum(value = "1000000000")))] offset: Query<Option<u64>>,
    ) -> Result<Json<AlertPage>> {
        let subject = auth.subject();
        let devices = match state.policy.clinical_devices(&subject).await? {
            DeviceScope::Nothing => return Err(ApiError::Forbidden("admins do not read clinical data".into()).into()),
            DeviceScope::Only(ids) => ids,
        };
        let (limit, offset) = page(limit.0, offset.0)?;
        let mut query = alerts::Entity::find()
            .filter(alerts::Column::HospitalId.eq(auth.0.hospital))
            .filter(alerts::Column::DeviceId.is_in(devices));
        if auth.0.role == Role::Patient {
            let me = nc_entities::patients::Entity::find()
                .filter(nc_entities::patients::Column::UserId.eq(auth.0.id))
                .one(&state.db)
                .await?;
            query = query.filter(alerts::Column::PatientId.eq(me.map(|p| p.id)));
        }
        if let nc_access::policy::ReadScope::Windows(w) = state.policy.read_scope(&subject).await? {
            // A technician: only alerts raised while it is responsible for their device.
            let mut any = sea_orm::Condition::any();
            for w in &w {
                any = any.add(
                    sea_orm::Condition::all()
                        .add(alerts::Column::DeviceId.eq(w.device))
                        .add(alerts::Column::RaisedAt.gte(w.from))
                        .add(alerts::Column::RaisedAt.lt(w.to)),
                );
            }
            if w.is_empty() {
                any = any.add(alerts::Column::Id.is_null());
            }
            query = query.filter(any);
        }
        if let Some(s) = state_filter.0 {
            query = query.filter(alerts::Column::State.eq(s));
        }
        if open_only.0 == Some(true) {
            query = query.filter(alerts::Column::State.ne(AlertState::Cleared));
        }
        if let Some(d) = device_id.0 {
            query = query.filter(alerts::Column::DeviceId.eq(d));
        }
        if let Some(p) = patient_id.0 {
            query = query.filter(alerts::Column::PatientId.eq(p));
        }
        let (items, total) =
            fetch_page(&state.db, query.order_by_desc(alerts::Column::RaisedAt), limit, offset).await?;
        Ok(Json(AlertPage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }

    /// One alert.
    #[oai(path = "/api/alerts/:alertId", method = "get", operation_id = "getAlert")]
    async fn get(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> Result<Json<AlertOut>> {
        Ok(Json(Self::alert_for(&state, &auth, alert_id.0, false).await?.into()))
    }

    /// Acknowledge an alert (doctors and technicians of the device): records who and when;
    /// the alert stays open until its condition clears. Acknowledging twice is harmless.
    #[oai(path = "/api/alerts/:alertId/acknowledge", method = "post", operation_id = "acknowledgeAlert")]
    async fn acknowledge(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> Result<Json<AlertOut>> {
        let alert = Self::alert_for(&state, &auth, alert_id.0, true).await?;
        state.ingest.alerts().acknowledge(alert.id.as_uuid(), auth.0.id).await.map_err(alert_error)?;
        let updated = alerts::Entity::find_by_id(alert.id).one(&state.db).await?.ok_or(ApiError::NotFound("alert"))?;
        Ok(Json(updated.into()))
    }

    /// Clear an alert by hand (doctors and technicians of the device).
    #[oai(path = "/api/alerts/:alertId/clear", method = "post", operation_id = "clearAlert")]
    async fn clear(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "alertId")] alert_id: Path<AlertId>,
    ) -> Result<Json<AlertOut>> {
        let alert = Self::alert_for(&state, &auth, alert_id.0, true).await?;
        state.ingest.alerts().clear(alert.id.as_uuid(), Some(auth.0.id), Utc::now()).await.map_err(alert_error)?;
        let updated = alerts::Entity::find_by_id(alert.id).one(&state.db).await?.ok_or(ApiError::NotFound("alert"))?;
        Ok(Json(updated.into()))
    }

    /// Your hospital's default alert limits.
    #[oai(path = "/api/alert-thresholds", method = "get", operation_id = "listHospitalThresholds")]
    async fn hospital_thresholds(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
    ) -> Result<Json<Vec<ThresholdOut>>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ListDevices)?;
        let rows = alert_thresholds::Entity::find()
            .filter(alert_thresholds::Column::HospitalId.eq(auth.0.hospital))
            .filter(alert_thresholds::Column::PatientId.is_null())
            .order_by_asc(alert_thresholds::Column::Metric)
            .all(&state.db)
            .await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Set a hospital default alert limit (admins).
    #[oai(path = "/api/alert-thresholds", method = "put", operation_id = "setHospitalThreshold")]
    async fn set_hospital_threshold(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<ThresholdIn>,
    ) -> Result<Json<ThresholdOut>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ManageDevices)?;
        Ok(Json(Self::set_threshold(&state, &auth, None, body.0).await?))
    }

    /// A patient's own alert limits (overrides of the hospital defaults).
    #[oai(path = "/api/patients/:patientId/alert-thresholds", method = "get", operation_id = "listPatientThresholds")]
    async fn patient_thresholds(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
    ) -> Result<Json<Vec<ThresholdOut>>> {
        state
            .policy
            .patient(&auth.subject(), patient_id.0, PatientAction::Read)
            .await
            .map_err(|e| ApiError::policy(e, "patient"))?;
        let rows = alert_thresholds::Entity::find()
            .filter(alert_thresholds::Column::PatientId.eq(patient_id.0))
            .order_by_asc(alert_thresholds::Column::Metric)
            .all(&state.db)
            .await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Set a patient's own alert limit (their doctors).
    #[oai(path = "/api/patients/:patientId/alert-thresholds", method = "put", operation_id = "setPatientThreshold")]
    async fn set_patient_threshold(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        body: Json<ThresholdIn>,
    ) -> Result<Json<ThresholdOut>> {
        state
            .policy
            .patient(&auth.subject(), patient_id.0, PatientAction::SetAlertLimits)
            .await
            .map_err(|e| ApiError::policy(e, "patient"))?;
        Ok(Json(Self::set_threshold(&state, &auth, Some(patient_id.0), body.0).await?))
    }
}
