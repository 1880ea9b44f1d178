//! Telemetry over REST: machines that speak HTTP post readings (authenticated with their
//! device id and secret); people read current values, history, trends and sessions of the
//! patients they may see. Every read of a patient's data is audited.

use chrono::{DateTime, Duration, Utc};
use nc_access::{audit, PatientAction, Subject};
use nc_domain::*;
use nc_ingest::reading::SEQ_CONFLICT;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::auth::Basic;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, SecurityScheme};

use crate::dto::page;
use crate::dto::{SessionPage, DEFAULT_PAGE};
use crate::error::{ApiError, ApiResult};
use crate::security::{client_ip, BearerAuth};
use crate::state::ApiState;
use crate::Tag;
use nc_ingest::query::Windows;

/// A dialysis machine: HTTP Basic with the device id as user name and the device secret
/// as password.
#[derive(SecurityScheme)]
#[oai(ty = "basic", checker = "check_device")]
pub struct DeviceAuth(Subject);

async fn check_device(req: &Request, basic: Basic) -> poem::Result<Subject> {
    let state = req.data::<ApiState>().expect("ApiState is attached to every route");
    let unauthorized =
        || poem::Error::from_string("unknown device or wrong secret", poem::http::StatusCode::UNAUTHORIZED);
    let device: DeviceId = basic.username.parse().map_err(|_| unauthorized())?;
    state.authn.device(device, &basic.password).await.map_err(|e| match e {
        nc_access::authn::AuthnError::DeviceRetired => {
            poem::Error::from_string("the device is retired", poem::http::StatusCode::FORBIDDEN)
        }
        nc_access::authn::AuthnError::Db(_) => {
            poem::Error::from_string("temporarily unavailable", poem::http::StatusCode::SERVICE_UNAVAILABLE)
        }
        _ => unauthorized(),
    })
}

/// A stored reading.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct StoredOut {
    /// `stored` (also for the same reading sent again, which is stored once).
    pub status: String,
    pub seq: Option<i64>,
}

/// A reading's body as sent: the bytes go to ingest's one parser (the MQTT telemetry
/// topic's), so both transports accept exactly the same payloads. Declared with the
/// reading's schema.
pub struct ReadingBody(Vec<u8>);

impl Payload for ReadingBody {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        <Json<serde_json::Value> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        <nc_ingest::reading::ReadingIn as Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <nc_ingest::reading::ReadingIn as Type>::register(registry);
    }
}

impl ParsePayload for ReadingBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(Vec::<u8>::from_request(request, body).await?))
    }
}

// (The one-argument form of the macro does not expand outside poem-openapi.)
poem_openapi::impl_apirequest_for_payload!(ReadingBody,);

#[derive(ApiResponse)]
pub enum IngestResponse {
    /// Committed to storage.
    #[oai(status = 201)]
    Created(Json<StoredOut>),
}

/// A reading as stored. Measurements use the payload's names and units (heartRate bpm,
/// temperature °F, bloodPressure systolic mmHg, oxygenSaturation %, flowRate mL/min,
/// totalVolume L, and the optional dialysis parameters); absent ones are omitted.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ReadingOut {
    pub time: DateTime<Utc>,
    pub device_id: DeviceId,
    pub seq: i64,
    pub patient_id: Option<PatientId>,
    pub session_id: Option<SessionId>,
    pub system_status: String,
    /// Measurement name → value.
    pub values: std::collections::BTreeMap<String, f64>,
}

impl From<nc_ingest::query::StoredReading> for ReadingOut {
    fn from(r: nc_ingest::query::StoredReading) -> Self {
        Self {
            time: r.time,
            device_id: DeviceId(r.device_id),
            seq: r.seq,
            patient_id: r.patient_id.map(PatientId),
            session_id: r.session_id.map(SessionId),
            system_status: r.system_status,
            values: r.values,
        }
    }
}

/// The newest reading of a patient.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct CurrentOut {
    pub time: DateTime<Utc>,
    pub device_id: DeviceId,
    pub seq: i64,
    /// The reading as the machine sent it.
    pub reading: serde_json::Value,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct HistoryPage {
    pub items: Vec<ReadingOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Trend resolution.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    #[oai(rename = "1m")]
    M1,
    #[oai(rename = "5m")]
    M5,
    #[oai(rename = "15m")]
    M15,
    #[oai(rename = "1h")]
    H1,
    #[oai(rename = "6h")]
    H6,
    #[oai(rename = "1d")]
    D1,
}

