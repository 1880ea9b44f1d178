//! Reading the time series: latest values, history pages and trends. Everything here is
//! plain SQL over `health_metrics` (hypertable), `device_latest_metrics` and
//! `health_metric_rollups_hourly`, with the indexes named in the migration.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use crate::reading::COLUMNS;

/// One stored reading (JSON names as in the payload).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredReading {
    pub time: DateTime<Utc>,
    pub device_id: Uuid,
    pub seq: i64,
    pub patient_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub system_status: String,
    /// (JSON name, value) for each measurement present.
    #[serde(flatten)]
    pub values: std::collections::BTreeMap<String, f64>,
}

fn select_columns() -> String {
    let cols: Vec<&str> = COLUMNS.iter().map(|(_, c)| *c).collect();
    format!("time, device_id, seq, patient_id, session_id, system_status, {}", cols.join(", "))
}

fn stored(row: &PgRow) -> Result<StoredReading, sqlx::Error> {
    let mut values = std::collections::BTreeMap::new();
    for (json, column) in COLUMNS {
        if let Some(v) = row.try_get::<Option<f32>, _>(column)? {
            values.insert(json.to_owned(), (v as f64 * 1000.0).round() / 1000.0);
        }
    }
    Ok(StoredReading {
        time: row.try_get("time")?,
        device_id: row.try_get("device_id")?,
        seq: row.try_get("seq")?,
        patient_id: row.try_get("patient_id")?,
        session_id: row.try_get("session_id")?,
        system_status: row.try_get("system_status")?,
        values,
    })
}

/// Limits a read to what was recorded on some devices in some time windows (a
/// technician's scope); `None` reads everything of the patient.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    devices: Vec<Uuid>,
    froms: Vec<DateTime<Utc>>,
    tos: Vec<DateTime<Utc>>,
}

impl Windows {
    pub fn new(windows: impl IntoIterator<Item = (Uuid, DateTime<Utc>, DateTime<Utc>)>) -> Windows {
        let mut w = Windows::default();
        for (d, f, t) in windows {
            w.devices.push(d);
            w.froms.push(f);
            w.tos.push(t);
        }
        w
    }
}

/// The SQL condition "the row's (device_id, time) lies in one of the windows", on
/// parameters `$n`, `$n+1`, `$n+2`; true when they are NULL (no limit).
fn in_windows(n: usize, time: &str) -> String {
    format!(
        "(${n}::uuid[] IS NULL OR EXISTS (SELECT 1 FROM unnest(${n}::uuid[], ${}::timestamptz[], ${}::timestamptz[]) AS w(d, f, t)
           WHERE w.d = device_id AND {time} >= w.f AND {time} < w.t))",
        n + 1,
        n + 2
    )
}

type WindowBinds = (Option<Vec<Uuid>>, Option<Vec<DateTime<Utc>>>, Option<Vec<DateTime<Utc>>>);

fn window_binds(w: Option<&Windows>) -> WindowBinds {
    match w {
        None => (None, None, None),
        Some(w) => (Some(w.devices.clone()), Some(w.froms.clone()), Some(w.tos.clone())),
    }
}

/// The newest reading of a patient (from the upserted latest-values table: no scan of the
/// hypertable).
pub async fn current_for_patient(
    pool: &PgPool,
    patient: Uuid,
    windows: Option<&Windows>,
) -> Result<Option<(DateTime<Utc>, Uuid, i64, serde_json::Value)>, sqlx::Error> {
    let (d, f, t) = window_binds(windows);
    let sql = format!(
        "SELECT time, device_id, seq, reading FROM device_latest_metrics WHERE patient_id = $1 AND {} ORDER BY time DESC LIMIT 1",
        in_windows(2, "time")
    );
    sqlx::query_as(&sql).bind(patient).bind(d).bind(f).bind(t).fetch_optional(pool).await
}

/// Where a history page continues: strictly older than this reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub device: Uuid,
    pub seq: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.time.timestamp_micros(), self.device.simple(), self.seq)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let mut parts = s.split('.');
        let micros: i64 = parts.next()?.parse().ok()?;
        let device = Uuid::parse_str(parts.next()?).ok()?;
        let seq: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Cursor { time: DateTime::from_timestamp_micros(micros)?, device, seq })
    }
}

/// A page of a patient's readings in `[from, to)`, newest first, and the cursor of the next
/// page (None at the end). Pages neither repeat nor skip readings.
pub async fn history(
    pool: &PgPool,
    patient: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
    after: Option<Cursor>,
    windows: Option<&Windows>,
) -> Result<(Vec<StoredReading>, Option<Cursor>), sqlx::Error> {
    let after = after.unwrap_or(Cursor { time: to, device: Uuid::max(), seq: i64::MAX });
    // `time <= $4` repeats the cursor's bound on its own so TimescaleDB can skip the chunks
    // after it (it cannot see through the row comparison).
    let sql = format!(
        "SELECT {} FROM health_metrics
          WHERE patient_id = $1 AND time >= $2 AND time < $3 AND time <= $4 AND (time, device_id, seq) < ($4, $5, $6)
            AND {}
          ORDER BY time DESC, device_id DESC, seq DESC LIMIT $7",
        select_columns(),
        in_windows(8, "time")
    );
    let (d, f, t) = window_binds(windows);
    let rows = sqlx::query(&sql)
        .bind(patient)
        .bind(from)
        .bind(to)
        .bind(after.time)
        .bind(after.device)
        .bind(after.seq)
        .bind(limit + 1)
        .bind(d)
        .bind(f)
        .bind(t)
        .fetch_all(pool)
        .await?;
    let mut items = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|r| Cursor { time: r.time, device: r.device_id, seq: r.seq })
    } else {
        None
    };
    Ok((items, next))
}

