//! The rollups, written in the batch's transaction for the rows that were new (a redelivered
//! reading changes nothing), per patient:
//!
//! - `health_metric_rollups_hourly`: one row per patient, metric and hour; long-range trends
//!   read these, and they outlive raw-data retention.
//! - `health_metric_rollups_fine`: one row per patient, tier (1, 5 and 15 minutes, see
//!   [`crate::query::FINE_TIERS`]) and bucket, the metrics as columns; trends under an hour
//!   read the tier of their resolution. Its figures are those of the stored readings
//!   (`real`), so they agree with SQL over `health_metrics`.
//!
//! Each is one `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE` per batch, whose rows are
//! sorted by key, so that two writers updating the same buckets lock them in the same order.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, DurationRound, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::Row;
use crate::query::FINE_TIERS;
use crate::reading::COLUMNS;

/// Updates both rollup tables for `new`, the batch's rows that were new.
pub(super) async fn write(tx: &mut Transaction<'_, Postgres>, new: &[Row]) -> Result<(), sqlx::Error> {
    hourly(tx, new).await?;
    fine(tx, new).await
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

/// n, sum, min and max of one metric in one bucket (n = 0: no reading had it).
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    n: i32,
    sum: f64,
    min: f32,
    max: f32,
}

impl Acc {
    fn add(&mut self, v: f32) {
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.n += 1;
        self.sum += v as f64;
    }
}

fn fine_sql() -> String {
    let mut cols = Vec::new();
    let mut unnest = vec!["$1::uuid[]".to_owned(), "$2::int2[]".into(), "$3::timestamptz[]".into()];
    let mut sets = Vec::new();
    for (i, (_, c)) in COLUMNS.iter().enumerate() {
        let p = 4 + i * 4;
        cols.push(format!("{c}_n, {c}_sum, {c}_min, {c}_max"));
        unnest.push(format!("${p}::int4[], ${}::float8[], ${}::float4[], ${}::float4[]", p + 1, p + 2, p + 3));
        sets.push(format!(
            "{c}_n = t.{c}_n + EXCLUDED.{c}_n, {c}_sum = t.{c}_sum + EXCLUDED.{c}_sum, \
             {c}_min = LEAST(t.{c}_min, EXCLUDED.{c}_min), {c}_max = GREATEST(t.{c}_max, EXCLUDED.{c}_max)"
        ));
    }
    format!(
        "INSERT INTO health_metric_rollups_fine AS t (patient_id, minutes, bucket, {})
         SELECT * FROM UNNEST({})
         ON CONFLICT (patient_id, minutes, bucket) DO UPDATE SET {}",
        cols.join(", "),
        unnest.join(", "),
        sets.join(", ")
    )
}

/// The 1-, 5- and 15-minute tiers: one row per patient, tier and bucket in the batch.
async fn fine(tx: &mut Transaction<'_, Postgres>, new: &[Row]) -> Result<(), sqlx::Error> {
    // Sorted by (patient, minutes, bucket): the order rows are locked in.
    let mut buckets: BTreeMap<(Uuid, i16, DateTime<Utc>), [Acc; COLUMNS.len()]> = BTreeMap::new();
    for r in new {
        let Some(patient) = r.patient_id else { continue };
        for minutes in FINE_TIERS {
            let bucket = crate::query::floor(r.time, chrono::Duration::minutes(minutes));
            let accs = buckets.entry((patient, minutes as i16, bucket)).or_default();
            for (acc, v) in accs.iter_mut().zip(r.values) {
                if let Some(v) = v {
                    // As stored (`real`), so the tier agrees with the readings.
                    acc.add(v as f32);
                }
            }
        }
    }
    if buckets.is_empty() {
        return Ok(());
    }
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mut q = sqlx::query(SQL.get_or_init(fine_sql))
        .bind(buckets.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(buckets.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind(buckets.keys().map(|k| k.2).collect::<Vec<_>>());
    for i in 0..COLUMNS.len() {
        let present = |a: &Acc| a.n > 0;
        q = q
            .bind(buckets.values().map(|a| a[i].n).collect::<Vec<i32>>())
            .bind(buckets.values().map(|a| a[i].sum).collect::<Vec<f64>>())
            .bind(buckets.values().map(|a| present(&a[i]).then_some(a[i].min)).collect::<Vec<Option<f32>>>())
            .bind(buckets.values().map(|a| present(&a[i]).then_some(a[i].max)).collect::<Vec<Option<f32>>>());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}
