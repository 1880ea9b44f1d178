//! `GET /api/devices/{deviceId}/performance`: a machine's performance figures over a period
//! (the technician's "device status: performance metrics"), computed in SQL by
//! [`nc_ingest::performance`] over stored data, per day of the unit's time zone and in
//! total. Aggregates that name no patient: staff of the device's hospital
//! ([`DeviceAction::ViewPerformance`]); patients 403, another hospital 404.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use nc_access::DeviceAction;
use nc_domain::DeviceId;
use nc_ingest::performance::{Figures, Hours};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::error::{ApiError, ApiResult};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

/// The longest period one request covers.
const MAX_DAYS: i64 = 92;

/// A machine's figures over a day or a whole period.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct FiguresOut {
    /// Time connected to the broker as a percentage of the time that has passed since the
    /// machine's presence was first recorded (`device_presence_events`: before its first
    /// connection or disconnection the service saw, whether it was connected is unknown, and
    /// that time counts neither as connected nor as offline). Null when unknown throughout:
    /// no presence recorded before the end of the day or period (e.g. the days before the
    /// machine's first connection), or none of it has passed yet.
    pub uptime_pct: Option<f64>,
    /// Time connected, hours.
    pub connected_hours: f64,
    /// Abrupt losses of the connection (last will: `connection_lost`, `keepalive_timeout`).
    pub connection_drops: i64,
    /// Treatment sessions started.
    pub treatments: i64,
    /// Treatment time (sessions' overlap with the time; a running one until now), hours.
    pub treatment_hours: f64,
    /// The unit's opening hours (booking settings), hours.
    pub opening_hours: f64,
    /// Treatment time within the opening hours as a percentage of them; null when closed
    /// throughout.
    pub utilization_pct: Option<f64>,
    /// Readings stored (by reading time).
    pub readings: i64,
    /// `seq` numbers skipped within treatment sessions: readings the machine numbered but
    /// that never arrived (counted per day: a hole across midnight is not counted).
    pub missing_readings: i64,
    /// Messages of the machine refused by ingest (invalid payloads, seq conflicts).
    pub rejected_messages: i64,
    /// Technical alarms raised (machine status, offline, maintenance due).
    pub technical_alarms: i64,
    /// Physiological alarms raised (the patients' limits).
    pub physiological_alarms: i64,
}

impl From<&Figures> for FiguresOut {
    fn from(f: &Figures) -> Self {
        FiguresOut {
            uptime_pct: f.uptime_pct(),
            connected_hours: f.connected_seconds / HOUR,
            connection_drops: f.connection_drops,
            treatments: f.treatments,
            treatment_hours: f.treatment_seconds / HOUR,
            opening_hours: f.open_seconds / HOUR,
            utilization_pct: f.utilization_pct(),
            readings: f.readings,
            missing_readings: f.missing_readings,
            rejected_messages: f.rejected_messages,
            technical_alarms: f.technical_alarms,
            physiological_alarms: f.physiological_alarms,
        }
    }
}

/// One day of the unit's time zone.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct PerformanceDayOut {
    /// The local date (the unit's time zone); the first and last days are cut to the period.
    pub date: NaiveDate,
    #[oai(flatten)]
    pub figures: FiguresOut,
}