impl Resolution {
    fn duration(self) -> Duration {
        match self {
            Resolution::M1 => Duration::minutes(1),
            Resolution::M5 => Duration::minutes(5),
            Resolution::M15 => Duration::minutes(15),
            Resolution::H1 => Duration::hours(1),
            Resolution::H6 => Duration::hours(6),
            Resolution::D1 => Duration::days(1),
        }
    }
}

#[derive(Object, Debug)]
pub struct StatOut {
    pub metric: String,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub count: i64,
}

#[derive(Object, Debug)]
pub struct BucketOut {
    pub bucket: DateTime<Utc>,
    pub stats: Vec<StatOut>,
}

#[derive(Object, Debug)]
pub struct TrendsOut {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub resolution: Resolution,
    /// `rollup` (the rollup tier of the resolution: 1-, 5- and 15-minute tiers under 1 h,
    /// hourly for 1 h and more) or `raw` (time_bucket over readings: limited to a
    /// technician's windows).
    pub source: String,
    pub buckets: Vec<BucketOut>,
}

/// The measurements trends cover by default.
const DEFAULT_TREND_METRICS: &[&str] =
    &["heartRate", "temperature", "bloodPressure", "oxygenSaturation", "flowRate", "totalVolume"];
/// Largest history page.
const MAX_HISTORY_PAGE: u64 = 1000;
/// Most buckets one trends request may ask for.
const MAX_BUCKETS: i64 = 10_000;

pub struct TelemetryApi;

fn range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    default: Duration,
) -> std::result::Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = to.unwrap_or_else(|| Utc::now() + Duration::minutes(1));
    let from = from.unwrap_or(to - default);
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    Ok((from, to))
}

async fn readable_patient(
    state: &ApiState,
    req: &Request,
    auth: &BearerAuth,
    patient: PatientId,
    resource: &str,
) -> std::result::Result<nc_access::policy::ReadScope, ApiError> {
    let subject = auth.subject();
    let p = state.allowed_patient(&subject, patient, PatientAction::Read).await?;
    let scope = state.policy.read_scope(&subject).await?;
    audit::record(
        &state.db,
        audit::Access {
            subject: &subject,
            action: AuditAction::Read,
            resource,
            patient: Some(p.id),
            device: None,
            interface: Interface::Rest,
            client_addr: client_ip(req).map(|ip| ip.to_string()),
        },
    )
    .await?;
    Ok(scope)
}

/// The policy's windows, for the time-series queries (`None`: everything).
pub(crate) fn windows(scope: &nc_access::policy::ReadScope) -> Option<Windows> {
    scope.windows().map(|w| Windows::new(w.iter().map(|w| (w.device.as_uuid(), w.from, w.to))))
}

impl TelemetryApi {
    #[allow(clippy::too_many_arguments)]
    async fn history_page(
        state: &ApiState,
        req: &Request,
        auth: &BearerAuth,
        patient: PatientId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: Option<u64>,
        cursor: Option<String>,
    ) -> ApiResult<Json<HistoryPage>> {
        let scope = windows(&readable_patient(state, req, auth, patient, "patient.health_metrics").await?);
        let (from, to) = range(from, to, Duration::days(1))?;
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(ApiError::field("limit", format!("must be between 1 and {MAX_HISTORY_PAGE}")).into());
        }
        let after = match cursor {
            Some(c) => Some(
                nc_ingest::query::Cursor::decode(&c)
                    .filter(|c| crate::validate::in_range(&c.time))
                    .ok_or_else(|| ApiError::field("cursor", "is not a cursor from a previous page"))?,
            ),
            None => None,
        };
        let (items, next) = nc_ingest::query::history(
            state.ingest.pool(),
            patient.as_uuid(),
            from,
            to,
            limit as i64,
            after,
            scope.as_ref(),
        )
        .await
        .map_err(ApiError::internal)?;
        Ok(Json(HistoryPage {
            items: items.into_iter().map(Into::into).collect(),
            next_cursor: next.map(|c| c.encode()),
        }))
    }
}

