//! The telemetry path into TimescaleDB, written with sqlx on the pool sea-orm owns.
//!
//! One pipeline for readings arriving over MQTT (through the broker's [`TelemetrySink`]
//! interface) and over HTTP: validate ([`reading`]), bind to the device's patient and
//! session ([`sessions`]), then queue for the batching writer ([`writer`]), which answers
//! each submitter only after COMMIT. The queue is bounded: when storage is slow, submitters
//! wait, so acknowledgements slow down and memory stays bounded. Committed readings are
//! broadcast for the live streams and the alert engine.

pub mod alerts;
pub mod derived;
pub mod performance;
pub mod query;
pub mod reading;
pub mod rejections;
mod retry;
pub mod sessions;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nc_domain::{DeviceId, HospitalId, PatientId};
use nc_messaging::topic::DeviceChannel;
use nc_messaging::{DeviceMessage, SinkFuture, SinkOutcome, SinkUnavailable, TelemetrySink};
use sqlx::PgPool;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertEngine;
use crate::reading::{Invalid, ReadingIn, SessionEvent, SessionIn};
use crate::sessions::Sessions;
use crate::writer::{Committed, Job, Row, WireRow, WriterSettings, Written};

/// The node event that carries committed readings to the other nodes' live streams.
const READINGS_EVENT: &str = "readings";
/// Committed readings a writer may leave for alert evaluation before it waits (per writer;
/// about 4 MB of rows): most of a minute of a 600 readings/s shift change, about a second
/// at saturation, where the rows waiting here were the largest share of the memory.
const AFTER_COMMIT_READINGS: usize = 10_000;
/// Readings per node event (a reading is about 400 bytes of JSON: well under the bus's limit).
const READINGS_PER_EVENT: usize = 500;

#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Readings per INSERT, at most. A free writer writes what is queued at once (no timer
    /// unless `gather` is set): batches grow while a write is under way.
    pub batch_size: usize,
    /// Concurrent writers (database connections used for writing).
    pub writers: usize,
    /// How long a batch waits for more readings after its first one: zero (the default)
    /// writes at once; a few ms trade PUBACK latency for CPU at low load.
    pub gather: Duration,
    /// Readings waiting to be written, at most (beyond it, submitters wait).
    pub queue_capacity: usize,
    /// How long a failing batch is retried before submitters are told storage is unavailable.
    pub retry_for: Duration,
    /// A session with no reading for this long ends as `interrupted`.
    pub session_timeout: Duration,
    /// Raw readings older than this many days are dropped (hourly check), with the finer
    /// (1-, 5-, 15-minute) rollups; the hourly rollups and session summaries stay. `None`
    /// keeps everything.
    pub retention_days: Option<u32>,
    /// How connection and treatment conditions are judged (see [`alerts`]).
    pub conditions: alerts::ConditionSettings,
    /// How often the tally of refused messages is added to `device_rejections`.
    pub rejections_flush: Duration,
    /// How long the deriver lets committed batches gather before applying their latest
    /// values, rollups and session counters (see [`derived`]).
    pub derive_interval: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            writers: default_writers(),
            gather: Duration::ZERO,
            queue_capacity: 20_000,
            retry_for: Duration::from_secs(5),
            session_timeout: Duration::from_secs(300),
            retention_days: Some(365),
            conditions: alerts::ConditionSettings::default(),
            rejections_flush: Duration::from_secs(2),
            derive_interval: Duration::from_millis(200),
        }
    }
}

/// One writer per core, 2 to 4: each writer's statement keeps a PostgreSQL backend busy on
/// a core. Measured on 2 cores at 1,000 machines × 10 Hz, 2 writers acknowledge faster than
/// 3 (PUBACK p50 9.2 vs 10.4–12.0 ms: fewer, larger statements), and 3 saturate ~8 % higher
/// (bench/README.md, "Fifth round").
fn default_writers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

/// Counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
}

/// What became of a submitted reading or session message.
#[derive(Debug)]
pub enum Outcome {
    /// Committed (or already stored: the same reading again); `patient` is the patient
    /// whose treatment it belongs to, if any; `seq` the reading's.
    Stored { patient: Option<PatientId>, seq: Option<i64> },
    /// Refused, never stored: invalid (`validation_failed`), or its seq is another
    /// reading's ([`reading::SEQ_CONFLICT`]). The seq, if the payload had one.
    Invalid(Invalid, Option<i64>),
}

