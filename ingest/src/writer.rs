//! The batching writer: accepted readings are written to the `health_metrics` hypertable
//! in multi-row `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING` statements by a few
//! writers, each with its own queue and devices ([`Queues`]); a free writer writes what is
//! queued at once, so batches grow with the load instead of waiting for a timer (a reading
//! never waits for a batch to fill, nor, unless an operator sets a gather time, for a
//! deadline). In the same transaction: the reading identity check (see [`identity`]) and
//! the keys of the rows that were new, for the deriver ([`crate::derived`]: latest values,
//! rollups and session counters, after the acknowledgement). Nothing else: the commit a
//! PUBACK waits for stays small. Each reading's submitter learns the outcome only after
//! COMMIT.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nc_messaging::SinkUnavailable;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::reading::{ReadingIn, COLUMNS};

mod identity;

pub(crate) use identity::stored_time;

/// One reading ready to store.
#[derive(Debug, Clone)]
pub struct Row {
    pub time: DateTime<Utc>,
    pub device_id: Uuid,
    pub seq: i64,
    pub hospital_id: Uuid,
    pub patient_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub system_status: &'static str,
    /// The reading as validated (typed: serialized once, straight into the latest-values
    /// upsert or a live stream's frame, never through a `serde_json::Value`).
    pub reading: ReadingIn,
}

impl Row {
    /// A row of `reading` (its measurements in [`COLUMNS`] order).
    pub fn new(
        reading: ReadingIn,
        device_id: Uuid,
        hospital_id: Uuid,
        patient_id: Option<Uuid>,
        session_id: Option<Uuid>,
    ) -> Row {
        Row {
            time: reading.ts,
            device_id,
            seq: reading.seq,
            hospital_id,
            patient_id,
            session_id,
            system_status: reading.system_status.as_str(),
            reading,
        }
    }

    /// The measurements in [`COLUMNS`] order. Derived, not kept: a row waits in the writer
    /// and evaluation queues, up to tens of thousands at saturation, and a copy would add a
    /// third to its size.
    pub fn values(&self) -> [Option<f64>; 16] {
        self.reading.measurements().map(|(_, v)| v)
    }
}

/// A committed row as other nodes receive it (`nc_messaging::bus`): what a row is made
/// from, the rest is derived again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRow {
    device_id: Uuid,
    hospital_id: Uuid,
    patient_id: Option<Uuid>,
    session_id: Option<Uuid>,
    reading: ReadingIn,
}

impl From<&Row> for WireRow {
    fn from(r: &Row) -> WireRow {
        WireRow {
            device_id: r.device_id,
            hospital_id: r.hospital_id,
            patient_id: r.patient_id,
            session_id: r.session_id,
            reading: r.reading.clone(),
        }
    }
}

impl From<WireRow> for Row {
    fn from(w: WireRow) -> Row {
        Row::new(w.reading, w.device_id, w.hospital_id, w.patient_id, w.session_id)
    }
}

/// A committed reading that was new (not a redelivery).
pub type Committed = Arc<Vec<Row>>;

/// What became of one reading of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Stored now, or already stored (the same reading sent again).
    Stored,
    /// Not stored: the device already used its seq for another reading (the sentence says which).
    Conflict(String),
}

/// A written batch: the rows that were new, what became of each row, in order, and the id
/// of the `derived_backlog` row that holds the new rows' keys (none when nothing was new).
#[derive(Debug, Default)]
pub struct Batch {
    pub new: Vec<Row>,
    pub written: Vec<Written>,
    pub backlog: Option<i64>,
}

pub struct Job {
    pub row: Row,
    pub done: oneshot::Sender<Result<Written, SinkUnavailable>>,
}

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub batch_size: usize,
    pub writers: usize,
    /// How long a batch waits for more readings after its first one (zero: it is written as
    /// soon as its writer is free).
    pub gather: Duration,
    /// How long a failing batch is retried before its submitters are told storage is unavailable.
    pub retry_for: Duration,
}

/// The batch's one statement: `ingest_write_batch` (migration 33) inserts the readings
/// (those whose exact key is new), raises each device's identity watermark, settles the
/// suspects and records the keys inserted for the deriver, and returns the candidates that
/// are not new. Sent as it is, without BEGIN and COMMIT: one statement is its own
/// transaction, committed when it ends, so the commit a PUBACK waits for is one round trip.
fn call_sql() -> String {
    let params: Vec<String> = (1..=COLUMNS.len() + 9).map(|i| format!("${i}")).collect();
    format!("SELECT o_kind, o_device, o_seq, o_time FROM ingest_write_batch({})", params.join(", "))
}