/// A machine's performance over `[from, to)`: the figures of the whole period, the live
/// ingest lag and the late (back-filled) readings, the maintenance dates, and the figures
/// per day.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct DevicePerformanceOut {
    pub device_id: DeviceId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The unit's time zone (IANA), in which days are counted.
    pub time_zone: String,
    #[oai(flatten)]
    pub total: FiguresOut,
    /// Live ingest lag: the median time from a reading's timestamp (`ts`) to its storage,
    /// ms, over the readings stored at most 5 minutes after their timestamp (a machine's own
    /// buffering through a short loss of connection counts too); null without such
    /// readings. Readings stored later are back-fill (`lateReadings`), not lag.
    pub ingest_lag_p50_ms: Option<f64>,
    /// 95th percentile of the live ingest lag, ms.
    pub ingest_lag_p95_ms: Option<f64>,
    /// Longest live ingest lag, ms (at most 300000).
    pub ingest_lag_max_ms: Option<f64>,
    /// Late readings: stored more than 5 minutes after their timestamp, i.e. back-filled (a
    /// machine sending what it buffered through a long outage, or past treatments). Counted
    /// here and left out of the ingest lag.
    pub late_readings: i64,
    /// The longest time from a late reading's timestamp to its storage, ms (null without
    /// late readings).
    pub late_lag_max_ms: Option<f64>,
    pub last_maintenance_at: Option<DateTime<Utc>>,
    pub maintenance_due_at: Option<DateTime<Utc>>,
    /// Days since the last recorded maintenance (null: none recorded).
    pub days_since_maintenance: Option<f64>,
    /// Days until the next maintenance is due; negative when overdue (null: no due date).
    pub days_until_maintenance: Option<f64>,
    /// The figures per day, oldest first.
    pub days: Vec<PerformanceDayOut>,
}

const HOUR: f64 = 3600.0;

pub struct PerformanceApi;

#[OpenApi(tag = "Tag::Devices")]
impl PerformanceApi {
    /// A machine's performance over a period (default: the last 7 days; at most 92 days):
    /// uptime and connection drops, treatments and treatment hours, utilization against the
    /// unit's opening hours, readings and the ones missing (skipped `seq`), refused
    /// messages, live ingest lag and late (back-filled) readings, technical and physiological alarms, days since and until
    /// maintenance; in total and per day of the unit's time zone. Staff of the device's
    /// hospital (technicians, doctors, admins).
    #[oai(path = "/api/devices/:deviceId/performance", method = "get", operation_id = "getDevicePerformance")]
    async fn performance(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<DeviceId>,
        /// Start of the period (default: 7 days before `to`).
        #[oai(validator(custom = "crate::validate::Time"))]
        from: Query<Option<DateTime<Utc>>>,
        /// End of the period, exclusive (default: now).
        #[oai(validator(custom = "crate::validate::Time"))]
        to: Query<Option<DateTime<Utc>>>,
    ) -> ApiResult<Json<DevicePerformanceOut>> {
        let device = state.allowed_device(&auth.subject(), device_id.0, DeviceAction::ViewPerformance).await?;
        let to = to.0.unwrap_or_else(Utc::now);
        let from = from.0.unwrap_or(to - Duration::days(7));
        if from >= to {
            return Err(ApiError::field("from", "must be before `to`").into());
        }
        if to - from > Duration::days(MAX_DAYS) {
            return Err(ApiError::field("from", format!("the period is at most {MAX_DAYS} days")).into());
        }
        let settings = nc_bookings::store::settings(&state.db, device.hospital_id).await?;
        let mut hours: Hours = [None; 7];
        for (i, h) in settings.hours.0.iter().enumerate() {
            hours[i] = h.map(|d| (d.open, d.close));
        }
        let tz = settings.time_zone.name();
        let p = nc_ingest::performance::device_performance(
            state.ingest.pool(),
            &state.alarms,
            device.id,
            from,
            to,
            tz,
            &hours,
        )
        .await
        .map_err(ApiError::internal)?;
        Ok(Json(DevicePerformanceOut {
            device_id: device.id,
            from,
            to,
            time_zone: tz.to_owned(),
            total: (&p.total).into(),
            ingest_lag_p50_ms: p.lag.map(|l| l.p50_ms),
            ingest_lag_p95_ms: p.lag.map(|l| l.p95_ms),
            ingest_lag_max_ms: p.lag.map(|l| l.max_ms),
            late_readings: p.late_readings,
            late_lag_max_ms: p.late_lag_max_ms,
            last_maintenance_at: p.last_maintenance_at,
            maintenance_due_at: p.maintenance_due_at,
            days_since_maintenance: p.days_since_maintenance,
            days_until_maintenance: p.days_until_maintenance,
            days: p.days.iter().map(|d| PerformanceDayOut { date: d.date, figures: (&d.figures).into() }).collect(),
        }))
    }
}
