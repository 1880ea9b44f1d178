//! `/api/alert-thresholds` and `/api/patients/{patientId}/alert-thresholds`: the limits alerts
//! are raised at (hospital defaults set by admins, per-patient overrides set by the patient's
//! doctors).

use chrono::Utc;
use nc_access::{audit, HospitalAction, PatientAction};
use nc_domain::*;
use nc_entities::alert_thresholds;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::error::{ApiError, ApiResult};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

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

pub struct ThresholdsApi;

impl ThresholdsApi {
    /// The limits `which` selects, by metric.
    async fn listed(state: &ApiState, which: Condition) -> ApiResult<Json<Vec<ThresholdOut>>> {
        let rows = alert_thresholds::Entity::find()
            .filter(which)
            .order_by_asc(alert_thresholds::Column::Metric)
            .all(&state.db)
            .await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
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
impl ThresholdsApi {
    /// Your hospital's default alert limits.
    #[oai(path = "/api/alert-thresholds", method = "get", operation_id = "listHospitalThresholds")]
    async fn hospital_thresholds(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<ThresholdOut>>> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ListDevices)?;
        let defaults = Condition::all()
            .add(alert_thresholds::Column::HospitalId.eq(auth.0.hospital))
            .add(alert_thresholds::Column::PatientId.is_null());
        Self::listed(&state, defaults).await
    }

    /// Set a hospital default alert limit (admins).
    #[oai(path = "/api/alert-thresholds", method = "put", operation_id = "setHospitalThreshold")]
    async fn set_hospital_threshold(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<ThresholdIn>,
    ) -> ApiResult<Json<ThresholdOut>> {
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
    ) -> ApiResult<Json<Vec<ThresholdOut>>> {
        state.allowed_patient(&auth.subject(), patient_id.0, PatientAction::Read).await?;
        Self::listed(&state, Condition::all().add(alert_thresholds::Column::PatientId.eq(patient_id.0))).await
    }

    /// Set a patient's own alert limit (their doctors).
    #[oai(path = "/api/patients/:patientId/alert-thresholds", method = "put", operation_id = "setPatientThreshold")]
    async fn set_patient_threshold(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        body: Json<ThresholdIn>,
    ) -> ApiResult<Json<ThresholdOut>> {
        state.allowed_patient(&auth.subject(), patient_id.0, PatientAction::SetAlertLimits).await?;
        Ok(Json(Self::set_threshold(&state, &auth, Some(patient_id.0), body.0).await?))
    }
}