#[OpenApi(tag = "Tag::Telemetry")]
impl TelemetryApi {
    /// Post one reading from a machine (for machines that speak HTTP rather than MQTT).
    ///
    /// The same payload, parser and validation as the MQTT telemetry topic: one JSON object
    /// (not an array), each field once, unknown fields refused (422 `validation_failed`
    /// naming the field, with the message the MQTT `errors` topic would carry). Answered
    /// only after the reading is committed. A reading is identified by (device, `seq`): the
    /// same reading sent again (same `seq`, `ts` and values) is stored once and answered 201
    /// again; the same `seq` with another `ts` or other values is refused with 409
    /// `seq_conflict` and not stored.
    #[oai(path = "/api/health-metrics", method = "post", operation_id = "postHealthMetric")]
    async fn post(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: DeviceAuth,
        body: ReadingBody,
    ) -> ApiResult<IngestResponse> {
        let Subject::Device { id, hospital } = auth.0 else {
            return Err(ApiError::Forbidden("only devices post readings".into()).into());
        };
        match state.ingest.submit_reading(id, hospital, &body.0).await {
            Ok(nc_ingest::Outcome::Stored { seq, patient }) => {
                // One pipeline: the stored reading reaches the machine's and the patient's
                // MQTT subscribers as one sent over MQTT does (alarms, derived data and the
                // live streams follow the commit inside ingest for both).
                let topic = nc_messaging::topic::Topic::Device {
                    hospital,
                    device: id,
                    channel: nc_messaging::topic::DeviceChannel::Telemetry,
                };
                if let Err(e) = state.publisher.publish_committed(&topic, patient, body.0).await {
                    tracing::warn!(error = %e, device = %id, "a reading stored over HTTP could not be published");
                }
                Ok(IngestResponse::Created(Json(StoredOut { status: "stored".into(), seq })))
            }
            Ok(nc_ingest::Outcome::Invalid(e, _)) if e.code == SEQ_CONFLICT => {
                Err(ApiError::Conflict { code: SEQ_CONFLICT, message: e.message }.into())
            }
            Ok(nc_ingest::Outcome::Invalid(e, _)) => Err(ApiError::field(&e.field, e.message).into()),
            Err(e) => Err(ApiError::Unavailable(e.0).into()),
        }
    }

    /// A patient's newest reading (from the latest-values table, which follows the stored
    /// readings within about a second: it is derived after each reading's acknowledgement).
    #[oai(path = "/api/health-metrics/current/:patientId", method = "get", operation_id = "getCurrentHealthMetrics")]
    async fn current(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
    ) -> ApiResult<Json<CurrentOut>> {
        let scope = windows(&readable_patient(&state, req, &auth, patient_id.0, "patient.current").await?);
        let found = nc_ingest::query::current_for_patient(state.ingest.pool(), patient_id.0.as_uuid(), scope.as_ref())
            .await
            .map_err(ApiError::internal)?;
        let (time, device, seq, reading) = found.ok_or(ApiError::NotFound("reading"))?;
        Ok(Json(CurrentOut { time, device_id: DeviceId(device), seq, reading }))
    }

