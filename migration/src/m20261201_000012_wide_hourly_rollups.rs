//! The hourly rollups in the shape of the finer tiers: one row per patient and hour with
//! every metric as columns (`<column>_n`, `_sum`, `_min`, `_max`; `_n` 0 and `_min`/`_max`
//! NULL when no reading of the hour had the metric), instead of one row per patient, metric
//! and hour.
//!
//! Ingest upserts the hourly rollups in the transaction that acknowledges a batch. A reading
//! carries up to 16 metrics, so one row per metric meant up to 16 upserts per patient and
//! batch (7 for a usual reading); this is one. `_min`/`_max` are `real`, like the readings
//! and the finer tiers, so all tiers agree with SQL over `health_metrics`.
//!
//! Still a plain table: the hourly rollups outlive raw-data retention. The existing rows
//! are carried over (pivoted); `down` unpivots them.

use std::fmt::Write as _;

use crate::m20261201_000011_fine_rollups::{metric_columns, METRICS};

crate::sql_migration!(&up(), &down());

fn up() -> String {
    let mut sql = String::from(
        "ALTER TABLE health_metric_rollups_hourly RENAME TO health_metric_rollups_hourly_by_metric;
ALTER TABLE health_metric_rollups_hourly_by_metric RENAME CONSTRAINT health_metric_rollups_hourly_pkey TO health_metric_rollups_hourly_by_metric_pkey;
CREATE TABLE health_metric_rollups_hourly (
    patient_id uuid NOT NULL,
    bucket     timestamptz NOT NULL,\n",
    );
    sql.push_str(&metric_columns());
    sql.push_str(
        "    CONSTRAINT health_metric_rollups_hourly_bucket_check CHECK (date_trunc('hour', bucket AT TIME ZONE 'UTC') = bucket AT TIME ZONE 'UTC'),
    PRIMARY KEY (patient_id, bucket)
) WITH (fillfactor = 70);\n",
    );
    let cols: Vec<String> = METRICS.iter().map(|m| format!("{m}_n, {m}_sum, {m}_min, {m}_max")).collect();
    let pivot: Vec<String> = METRICS
        .iter()
        .map(|m| {
            let f = format!("FILTER (WHERE metric = '{m}')");
            format!(
                "coalesce(sum(n) {f}, 0)::integer, coalesce(sum(sum) {f}, 0), min(min) {f}::real, max(max) {f}::real"
            )
        })
        .collect();
    let _ = write!(
        sql,
        "INSERT INTO health_metric_rollups_hourly (patient_id, bucket, {})
    SELECT patient_id, bucket, {} FROM health_metric_rollups_hourly_by_metric GROUP BY 1, 2;
DROP TABLE health_metric_rollups_hourly_by_metric;\n",
        cols.join(", "),
        pivot.join(", ")
    );
    sql
}

fn down() -> String {
    let values: Vec<String> = METRICS
        .iter()
        .map(|m| format!("('{m}', h.{m}_n::bigint, h.{m}_sum, h.{m}_min::float8, h.{m}_max::float8)"))
        .collect();
    format!(
        "ALTER TABLE health_metric_rollups_hourly RENAME TO health_metric_rollups_hourly_wide;
ALTER TABLE health_metric_rollups_hourly_wide RENAME CONSTRAINT health_metric_rollups_hourly_pkey TO health_metric_rollups_hourly_wide_pkey;
CREATE TABLE health_metric_rollups_hourly (
    patient_id uuid NOT NULL,
    metric     text NOT NULL,
    bucket     timestamptz NOT NULL CONSTRAINT health_metric_rollups_bucket_check CHECK (date_trunc('hour', bucket AT TIME ZONE 'UTC') = bucket AT TIME ZONE 'UTC'),
    n          bigint NOT NULL CONSTRAINT health_metric_rollups_n_check CHECK (n > 0),
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    PRIMARY KEY (patient_id, metric, bucket)
);
INSERT INTO health_metric_rollups_hourly (patient_id, metric, bucket, n, sum, min, max)
    SELECT h.patient_id, v.metric, h.bucket, v.n, v.sum, v.min, v.max
      FROM health_metric_rollups_hourly_wide h
      CROSS JOIN LATERAL (VALUES {}) AS v(metric, n, sum, min, max)
     WHERE v.n > 0;
DROP TABLE health_metric_rollups_hourly_wide;",
        values.join(", ")
    )
}
