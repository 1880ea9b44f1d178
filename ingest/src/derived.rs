//! Derived data — each device's latest reading (`device_latest_metrics`), the rollups (see
//! [`rollups`]) and the active sessions' reading counters — computed *after* the
//! acknowledgement, from what was committed.
//!
//! The writer's statement, which a PUBACK waits for, holds only the raw readings, their
//! identity watermark and one `derived_backlog` row per batch: the keys (device, seq, time)
//! of the readings that were new. The deriver takes backlog rows (oldest first, `FOR
//! UPDATE SKIP LOCKED`, so that several derivers — other nodes — share the work without
//! waiting), takes those readings from this process's writers ([`Handoff`]) or, for what
//! it does not hold, reads them back from `health_metrics`, applies their latest values,
//! rollups and counters, and deletes the backlog rows, all in one transaction. The backlog
//! is the durable cursor: a crash before that commit leaves the rows to be applied again by
//! the next deriver, a crash after it leaves nothing; a reading is counted exactly once.
//!
//! Freshness: the deriver wakes when a writer commits, waits `interval` (200 ms by default)
//! so that the batches of that moment are applied together (one rollup upsert per bucket,
//! not per batch), and loops while the backlog is not empty. Current values and trends lag
//! the raw readings by about `interval` plus one apply (≤ 1 s at the loads measured in
//! `bench/README.md`); alerts and live streams do not wait for it (they follow the commit).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nc_domain::{PatientId, SystemStatus};
use sqlx::{PgPool, Postgres, Row as _, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::reading::{ReadingIn, COLUMNS};
use crate::writer::{Committed, Row};

pub(crate) mod rollups;

/// Readings held by the [`Handoff`] at most (about 400 bytes each, shared with the
/// after-commit queue); past it a batch is read back instead.
const HANDOFF_READINGS: usize = 20_000;

/// The batches this process committed, handed to its deriver in memory by backlog row id,
/// so that it need not read them back from `health_metrics` (a lookup per reading: the
/// deriver's largest cost, measured). The backlog row stays the truth: a batch not here
/// (another node's, one from before a restart, one past [`HANDOFF_READINGS`], or one
/// whose rows another node's deriver took) is read back by its keys.
#[derive(Default)]
pub struct Handoff {
    wake: Notify,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    batches: BTreeMap<i64, Committed>,
    readings: usize,
}

impl Handoff {
    /// A batch committed with its new rows' keys in backlog row `backlog`: held (if there is
    /// room) and the deriver woken.
    pub fn committed(&self, backlog: i64, rows: &Committed) {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.readings + rows.len() <= HANDOFF_READINGS {
                held.readings += rows.len();
                held.batches.insert(backlog, rows.clone());
            }
        }
        self.wake.notify_one();
    }

    /// The held batches of these backlog rows (`ids` ascending, the oldest this deriver
    /// could take), removed; those older than the first are forgotten too (another
    /// deriver holds or applied them).
    fn take(&self, ids: &[i64]) -> Vec<Option<Committed>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let out = ids.iter().map(|id| held.batches.remove(id)).collect();
        if let Some(&first) = ids.first() {
            let keep = held.batches.split_off(&first);
            held.batches = keep;
        }
        held.readings = held.batches.values().map(|b| b.len()).sum();
        out
    }
}

/// A backlog row: its id, the keys (device, seq, time) of a batch's new readings, and the
/// seconds since it was written.
type Entry = (i64, Vec<Uuid>, Vec<i64>, Vec<DateTime<Utc>>, f64);

/// Backlog rows taken in one transaction, at most.
const ENTRIES_PER_APPLY: i64 = 500;
/// Readings applied in one transaction, at most (a backlog row bigger than this is applied
/// alone): the deriver's memory is bounded whatever the backlog, e.g. after saturation.
const READINGS_PER_APPLY: i64 = 10_000;

/// A stored reading, as read back for the derived data.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub time: DateTime<Utc>,
    pub device_id: Uuid,
    pub seq: i64,
    pub hospital_id: Uuid,
    pub patient_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub system_status: SystemStatus,
    /// In [`COLUMNS`] order, as stored (`real`, widened to the shortest decimal that reads
    /// back as it: 36.8, not 36.79999923706055).
    pub values: [Option<f64>; COLUMNS.len()],
}

impl From<&Row> for Stored {
    /// A committed row as [`read_back`] would return it (time and measurements as stored).
    fn from(r: &Row) -> Stored {
        Stored {
            time: crate::writer::stored_time(r.time),
            device_id: r.device_id,
            seq: r.seq,
            hospital_id: r.hospital_id,
            patient_id: r.patient_id,
            session_id: r.session_id,
            system_status: r.reading.system_status,
            values: r.values().map(|v| v.map(|v| widen(v as f32))),
        }
    }
}

