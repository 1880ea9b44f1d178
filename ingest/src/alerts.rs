//! The alert engine. Evaluation is part of ingest and uses reading timestamps, so a
//! condition's delay and its clearing follow the machine's clock (and tests control time
//! exactly).
//!
//! - Physiological rules: per metric, a hospital default with optional per-patient override
//!   (`alert_thresholds`): low/high limits, an IEC 60601-1-8 priority, a delay (the
//!   condition must persist that long, by reading time, before an alert is raised) and a
//!   hysteresis (the value must come back inside the limit by that margin to clear).
//! - Technical rules: the machine's `systemStatus` warning/danger, the device going offline
//!   abruptly, maintenance due.
//! - A condition that persists raises one alert (the database also enforces one open alert
//!   per device and condition). Lifecycle: active → acknowledged (who, when) → cleared
//!   (automatically when the condition clears, or by a person).
//! - Every change is stored, published on the device's MQTT `alerts` topic and on the
//!   notification topics of the device's doctors and technicians, and broadcast to the live
//!   streams.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Utc};
use nc_broker::payload::{kind, V1};
use nc_broker::topic::Topic;
use nc_broker::Publisher;
use nc_domain::{AlertId, DeviceId, HospitalId, UserId};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::{broadcast, Mutex};
use uuid::Uuid;

use crate::reading::{COLUMNS, RANGES};
use crate::writer::Row;

mod technical;

/// An alert as stored and as published (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: Uuid,
    pub hospital_id: Uuid,
    pub device_id: Uuid,
    pub patient_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    /// `physiological` or `technical`.
    #[schemars(with = "nc_domain::AlertKind")]
    pub kind: String,
    /// The condition, e.g. `systolic_bp_low`, `system_status_danger`, `device_offline`.
    pub code: String,
    pub metric: Option<String>,
    /// `high`, `medium` or `low` (IEC 60601-1-8).
    #[schemars(with = "nc_domain::AlertPriority")]
    pub priority: String,
    /// `active`, `acknowledged` or `cleared`.
    #[schemars(with = "nc_domain::AlertState")]
    pub state: String,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Uuid>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub cleared_by: Option<Uuid>,
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertChange {
    Raised,
    Acknowledged,
    Cleared,
}

/// A change of an alert, as pushed to subscribers (`…/d/{device}/alerts`,
/// `…/p/{patient}/alerts`, the live streams).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    pub v: V1,
    pub event: AlertChange,
    pub alert: Alert,
}

/// A change of an alert of one of the person's devices (`…/u/{user}/notifications`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AlertNote {
    pub v: V1,
    pub r#type: kind::Alert,
    pub event: AlertChange,
    /// The alert, as on the device's alerts topic.
    pub alert: Alert,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    low: Option<f64>,
    high: Option<f64>,
    priority: &'static str,
    delay: Duration,
    hysteresis: f64,
}

/// A condition being watched on one device.
#[derive(Debug, Clone, Copy, Default)]
struct Condition {
    /// Reading time at which the breach began.
    since: Option<DateTime<Utc>>,
    open: Option<Uuid>,
}

const ALERT_COLUMNS: &str =
    "id, hospital_id, device_id, patient_id, session_id, kind, code, metric, priority, state, message, \
     value, threshold, raised_at, acknowledged_at, acknowledged_by, cleared_at, cleared_by";

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert not found")]
    NotFound,
    #[error("the alert is already cleared")]
    AlreadyCleared,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

pub struct AlertEngine {
    pool: PgPool,
    /// (device, code) → condition. Loaded from open alerts the first time a device is seen.
    /// By device and condition code (codes the engine names itself are borrowed: no
    /// allocation per reading).
    conditions: Mutex<HashMap<(Uuid, Cow<'static, str>), Condition>>,
    loaded: Mutex<std::collections::HashSet<Uuid>>,
    events: broadcast::Sender<AlertEvent>,
    publisher: OnceLock<Publisher>,
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

fn priority(p: &str) -> &'static str {
    match p {
        "high" => "high",
        "low" => "low",
        _ => "medium",
    }
}

impl AlertEngine {
    pub fn new(pool: PgPool) -> Arc<AlertEngine> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(AlertEngine {
            pool,
            conditions: Mutex::new(HashMap::new()),
            loaded: Mutex::new(Default::default()),
            events,
            publisher: OnceLock::new(),
        })
    }

    /// Where alert changes are published on MQTT (set once the broker runs).
    pub fn set_publisher(&self, publisher: Publisher) {
        let _ = self.publisher.set(publisher);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }

