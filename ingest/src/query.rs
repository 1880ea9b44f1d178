//! Reading the time series: latest values, history pages and trends. Everything here is
//! plain SQL over `health_metrics` (hypertable), `device_latest_metrics`,
//! `health_metric_rollups_fine` and `health_metric_rollups_hourly`, with the indexes named in
//! the migrations.

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

    /// Whether a reading of `device` at `time` lies in one of the windows.
    pub fn contains(&self, device: Uuid, time: DateTime<Utc>) -> bool {
        (0..self.devices.len()).any(|i| self.devices[i] == device && self.froms[i] <= time && time < self.tos[i])
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

/// The first time slice a history page reads back from its cursor; each next slice, while the
/// page is not full, is twice as long (never reaching before the window's start).
const FIRST_SLICE_HOURS: i64 = 24;

/// A page of a patient's readings in `[from, to)`, newest first, and the cursor of the next
/// page (None at the end). Pages neither repeat nor skip readings. See [`readings_page`].
pub async fn history(
    pool: &PgPool,
    patient: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
    after: Option<Cursor>,
    windows: Option<&Windows>,
) -> Result<(Vec<StoredReading>, Option<Cursor>), sqlx::Error> {
    let q = ReadingsQuery { patient: Some(patient), windows, ..ReadingsQuery::new(from, to, limit) };
    readings_page(pool, &q, after).await
}

/// Which way a page of readings runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest first, `(time, device_id, seq)` descending.
    #[default]
    NewestFirst,
    /// Oldest first, ascending.
    OldestFirst,
}

/// What a page of readings is taken from: a patient's and/or a device's readings in
/// `[from, to)` (at least one of the two), optionally only those with at least one of some
/// measurements, within a technician's windows.
#[derive(Debug, Clone)]
pub struct ReadingsQuery<'a> {
    pub patient: Option<Uuid>,
    pub device: Option<Uuid>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: i64,
    pub order: Order,
    /// Columns (`COLUMNS`' second names) of which a reading must have at least one; empty:
    /// any reading.
    pub measured: Vec<&'static str>,
    pub windows: Option<&'a Windows>,
}

impl<'a> ReadingsQuery<'a> {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, limit: i64) -> ReadingsQuery<'a> {
        ReadingsQuery {
            patient: None,
            device: None,
            from,
            to,
            limit,
            order: Order::NewestFirst,
            measured: Vec::new(),
            windows: None,
        }
    }
}

