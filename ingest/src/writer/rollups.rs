//! The rollups, written in the batch's transaction for the rows that were new (a redelivered
//! reading changes nothing), per patient: `health_metric_rollups_hourly`, one row per
//! patient, metric and hour; long-range trends read these, and they outlive raw-data
//! retention. One `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE` per batch.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::Row;
use crate::reading::COLUMNS;

/// Updates the rollups for `new`, the batch's rows that were new.
pub(super) async fn write(tx: &mut Transaction<'_, Postgres>, new: &[Row]) -> Result<(), sqlx::Error> {
    hourly(tx, new).await
}

/// Hourly rollups per patient and metric.
async fn hourly(tx: &mut Transaction<'_, Postgres>, new: &[Row]) -> Result<(), sqlx::Error> {
    // (patient, metric, hour) -> (n, sum, min, max)
    type Key = (Uuid, &'static str, DateTime<Utc>);
    let mut rollups: HashMap<Key, (i64, f64, f64, f64)> = HashMap::new();
    for r in new.iter().filter(|r| r.patient_id.is_some()) {
        let bucket = r.time.duration_trunc(chrono::Duration::hours(1)).unwrap_or(r.time);
        for (i, (_, column)) in COLUMNS.iter().enumerate() {
            if let Some(v) = r.values[i] {
                let e = rollups.entry((r.patient_id.expect("filtered"), column, bucket)).or_insert((
                    0,
                    0.0,
                    f64::MAX,
                    f64::MIN,
                ));
                e.0 += 1;
                e.1 += v;
                e.2 = e.2.min(v);
                e.3 = e.3.max(v);
            }
        }
    }
    if rollups.is_empty() {
        return Ok(());
    }
    let (keys, aggs): (Vec<_>, Vec<_>) = rollups.into_iter().unzip();
    sqlx::query(
        "INSERT INTO health_metric_rollups_hourly (patient_id, metric, bucket, n, sum, min, max)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int8[], $5::float8[], $6::float8[], $7::float8[])
         ON CONFLICT (patient_id, metric, bucket) DO UPDATE SET n = health_metric_rollups_hourly.n + EXCLUDED.n,
             sum = health_metric_rollups_hourly.sum + EXCLUDED.sum,
             min = LEAST(health_metric_rollups_hourly.min, EXCLUDED.min),
             max = GREATEST(health_metric_rollups_hourly.max, EXCLUDED.max)",
    )
    .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1.to_owned()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .bind(aggs.iter().map(|a| a.0).collect::<Vec<_>>())
    .bind(aggs.iter().map(|a| a.1).collect::<Vec<_>>())
    .bind(aggs.iter().map(|a| a.2).collect::<Vec<_>>())
    .bind(aggs.iter().map(|a| a.3).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
