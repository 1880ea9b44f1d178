//! Alarm-burden analytics, in SQL over the stored alerts, their history and the treatment
//! sessions: how many alarms a unit receives per treatment hour (by priority and by
//! condition), how many were acknowledged and how fast, how many were nuisance (cleared by
//! themselves within 30 s), how often they escalated, and which conditions and machines
//! raise the most.
//!
//! Definitions: an alarm counts in `[from, to)` by its `raisedAt`; treatment hours are the
//! parts of the sessions in scope that lie inside `[from, to)` (a running session up to
//! now); time to acknowledge runs from when the service raised the alarm to its first
//! acknowledgement (both by the service's clock, from the history).

use chrono::{DateTime, Utc};
use nc_domain::{DeviceId, HospitalId, PatientId};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Alarms;

/// What to analyse.
#[derive(Debug, Clone)]
pub struct BurdenFilter {
    pub hospital: HospitalId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub ward: Option<String>,
    pub device: Option<DeviceId>,
    pub patient: Option<PatientId>,
}

/// Counts for one slice (a priority, a condition, a device).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Slice {
    /// The priority, the condition code or the device id.
    pub key: String,
    /// The condition's kind, or the device's serial.
    pub label: Option<String>,
    pub alarms: i64,
    pub acknowledged: i64,
    pub self_cleared_30s: i64,
    /// Treatment hours (devices only).
    pub hours: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Burden {
    pub treatment_hours: f64,
    pub alarms: i64,
    pub acknowledged: i64,
    pub self_cleared_30s: i64,
    pub median_seconds_to_acknowledge: Option<f64>,
    pub p90_seconds_to_acknowledge: Option<f64>,
    pub by_priority: Vec<Slice>,
    /// Most frequent first.
    pub by_condition: Vec<Slice>,
    /// (tier, escalations to it).
    pub escalations: Vec<(i16, i64)>,
    /// The ten machines with most alarms, most first.
    pub top_devices: Vec<Slice>,
}

/// The alarms in scope, with their first acknowledgement and whether they cleared by
/// themselves within 30 s. $1 hospital, $2 from, $3 to, $4 ward, $5 device, $6 patient.
const ALARMS: &str = "
WITH scope AS (
    SELECT d.id, d.serial FROM devices d
     WHERE d.hospital_id = $1 AND ($4::text IS NULL OR d.ward = $4) AND ($5::uuid IS NULL OR d.id = $5)
), alarms AS (
    SELECT a.id, a.device_id, a.code, a.kind, a.priority,
           (SELECT min(e.at) FROM alert_events e WHERE e.alert_id = a.id AND e.event = 'raised') AS raised_wall,
           (SELECT min(e.at) FROM alert_events e WHERE e.alert_id = a.id AND e.event = 'acknowledged') AS acked_at,
           (a.cleared_by IS NULL AND a.cleared_at < a.raised_at + interval '30 seconds'
            AND EXISTS (SELECT 1 FROM alert_events e WHERE e.alert_id = a.id AND e.event = 'cleared'
                                                      AND e.reason = 'condition_ended')) AS nuisance
      FROM alerts a JOIN scope ON scope.id = a.device_id
     WHERE a.hospital_id = $1 AND a.raised_at >= $2 AND a.raised_at < $3 AND ($6::uuid IS NULL OR a.patient_id = $6)
)";

/// Treatment hours per device in scope.
const HOURS: &str = "
WITH scope AS (
    SELECT d.id, d.serial FROM devices d
     WHERE d.hospital_id = $1 AND ($4::text IS NULL OR d.ward = $4) AND ($5::uuid IS NULL OR d.id = $5)
)
SELECT s.device_id, sum(extract(epoch FROM least(coalesce(s.ended_at, now()), $3) - greatest(s.started_at, $2)))::float8 / 3600.0
  FROM device_sessions s JOIN scope ON scope.id = s.device_id
 WHERE s.started_at < $3 AND coalesce(s.ended_at, now()) > $2 AND ($6::uuid IS NULL OR s.patient_id = $6)
 GROUP BY s.device_id";

fn bind<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q BurdenFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(f.hospital.as_uuid())
        .bind(f.from)
        .bind(f.to)
        .bind(f.ward.as_deref())
        .bind(f.device.map(|d| d.as_uuid()))
        .bind(f.patient.map(|p| p.as_uuid()))
}

impl Alarms {
    /// The alarm burden of the hospital (or of a ward, a device, a patient) over `[from, to)`.
    pub async fn burden(&self, f: &BurdenFilter) -> Result<Burden, sqlx::Error> {
        burden(self.pool(), f).await
    }
}

async fn burden(pool: &PgPool, f: &BurdenFilter) -> Result<Burden, sqlx::Error> {
    let hours: Vec<(Uuid, f64)> = bind(sqlx::query_as(HOURS), f).fetch_all(pool).await?;
    let treatment_hours = hours.iter().map(|(_, h)| h).sum();

    type Totals = (i64, i64, i64, Option<f64>, Option<f64>);
    let (alarms, acknowledged, self_cleared_30s, median, p90): Totals = bind(
        sqlx::query_as(&format!(
            "{ALARMS}
             SELECT count(*), count(acked_at), count(*) FILTER (WHERE nuisance),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM acked_at - raised_wall))::float8,
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM acked_at - raised_wall))::float8
               FROM alarms"
        )),
        f,
    )
    .fetch_one(pool)
    .await?;

    let slices = |group: &str, label: &str| {
        format!(
            "{ALARMS}
             SELECT {group}::text AS key, {label} AS label, count(*) AS alarms, count(acked_at) AS acknowledged,
                    count(*) FILTER (WHERE nuisance) AS self_cleared_30s, NULL::float8 AS hours
               FROM alarms GROUP BY 1 ORDER BY 3 DESC, 1"
        )
    };
    let by_priority: Vec<Slice> = bind(sqlx::query_as(&slices("priority", "NULL::text")), f).fetch_all(pool).await?;
    let by_condition: Vec<Slice> = bind(sqlx::query_as(&slices("code", "min(kind)")), f).fetch_all(pool).await?;
    let mut top_devices: Vec<Slice> = bind(
        sqlx::query_as(&format!(
            "{ALARMS}
             SELECT a.device_id::text AS key, min(d.serial) AS label, count(*) AS alarms, count(acked_at) AS acknowledged,
                    count(*) FILTER (WHERE nuisance) AS self_cleared_30s, NULL::float8 AS hours
               FROM alarms a JOIN devices d ON d.id = a.device_id
              GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 10"
        )),
        f,
    )
    .fetch_all(pool)
    .await?;
    for d in &mut top_devices {
        d.hours = Some(hours.iter().find(|(id, _)| id.to_string() == d.key).map_or(0.0, |(_, h)| *h));
    }
    let escalations: Vec<(i16, i64)> = bind(
        sqlx::query_as(&format!(
            "{ALARMS}
             SELECT e.tier, count(*) FROM alert_events e JOIN alarms a ON a.id = e.alert_id
              WHERE e.event = 'escalated' AND e.tier IS NOT NULL GROUP BY 1 ORDER BY 1"
        )),
        f,
    )
    .fetch_all(pool)
    .await?;
    Ok(Burden {
        treatment_hours,
        alarms,
        acknowledged,
        self_cleared_30s,
        median_seconds_to_acknowledge: median,
        p90_seconds_to_acknowledge: p90,
        by_priority,
        by_condition,
        escalations,
        top_devices,
    })
}