/// A page of readings and the cursor of the next page (None at the end). Pages neither
/// repeat nor skip readings: a cursor is the last reading returned, and the next page starts
/// strictly after it in the page's order.
///
/// The page is read in time slices going away from the cursor (24 h, then 48 h, 96 h, …),
/// each one statement planned with its own bounds (an unnamed statement: never a generic
/// plan), so TimescaleDB plans only the daily chunks of the slice, not every chunk of the
/// window: a page of 1 Hz data touches one or two chunks whatever the window. Slices are
/// disjoint and in the page's order, so their concatenation is the page in `(time,
/// device_id, seq)` order, exactly as one statement over the window. The patient's readings
/// use the `(patient_id, time)` index, a device's the `(device_id, time)` one.
pub async fn readings_page(
    pool: &PgPool,
    q: &ReadingsQuery<'_>,
    after: Option<Cursor>,
) -> Result<(Vec<StoredReading>, Option<Cursor>), sqlx::Error> {
    let newest_first = q.order == Order::NewestFirst;
    // Rows strictly beyond the cursor in the page's order; the time bound is repeated on its
    // own for chunk exclusion (TimescaleDB cannot see through the row comparison). As a
    // cursor, (t, nil, i64::MIN) means "time < t" newest first, (t, nil, i64::MIN) "time >= t"
    // oldest first.
    let (cmp, bound, dir) = if newest_first { ("<", "<=", "DESC") } else { (">", ">=", "ASC") };
    let mut filters = Vec::new();
    if q.patient.is_some() {
        filters.push("patient_id = $1".to_owned());
    }
    if q.device.is_some() {
        filters.push("device_id = $11".to_owned());
    }
    if !q.measured.is_empty() {
        let any: Vec<String> = q.measured.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    let sql = format!(
        "SELECT {} FROM health_metrics
          WHERE {} AND time >= $2 AND time < $3 AND time {bound} $4 AND (time, device_id, seq) {cmp} ($4, $5, $6)
            AND {}
          ORDER BY time {dir}, device_id {dir}, seq {dir} LIMIT $7",
        select_columns(),
        filters.join(" AND "),
        in_windows(8, "time")
    );
    let (d, f, t) = window_binds(q.windows);
    let edge = |time| Cursor { time, device: Uuid::nil(), seq: i64::MIN };
    let mut cursor = match after {
        Some(c) if (newest_first && c.time < q.to) || (!newest_first && c.time >= q.from) => c,
        _ if newest_first => edge(q.to),
        _ => Cursor { time: q.from, device: Uuid::nil(), seq: i64::MIN },
    };
    let mut slice = Duration::hours(FIRST_SLICE_HOURS);
    let mut items = Vec::new();
    loop {
        // The slice [lo, hi): newest first it ends at the cursor, oldest first it starts there.
        let (lo, hi) = if newest_first {
            (cursor.time.checked_sub_signed(slice).map_or(q.from, |t| t.max(q.from)), q.to)
        } else {
            (q.from, cursor.time.checked_add_signed(slice).map_or(q.to, |t| t.min(q.to)))
        };
        let rows = sqlx::query(&sql)
            .persistent(false)
            .bind(q.patient)
            .bind(lo)
            .bind(hi)
            .bind(cursor.time)
            .bind(cursor.device)
            .bind(cursor.seq)
            .bind(q.limit + 1 - items.len() as i64)
            .bind(&d)
            .bind(&f)
            .bind(&t)
            .bind(q.device)
            .fetch_all(pool)
            .await?;
        for row in &rows {
            items.push(stored(row)?);
        }
        let done = if newest_first { lo <= q.from } else { hi >= q.to };
        if items.len() as i64 > q.limit || done {
            break;
        }
        cursor = if newest_first { edge(lo) } else { Cursor { time: hi, device: Uuid::nil(), seq: i64::MIN } };
        slice = slice.checked_mul(2).unwrap_or(slice);
    }
    let next = if items.len() as i64 > q.limit {
        items.truncate(q.limit as usize);
        items.last().map(|r| Cursor { time: r.time, device: r.device_id, seq: r.seq })
    } else {
        None
    };
    Ok((items, next))
}

/// The first hour with readings of a patient (from the hourly rollups: one index probe), a
/// lower bound for reading all of a patient's readings. A patient whose first readings are
/// not derived yet (the rollups follow within a second) has none there: then from the
/// readings themselves (the oldest, through the `(patient_id, time)` index).
pub async fn first_hour(pool: &PgPool, patient: Uuid) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let rolled: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT min(bucket) FROM health_metric_rollups_hourly WHERE patient_id = $1")
            .bind(patient)
            .fetch_one(pool)
            .await?;
    if rolled.is_some() {
        return Ok(rolled);
    }
    sqlx::query_scalar(
        "SELECT date_trunc('hour', time) FROM health_metrics WHERE patient_id = $1 ORDER BY time LIMIT 1",
    )
    .bind(patient)
    .fetch_optional(pool)
    .await
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
    /// `time_bucket` over the raw readings (limited to a technician's windows, or a
    /// resolution no rollup tier divides).
    Raw,
    /// The rollups: the 1-, 5- and 15-minute tier whose bucket divides the resolution, with
    /// the part of the range's ends shorter than a tier bucket from the readings (so the
    /// figures are those of the readings in `[from, to)`); or, for an hour and more, the
    /// hourly rollups, fast over any range and kept after raw data is dropped by retention
    /// (a range that starts inside an hour includes that whole hour).
    Rollup,
}

