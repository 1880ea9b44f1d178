//! Alert conditions: when a reading (or the machine's connection, or its maintenance date)
//! means an alarm. Evaluation is part of ingest and uses reading timestamps, so a
//! condition's delay and its clearing follow the machine's clock (and tests control time
//! exactly). The alarm itself — storage, life cycle, escalation, notifications — is the
//! alarm system's ([`nc_alarms::Alarms`]): this module raises and clears through it.
//!
//! - Physiological rules: per metric, a hospital default with optional per-patient override
//!   (`alert_thresholds`): low/high limits, an IEC 60601-1-8 priority, a delay (the
//!   condition must persist that long, by reading time, before an alert is raised) and a
//!   hysteresis (the value must come back inside the limit by that margin to clear). While
//!   the value is back inside the limit but within the band, the alert records it
//!   (`inRangeSince`): a person may then clear it by hand.
//! - Technical rules: the machine's `systemStatus` warning/danger (no delay), the device's
//!   connection ([`technical`]: lost for longer than a delay, or unstable), maintenance due.
//! - Treatments: a physiological condition belongs to the patient being treated. When
//!   another patient's treatment starts on the machine, the previous patient's conditions
//!   end at once; when the same patient's treatment restarts (a machine reboot, a session
//!   restarted), they carry on — no duplicate alarm. A treatment that ended with nobody
//!   resuming is ended by the alarm system after a grace period
//!   ([`nc_alarms::Alarms::end_finished_treatments`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use nc_alarms::{Alarms, ClearCause, NewAlert, Subject};
use nc_domain::{AlertKind, AlertPriority, DeviceId};
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::reading::{COLUMNS, RANGES};
use crate::writer::Row;

mod rules;
mod technical;

use rules::{Rule, RuleSet, Rules};

/// How conditions that do not come from a limit are judged.
#[derive(Debug, Clone)]
pub struct ConditionSettings {
    /// A device that lost its connection abruptly is offline (`device_offline`) only if it
    /// has not come back within this delay.
    pub offline_delay: StdDuration,
    /// This many abrupt drops within `flapping_window` make the link unstable: one
    /// `device_offline` alert at once, kept open until the link has been stable for the window.
    pub flapping_drops: usize,
    pub flapping_window: StdDuration,
    /// A treatment that ended keeps its physiological alerts this long, in case the same
    /// patient's treatment resumes on the machine (see the module documentation).
    pub restart_grace: StdDuration,
}

impl Default for ConditionSettings {
    fn default() -> Self {
        ConditionSettings {
            offline_delay: StdDuration::from_secs(15),
            flapping_drops: 3,
            flapping_window: StdDuration::from_secs(120),
            restart_grace: StdDuration::from_secs(300),
        }
    }
}

/// A condition being watched on one device.
#[derive(Debug, Clone, Copy, Default)]
struct Condition {
    /// Reading time at which the breach began.
    since: Option<DateTime<Utc>>,
    /// The open alert raised for it.
    open: Option<Uuid>,
    /// The open alert's value is back inside the limit (within the hysteresis band).
    in_range: bool,
    /// The patient whose treatment the condition belongs to.
    patient: Option<Uuid>,
}

/// What a reading does to a limit condition, decided under the lock and done after it.
enum Step {
    Nothing,
    Raise,
    /// The value left the band again: the open alert (if still open) is back out of range.
    OutOfRangeAgain(Uuid),
    InRange(Uuid),
    Clear(Uuid),
}

type Key = (Uuid, Cow<'static, str>);

/// How many devices of one committed batch are evaluated at once (per writer): enough
/// that a raise's round trips overlap, few enough to leave the pool to the writers.
const DEVICES_AT_ONCE: usize = 4;

pub struct AlertEngine {
    pool: PgPool,
    alarms: Alarms,
    settings: ConditionSettings,
    /// (device, condition code) → condition. Codes the engine names itself are borrowed:
    /// no allocation per reading.
    conditions: Mutex<HashMap<Key, Condition>>,
    /// Devices whose open alerts are loaded, and when they were last evaluated: a device
    /// silent for longer than the grace period is forgotten (and reloaded if it returns).
    devices: Mutex<HashMap<Uuid, Instant>>,
    links: std::sync::Mutex<HashMap<Uuid, technical::Link>>,
    /// The alarm limits, kept while a listener hears of changes.
    rules: Arc<Rules>,
}

/// The code of a limit condition: `{column}_{low|high}`, built once per column.
fn limit_code(column: &str, side: &str) -> &'static str {
    static CODES: std::sync::OnceLock<Vec<(&'static str, [&'static str; 2])>> = std::sync::OnceLock::new();
    let codes = CODES.get_or_init(|| {
        COLUMNS
            .iter()
            .map(|(_, c)| {
                let code = |side: &str| -> &'static str { Box::leak(format!("{c}_{side}").into_boxed_str()) };
                (*c, [code("low"), code("high")])
            })
            .collect()
    });
    let i = usize::from(side != "low");
    codes.iter().find(|(c, _)| *c == column).map_or("unknown_limit", |(_, sides)| sides[i])
}

