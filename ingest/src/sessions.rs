//! Treatment sessions. A session starts on an explicit `start` message on the device's
//! `session` topic, or with the first reading bound to a patient; it ends on an explicit
//! `end` (`completed`) or after an inactivity timeout (`interrupted`). When it ends, its
//! summary is stored: duration, min/avg/max per metric, readings received vs expected
//! (completeness %), the ultrafiltration rate in mL/kg/h where the dry weight is known,
//! and the nadir systolic pressure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nc_domain::{DeviceId, HospitalId, PatientId, SessionId};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::reading::{Invalid, COLUMNS};

/// A device's active session and its patient, if any.
type Active = Option<(SessionId, Option<PatientId>)>;

/// One device's cached active session (`None`: not loaded yet), behind that device's own
/// lock: starting or ending a session (the end's summary is a query over the whole
/// treatment) holds up that device's readings only, never another machine's.
type Slot = Arc<Mutex<Option<Active>>>;

/// Session starts and ends (the end's summary is a query over the treatment) running at
/// once, at most: a shift change ends hundreds of sessions within seconds, and unbounded
/// they would take every pooled connection from the writers.
const CHANGES_AT_ONCE: usize = 4;

/// The active session of each device, cached (the database is the truth; the cache is
/// refreshed whenever this process starts or ends a session).
pub struct Sessions {
    devices: std::sync::Mutex<HashMap<DeviceId, Slot>>,
    /// Each device's turn to hand a reading to its writer (see [`Sessions::turn`]).
    turns: std::sync::Mutex<HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>>,
    patients: std::sync::Mutex<HashMap<PatientId, HospitalId>>,
    changes: tokio::sync::Semaphore,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            devices: Default::default(),
            turns: Default::default(),
            patients: Default::default(),
            changes: tokio::sync::Semaphore::new(CHANGES_AT_ONCE),
        }
    }
}

/// What a reading is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub patient: Option<PatientId>,
    pub session: Option<SessionId>,
    /// The reading started a session (for its patient, possibly ending the previous
    /// patient's: the machine moved on).
    pub started: bool,
}