/// The finer rollup tiers, in minutes (`health_metric_rollups_fine.minutes`), finest first:
/// each resolution the API offers under an hour has its own, so a query reads at most one
/// row per bucket. Written by the writer (`writer::rollups`), kept as long as raw readings.
pub const FINE_TIERS: [i64; 3] = [1, 5, 15];

/// min, sum, max and count of one metric in one bucket, as they merge.
#[derive(Debug, Clone, Copy)]
struct Acc {
    min: f64,
    sum: f64,
    max: f64,
    n: i64,
}

/// bucket → figures of each requested metric, by its place in the requested columns
/// (which [`trends`] orders by JSON name: the answer lists a bucket's metrics in that order).
/// Indexes rather than a map per bucket: a 10,000-bucket answer merges 60,000 figures.
type Accs = std::collections::BTreeMap<DateTime<Utc>, Vec<Option<Acc>>>;

fn merge(accs: &mut Accs, bucket: DateTime<Utc>, (metric, width): (usize, usize), a: Acc) {
    if a.n == 0 {
        return;
    }
    let slot = &mut accs.entry(bucket).or_insert_with(|| vec![None; width])[metric];
    match slot {
        Some(e) => {
            e.min = e.min.min(a.min);
            e.max = e.max.max(a.max);
            e.sum += a.sum;
            e.n += a.n;
        }
        None => *slot = Some(a),
    }
}

fn buckets(accs: Accs, columns: &[(&'static str, &'static str)]) -> Vec<Bucket> {
    accs.into_iter()
        .map(|(bucket, stats)| Bucket {
            bucket,
            stats: stats
                .into_iter()
                .zip(columns)
                .filter_map(|(a, (metric, _))| {
                    a.map(|a| Stat {
                        metric: (*metric).to_owned(),
                        min: a.min,
                        avg: (a.sum / a.n as f64 * 1000.0).round() / 1000.0,
                        max: a.max,
                        count: a.n,
                    })
                })
                .collect(),
        })
        .collect()
}

/// `t` rounded down to a multiple of `width` since the epoch (where `time_bucket` puts the
/// boundaries of buckets of whole minutes).
pub(crate) fn floor(t: DateTime<Utc>, width: Duration) -> DateTime<Utc> {
    let w = width.num_microseconds().unwrap_or(1).max(1);
    let m = t.timestamp_micros();
    DateTime::from_timestamp_micros(m - m.rem_euclid(w)).unwrap_or(t)
}

fn ceil(t: DateTime<Utc>, width: Duration) -> DateTime<Utc> {
    let f = floor(t, width);
    if f < t {
        f.checked_add_signed(width).unwrap_or(t)
    } else {
        f
    }
}

/// Trends of `metrics` (JSON names) for a patient: one bucket per `resolution` in
/// `[from, to)`, oldest first, with the buckets that have data. Limited to `windows`, they
/// come from the readings (the rollups do not keep the device).
pub async fn trends(
    pool: &PgPool,
    patient: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    resolution: Duration,
    metrics: &[&str],
    windows: Option<&Windows>,
) -> Result<(TrendSource, Vec<Bucket>), sqlx::Error> {
    let mut columns: Vec<(&'static str, &'static str)> =
        COLUMNS.iter().filter(|(j, _)| metrics.contains(j)).copied().collect();
    columns.sort_unstable_by_key(|(json, _)| *json);
    let interval = format!("{} seconds", resolution.num_seconds());
    let seconds = resolution.num_seconds();
    if windows.is_none() && seconds >= 3600 && seconds % 3600 == 0 {
        // The hour `from` falls in counts whole, as far as `to`.
        let mut accs = Accs::new();
        if !columns.is_empty() {
            let range = (floor(from, Duration::hours(1)), to);
            rollup(pool, patient, Rollup::Hourly, range, resolution, &columns, &mut accs).await?;
        }
        return Ok((TrendSource::Rollup, buckets(accs, &columns)));
    }
    let tier = FINE_TIERS.iter().rev().copied().find(|m| seconds > 0 && seconds % (m * 60) == 0);
    if let (None, Some(minutes)) = (windows, tier) {
        let width = Duration::minutes(minutes);
        let (a, b) = (ceil(from, width), floor(to, width));
        if a < b {
            let mut accs = Accs::new();
            if !columns.is_empty() {
                rollup(pool, patient, Rollup::Fine(minutes), (a, b), resolution, &columns, &mut accs).await?;
                let edges: Vec<_> = [(from, a), (b, to)].into_iter().filter(|(f, t)| f < t).collect();
                raw(pool, patient, &edges, &interval, &columns, None, &mut accs).await?;
            }
            return Ok((TrendSource::Rollup, buckets(accs, &columns)));
        }
    }
    let mut accs = Accs::new();
    if !columns.is_empty() {
        raw(pool, patient, &[(from, to)], &interval, &columns, windows, &mut accs).await?;
    }
    Ok((TrendSource::Raw, buckets(accs, &columns)))
}