impl Stored {
    /// The reading as the current-values endpoints return it.
    fn reading(&self) -> ReadingIn {
        let mut r = ReadingIn::from_values(self.seq, self.time, self.system_status, self.values);
        r.patient_id = self.patient_id.map(PatientId);
        r
    }
}

/// Applies the oldest backlog rows (up to [`ENTRIES_PER_APPLY`] rows and
/// [`READINGS_PER_APPLY`] readings) in one transaction; returns how many readings they held
/// (0: nothing was waiting, or another deriver holds what is).
pub async fn apply(pool: &PgPool) -> Result<usize, sqlx::Error> {
    apply_with(pool, None).await
}

/// [`apply`], taking the batches this process committed from `handoff` instead of reading
/// them back.
async fn apply_with(pool: &PgPool, handoff: Option<&Handoff>) -> Result<usize, sqlx::Error> {
    let began = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    let sizes: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT id, cardinality(device_ids) FROM derived_backlog ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(ENTRIES_PER_APPLY)
    .fetch_all(&mut *tx)
    .await?;
    let mut take = Vec::new();
    let mut readings = 0i64;
    for (id, n) in sizes {
        if !take.is_empty() && readings + i64::from(n) > READINGS_PER_APPLY {
            break;
        }
        take.push(id);
        readings += i64::from(n);
    }
    let entries: Vec<Entry> = sqlx::query_as(
        "SELECT id, device_ids, seqs, times, extract(epoch FROM clock_timestamp() - created_at)::float8
           FROM derived_backlog WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&take)
    .fetch_all(&mut *tx)
    .await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = entries.iter().map(|e| e.0).collect();
    let held = handoff.map(|h| h.take(&ids)).unwrap_or_default();
    let (mut rows, mut devices, mut seqs, mut times, mut ages) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (_, d, s, t, age)) in entries.into_iter().enumerate() {
        ages.push(age);
        match held.get(i) {
            Some(Some(batch)) => rows.extend(batch.iter().map(Stored::from)),
            _ => {
                devices.extend(d);
                seqs.extend(s);
                times.extend(t);
            }
        }
    }
    if !devices.is_empty() {
        rows.extend(read_back(&mut tx, &devices, &seqs, &times).await?);
    }
    latest(&mut tx, &rows).await?;
    rollups::write(&mut tx, &rows).await?;
    counters(&mut tx, &rows).await?;
    sqlx::query("DELETE FROM derived_backlog WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    tx.commit().await?;
    let metrics = nc_metrics::get();
    let took = began.elapsed().as_secs_f64();
    metrics.derive_apply_seconds.observe(took);
    for age in ages {
        metrics.derived_lag_seconds.observe(age + took);
    }
    Ok(rows.len())
}

/// Applies everything waiting (for tests, benchmarks and shutdown).
pub async fn catch_up(pool: &PgPool) -> Result<usize, sqlx::Error> {
    catch_up_with(pool, None).await
}

async fn catch_up_with(pool: &PgPool, handoff: Option<&Handoff>) -> Result<usize, sqlx::Error> {
    let mut total = 0;
    loop {
        match apply_with(pool, handoff).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// The readings of these keys, each looked up through the unique index: a lateral lookup
/// per key, so the plan does not depend on the chunk's statistics (a fresh chunk, whose
/// statistics say it is small while it grows, was read whole and sorted for a merge join
/// on every apply, by parallel workers once it grew: measured, the largest share of
/// PostgreSQL's CPU at 10k readings/s).
async fn read_back(
    tx: &mut Transaction<'_, Postgres>,
    devices: &[Uuid],
    seqs: &[i64],
    times: &[DateTime<Utc>],
) -> Result<Vec<Stored>, sqlx::Error> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let cols: Vec<String> = COLUMNS.iter().map(|(_, c)| format!("h.{c}")).collect();
        format!(
            "SELECT h.time, h.device_id, h.seq, h.hospital_id, h.patient_id, h.session_id, h.system_status, {}
               FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[]) AS k(device_id, seq, time)
               CROSS JOIN LATERAL (SELECT * FROM health_metrics h
                                    WHERE h.device_id = k.device_id AND h.seq = k.seq AND h.time = k.time
                                    LIMIT 1) h",
            cols.join(", ")
        )
    });
    let rows = sqlx::query(sql).bind(devices).bind(seqs).bind(times).fetch_all(&mut **tx).await?;
    rows.into_iter()
        .map(|r| {
            let status: String = r.try_get(6)?;
            let mut values = [None; COLUMNS.len()];
            for (i, v) in values.iter_mut().enumerate() {
                *v = r.try_get::<Option<f32>, _>(7 + i)?.map(widen);
            }
            Ok(Stored {
                time: r.try_get(0)?,
                device_id: r.try_get(1)?,
                seq: r.try_get(2)?,
                hospital_id: r.try_get(3)?,
                patient_id: r.try_get(4)?,
                session_id: r.try_get(5)?,
                system_status: status.parse().unwrap_or(SystemStatus::Normal),
                values,
            })
        })
        .collect()
}

