//! Reading identity: a reading is identified by (device, seq). The same seq again with the
//! same `ts`, status and measurements is the same reading sent again (stored once,
//! acknowledged); with another `ts` or other values it is a conflict, never a second row.
//!
//! `health_metrics` is a hypertable, whose unique key must include `time`, so the database
//! cannot enforce this alone. Per batch, in the writing transaction, set-based:
//!
//! 1. within the batch, the first reading of each (device, seq) is the candidate;
//! 2. (the caller inserts the candidates `ON CONFLICT (device_id, seq, time) DO NOTHING`,
//!    in the same statement as step 3: [`watermark_sql`]);
//! 3. one upsert on `device_seq_watermarks` raises each device's highest seq, returns the
//!    previous one and locks the device's row until COMMIT, so that two batches with the
//!    same seq of one device settle one after the other;
//! 4. only a candidate that was not inserted (its exact key exists), or whose seq is not
//!    above the previous highest, can collide: those alone are looked up (one query, through
//!    the unique index's (device_id, seq) prefix), and a collision is a conflict; a
//!    candidate inserted in step 2 that collides is deleted again.
//!
//! A device counting up never reaches step 4: the check costs one small upsert per batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::{Row, Written};
use crate::reading::COLUMNS;

type Key = (Uuid, i64, DateTime<Utc>);

/// A time as `timestamptz` keeps it: whole microseconds. The writer binds times truncated
/// so, so that what PostgreSQL returns compares equal (it would round finer ones itself).
pub(super) fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(t)
}

fn key(r: &Row) -> Key {
    (r.device_id, r.seq, stored_time(r.time))
}

/// Why `r` is not stored, given the time of the reading that holds its seq.
fn conflict(r: &Row, holder: DateTime<Utc>) -> Written {
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let what = if holder == stored_time(r.time) {
        format!("seq {} at {} is already stored with other values", r.seq, at(holder))
    } else {
        format!("seq {} is already taken by this device's reading at {}", r.seq, at(holder))
    };
    Written::Conflict(format!("{what}; a reading is identified by (device, seq): a new reading needs a new seq"))
}

/// The same reading: time, status and measurements (as stored, `real`).
fn same(a: &Row, b: &Row) -> bool {
    Stored::of(a) == Stored::of(b)
}

/// Step 1: the candidates (row indexes), each row's outcome so far, and the rows that are a
/// candidate sent again (row, candidate), which share its outcome.
pub(super) fn within(rows: &[Row]) -> (Vec<usize>, Vec<Written>, Vec<(usize, usize)>) {
    let mut first: HashMap<(Uuid, i64), usize> = HashMap::with_capacity(rows.len());
    let mut candidates = Vec::with_capacity(rows.len());
    let mut written = vec![Written::Stored; rows.len()];
    let mut follows = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match first.get(&(r.device_id, r.seq)) {
            None => {
                first.insert((r.device_id, r.seq), i);
                candidates.push(i);
            }
            Some(&f) if same(&rows[f], r) => follows.push((i, f)),
            Some(&f) => written[i] = conflict(r, stored_time(rows[f].time)),
        }
    }
    (candidates, written, follows)
}

/// A reading as far as identity goes, as stored.
#[derive(Debug, PartialEq)]
struct Stored {
    time: DateTime<Utc>,
    system_status: String,
    values: [Option<f32>; 16],
}

impl Stored {
    fn of(r: &Row) -> Stored {
        Stored {
            time: stored_time(r.time),
            system_status: r.system_status.to_owned(),
            values: r.values().map(|v| v.map(|v| v as f32)),
        }
    }
}

/// Each device's highest seq among the candidates, sorted by device (concurrent batches
/// lock the watermarks in the same order): the parameters of [`watermark_sql`].
pub(super) fn highest(rows: &[Row], candidates: &[usize]) -> (Vec<Uuid>, Vec<i64>) {
    let mut top: BTreeMap<Uuid, i64> = BTreeMap::new();
    for &i in candidates {
        let r = &rows[i];
        top.entry(r.device_id).and_modify(|m| *m = (*m).max(r.seq)).or_insert(r.seq);
    }
    top.into_iter().unzip()
}

/// Step 3: raises each device's watermark and returns the previous one (`device_id`,
/// `prev_max_seq`), row-locking it until COMMIT. `$devices` and `$highest` are the
/// parameters' numbers (the statement is part of the writer's one statement).
pub(super) fn watermark_sql(devices: usize, highest: usize) -> String {
    format!(
        "INSERT INTO device_seq_watermarks (device_id, max_seq, prev_max_seq)
         SELECT d, m, -1 FROM UNNEST(${devices}::uuid[], ${highest}::int8[]) AS x(d, m)
         ON CONFLICT (device_id) DO UPDATE SET prev_max_seq = device_seq_watermarks.max_seq,
             max_seq = GREATEST(device_seq_watermarks.max_seq, EXCLUDED.max_seq)
         RETURNING device_id, prev_max_seq"
    )
}