/// A rollup table (both have one row per patient and bucket, the metrics as columns).
#[derive(Debug, Clone, Copy)]
enum Rollup {
    /// The tier of `health_metric_rollups_fine` of this many minutes.
    Fine(i64),
    /// `health_metric_rollups_hourly`.
    Hourly,
}

/// From `table` over `[a, b)`: its rows as they are when the resolution is the table's,
/// summed into buckets otherwise.
async fn rollup(
    pool: &PgPool,
    patient: Uuid,
    table: Rollup,
    (a, b): (DateTime<Utc>, DateTime<Utc>),
    resolution: Duration,
    columns: &[(&'static str, &'static str)],
    accs: &mut Accs,
) -> Result<(), sqlx::Error> {
    // $1 patient, $2 and $3 the range, $4 the tier (fine), then the bucket width (summed).
    let (minutes, from, filter, width) = match table {
        Rollup::Fine(m) => (m, "health_metric_rollups_fine", "AND minutes = $4", "$5"),
        Rollup::Hourly => (60, "health_metric_rollups_hourly", "", "$4"),
    };
    let exact = resolution == Duration::minutes(minutes);
    let select: Vec<String> = columns
        .iter()
        .map(|(_, c)| {
            // The columns' own types (integer, double precision, real, real): a row of
            // 10,000 buckets × 6 metrics is then a third narrower than widened to 8 bytes.
            if exact {
                format!("{c}_n, {c}_sum, {c}_min, {c}_max")
            } else {
                format!("sum({c}_n), sum({c}_sum), min({c}_min), max({c}_max)")
            }
        })
        .collect();
    let sql = if exact {
        format!(
            "SELECT bucket AS b, {} FROM {from} WHERE patient_id = $1 AND bucket >= $2 AND bucket < $3 {filter}",
            select.join(", ")
        )
    } else {
        format!(
            "SELECT time_bucket({width}::interval, bucket) AS b, {} FROM {from}
              WHERE patient_id = $1 AND bucket >= $2 AND bucket < $3 {filter} GROUP BY b",
            select.join(", ")
        )
    };
    // Unnamed statements: planned with their bounds, so only the chunks in range.
    let mut q = sqlx::query(&sql).persistent(false).bind(patient).bind(a).bind(b);
    if let Rollup::Fine(m) = table {
        q = q.bind(m as i16);
    }
    if !exact {
        q = q.bind(format!("{} seconds", resolution.num_seconds()));
    }
    let rows = q.fetch_all(pool).await?;
    // Unchecked: every column's type is fixed by the table's (a `sum` of an integer is a
    // bigint, of a double a double; `min`/`max` keep the type); checking each of the 60,000
    // values of a 10,000-bucket answer took a sixth of its time (profiled). `_min` and
    // `_max` are NULL when no reading of the bucket had the metric.
    for row in rows {
        let bucket: DateTime<Utc> = row.try_get_unchecked(0)?;
        for i in 0..columns.len() {
            let n = if exact {
                row.try_get_unchecked::<Option<i32>, _>(1 + i * 4)?.map(i64::from)
            } else {
                row.try_get_unchecked::<Option<i64>, _>(1 + i * 4)?
            };
            let (Some(n), Some(min), Some(max)) = (
                n,
                row.try_get_unchecked::<Option<f32>, _>(3 + i * 4)?,
                row.try_get_unchecked::<Option<f32>, _>(4 + i * 4)?,
            ) else {
                continue;
            };
            let sum: f64 = row.try_get_unchecked::<Option<f64>, _>(2 + i * 4)?.unwrap_or(0.0);
            merge(accs, bucket, (i, columns.len()), Acc { min: min.into(), sum, max: max.into(), n });
        }
    }
    Ok(())
}