struct Inner {
    pool: PgPool,
    alerts: Arc<AlertEngine>,
    queues: writer::Queues,
    /// Each writer's queue to alert evaluation and the live streams.
    after: Vec<writer::AfterQueue>,
    sessions: Sessions,
    committed: broadcast::Sender<Committed>,
    /// Other nodes (an external MQTT core; off with one node).
    bus: nc_messaging::Bus,
    counters: Counters,
    rejections: rejections::Rejections,
    /// The deriver's task, which applies what is left once ingest stops.
    deriver: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The ingest pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

impl Ingest {
    /// Starts the writers and the session sweeper; they stop when `shutdown` is cancelled
    /// (after writing what is queued). Committed readings are shared with the other nodes'
    /// live streams on `bus`, and theirs with ours.
    pub fn start(
        pool: PgPool,
        settings: IngestSettings,
        alarms: nc_alarms::Alarms,
        bus: nc_messaging::Bus,
        shutdown: CancellationToken,
    ) -> Ingest {
        let (committed, _) = broadcast::channel(1024);
        // One evaluation queue per writer (a device's readings always take the same writer, so
        // its alerts are evaluated in order): an alarm burst on one writer's devices does not
        // hold up the others, and, up to its budget of readings, not its own writer either.
        let (after_tx, after_rx): (Vec<_>, Vec<_>) =
            (0..settings.writers.max(1)).map(|_| writer::AfterQueue::new(AFTER_COMMIT_READINGS)).unzip();
        let derive = Arc::new(derived::Handoff::default());
        let queues = writer::spawn(
            pool.clone(),
            WriterSettings {
                batch_size: settings.batch_size,
                writers: settings.writers,
                gather: settings.gather,
                retry_for: settings.retry_for,
            },
            settings.queue_capacity,
            after_tx.clone(),
            derive.clone(),
            shutdown.clone(),
        );
        let deriver = derived::spawn(pool.clone(), settings.derive_interval, derive, shutdown.clone());
        let alerts = AlertEngine::new(pool.clone(), alarms, settings.conditions.clone());
        alerts.listen_for_limit_changes(shutdown.clone());
        let inner = Arc::new(Inner {
            pool,
            alerts,
            queues,
            after: after_tx.clone(),
            sessions: Sessions::default(),
            committed: committed.clone(),
            bus: bus.clone(),
            counters: Counters::default(),
            rejections: rejections::Rejections::default(),
            deriver: std::sync::Mutex::new(Some(deriver)),
        });
        if bus.enabled() {
            bus.on(READINGS_EVENT, move |rows: Vec<WireRow>| {
                let _ = committed.send(Arc::new(rows.into_iter().map(Row::from).collect()));
            });
        }
        // After each commit: alerts (in reading order), then the live streams. A slow alert
        // engine fills this queue (bounded in readings) and then slows the writers:
        // backpressure, not loss.
        // An evaluation that fails (the database went away after the commit) is retried
        // until it succeeds: a committed reading is never left unevaluated. Re-evaluating a
        // reading is harmless (one open alert per device and condition).
        for mut after_rx in after_rx {
            let (fanout, stop) = (inner.clone(), shutdown.clone());
            tokio::spawn(async move {
                // The permit (the batch's room in the queue) is given back once it is handled.
                while let Some((batch, _room, committed)) = after_rx.recv().await {
                    let waited = committed.elapsed();
                    let mut delays = retry::delays(Duration::from_millis(100), Duration::from_secs(5));
                    while let Err(e) = fanout.alerts.evaluate(&batch).await {
                        if !transient(&e) {
                            // Retrying cannot help (a bug, a broken rule): set the batch aside
                            // rather than stall every alert and live stream behind it.
                            tracing::error!(error = %e, readings = batch.len(), "alert evaluation failed for a batch; skipped");
                            break;
                        }
                        let wait = delays.next().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "alert evaluation failed for a batch; retrying");
                        if !retry::wait(wait, &stop).await {
                            tracing::warn!(readings = batch.len(), "stopping: alert evaluation of a batch abandoned");
                            return;
                        }
                    }
                    tracing::debug!(
                        readings = batch.len(),
                        waited_ms = waited.as_secs_f64() * 1e3,
                        evaluated_ms = (committed.elapsed() - waited).as_secs_f64() * 1e3,
                        "alert evaluation of a committed batch"
                    );
                    if fanout.bus.enabled() {
                        // The other nodes' live streams, in chunks the core carries.
                        for chunk in batch.chunks(READINGS_PER_EVENT) {
                            let rows = chunk.iter().map(WireRow::from).collect::<Vec<_>>();
                            fanout.bus.send(READINGS_EVENT, &rows).await;
                        }
                    }
                    let _ = fanout.committed.send(batch);
                }
            });
        }
        if let Some(days) = settings.retention_days {
            let (pool, stop) = (inner.pool.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = every.tick() => match query::drop_old_chunks(&pool, days).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(chunks = n, days, "retention: dropped old raw chunks"),
                            Err(e) => tracing::warn!(error = %e, "retention job failed"),
                        }
                    }
                }
            });
        }
        let maintenance = inner.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {
                        if let Err(e) = maintenance.alerts.check_maintenance().await {
                            tracing::warn!(error = %e, "maintenance check failed");
                        }
                    }
                }
            }
        });
        let tally = inner.clone();
        let (stop, every) = (shutdown.clone(), settings.rejections_flush);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                let last = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tick.tick() => false,
                };
                if let Err(e) = tally.rejections.flush(&tally.pool).await {
                    tracing::warn!(error = %e, "could not record refused messages; retrying");
                }
                if last {
                    break;
                }
            }
        });
        let sweeper = inner.clone();
        let timeout = settings.session_timeout;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5).min(timeout));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = every.tick() => {
                        if let Err(e) = sweeper.sessions.sweep(&sweeper.pool, timeout).await {
                            tracing::warn!(error = %e, "session sweep failed");
                        }
                        sweeper.alerts.forget_idle().await;
                    }
                }
            }
        });
        Ingest { inner }
    }

    /// The alert conditions (their alarms are [`AlertEngine::alarms`]).
    pub fn alerts(&self) -> Arc<AlertEngine> {
        self.inner.alerts.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Feeds device presence (from the broker) to the alert engine: an abrupt loss raises
    /// `device_offline`, a reconnection clears it.
    pub fn watch_presence(&self, mut events: broadcast::Receiver<nc_messaging::PresenceEvent>) {
        let alerts = self.inner.alerts.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if let Err(err) = alerts.presence(e.device, e.hospital, e.online, e.reason.as_str(), e.at).await
                        {
                            tracing::warn!(error = %err, "presence alert failed");
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "presence events missed"),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Waits (at most `limit`) for the deriver to apply what is left after `shutdown` was
    /// cancelled, so that the pool is closed after it, not under it.
    pub async fn stopped(&self, limit: Duration) {
        let deriver = self.inner.deriver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(deriver) = deriver {
            if tokio::time::timeout(limit, deriver).await.is_err() {
                tracing::warn!(
                    limit_s = limit.as_secs(),
                    "derived data still being applied at shutdown; the rest waits for the next start"
                );
            }
        }
    }

    /// Committed (new) readings, batch by batch (this node's and, with several nodes, the
    /// others').
    pub fn committed(&self) -> broadcast::Receiver<Committed> {
        self.inner.committed.subscribe()
    }

    /// Readings waiting in each writer's queue.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.inner.queues.depths()
    }

    /// Committed readings waiting for alert evaluation (and the live streams), per writer.
    pub fn evaluation_backlogs(&self) -> Vec<usize> {
        self.inner.after.iter().map(writer::AfterQueue::backlog).collect()
    }

    /// Written batches waiting for the deriver.
    pub async fn derived_backlog(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM derived_backlog").fetch_one(&self.inner.pool).await
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Validates, binds and stores one reading (its JSON payload); resolves after COMMIT.
    pub async fn submit_reading(
        &self,
        device: DeviceId,
        hospital: HospitalId,
        payload: &[u8],
    ) -> Result<Outcome, SinkUnavailable> {
        match ReadingIn::parse(payload) {
            Ok(reading) => self.submit(device, hospital, reading).await,
            Err(e) => Ok(self.rejected(device, hospital, e, seq_of(payload))),
        }
    }

    /// Validates, binds and stores one reading, however it arrived (MQTT, HTTP, a device
    /// gateway); resolves after COMMIT.
    pub async fn submit(
        &self,
        device: DeviceId,
        hospital: HospitalId,
        reading: ReadingIn,
    ) -> Result<Outcome, SinkUnavailable> {
        // What waits is kept small: at saturation 1,000 machines × 64 readings wait at once.
        // The device's readings are bound and queued one after the other, in arrival order:
        // a reading waits for its turn here, before the lookups and the queueing are even
        // allocated (their state machine is kilobytes), and that state is freed once the
        // reading is queued; then it waits for its commit with a receiver.
        let turn = self.inner.sessions.turn(device).await;
        let (stored, patient, seq) = match Box::pin(self.queue_reading(turn, device, hospital, reading)).await? {
            Queued::Answered(outcome) => return Ok(outcome),
            Queued::Waiting { stored, patient, seq } => (stored, patient, seq),
        };
        match stored.await.map_err(|_| SinkUnavailable("ingest is shutting down".into()))?? {
            Written::Stored => {
                self.inner.counters.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                nc_metrics::get().readings_accepted.inc();
                Ok(Outcome::Stored { patient, seq: Some(seq) })
            }
            Written::Conflict(why) => Ok(self.rejected(device, hospital, Invalid::seq_conflict(why), Some(seq))),
        }
    }

    /// Validates and binds one reading and queues it for its writer, in the device's turn.
    async fn queue_reading(
        &self,
        turn: tokio::sync::OwnedMutexGuard<()>,
        device: DeviceId,
        hospital: HospitalId,
        reading: ReadingIn,
    ) -> Result<Queued, SinkUnavailable> {
        if let Err(e) = reading.validate(Utc::now()) {
            return Ok(Queued::Answered(self.rejected(device, hospital, e, Some(reading.seq))));
        }
        let unavailable = |e: sqlx::Error| SinkUnavailable(e.to_string());
        let binding = match self
            .inner
            .sessions
            .bind(&self.inner.pool, device, hospital, reading.patient_id, reading.ts)
            .await
            .map_err(unavailable)?
        {
            Ok(b) => b,
            Err(e) => return Ok(Queued::Answered(self.rejected(device, hospital, e, Some(reading.seq)))),
        };
        if let (true, Some(p)) = (binding.started, binding.patient) {
            self.inner
                .alerts
                .treatment_started(device.as_uuid(), p.as_uuid(), reading.ts)
                .await
                .map_err(unavailable)?;
        }
        let seq = reading.seq;
        let row = Row::new(
            reading,
            device.as_uuid(),
            hospital.as_uuid(),
            binding.patient.map(|p| p.as_uuid()),
            binding.session.map(|s| s.as_uuid()),
        );
        let (done, stored) = oneshot::channel();
        self.inner
            .queues
            .of(row.device_id)
            .send(Job { row, done })
            .await
            .map_err(|_| SinkUnavailable("ingest is shutting down".into()))?;
        drop(turn);
        Ok(Queued::Waiting { stored, patient: binding.patient, seq })
    }

    /// Handles a session message.
    pub async fn submit_session(
        &self,
        device: DeviceId,
        hospital: HospitalId,
        payload: &[u8],
    ) -> Result<Outcome, SinkUnavailable> {
        let message = match SessionIn::parse(payload, Utc::now()) {
            Ok(m) => m,
            Err(e) => return Ok(self.rejected(device, hospital, e, None)),
        };
        let pool = &self.inner.pool;
        let unavailable = |e: sqlx::Error| SinkUnavailable(e.to_string());
        let result = match message.event {
            SessionEvent::Start => self
                .inner
                .sessions
                .start_explicit(
                    pool,
                    device,
                    hospital,
                    message.patient_id.expect("checked by parse"),
                    message.ts,
                    message.expected_interval_ms,
                )
                .await
                .map_err(unavailable)?
                .map(|_| message.patient_id),
            SessionEvent::End => {
                self.inner.sessions.end_explicit(pool, device, message.ts).await.map_err(unavailable)?.map(|(_, p)| p)
            }
        };
        if let (Ok(_), SessionEvent::Start, Some(p)) = (&result, message.event, message.patient_id) {
            // A new treatment: another patient's conditions end (the same patient's carry on).
            self.inner
                .alerts
                .treatment_started(device.as_uuid(), p.as_uuid(), message.ts)
                .await
                .map_err(unavailable)?;
        }
        Ok(match result {
            Ok(patient) => Outcome::Stored { patient, seq: None },
            Err(e) => self.rejected(device, hospital, e, None),
        })
    }

    fn rejected(&self, device: DeviceId, hospital: HospitalId, e: Invalid, seq: Option<i64>) -> Outcome {
        self.inner.counters.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        nc_metrics::get().readings_rejected.inc();
        self.inner.rejections.count(device, hospital, e.code);
        tracing::info!(code = e.code, field = %e.field, message = %e.message, "reading rejected");
        Outcome::Invalid(e, seq)
    }
}

/// Whether a database error may go away by itself: the connection or the server (classes
/// 08, 53, 57), a conflict between transactions (40), or a table missing while the schema
/// is being changed (42P01).
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| ["08", "53", "57", "40"].iter().any(|class| c.starts_with(class)) || c == "42P01")
        }
        _ => false,
    }
}

/// The `seq` of a payload that failed validation, if it has one, for the error message.
fn seq_of(payload: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(payload).ok()?.get("seq")?.as_i64()
}

/// A reading answered at once (rejected), or queued and waiting for its commit.
enum Queued {
    Answered(Outcome),
    Waiting { stored: oneshot::Receiver<Result<Written, SinkUnavailable>>, patient: Option<PatientId>, seq: i64 },
}

impl TelemetrySink for Ingest {
    fn submit(&self, message: DeviceMessage) -> SinkFuture {
        let this = self.clone();
        Box::pin(async move {
            let outcome = match message.channel {
                DeviceChannel::Session => {
                    Box::pin(this.submit_session(message.device, message.hospital, &message.payload)).await?
                }
                _ => this.submit_reading(message.device, message.hospital, &message.payload).await?,
            };
            Ok(match outcome {
                Outcome::Stored { patient, .. } => SinkOutcome::Committed { patient },
                Outcome::Invalid(e, seq) => SinkOutcome::Rejected { error: e.to_json(seq) },
            })
        })
    }
}