/// A stored `real` as the decimal it was written from (the shortest one that reads back as
/// the same `real`).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// The latest reading per device (only moves forward in time); devices in order, so that
/// two derivers lock rows in the same order.
async fn latest(tx: &mut Transaction<'_, Postgres>, rows: &[Stored]) -> Result<(), sqlx::Error> {
    let mut latest: BTreeMap<Uuid, &Stored> = BTreeMap::new();
    for r in rows {
        let e = latest.entry(r.device_id).or_insert(r);
        if (r.time, r.seq) > (e.time, e.seq) {
            *e = r;
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let l: Vec<&Stored> = latest.into_values().collect();
    sqlx::query(
        "INSERT INTO device_latest_metrics (device_id, hospital_id, patient_id, session_id, time, seq, reading, updated_at)
         SELECT d, h, p, s, t, q, r, now() FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[], $6::int8[], $7::jsonb[]) AS x(d, h, p, s, t, q, r)
         ON CONFLICT (device_id) DO UPDATE SET hospital_id = EXCLUDED.hospital_id, patient_id = EXCLUDED.patient_id,
             session_id = EXCLUDED.session_id, time = EXCLUDED.time, seq = EXCLUDED.seq, reading = EXCLUDED.reading, updated_at = now()
         WHERE (device_latest_metrics.time, device_latest_metrics.seq) <= (EXCLUDED.time, EXCLUDED.seq)",
    )
    .bind(l.iter().map(|r| r.device_id).collect::<Vec<_>>())
    .bind(l.iter().map(|r| r.hospital_id).collect::<Vec<_>>())
    .bind(l.iter().map(|r| r.patient_id).collect::<Vec<_>>())
    .bind(l.iter().map(|r| r.session_id).collect::<Vec<_>>())
    .bind(l.iter().map(|r| r.time).collect::<Vec<_>>())
    .bind(l.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(l.iter().map(|r| sqlx::types::Json(r.reading())).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Readings received per active session (an ended session's summary counted its stored
/// readings itself).
async fn counters(tx: &mut Transaction<'_, Postgres>, rows: &[Stored]) -> Result<(), sqlx::Error> {
    let mut per_session: BTreeMap<Uuid, i64> = BTreeMap::new();
    for r in rows {
        if let Some(s) = r.session_id {
            *per_session.entry(s).or_default() += 1;
        }
    }
    if per_session.is_empty() {
        return Ok(());
    }
    let (ids, counts): (Vec<Uuid>, Vec<i64>) = per_session.into_iter().unzip();
    sqlx::query(
        "UPDATE device_sessions SET readings_received = readings_received + x.n
         FROM UNNEST($1::uuid[], $2::int8[]) AS x(id, n)
         WHERE device_sessions.id = x.id AND device_sessions.status = 'active'",
    )
    .bind(ids)
    .bind(counts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The deriver of one process: woken by `wake` (a writer committed) or every second (for
/// what other nodes, or a crashed process, left), it applies the backlog until it is
/// empty. On shutdown it applies what is left, once, and its task ends.
pub(crate) fn spawn(
    pool: PgPool,
    interval: Duration,
    handoff: Arc<Handoff>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let fresh = || crate::retry::delays(Duration::from_millis(100), Duration::from_secs(5));
        let mut delays = fresh();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = handoff.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // Let the batches of this moment gather, then apply them together.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            match catch_up_with(&pool, Some(&handoff)).await {
                Ok(_) => delays = fresh(),
                Err(e) => {
                    let wait = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "derived data not applied; retrying");
                    if !crate::retry::wait(wait, &shutdown).await {
                        break;
                    }
                    handoff.wake.notify_one();
                }
            }
        }
        if let Err(e) = catch_up_with(&pool, Some(&handoff)).await {
            tracing::warn!(error = %e, "derived data left for the next start");
        }
    })
}