/// `time_bucket` over the readings in each of `ranges`, merged into `accs`: one statement,
/// one branch per range, planned with its bounds (only the chunks of each range).
async fn raw(
    pool: &PgPool,
    patient: Uuid,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
    interval: &str,
    columns: &[(&'static str, &'static str)],
    windows: Option<&Windows>,
    accs: &mut Accs,
) -> Result<(), sqlx::Error> {
    if ranges.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = columns.iter().map(|(_, c)| *c).collect();
    let aggregates: Vec<String> =
        names.iter().map(|c| format!("min({c})::float8, sum({c}::float8), max({c})::float8, count({c})")).collect();
    let branches: Vec<String> = (0..ranges.len())
        .map(|i| {
            format!(
                "SELECT time, {} FROM health_metrics WHERE patient_id = $1 AND time >= ${} AND time < ${} AND {}",
                names.join(", "),
                6 + 2 * i,
                7 + 2 * i,
                in_windows(3, "time")
            )
        })
        .collect();
    let sql = format!(
        "SELECT time_bucket($2::interval, time) AS b, {} FROM ({}) r GROUP BY b",
        aggregates.join(", "),
        branches.join(" UNION ALL ")
    );
    let (d, f, t) = window_binds(windows);
    let mut q = sqlx::query(&sql).persistent(false).bind(patient).bind(interval).bind(d).bind(f).bind(t);
    for (from, to) in ranges {
        q = q.bind(*from).bind(*to);
    }
    for row in q.fetch_all(pool).await? {
        let bucket: DateTime<Utc> = row.try_get("b")?;
        for i in 0..columns.len() {
            let n: i64 = row.try_get(1 + i * 4 + 3)?;
            if n == 0 {
                continue;
            }
            let a = Acc {
                min: row.try_get(1 + i * 4)?,
                sum: row.try_get(1 + i * 4 + 1)?,
                max: row.try_get(1 + i * 4 + 2)?,
                n,
            };
            merge(accs, bucket, (i, columns.len()), a);
        }
    }
    Ok(())
}

/// Drops raw chunks older than `days` (works on both TimescaleDB editions), and the chunks
/// of the finer rollup tiers (`health_metric_rollups_fine`, 30-day chunks) older than that:
/// sub-hour trends are kept as long as the readings they summarize. The hourly rollups and
/// session summaries stay. Returns how many chunks were dropped.
pub async fn drop_old_chunks(pool: &PgPool, days: u32) -> Result<usize, sqlx::Error> {
    let mut dropped = 0;
    for table in ["health_metrics", "health_metric_rollups_fine"] {
        let chunks: Vec<String> = sqlx::query_scalar(
            "SELECT drop_chunks($1::regclass, older_than => now() - make_interval(days => $2))::text",
        )
        .bind(table)
        .bind(days as i32)
        .fetch_all(pool)
        .await?;
        dropped += chunks.len();
    }
    Ok(dropped)
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

    #[test]
    fn tier_boundaries_are_whole_multiples_since_the_epoch() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let five = Duration::minutes(5);
        assert_eq!(floor(t("2026-12-01T10:07:30.5Z"), five), t("2026-12-01T10:05:00Z"));
        assert_eq!(ceil(t("2026-12-01T10:07:30.5Z"), five), t("2026-12-01T10:10:00Z"));
        assert_eq!(ceil(t("2026-12-01T10:05:00Z"), five), t("2026-12-01T10:05:00Z"));
        assert_eq!(floor(t("1969-12-31T23:59:59Z"), Duration::minutes(1)), t("1969-12-31T23:59:00Z"));
    }
}