impl Sessions {
    /// A device's turn: held from a reading's arrival until it is queued for its writer, so
    /// a device's readings reach the writer — and so the commit, the alarm conditions and the
    /// live streams — in the order they arrived (binding waits on the database now and then:
    /// a reading that does not must not overtake one that does). Taken in the order asked
    /// (tokio's mutex is fair).
    pub async fn turn(&self, device: DeviceId) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self.turns.lock().expect("turns").entry(device).or_default().clone();
        turn.lock_owned().await
    }

    /// The patient must belong to the device's hospital.
    pub async fn check_patient(
        &self,
        pool: &PgPool,
        patient: PatientId,
        hospital: HospitalId,
    ) -> Result<Result<(), Invalid>, sqlx::Error> {
        let cached = self.patients.lock().expect("patients cache").get(&patient).copied();
        let found = match cached {
            Some(h) => Some(h),
            None => {
                let h: Option<Uuid> = sqlx::query_scalar("SELECT hospital_id FROM patients WHERE id = $1")
                    .bind(patient.as_uuid())
                    .fetch_optional(pool)
                    .await?;
                let h = h.map(HospitalId);
                if let Some(h) = h {
                    self.patients.lock().expect("patients cache").insert(patient, h);
                }
                h
            }
        };
        Ok(match found {
            Some(h) if h == hospital => Ok(()),
            _ => Err(Invalid::new("patientId", "is not a patient of this device's hospital")),
        })
    }

    /// The device's slot (its lock is held only across that device's session changes).
    fn slot(&self, device: DeviceId) -> Slot {
        self.devices.lock().expect("sessions").entry(device).or_default().clone()
    }

    async fn load(
        &self,
        pool: &PgPool,
        device: DeviceId,
    ) -> Result<Option<(SessionId, Option<PatientId>)>, sqlx::Error> {
        let row: Option<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT id, patient_id FROM device_sessions WHERE device_id = $1 AND status = 'active'")
                .bind(device.as_uuid())
                .fetch_optional(pool)
                .await?;
        Ok(row.map(|(s, p)| (SessionId(s), p.map(PatientId))))
    }

    /// Binds a reading to the device's active session, starting one with the first reading
    /// that names a patient.
    pub async fn bind(
        &self,
        pool: &PgPool,
        device: DeviceId,
        hospital: HospitalId,
        patient: Option<PatientId>,
        at: DateTime<Utc>,
    ) -> Result<Result<Binding, Invalid>, sqlx::Error> {
        if let Some(p) = patient {
            if let Err(e) = self.check_patient(pool, p, hospital).await? {
                return Ok(Err(e));
            }
        }
        let slot = self.slot(device);
        let mut cached = slot.lock().await;
        let current = match *cached {
            Some(c) => c,
            None => {
                let c = self.load(pool, device).await?;
                *cached = Some(c);
                c
            }
        };
        match (current, patient) {
            (Some((previous, session_patient)), Some(p)) if session_patient.is_some() && session_patient != Some(p) => {
                // The machine moved on to the next patient without an `end`: the reading is
                // clinical data of the new patient. The previous session ends (completed, with
                // its summary) at this reading's time, and the new patient's session starts.
                let _change = self.changes.acquire().await.expect("never closed");
                end(pool, previous, at, "completed").await?;
                tracing::info!(%device, session = %previous, "a reading named the next patient: previous session ended");
                let session = start(pool, device, hospital, p, at, None).await?;
                *cached = Some(Some((session, Some(p))));
                Ok(Ok(Binding { patient: Some(p), session: Some(session), started: true }))
            }
            (Some((session, session_patient)), p) => {
                Ok(Ok(Binding { patient: session_patient.or(p), session: Some(session), started: false }))
            }
            (None, Some(p)) => {
                let _change = self.changes.acquire().await.expect("never closed");
                let session = start(pool, device, hospital, p, at, None).await?;
                *cached = Some(Some((session, Some(p))));
                Ok(Ok(Binding { patient: Some(p), session: Some(session), started: true }))
            }
            (None, None) => Ok(Ok(Binding { patient: None, session: None, started: false })),
        }
    }

    /// An explicit `start`: ends any active session (completed) and starts a new one.
    pub async fn start_explicit(
        &self,
        pool: &PgPool,
        device: DeviceId,
        hospital: HospitalId,
        patient: PatientId,
        at: DateTime<Utc>,
        interval_ms: Option<i32>,
    ) -> Result<Result<SessionId, Invalid>, sqlx::Error> {
        if let Err(e) = self.check_patient(pool, patient, hospital).await? {
            return Ok(Err(e));
        }
        let slot = self.slot(device);
        let mut cached = slot.lock().await;
        let _change = self.changes.acquire().await.expect("never closed");
        if let Some((s, _)) = self.load(pool, device).await? {
            end(pool, s, at, "completed").await?;
        }
        let session = start(pool, device, hospital, patient, at, interval_ms).await?;
        *cached = Some(Some((session, Some(patient))));
        Ok(Ok(session))
    }

    /// An explicit `end`.
    pub async fn end_explicit(
        &self,
        pool: &PgPool,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Result<(SessionId, Option<PatientId>), Invalid>, sqlx::Error> {
        let slot = self.slot(device);
        let mut cached = slot.lock().await;
        match self.load(pool, device).await? {
            Some((s, p)) => {
                let _change = self.changes.acquire().await.expect("never closed");
                end(pool, s, at, "completed").await?;
                *cached = Some(None);
                Ok(Ok((s, p)))
            }
            None => Ok(Err(Invalid::new("event", "the device has no active session to end"))),
        }
    }

    /// Ends (as `interrupted`) active sessions whose device has sent nothing for `timeout`.
    ///
    /// Inactivity is measured on the server's clock: since the session was created and since
    /// the device's latest reading was received (or while its readings wait for the deriver). Reading timestamps are the machine's clock
    /// and may lag (a clock behind by more than the timeout, buffered readings uploaded after
    /// a reconnect, a `start` sent with the time treatment began): comparing them with
    /// `now()` would interrupt a session whose device is sending at this very moment. The
    /// session still ends at its last reading's time.
    pub async fn sweep(&self, pool: &PgPool, timeout: Duration) -> Result<Vec<SessionId>, sqlx::Error> {
        let stale: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT s.id, s.device_id, COALESCE(GREATEST(l.time, s.started_at), s.started_at)
               FROM device_sessions s
               LEFT JOIN device_latest_metrics l ON l.device_id = s.device_id
              WHERE s.status = 'active'
                AND GREATEST(l.updated_at, s.created_at) < now() - make_interval(secs => $1)
                -- Readings committed but not yet derived (latest values lag them) count as heard.
                AND NOT EXISTS (SELECT 1 FROM derived_backlog b WHERE s.device_id = ANY (b.device_ids))",
        )
        .bind(timeout.as_secs_f64())
        .fetch_all(pool)
        .await?;
        let mut ended = Vec::new();
        for (session, device, last) in stale {
            let slot = self.slot(DeviceId(device));
            let mut cached = slot.lock().await;
            let _change = self.changes.acquire().await.expect("never closed");
            end(pool, SessionId(session), last, "interrupted").await?;
            *cached = Some(None);
            ended.push(SessionId(session));
        }
        Ok(ended)
    }
}