    async fn ensure_loaded(&self, device: Uuid) -> Result<(), sqlx::Error> {
        if self.loaded.lock().await.contains(&device) {
            return Ok(());
        }
        let open: Vec<(Uuid, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT id, code, raised_at FROM alerts WHERE device_id = $1 AND state <> 'cleared'")
                .bind(device)
                .fetch_all(&self.pool)
                .await?;
        let mut conditions = self.conditions.lock().await;
        for (id, code, at) in open {
            conditions.insert((device, Cow::Owned(code)), Condition { since: Some(at), open: Some(id) });
        }
        self.loaded.lock().await.insert(device);
        Ok(())
    }

    /// Effective rules: hospital defaults, overridden per metric by the patient's own.
    async fn rules(&self, rows: &[Row]) -> Result<HashMap<(Uuid, Option<Uuid>), HashMap<String, Rule>>, sqlx::Error> {
        let hospitals: Vec<Uuid> =
            rows.iter().map(|r| r.hospital_id).collect::<std::collections::HashSet<_>>().into_iter().collect();
        let patients: Vec<Uuid> =
            rows.iter().filter_map(|r| r.patient_id).collect::<std::collections::HashSet<_>>().into_iter().collect();
        /// hospital, patient, metric, low, high, priority, delay (s), hysteresis
        type ThresholdRow = (Uuid, Option<Uuid>, String, Option<f64>, Option<f64>, String, i32, f64);
        let found: Vec<ThresholdRow> = sqlx::query_as(
            "SELECT hospital_id, patient_id, metric, low, high, priority, delay_seconds, hysteresis FROM alert_thresholds
              WHERE enabled AND ((patient_id IS NULL AND hospital_id = ANY($1)) OR patient_id = ANY($2))",
        )
        .bind(&hospitals)
        .bind(&patients)
        .fetch_all(&self.pool)
        .await?;
        let mut defaults: HashMap<Uuid, HashMap<String, Rule>> = HashMap::new();
        let mut overrides: HashMap<Uuid, HashMap<String, Rule>> = HashMap::new();
        for (h, p, metric, low, high, prio, delay, hysteresis) in found {
            let rule =
                Rule { low, high, priority: priority(&prio), delay: Duration::seconds(delay as i64), hysteresis };
            match p {
                None => defaults.entry(h).or_default().insert(metric, rule),
                Some(p) => overrides.entry(p).or_default().insert(metric, rule),
            };
        }
        let mut out = HashMap::new();
        for r in rows {
            out.entry((r.hospital_id, r.patient_id)).or_insert_with(|| {
                let mut rules = defaults.get(&r.hospital_id).cloned().unwrap_or_default();
                if let Some(o) = r.patient_id.and_then(|p| overrides.get(&p)) {
                    rules.extend(o.iter().map(|(k, v)| (k.clone(), *v)));
                }
                rules
            });
        }
        Ok(out)
    }

    /// Evaluates committed readings, in reading-time order per device.
    pub async fn evaluate(&self, rows: &[Row]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let rules = self.rules(rows).await?;
        let mut sorted: Vec<&Row> = rows.iter().collect();
        sorted.sort_by_key(|r| (r.device_id, r.time, r.seq));
        for r in sorted {
            self.ensure_loaded(r.device_id).await?;
            if let Some(rules) = rules.get(&(r.hospital_id, r.patient_id)) {
                for (i, (_, column)) in COLUMNS.iter().enumerate() {
                    let (Some(rule), Some(v)) = (rules.get(*column), r.values[i]) else { continue };
                    self.check_limit(r, column, *rule, v).await?;
                }
            }
            // The machine's own status: technical alerts, no delay.
            let (warning, danger) = match r.system_status {
                "danger" => (false, true),
                "warning" => (true, false),
                _ => (false, false),
            };
            self.transition(r, "system_status_warning", warning, r.time, || {
                ("technical", None, "medium", "The machine reports a warning".into(), None, None)
            })
            .await?;
            self.transition(r, "system_status_danger", danger, r.time, || {
                ("technical", None, "high", "The machine reports a dangerous condition".into(), None, None)
            })
            .await?;
        }
        Ok(())
    }

    async fn check_limit(&self, r: &Row, column: &str, rule: Rule, v: f64) -> Result<(), sqlx::Error> {
        let unit = unit_of(column);
        for (side, limit) in [("low", rule.low), ("high", rule.high)] {
            let Some(limit) = limit else { continue };
            let breach = if side == "low" { v < limit } else { v > limit };
            let recovered = if side == "low" { v >= limit + rule.hysteresis } else { v <= limit - rule.hysteresis };
            let code = limit_code(column, side);
            let key = (r.device_id, Cow::Borrowed(code));
            let mut conditions = self.conditions.lock().await;
            let c = conditions.entry(key.clone()).or_default();
            if breach {
                let since = *c.since.get_or_insert(r.time);
                if c.open.is_none() && r.time - since >= rule.delay {
                    drop(conditions);
                    let message = format!(
                        "{} {v} {unit} is {} the {side} limit {limit} {unit}",
                        label(column),
                        if side == "low" { "below" } else { "above" }
                    );
                    let id = self
                        .raise(
                            r,
                            code,
                            "physiological",
                            Some(column),
                            rule.priority,
                            message,
                            Some(v),
                            Some(limit),
                            // Raised when the delay has run out (the breach began at `since`).
                            r.time,
                        )
                        .await?;
                    self.conditions.lock().await.entry(key).or_default().open = id;
                }
            } else if recovered || c.open.is_none() {
                // Inside the limits (past the hysteresis band if an alert is open): the condition ends.
                let open = c.open.take();
                c.since = None;
                drop(conditions);
                if let Some(id) = open {
                    self.clear_quietly(id, r.time).await?;
                }
            }
        }
        Ok(())
    }

    /// Raises or clears a condition that needs no delay.
    async fn transition<F>(
        &self,
        r: &Row,
        code: &'static str,
        on: bool,
        at: DateTime<Utc>,
        describe: F,
    ) -> Result<(), sqlx::Error>
    where
        F: FnOnce() -> (&'static str, Option<&'static str>, &'static str, String, Option<f64>, Option<f64>),
    {
        let key = (r.device_id, Cow::Borrowed(code));
        let open = {
            let conditions = self.conditions.lock().await;
            conditions.get(&key).and_then(|c| c.open)
        };
        match (on, open) {
            (true, None) => {
                let (kind, metric, prio, message, value, threshold) = describe();
                let id = self.raise(r, code, kind, metric, prio, message, value, threshold, at).await?;
                self.conditions.lock().await.insert(key, Condition { since: Some(at), open: id });
            }
            (false, Some(id)) => {
                self.conditions.lock().await.insert(key, Condition::default());
                self.clear_quietly(id, at).await?;
            }
            _ => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn raise(
        &self,
        r: &Row,
        code: &str,
        kind: &str,
        metric: Option<&str>,
        prio: &str,
        message: String,
        value: Option<f64>,
        threshold: Option<f64>,
        at: DateTime<Utc>,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        self.raise_for(
            r.hospital_id,
            r.device_id,
            r.patient_id,
            r.session_id,
            code,
            kind,
            metric,
            prio,
            message,
            value,
            threshold,
            at,
        )
        .await
    }

    /// Stores a new open alert (one per device and condition) and announces it.
    #[allow(clippy::too_many_arguments)]
    pub async fn raise_for(
        &self,
        hospital: Uuid,
        device: Uuid,
        patient: Option<Uuid>,
        session: Option<Uuid>,
        code: &str,
        kind: &str,
        metric: Option<&str>,
        prio: &str,
        message: String,
        value: Option<f64>,
        threshold: Option<f64>,
        at: DateTime<Utc>,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        let inserted: Option<Alert> = sqlx::query_as(&format!(
            "INSERT INTO alerts (id, hospital_id, device_id, patient_id, session_id, kind, code, metric, priority, state, message, value, threshold, raised_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $12, $13)
             ON CONFLICT (device_id, code) WHERE state <> 'cleared' DO NOTHING
             RETURNING {ALERT_COLUMNS}"
        ))
        .bind(AlertId::new().as_uuid())
        .bind(hospital)
        .bind(device)
        .bind(patient)
        .bind(session)
        .bind(kind)
        .bind(code)
        .bind(metric)
        .bind(prio)
        .bind(&message)
        .bind(value)
        .bind(threshold)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        match inserted {
            Some(alert) => {
                let id = alert.id;
                tracing::info!(device = %device, code, "alert raised");
                self.announce(AlertChange::Raised, alert).await;
                Ok(Some(id))
            }
            // Already open (raised by another instance, or before a restart).
            None => {
                sqlx::query_scalar("SELECT id FROM alerts WHERE device_id = $1 AND code = $2 AND state <> 'cleared'")
                    .bind(device)
                    .bind(code)
                    .fetch_optional(&self.pool)
                    .await
            }
        }
    }

    /// Clears an open alert: automatically (`by` = None) or by a person.
    pub async fn clear(&self, id: Uuid, by: Option<UserId>, at: DateTime<Utc>) -> Result<Alert, AlertError> {
        let cleared: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET state = 'cleared', cleared_at = GREATEST($2, raised_at), cleared_by = $3
              WHERE id = $1 AND state <> 'cleared' RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(at)
        .bind(by.map(|u| u.as_uuid()))
        .fetch_optional(&self.pool)
        .await?;
        let Some(alert) = cleared else {
            return Err(self.missing_or_cleared(id).await);
        };
        let mut conditions = self.conditions.lock().await;
        if let Some(c) = conditions.get_mut(&(alert.device_id, Cow::Owned(alert.code.clone()))) {
            if c.open == Some(id) {
                *c = Condition::default();
            }
        }
        drop(conditions);
        self.announce(AlertChange::Cleared, alert.clone()).await;
        Ok(alert)
    }

    /// Clears automatically; an alert already cleared (by a person) is fine.
    /// A treatment on `device` ended (or the machine moved on to the next patient): its
    /// physiological conditions belong to that patient and end with the treatment. Open
    /// ones are cleared (by nobody, at `at`) and no breach delay carries over to the next
    /// patient. Technical conditions (machine status, offline, maintenance) stay.
    pub async fn treatment_ended(&self, device: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        self.ensure_loaded(device).await?;
        let technical =
            |code: &str| code.starts_with("system_status") || code == "device_offline" || code == "maintenance_due";
        let mut open = Vec::new();
        self.conditions.lock().await.retain(|(d, code), c| {
            if *d != device || technical(code) {
                return true;
            }
            open.extend(c.open);
            false
        });
        for id in open {
            self.clear_quietly(id, at).await?;
        }
        Ok(())
    }

    async fn clear_quietly(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        match self.clear(id, None, at).await {
            Err(AlertError::Db(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Acknowledges an active alert (it stays open until its condition clears).
    pub async fn acknowledge(&self, id: Uuid, by: UserId) -> Result<Alert, AlertError> {
        let acked: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $2
              WHERE id = $1 AND state = 'active' RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(by.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        match acked {
            Some(alert) => {
                self.announce(AlertChange::Acknowledged, alert.clone()).await;
                Ok(alert)
            }
            None => {
                // Acknowledging twice is harmless; a cleared alert cannot be acknowledged.
                let current = self.get(id).await?.ok_or(AlertError::NotFound)?;
                if current.state == "cleared" {
                    Err(AlertError::AlreadyCleared)
                } else {
                    Ok(current)
                }
            }
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Alert>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    async fn missing_or_cleared(&self, id: Uuid) -> AlertError {
        match self.get(id).await {
            Ok(Some(_)) => AlertError::AlreadyCleared,
            Ok(None) => AlertError::NotFound,
            Err(e) => AlertError::Db(e),
        }
    }

    /// Stores nothing: publishes the change on MQTT and to the live streams.
    async fn announce(&self, event: AlertChange, alert: Alert) {
        let body = AlertEvent { v: V1, event, alert };
        if let Some(publisher) = self.publisher.get() {
            let json = nc_broker::payload::to_json(&body);
            let (hospital, device) = (HospitalId(body.alert.hospital_id), DeviceId(body.alert.device_id));
            let topic = Topic::Device { hospital, device, channel: nc_broker::topic::DeviceChannel::Alerts };
            if let Err(e) = publisher.publish_json(&topic, &json).await {
                tracing::warn!(error = %e, "could not publish an alert");
            }
            // The patient's own copy (topics.md: a patient receives their own treatment only).
            if let Some(patient) = body.alert.patient_id {
                let channel = nc_broker::topic::PatientChannel::Alerts;
                let topic = Topic::Patient { hospital, patient: nc_domain::PatientId(patient), channel };
                if let Err(e) = publisher.publish_json(&topic, &json).await {
                    tracing::warn!(error = %e, "could not publish an alert to its patient");
                }
            }
            match self.recipients(device).await {
                Ok(users) => {
                    let note = AlertNote { v: V1, r#type: kind::Alert, event, alert: body.alert.clone() };
                    let note = nc_broker::payload::to_json(&note);
                    for user in users {
                        let topic = Topic::Notifications { hospital, user };
                        if let Err(e) = publisher.publish_json(&topic, &note).await {
                            tracing::warn!(error = %e, "could not publish an alert notification");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not find whom to notify of an alert"),
            }
        }
        let _ = self.events.send(body);
    }

    /// The device's doctors and technicians now (assignments and active hand-overs).
    async fn recipients(&self, device: DeviceId) -> Result<Vec<UserId>, sqlx::Error> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM device_assignments WHERE device_id = $1 AND ended_at IS NULL
             UNION SELECT granted_to FROM temporary_access_grants WHERE device_id = $1 AND revoked_at IS NULL AND expires_at > now()",
        )
        .bind(device.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }
}