/// Whose alarm a reading raises.
fn subject(r: &Row) -> Subject {
    Subject { hospital: r.hospital_id, device: r.device_id, patient: r.patient_id, session: r.session_id }
}

fn unit_of(column: &str) -> &'static str {
    COLUMNS.iter().position(|(_, c)| *c == column).and_then(|i| RANGES.get(i)).map(|r| r.1).unwrap_or("")
}

fn label(column: &str) -> String {
    match column {
        "heart_rate" => "Heart rate".into(),
        "temperature_f" => "Temperature".into(),
        "systolic_bp" => "Systolic blood pressure".into(),
        "diastolic_bp" => "Diastolic blood pressure".into(),
        "spo2" => "SpO2".into(),
        "blood_flow_rate" => "Blood flow rate".into(),
        "dialysate_flow_rate" => "Dialysate flow rate".into(),
        "arterial_pressure" => "Arterial pressure".into(),
        "venous_pressure" => "Venous pressure".into(),
        "transmembrane_pressure" => "Transmembrane pressure".into(),
        "dialysate_conductivity" => "Dialysate conductivity".into(),
        "dialysate_temperature_c" => "Dialysate temperature".into(),
        "uf_rate_ml_h" => "Ultrafiltration rate".into(),
        other => other.replace('_', " "),
    }
}

fn technical(code: &str) -> bool {
    code.starts_with("system_status") || code == "device_offline" || code == "maintenance_due"
}

impl AlertEngine {
    pub fn new(pool: PgPool, alarms: Alarms, settings: ConditionSettings) -> Arc<AlertEngine> {
        Arc::new(AlertEngine {
            pool,
            alarms,
            settings,
            conditions: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            links: Default::default(),
            rules: Arc::default(),
        })
    }