/// min/avg/max/count of one metric in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stat {
    pub metric: String,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub bucket: DateTime<Utc>,
    pub stats: Vec<Stat>,
}

/// Where trends come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrendSource {
    /// `time_bucket` over the raw readings (resolutions under an hour).
    Raw,
    /// The hourly rollups (an hour or more): fast over any range, and kept after raw data
    /// is dropped by retention. A range that starts inside an hour includes that whole hour.
    Rollup,
}

/// Trends of `metrics` (JSON names) for a patient: one bucket per `resolution` in
/// `[from, to)`, oldest first, with the buckets that have data. Limited to `windows`, they
/// come from the readings (the hourly rollups do not keep the device).
pub async fn trends(
    pool: &PgPool,
    patient: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    resolution: Duration,
    metrics: &[&str],
    windows: Option<&Windows>,
) -> Result<(TrendSource, Vec<Bucket>), sqlx::Error> {
    let columns: Vec<(&str, &str)> = COLUMNS.iter().filter(|(j, _)| metrics.contains(j)).copied().collect();
    let interval = format!("{} seconds", resolution.num_seconds());
    let mut buckets: std::collections::BTreeMap<DateTime<Utc>, Vec<Stat>> = Default::default();
    if windows.is_none() && resolution >= Duration::hours(1) && resolution.num_seconds() % 3600 == 0 {
        let names: Vec<String> = columns.iter().map(|(_, c)| c.to_string()).collect();
        let rows: Vec<(DateTime<Utc>, String, f64, f64, f64, i64)> = sqlx::query_as(
            "SELECT time_bucket($5::interval, bucket) AS b, metric, min(min), sum(sum) / sum(n), max(max), sum(n)::bigint
               FROM health_metric_rollups_hourly
              WHERE patient_id = $1 AND bucket >= date_trunc('hour', $2) AND bucket < $3 AND metric = ANY($4)
              GROUP BY b, metric ORDER BY b",
        )
        .bind(patient)
        .bind(from)
        .bind(to)
        .bind(&names)
        .bind(&interval)
        .fetch_all(pool)
        .await?;
        for (b, metric, min, avg, max, count) in rows {
            let json = COLUMNS.iter().find(|(_, c)| *c == metric).map(|(j, _)| j.to_string()).unwrap_or(metric);
            buckets.entry(b).or_default().push(Stat {
                metric: json,
                min,
                avg: (avg * 1000.0).round() / 1000.0,
                max,
                count,
            });
        }
        for stats in buckets.values_mut() {
            stats.sort_by(|a, b| a.metric.cmp(&b.metric));
        }
        return Ok((
            TrendSource::Rollup,
            buckets.into_iter().map(|(bucket, stats)| Bucket { bucket, stats }).collect(),
        ));
    }
    let aggregates: Vec<String> = columns
        .iter()
        .map(|(_, c)| format!("min({c})::float8, avg({c})::float8, max({c})::float8, count({c})"))
        .collect();
    if aggregates.is_empty() {
        return Ok((TrendSource::Raw, Vec::new()));
    }
    let sql = format!(
        "SELECT time_bucket($4::interval, time) AS b, {} FROM health_metrics
          WHERE patient_id = $1 AND time >= $2 AND time < $3 AND {} GROUP BY b ORDER BY b",
        aggregates.join(", "),
        in_windows(5, "time")
    );
    let (d, f, t) = window_binds(windows);
    let rows = sqlx::query(&sql)
        .bind(patient)
        .bind(from)
        .bind(to)
        .bind(&interval)
        .bind(d)
        .bind(f)
        .bind(t)
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut stats = Vec::new();
        for (i, (json, _)) in columns.iter().enumerate() {
            let count: i64 = row.try_get(1 + i * 4 + 3)?;
            if count == 0 {
                continue;
            }
            stats.push(Stat {
                metric: json.to_string(),
                min: row.try_get::<f64, _>(1 + i * 4)?,
                avg: (row.try_get::<f64, _>(1 + i * 4 + 1)? * 1000.0).round() / 1000.0,
                max: row.try_get::<f64, _>(1 + i * 4 + 2)?,
                count,
            });
        }
        stats.sort_by(|a, b| a.metric.cmp(&b.metric));
        out.push(Bucket { bucket: row.try_get("b")?, stats });
    }
    Ok((TrendSource::Raw, out))
}

/// Drops raw chunks older than `days` (works on both TimescaleDB editions); rollups and
/// session summaries stay. Returns how many chunks were dropped.
pub async fn drop_old_chunks(pool: &PgPool, days: u32) -> Result<usize, sqlx::Error> {
    let dropped: Vec<String> = sqlx::query_scalar(
        "SELECT drop_chunks('health_metrics', older_than => now() - make_interval(days => $1))::text",
    )
    .bind(days as i32)
    .fetch_all(pool)
    .await?;
    Ok(dropped.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            time: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            device: Uuid::new_v4(),
            seq: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("garbage"), None);
    }
}