/// Writes one batch in one transaction: what became of each row, and the rows that were new.
pub async fn write_batch(pool: &PgPool, rows: &[Row]) -> Result<Batch, sqlx::Error> {
    // Within the batch, the first reading of each (device, seq) goes to the table; a later
    // one is the same reading again, or a conflict with the first.
    let (candidates, mut written, follows) = identity::within(rows);
    let firsts: Vec<&Row> = candidates.iter().map(|&i| &rows[i]).collect();
    static CALL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = CALL.get_or_init(call_sql);
    let (devices, highest) = identity::highest(rows, &candidates);
    let mut q = sqlx::query_as::<_, (i16, Option<Uuid>, i64, Option<DateTime<Utc>>)>(sql)
        .bind(firsts.iter().map(|r| identity::stored_time(r.time)).collect::<Vec<_>>())
        .bind(firsts.iter().map(|r| r.device_id).collect::<Vec<_>>())
        .bind(firsts.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(firsts.iter().map(|r| r.hospital_id).collect::<Vec<_>>())
        .bind(firsts.iter().map(|r| r.patient_id).collect::<Vec<_>>())
        .bind(firsts.iter().map(|r| r.session_id).collect::<Vec<_>>())
        .bind(firsts.iter().map(|r| r.system_status.to_owned()).collect::<Vec<_>>());
    let values: Vec<[Option<f64>; 16]> = firsts.iter().map(|r| r.values()).collect();
    for i in 0..COLUMNS.len() {
        q = q.bind(values.iter().map(|v| v[i].map(|v| v as f32)).collect::<Vec<Option<f32>>>());
    }
    q = q.bind(devices).bind(highest);
    let mut not_new = Vec::new();
    let mut backlog = None;
    for (kind, device, seq, time) in q.fetch_all(pool).await? {
        match (kind, device, time) {
            (0, _, _) => backlog = Some(seq),
            (kind, Some(device), Some(holder)) => not_new.push(identity::NotNew { kind, device, seq, holder }),
            _ => return Err(sqlx::Error::Protocol(format!("ingest_write_batch returned kind {kind} without its key"))),
        }
    }
    let new_rows = identity::outcome(rows, &candidates, &not_new, &mut written);
    for (row, first) in follows {
        written[row] = written[first].clone();
    }
    let new: Vec<Row> = new_rows.into_iter().map(|i| rows[i].clone()).collect();
    Ok(Batch { new, written, backlog })
}

/// The writers' queues: one per writer, a device always on the same one. Two writers never
/// hold the same device's rows (reading identity watermark, latest values, session
/// counters), so their transactions never wait for each other's locks, and a device's
/// readings are written in the order they arrived.
#[derive(Clone)]
pub struct Queues {
    senders: Arc<[mpsc::Sender<Job>]>,
}

impl Queues {
    /// `writers` queues of `capacity` readings in all.
    fn new(writers: usize, capacity: usize) -> (Queues, Vec<mpsc::Receiver<Job>>) {
        let per = (capacity / writers.max(1)).max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..writers.max(1)).map(|_| mpsc::channel(per)).unzip();
        (Queues { senders: senders.into() }, receivers)
    }

    /// Readings waiting in each writer's queue.
    pub fn depths(&self) -> Vec<usize> {
        self.senders.iter().map(|s| s.max_capacity() - s.capacity()).collect()
    }

    /// The queue of `device`'s writer.
    pub fn of(&self, device: Uuid) -> &mpsc::Sender<Job> {
        &self.senders[(device.as_u128() % self.senders.len() as u128) as usize]
    }
}

/// A writer's queue to what follows its commits (alert evaluation, then the live streams),
/// bounded in readings rather than batches. A writer waits for room only when that many
/// committed readings are still unevaluated: an alarm burst that slows the evaluation for
/// a few seconds (a shift change: hundreds of alarms raised, each stored, notified and
/// fanned out) no longer holds up the next commits, and so the acknowledgements of every
/// other machine on that writer. A bounded number of batches (64 before) filled in well
/// under a second when batches are small.
#[derive(Clone)]
pub struct AfterQueue {
    tx: mpsc::UnboundedSender<AfterItem>,
    room: Arc<Semaphore>,
    readings: usize,
}

