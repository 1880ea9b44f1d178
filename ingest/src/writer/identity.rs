//! Reading identity: a reading is identified by (device, seq). The same seq again with the
//! same `ts`, status and measurements is the same reading sent again (stored once,
//! acknowledged); with another `ts` or other values it is a conflict, never a second row.
//!
//! `health_metrics` is a hypertable, whose unique key must include `time`, so the database
//! cannot enforce this alone. Per batch, set-based:
//!
//! 1. within the batch, the first reading of each (device, seq) is the candidate
//!    ([`within`]);
//! 2. the database function `ingest_write_batch` (migration 33) inserts the candidates
//!    `ON CONFLICT (device_id, seq, time) DO NOTHING`, raises each device's highest seq
//!    ([`highest`]) in `device_seq_watermarks` and takes the previous one, row-locking it
//!    until COMMIT, so that two batches with the same seq of one device settle one after
//!    the other; only a candidate that was not inserted (its exact key exists), or whose
//!    seq is not above the previous highest, can collide: those alone are looked up, after
//!    the lock, and a candidate inserted just now that collides is deleted again;
//! 3. the function returns the candidates that are not new, and why ([`outcome`]).
//!
//! A device counting up never reaches the lookup: the check costs one small upsert per
//! batch, and the batch is one statement (one round trip, committed as it ends).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use uuid::Uuid;

use super::{Row, Written};

/// A time as `timestamptz` keeps it: whole microseconds. The writer binds times truncated
/// so, so that what PostgreSQL returns compares equal (it would round finer ones itself).
pub(crate) fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(t)
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
/// lock the watermarks in the same order): the watermark parameters of `ingest_write_batch`.
pub(super) fn highest(rows: &[Row], candidates: &[usize]) -> (Vec<Uuid>, Vec<i64>) {
    let mut top: BTreeMap<Uuid, i64> = BTreeMap::new();
    for &i in candidates {
        let r = &rows[i];
        top.entry(r.device_id).and_modify(|m| *m = (*m).max(r.seq)).or_insert(r.seq);
    }
    top.into_iter().unzip()
}

/// What `ingest_write_batch` returned for a candidate that is not new: `kind` 1, the same
/// reading stored before; 2, a conflict with the reading at `holder` that holds its seq.
pub(super) struct NotNew {
    pub kind: i16,
    pub device: Uuid,
    pub seq: i64,
    pub holder: DateTime<Utc>,
}

/// Step 3: marks the candidates that are not new in `written` (a conflict explained, the
/// same reading again stored) and returns those that are new, in batch order.
pub(super) fn outcome(rows: &[Row], candidates: &[usize], not_new: &[NotNew], written: &mut [Written]) -> Vec<usize> {
    let not_new: HashMap<(Uuid, i64), &NotNew> = not_new.iter().map(|n| ((n.device, n.seq), n)).collect();
    let mut new = Vec::with_capacity(candidates.len());
    for &i in candidates {
        let r = &rows[i];
        match not_new.get(&(r.device_id, r.seq)) {
            None => new.push(i),
            Some(n) if n.kind == 1 => {}
            Some(n) => written[i] = conflict(r, n.holder),
        }
    }
    new
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
