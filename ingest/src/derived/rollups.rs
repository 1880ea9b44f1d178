//! The rollups, written by the deriver for the readings that were new (a redelivered
//! reading changes nothing), per patient, in two tables of the same shape (one row per
//! patient and bucket, every metric as columns `<column>_n`, `_sum`, `_min`, `_max`):
//!
//! - `health_metric_rollups_fine`: the 1-, 5- and 15-minute tiers (see
//!   [`crate::query::FINE_TIERS`]), kept as long as raw data; trends under an hour read the
//!   tier of their resolution.
//! - `health_metric_rollups_hourly`: one row per patient and hour; long-range trends read
//!   these, and they outlive raw-data retention.
//!
//! Their figures are those of the stored readings (`real`), so they agree with SQL over
//! `health_metrics`. Each table gets one `INSERT … SELECT FROM UNNEST … ON CONFLICT DO
//! UPDATE` per batch, whose rows are sorted by key, so that two writers updating the same
//! buckets lock them in the same order. A batch thus upserts 4 rows per patient and hour it
//! touches, whatever the number of metrics.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::Stored;
use crate::query::FINE_TIERS;
use crate::reading::COLUMNS;

/// The hourly tier, in minutes.
const HOUR: i64 = 60;

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

/// (patient, tier in minutes, bucket) → one accumulator per metric; sorted, the order rows
/// are locked in.
type Buckets = BTreeMap<(Uuid, i16, DateTime<Utc>), [Acc; COLUMNS.len()]>;

/// Updates both rollup tables for `new`, the batch's rows that were new.
pub(super) async fn write(tx: &mut Transaction<'_, Postgres>, new: &[Stored]) -> Result<(), sqlx::Error> {
    let mut fine = Buckets::new();
    let mut hourly = Buckets::new();
    for r in new {
        let Some(patient) = r.patient_id else { continue };
        for minutes in FINE_TIERS.into_iter().chain([HOUR]) {
            let bucket = crate::query::floor(r.time, chrono::Duration::minutes(minutes));
            let tier = if minutes == HOUR { &mut hourly } else { &mut fine };
            let accs = tier.entry((patient, minutes as i16, bucket)).or_default();
            for (acc, v) in accs.iter_mut().zip(r.values) {
                if let Some(v) = v {
                    // As stored (`real`), so the tiers agree with the readings.
                    acc.add(v as f32);
                }
            }
        }
    }
    upsert(tx, Table::Fine, &fine).await?;
    upsert(tx, Table::Hourly, &hourly).await
}

#[derive(Clone, Copy, PartialEq)]
enum Table {
    /// `health_metric_rollups_fine`, keyed by (patient_id, minutes, bucket).
    Fine,
    /// `health_metric_rollups_hourly`, keyed by (patient_id, bucket).
    Hourly,
}

impl Table {
    /// The table's upsert statement, built once.
    fn sql(self) -> &'static str {
        static FINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static HOURLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match self {
            Table::Fine => FINE.get_or_init(|| upsert_sql(self)),
            Table::Hourly => HOURLY.get_or_init(|| upsert_sql(self)),
        }
    }
}

fn upsert_sql(table: Table) -> String {
    let (name, keys, key_types) = match table {
        Table::Fine => {
            ("health_metric_rollups_fine", "patient_id, minutes, bucket", "$1::uuid[], $2::int2[], $3::timestamptz[]")
        }
        Table::Hourly => ("health_metric_rollups_hourly", "patient_id, bucket", "$1::uuid[], $2::timestamptz[]"),
    };
    let first = if table == Table::Fine { 4 } else { 3 };
    let mut cols = Vec::new();
    let mut unnest = vec![key_types.to_owned()];
    let mut sets = Vec::new();
    for (i, (_, c)) in COLUMNS.iter().enumerate() {
        let p = first + i * 4;
        cols.push(format!("{c}_n, {c}_sum, {c}_min, {c}_max"));
        unnest.push(format!("${p}::int4[], ${}::float8[], ${}::float4[], ${}::float4[]", p + 1, p + 2, p + 3));
        sets.push(format!(
            "{c}_n = t.{c}_n + EXCLUDED.{c}_n, {c}_sum = t.{c}_sum + EXCLUDED.{c}_sum, \
             {c}_min = LEAST(t.{c}_min, EXCLUDED.{c}_min), {c}_max = GREATEST(t.{c}_max, EXCLUDED.{c}_max)"
        ));
    }
    format!(
        "INSERT INTO {name} AS t ({keys}, {})
         SELECT * FROM UNNEST({})
         ON CONFLICT ({keys}) DO UPDATE SET {}",
        cols.join(", "),
        unnest.join(", "),
        sets.join(", ")
    )
}

/// One statement: a row per bucket of `buckets` into `table`.
async fn upsert(tx: &mut Transaction<'_, Postgres>, table: Table, buckets: &Buckets) -> Result<(), sqlx::Error> {
    if buckets.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::query(table.sql()).bind(buckets.keys().map(|k| k.0).collect::<Vec<_>>());
    if table == Table::Fine {
        q = q.bind(buckets.keys().map(|k| k.1).collect::<Vec<_>>());
    }
    q = q.bind(buckets.keys().map(|k| k.2).collect::<Vec<_>>());
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