/// What the after-commit task receives: a committed batch, its place in the budget (given
/// back when dropped, once the batch is handled) and when it was committed.
pub type AfterItem = (Committed, OwnedSemaphorePermit, std::time::Instant);

impl AfterQueue {
    /// A queue that holds at most `readings` unhandled readings (a bigger batch waits for
    /// an empty queue, then goes alone).
    pub fn new(readings: usize) -> (AfterQueue, mpsc::UnboundedReceiver<AfterItem>) {
        let readings = readings.clamp(1, Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::unbounded_channel();
        (AfterQueue { tx, room: Arc::new(Semaphore::new(readings)), readings }, rx)
    }

    async fn send(&self, batch: Committed) {
        let n = u32::try_from(batch.len().min(self.readings)).unwrap_or(u32::MAX);
        let committed = std::time::Instant::now();
        let Ok(permit) = self.room.clone().acquire_many_owned(n).await else { return };
        let _ = self.tx.send((batch, permit, committed));
    }

    /// Committed readings waiting to be handled.
    pub fn backlog(&self) -> usize {
        self.readings - self.room.available_permits()
    }
}

/// Lets more readings join a batch for up to `time` after its first one (an operator's
/// choice, off by default): fewer, larger statements for less CPU per reading at low load,
/// paid in PUBACK latency (bench/README.md, "Seventh round").
async fn gather(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, batch_size: usize, time: Duration) {
    let deadline = tokio::time::Instant::now() + time;
    while jobs.len() < batch_size {
        let room = batch_size - jobs.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(jobs, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Starts the writers, each on its own queue, until the queues close; each committed
/// batch's new rows go to that writer's `after` queue (one per writer).
pub fn spawn(
    pool: PgPool,
    settings: WriterSettings,
    capacity: usize,
    after: Vec<AfterQueue>,
    derive: Arc<crate::derived::Handoff>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Queues {
    let (queues, receivers) = Queues::new(settings.writers, capacity);
    assert_eq!(after.len(), receivers.len(), "one after-commit queue per writer");
    for (mut rx, after) in receivers.into_iter().zip(after) {
        let (pool, settings, derive, shutdown) = (pool.clone(), settings.clone(), derive.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                // A batch is written as soon as this writer is free: what is queued then (up
                // to `batch_size`). While a batch is being written the next one gathers, so
                // batches grow with the load and no reading waits for a timer.
                let mut jobs = Vec::with_capacity(settings.batch_size);
                if rx.recv_many(&mut jobs, settings.batch_size.max(1)).await == 0 {
                    return;
                }
                if !settings.gather.is_zero() {
                    gather(&mut rx, &mut jobs, settings.batch_size.max(1), settings.gather).await;
                }
                let (rows, done): (Vec<Row>, Vec<_>) = jobs.into_iter().map(|j| (j.row, j.done)).unzip();
                let started = tokio::time::Instant::now();
                let mut delays = crate::retry::delays(Duration::from_millis(50), Duration::from_secs(1));
                let metrics = nc_metrics::get();
                metrics.ingest_batch_readings.observe(rows.len() as f64);
                let outcome = loop {
                    let began = std::time::Instant::now();
                    match write_batch(&pool, &rows).await {
                        Ok(batch) => {
                            metrics.ingest_commit_seconds.observe(began.elapsed().as_secs_f64());
                            break Ok(batch);
                        }
                        // Not acknowledged when stopping: the machines send them again.
                        Err(e) if started.elapsed() < settings.retry_for => {
                            tracing::warn!(error = %e, batch = rows.len(), "writing readings failed; retrying");
                            let wait = delays.next().unwrap_or(Duration::from_secs(1));
                            if !crate::retry::wait(wait, &shutdown).await {
                                break Err(SinkUnavailable(e.to_string()));
                            }
                        }
                        Err(e) => break Err(SinkUnavailable(e.to_string())),
                    }
                };
                match outcome {
                    Ok(Batch { new, written, backlog }) => {
                        for (d, w) in done.into_iter().zip(written) {
                            let _ = d.send(Ok(w));
                        }
                        if !new.is_empty() {
                            let new = Arc::new(new);
                            if let Some(backlog) = backlog {
                                derive.committed(backlog, &new);
                            }
                            after.send(new).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, batch = rows.len(), "readings not stored; devices will resend");
                        for d in done {
                            let _ = d.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
    }
    queues
}