/// Steps 3 and 4, after the candidates were inserted (`inserted`: the keys that were new)
/// and the watermarks raised (`previous`: each device's highest seq before).
/// Marks conflicts in `written`; returns the candidates that stay stored as new rows.
pub(super) async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[Row],
    candidates: &[usize],
    inserted: &HashSet<Key>,
    previous: &HashMap<Uuid, i64>,
    written: &mut [Written],
) -> Result<Vec<usize>, sqlx::Error> {
    let mut new: Vec<usize> = candidates.iter().copied().filter(|&i| inserted.contains(&key(&rows[i]))).collect();
    let suspect: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            let r = &rows[i];
            !inserted.contains(&key(r)) || r.seq <= previous.get(&r.device_id).copied().unwrap_or(-1)
        })
        .collect();
    if suspect.is_empty() {
        return Ok(new);
    }
    let columns: Vec<&str> = COLUMNS.iter().map(|(_, c)| *c).collect();
    let found = sqlx::query(&format!(
        "SELECT h.device_id, h.seq, h.time, h.system_status, h.{}
           FROM health_metrics h JOIN UNNEST($1::uuid[], $2::int8[]) AS k(d, s) ON h.device_id = k.d AND h.seq = k.s",
        columns.join(", h.")
    ))
    .bind(suspect.iter().map(|&i| rows[i].device_id).collect::<Vec<_>>())
    .bind(suspect.iter().map(|&i| rows[i].seq).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let mut stored: HashMap<(Uuid, i64), Vec<Stored>> = HashMap::new();
    for row in found {
        let mut values = [None; 16];
        for (i, v) in values.iter_mut().enumerate() {
            *v = row.try_get(4 + i)?;
        }
        let s = Stored { time: row.try_get(2)?, system_status: row.try_get(3)?, values };
        stored.entry((row.try_get(0)?, row.try_get(1)?)).or_default().push(s);
    }
    let mut remove: Vec<usize> = Vec::new();
    for &i in &suspect {
        let r = &rows[i];
        let held = stored.get(&(r.device_id, r.seq)).map(Vec::as_slice).unwrap_or_default();
        if inserted.contains(&key(r)) {
            // Inserted just now: any other reading with this seq was there first.
            if let Some(other) = held.iter().filter(|s| s.time != stored_time(r.time)).min_by_key(|s| s.time) {
                written[i] = conflict(r, other.time);
                remove.push(i);
            }
        } else {
            match held.iter().find(|s| s.time == stored_time(r.time)) {
                Some(s) if *s == Stored::of(r) => {}
                Some(s) => written[i] = conflict(r, s.time),
                // Its key existed when inserting and is gone now: write the batch again.
                None => return Err(sqlx::Error::RowNotFound),
            }
        }
    }
    if !remove.is_empty() {
        sqlx::query(
            "DELETE FROM health_metrics h USING UNNEST($1::uuid[], $2::int8[], $3::timestamptz[]) AS k(d, s, t)
              WHERE h.device_id = k.d AND h.seq = k.s AND h.time = k.t",
        )
        .bind(remove.iter().map(|&i| rows[i].device_id).collect::<Vec<_>>())
        .bind(remove.iter().map(|&i| rows[i].seq).collect::<Vec<_>>())
        .bind(remove.iter().map(|&i| stored_time(rows[i].time)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        new.retain(|i| !remove.contains(i));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device: Uuid, seq: i64, time: DateTime<Utc>, heart_rate: f64) -> Row {
        let mut values = [None; 16];
        values[0] = Some(heart_rate);
        Row {
            time,
            device_id: device,
            seq,
            hospital_id: Uuid::nil(),
            patient_id: None,
            session_id: None,
            system_status: "normal",
            reading: crate::reading::ReadingIn::from_values(seq, time, nc_domain::SystemStatus::Normal, values),
        }
    }

    #[test]
    fn within_a_batch_the_first_reading_of_a_seq_holds_it() {
        let (d, e) = (Uuid::now_v7(), Uuid::now_v7());
        let t = Utc::now();
        let later = t + chrono::Duration::seconds(1);
        let rows = [
            row(d, 1, t, 70.0),
            row(d, 1, t, 70.0),     // the same reading again
            row(d, 1, later, 70.0), // another time
            row(d, 1, t, 71.0),     // other values
            row(e, 1, t, 70.0),     // another device
            row(d, 2, t, 70.0),
        ];
        let (candidates, written, follows) = within(&rows);
        assert_eq!(candidates, [0, 4, 5]);
        assert_eq!(follows, [(1, 0)]);
        assert_eq!(written[0], Written::Stored);
        assert!(matches!(&written[2], Written::Conflict(m) if m.contains("already taken")), "{:?}", written[2]);
        assert!(matches!(&written[3], Written::Conflict(m) if m.contains("other values")), "{:?}", written[3]);
        // Values are compared as stored (`real`): a difference below f32 precision is none.
        assert!(same(&row(d, 1, t, 70.0), &row(d, 1, t, 70.000000001)));
    }
}