    /// A patient's readings in a time range, newest first, by pages (cursor pagination:
    /// no gaps, no repeats).
    #[oai(path = "/api/health-metrics/history/:patientId", method = "get", operation_id = "getHealthMetricsHistory")]
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        /// Start of the range (default: a day before `to`).
        #[oai(validator(custom = "crate::validate::Time"))]
        from: Query<Option<DateTime<Utc>>>,
        /// End of the range, exclusive (default: now).
        #[oai(validator(custom = "crate::validate::Time"))]
        to: Query<Option<DateTime<Utc>>>,
        /// Page size, 1 to 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
        /// `nextCursor` of the previous page.
        #[oai(validator(max_length = 100, custom = "crate::validate::NoNul"))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<HistoryPage>> {
        Self::history_page(&state, req, &auth, patient_id.0, from.0, to.0, limit.0, cursor.0).await
    }

    /// A patient's readings (the same pages as `getHealthMetricsHistory`).
    #[oai(path = "/api/patients/:patientId/health-metrics", method = "get", operation_id = "listPatientHealthMetrics")]
    #[allow(clippy::too_many_arguments)]
    async fn patient_metrics(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        #[oai(validator(custom = "crate::validate::Time"))] from: Query<Option<DateTime<Utc>>>,
        #[oai(validator(custom = "crate::validate::Time"))] to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u64>>,
        #[oai(validator(max_length = 100, custom = "crate::validate::NoNul"))] cursor: Query<Option<String>>,
    ) -> ApiResult<Json<HistoryPage>> {
        Self::history_page(&state, req, &auth, patient_id.0, from.0, to.0, limit.0, cursor.0).await
    }

    /// min/avg/max per metric per time bucket, from the rollup tier of the resolution. Under
    /// an hour: from the 1-, 5- or 15-minute rollups (the figures of the readings in
    /// `[from, to)`; kept as long as raw readings); an hour and more: from hourly rollups,
    /// so a year answers quickly and survives raw-data retention. The rollups follow the
    /// stored readings within about a second (they are derived after each reading's
    /// acknowledgement).
    #[oai(path = "/api/patients/:patientId/health-trends", method = "get", operation_id = "getPatientHealthTrends")]
    #[allow(clippy::too_many_arguments)]
    async fn trends(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        #[oai(validator(custom = "crate::validate::Time"))] from: Query<Option<DateTime<Utc>>>,
        #[oai(validator(custom = "crate::validate::Time"))] to: Query<Option<DateTime<Utc>>>,
        /// Bucket size (default 1h).
        resolution: Query<Option<Resolution>>,
        /// Comma-separated measurement names (default: heartRate, temperature,
        /// bloodPressure, oxygenSaturation, flowRate, totalVolume).
        #[oai(validator(max_length = 500, custom = "crate::validate::NoNul"))]
        metrics: Query<Option<String>>,
    ) -> ApiResult<Json<TrendsOut>> {
        let scope = windows(&readable_patient(&state, req, &auth, patient_id.0, "patient.trends").await?);
        let resolution = resolution.0.unwrap_or(Resolution::H1);
        let (from, to) = range(from.0, to.0, Duration::days(7))?;
        if (to - from).num_seconds() / resolution.duration().num_seconds() > MAX_BUCKETS {
            return Err(ApiError::field(
                "resolution",
                format!("too fine for this range (more than {MAX_BUCKETS} buckets); choose a coarser one"),
            )
            .into());
        }
        let wanted: Vec<String> = match metrics.0 {
            Some(m) => m.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            None => DEFAULT_TREND_METRICS.iter().map(|s| s.to_string()).collect(),
        };
        for m in &wanted {
            if !nc_ingest::reading::COLUMNS.iter().any(|(j, _)| j == m) {
                return Err(ApiError::field("metrics", format!("unknown measurement '{m}'")).into());
            }
        }
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let (source, buckets) = nc_ingest::query::trends(
            state.ingest.pool(),
            patient_id.0.as_uuid(),
            from,
            to,
            resolution.duration(),
            &names,
            scope.as_ref(),
        )
        .await
        .map_err(ApiError::internal)?;
        Ok(Json(TrendsOut {
            from,
            to,
            resolution,
            source: match source {
                nc_ingest::query::TrendSource::Raw => "raw".into(),
                nc_ingest::query::TrendSource::Rollup => "rollup".into(),
            },
            buckets: buckets
                .into_iter()
                .map(|b| BucketOut {
                    bucket: b.bucket,
                    stats: b
                        .stats
                        .into_iter()
                        .map(|s| StatOut { metric: s.metric, min: s.min, avg: s.avg, max: s.max, count: s.count })
                        .collect(),
                })
                .collect(),
        }))
    }

    /// A patient's treatment sessions, newest first, with their summaries.
    #[oai(path = "/api/patients/:patientId/sessions", method = "get", operation_id = "listPatientSessions")]
    async fn sessions(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<u64>>,
        #[oai(validator(maximum(value = "1000000000")))] offset: Query<Option<u64>>,
    ) -> ApiResult<Json<SessionPage>> {
        let scope = readable_patient(&state, req, &auth, patient_id.0, "patient.sessions").await?;
        let (limit, offset) = page(limit.0, offset.0)?;
        let (items, total) = nc_care::patients::sessions(&state.db, patient_id.0, &scope, limit, offset).await?;
        Ok(Json(SessionPage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }
}