async fn start(
    pool: &PgPool,
    device: DeviceId,
    hospital: HospitalId,
    patient: PatientId,
    at: DateTime<Utc>,
    interval_ms: Option<i32>,
) -> Result<SessionId, sqlx::Error> {
    let id = SessionId::new();
    sqlx::query(
        "INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, status, expected_interval_ms)
         VALUES ($1, $2, $3, $4, $5, 'active', $6)",
    )
    .bind(id.as_uuid())
    .bind(hospital.as_uuid())
    .bind(device.as_uuid())
    .bind(patient.as_uuid())
    .bind(at)
    .bind(interval_ms)
    .execute(pool)
    .await?;
    tracing::info!(%device, session = %id, "treatment session started");
    Ok(id)
}

/// Ends a session and stores its summary.
pub async fn end(pool: &PgPool, session: SessionId, at: DateTime<Utc>, status: &str) -> Result<(), sqlx::Error> {
    let metrics: Vec<String> = COLUMNS
        .iter()
        .map(|(json, c)| {
            format!(
                "'{json}', CASE WHEN count({c}) > 0 THEN jsonb_build_object('min', min({c}), 'avg', round(avg({c})::numeric, 2), 'max', max({c})) END"
            )
        })
        .collect();
    let sql = format!(
        "WITH s AS (SELECT * FROM device_sessions WHERE id = $1),
              m AS (SELECT jsonb_strip_nulls(jsonb_build_object({})) AS metrics,
                           count(*) AS n, min(systolic_bp) AS nadir, max(uf_volume_ml) AS uf_ml, max(time) AS last
                      FROM health_metrics
                     -- The session's device and time: its index (device_id, time), not every
                     -- machine's readings since the start.
                     WHERE device_id = (SELECT device_id FROM s) AND time >= (SELECT started_at FROM s)
                       AND session_id = $1)
         UPDATE device_sessions d SET
             status = $3,
             ended_at = GREATEST($2, d.started_at),
             readings_received = m.n,
             readings_expected = CASE WHEN d.expected_interval_ms IS NULL THEN NULL
                 ELSE floor(extract(epoch FROM (GREATEST($2, d.started_at) - d.started_at)) * 1000 / d.expected_interval_ms)::bigint + 1 END,
             completeness_pct = CASE WHEN d.expected_interval_ms IS NULL THEN NULL
                 ELSE LEAST(100, round((m.n * 100.0 / (floor(extract(epoch FROM (GREATEST($2, d.started_at) - d.started_at)) * 1000 / d.expected_interval_ms) + 1))::numeric, 2))::float8 END,
             nadir_systolic = m.nadir,
             uf_rate_ml_kg_h = (SELECT CASE WHEN p.dry_weight_kg IS NULL OR m.uf_ml IS NULL
                                              OR GREATEST($2, d.started_at) <= d.started_at THEN NULL
                                    ELSE round((m.uf_ml / p.dry_weight_kg / (extract(epoch FROM (GREATEST($2, d.started_at) - d.started_at)) / 3600))::numeric, 2)::float8 END
                                  FROM patients p WHERE p.id = d.patient_id),
             summary = jsonb_build_object(
                 'durationSeconds', extract(epoch FROM (GREATEST($2, d.started_at) - d.started_at))::bigint,
                 'ultrafiltrationMl', m.uf_ml,
                 'lastReadingAt', m.last,
                 'metrics', m.metrics)
         FROM m
         WHERE d.id = $1 AND d.status = 'active'",
        metrics.join(", ")
    );
    let mut tx = pool.begin().await?;
    sqlx::query(&sql).bind(session.as_uuid()).bind(at).bind(status).execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE patients SET last_dialysis_at = s.ended_at, updated_at = now()
           FROM device_sessions s WHERE s.id = $1 AND s.patient_id = patients.id AND s.status = 'completed'",
    )
    .bind(session.as_uuid())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(session = %session, %status, "treatment session ended");
    Ok(())
}
