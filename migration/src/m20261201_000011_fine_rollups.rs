//! The finer rollup tiers: `health_metric_rollups_fine`, count, sum, minimum and maximum of
//! every metric per patient in buckets of 1, 5 and 15 minutes (`minutes`), one row per
//! patient, tier and bucket with the metrics as columns (`<column>_n`, `_sum`, `_min`,
//! `_max`; `_n` 0 and `_min`/`_max` NULL when no reading of the bucket had the metric).
//! Maintained by ingest per committed batch, like the hourly rollups, for the rows that were
//! new; trends under an hour read the tier of their resolution (at most one row per bucket)
//! instead of `time_bucket` over raw readings.
//!
//! - One row per bucket rather than one per metric: a query reads one row per bucket
//!   whatever the metrics, and a batch upserts one row per patient and tier.
//! - `_min`/`_max` are `real`, like the readings: the tier's figures are the readings' own.
//! - A hypertable with 30-day chunks, so retention drops its old chunks with the raw ones
//!   (`drop_chunks`, both editions): sub-hour trends are kept as long as raw readings; the
//!   hourly rollups stay. The fill factor leaves room on each page for the updates every
//!   batch makes to the current buckets (HOT updates, no index churn).
//! - Backfilled from the raw readings (at most the retention period: 365 days).

use std::fmt::Write as _;

crate::sql_migration!(&up(), DOWN);

/// The `health_metrics` measurement columns, as of this migration.
pub(crate) const METRICS: [&str; 16] = [
    "heart_rate",
    "temperature_f",
    "systolic_bp",
    "diastolic_bp",
    "spo2",
    "blood_flow_rate",
    "total_volume_l",
    "dialysate_flow_rate",
    "arterial_pressure",
    "venous_pressure",
    "transmembrane_pressure",
    "dialysate_conductivity",
    "dialysate_temperature_c",
    "uf_rate_ml_h",
    "uf_volume_ml",
    "uf_goal_ml",
];

fn up() -> String {
    let mut sql = String::from(
        "CREATE TABLE health_metric_rollups_fine (
    patient_id uuid NOT NULL,
    minutes    smallint NOT NULL CONSTRAINT health_metric_rollups_fine_minutes_check CHECK (minutes IN (1, 5, 15)),
    bucket     timestamptz NOT NULL,\n",
    );
    sql.push_str(&metric_columns());
    sql.push_str(
        "    -- Buckets start where time_bucket starts them.
    CONSTRAINT health_metric_rollups_fine_bucket_check CHECK (
        date_bin(make_interval(mins => minutes), bucket, timestamptz '2000-01-03 00:00:00+00') = bucket),
    PRIMARY KEY (patient_id, minutes, bucket)
) WITH (fillfactor = 70);
-- No default (bucket) index: the primary key serves every query, and each index costs every upsert.
SELECT create_hypertable('health_metric_rollups_fine', 'bucket', chunk_time_interval => interval '30 days', create_default_indexes => false);\n",
    );
    sql.push_str(&backfill());
    sql
}

/// The four columns of each metric, one line per metric, for a `CREATE TABLE` (the hourly
/// rollups have the same shape since migration 12).
pub(crate) fn metric_columns() -> String {
    let mut sql = String::new();
    for m in METRICS {
        let _ = writeln!(
            sql,
            "    {m}_n integer NOT NULL DEFAULT 0, {m}_sum double precision NOT NULL DEFAULT 0, {m}_min real, {m}_max real,"
        );
    }
    sql
}

/// Builds the tiers from the raw readings (patients' readings only, as ingest does): the
/// 1-minute tier from `health_metrics`, the 5- and 15-minute ones from it. The benchmark
/// builds them with this same SQL.
pub fn backfill() -> String {
    let cols: Vec<String> = METRICS.iter().map(|m| format!("{m}_n, {m}_sum, {m}_min, {m}_max")).collect();
    let from_raw: Vec<String> = METRICS
        .iter()
        .map(|m| format!("count({m})::integer, coalesce(sum({m}::float8), 0), min({m}), max({m})"))
        .collect();
    let from_tier: Vec<String> =
        METRICS.iter().map(|m| format!("sum({m}_n)::integer, sum({m}_sum), min({m}_min), max({m}_max)")).collect();
    let mut sql = format!(
        "INSERT INTO health_metric_rollups_fine (patient_id, minutes, bucket, {cols})
    SELECT patient_id, 1, time_bucket('1 minute', time), {raw}
      FROM health_metrics WHERE patient_id IS NOT NULL GROUP BY 1, 3;\n",
        cols = cols.join(", "),
        raw = from_raw.join(", ")
    );
    for minutes in [5, 15] {
        let _ = write!(
            sql,
            "INSERT INTO health_metric_rollups_fine (patient_id, minutes, bucket, {cols})
    SELECT patient_id, {minutes}, time_bucket('{minutes} minutes', bucket), {tier}
      FROM health_metric_rollups_fine WHERE minutes = 1 GROUP BY 1, 3;\n",
            cols = cols.join(", "),
            tier = from_tier.join(", ")
        );
    }
    sql
}

const DOWN: &str = "DROP TABLE health_metric_rollups_fine;";