    /// The alarm system the conditions raise alerts in.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    async fn ensure_loaded(&self, device: Uuid) -> Result<(), sqlx::Error> {
        if let Some(seen) = self.devices.lock().await.get_mut(&device) {
            *seen = Instant::now();
            return Ok(());
        }
        let open = self.alarms.open_of_device(DeviceId(device)).await?;
        let mut conditions = self.conditions.lock().await;
        for (id, code, at, patient, in_range) in open {
            conditions.insert(
                (device, Cow::Owned(code)),
                Condition { since: Some(at), open: Some(id), in_range: in_range.is_some(), patient },
            );
        }
        self.devices.lock().await.insert(device, Instant::now());
        Ok(())
    }

    /// Forgets the devices not evaluated for the grace period (memory stays bounded; their
    /// alerts are the alarm system's, and reloaded if the device returns).
    pub async fn forget_idle(&self) {
        let grace = self.settings.restart_grace;
        let mut devices = self.devices.lock().await;
        let idle: Vec<Uuid> = devices.iter().filter(|(_, seen)| seen.elapsed() > grace).map(|(d, _)| *d).collect();
        if idle.is_empty() {
            return;
        }
        for d in &idle {
            devices.remove(d);
        }
        drop(devices);
        self.conditions.lock().await.retain(|(d, code), _| !idle.contains(d) || technical(code));
    }

    /// Keeps the alarm limits in memory while it hears of every change (see [`rules`]),
    /// until `stop`.
    pub fn listen_for_limit_changes(&self, stop: CancellationToken) {
        tokio::spawn(self.rules.clone().listen(self.pool.clone(), stop));
    }

    /// Evaluates committed readings, in reading-time order per device.
    pub async fn evaluate(&self, rows: &[Row]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let rules = self.rules.of(&self.pool, rows).await?;
        let mut sorted: Vec<&Row> = rows.iter().collect();
        sorted.sort_by_key(|r| (r.device_id, r.time, r.seq));
        // Devices are independent: one device's raise (a transaction and a publish) does
        // not hold up another's in the same batch. A device's own readings stay in order.
        let devices = sorted.chunk_by(|a, b| a.device_id == b.device_id);
        futures_util::stream::iter(devices.map(Ok))
            .try_for_each_concurrent(DEVICES_AT_ONCE, |readings| {
                let rules = &rules;
                async move {
                    for r in readings {
                        self.evaluate_one(r, rules.get(&(r.hospital_id, r.patient_id))).await?;
                    }
                    Ok(())
                }
            })
            .await
    }

    async fn evaluate_one(&self, r: &Row, rules: Option<&RuleSet>) -> Result<(), sqlx::Error> {
        self.ensure_loaded(r.device_id).await?;
        if let Some(rules) = rules {
            let values = r.values();
            for (i, (_, column)) in COLUMNS.iter().enumerate() {
                let (Some(rule), Some(v)) = (rules.get(*column), values[i]) else { continue };
                self.check_limit(r, column, *rule, v).await?;
            }
        }
        // The machine's own status: technical alerts, no delay.
        let (warning, danger) = match r.system_status {
            "danger" => (false, true),
            "warning" => (true, false),
            _ => (false, false),
        };
        self.transition(r, "system_status_warning", warning, AlertPriority::Medium, "The machine reports a warning")
            .await?;
        self.transition(
            r,
            "system_status_danger",
            danger,
            AlertPriority::High,
            "The machine reports a dangerous condition",
        )
        .await
    }

    async fn check_limit(&self, r: &Row, column: &str, rule: Rule, v: f64) -> Result<(), sqlx::Error> {
        let unit = unit_of(column);
        for (side, limit) in [("low", rule.low), ("high", rule.high)] {
            let Some(limit) = limit else { continue };
            let breach = if side == "low" { v < limit } else { v > limit };
            let recovered = if side == "low" { v >= limit + rule.hysteresis } else { v <= limit - rule.hysteresis };
            let code = limit_code(column, side);
            let key: Key = (r.device_id, Cow::Borrowed(code));
            let step = {
                let mut conditions = self.conditions.lock().await;
                let c = conditions.entry(key.clone()).or_default();
                if breach {
                    match (c.open, c.in_range) {
                        (Some(id), true) => {
                            c.in_range = false;
                            Step::OutOfRangeAgain(id)
                        }
                        _ => {
                            c.patient = r.patient_id;
                            let since = *c.since.get_or_insert(r.time);
                            if c.open.is_none() && r.time - since >= rule.delay {
                                Step::Raise
                            } else {
                                Step::Nothing
                            }
                        }
                    }
                } else if recovered || c.open.is_none() {
                    // Inside the limits (past the hysteresis band if an alert is open): the
                    // condition ends.
                    let open = c.open.take();
                    *c = Condition::default();
                    open.map_or(Step::Nothing, Step::Clear)
                } else if !c.in_range {
                    c.in_range = true;
                    c.open.map_or(Step::Nothing, Step::InRange)
                } else {
                    Step::Nothing
                }
            };
            match step {
                Step::Nothing => {}
                Step::OutOfRangeAgain(id) => {
                    if self.alarms.is_open(id).await? {
                        self.alarms.value_in_range(id, None).await?;
                    } else {
                        // Cleared by a person while in range: this is a new episode, with its delay.
                        let mut conditions = self.conditions.lock().await;
                        let c = conditions.entry(key).or_default();
                        *c = Condition { since: Some(r.time), open: None, in_range: false, patient: r.patient_id };
                        if rule.delay <= Duration::zero() {
                            drop(conditions);
                            self.raise_limit(r, column, side, limit, v, unit, rule).await?;
                        }
                    }
                }
                Step::InRange(id) => self.alarms.value_in_range(id, Some(r.time)).await?,
                Step::Clear(id) => self.alarms.clear_auto(id, r.time, ClearCause::ConditionEnded).await?,
                Step::Raise => self.raise_limit(r, column, side, limit, v, unit, rule).await?,
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn raise_limit(
        &self,
        r: &Row,
        column: &str,
        side: &str,
        limit: f64,
        v: f64,
        unit: &str,
        rule: Rule,
    ) -> Result<(), sqlx::Error> {
        let code = limit_code(column, side);
        let message = format!(
            "{} {v} {unit} is {} the {side} limit {limit} {unit}",
            label(column),
            if side == "low" { "below" } else { "above" }
        );
        let id = self
            .alarms
            .raise(NewAlert {
                on: subject(r),
                code,
                kind: AlertKind::Physiological,
                metric: Some(column),
                priority: rule.priority,
                message,
                value: Some(v),
                threshold: Some(limit),
                // Raised when the delay has run out (the breach began at `since`).
                at: r.time,
            })
            .await?;
        self.conditions.lock().await.entry((r.device_id, Cow::Borrowed(code))).or_default().open = id;
        Ok(())
    }

    /// Raises or clears a condition that needs no delay.
    async fn transition(
        &self,
        r: &Row,
        code: &'static str,
        on: bool,
        priority: AlertPriority,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        let key = (r.device_id, Cow::Borrowed(code));
        let open = self.conditions.lock().await.get(&key).and_then(|c| c.open);
        match (on, open) {
            (true, None) => {
                let alert = NewAlert::technical(subject(r), code, priority, message.to_owned(), r.time);
                let id = self.alarms.raise(alert).await?;
                self.conditions
                    .lock()
                    .await
                    .insert(key, Condition { since: Some(r.time), open: id, ..Default::default() });
            }
            (false, Some(id)) => {
                self.conditions.lock().await.insert(key, Condition::default());
                self.alarms.clear_auto(id, r.time, ClearCause::ConditionEnded).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A treatment of `patient` started on `device` at `at`. Physiological conditions of
    /// another patient (or of none) end now; the same patient's carry on (a restarted
    /// session raises no duplicate alarm).
    pub async fn treatment_started(&self, device: Uuid, patient: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        self.ensure_loaded(device).await?;
        let mut open = Vec::new();
        self.conditions.lock().await.retain(|(d, code), c| {
            if *d != device || technical(code) || c.patient == Some(patient) {
                return true;
            }
            open.extend(c.open);
            false
        });
        for id in open {
            self.alarms.clear_auto(id, at, ClearCause::TreatmentEnded).await?;
        }
        Ok(())
    }
}
