//! What the alarm system stores and publishes: the alert, its changes as pushed to the
//! device's and the patient's `alerts` topics and the live streams ([`AlertEvent`]), the
//! notification a person gets ([`AlertNote`]) and the history of an alert ([`HistoryEntry`]).
//! The payload types derive `JsonSchema`, so the AsyncAPI document describes exactly what
//! is published.

use chrono::{DateTime, Utc};
use nc_domain::{AlertKind, AlertPriority, AlertState};
use nc_messaging::payload::{kind, V1};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An alert as stored and as published (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: Uuid,
    pub hospital_id: Uuid,
    pub device_id: Uuid,
    /// The patient whose treatment it belongs to (null in the administrative view admins get).
    pub patient_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub kind: AlertKind,
    /// The condition, e.g. `systolic_bp_low`, `system_status_danger`, `device_offline`.
    pub code: String,
    pub metric: Option<String>,
    /// IEC 60601-1-8.
    pub priority: AlertPriority,
    pub state: AlertState,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// When the condition had lasted its delay (reading time).
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Uuid>,
    pub cleared_at: Option<DateTime<Utc>>,
    /// Null with `clearedAt` set: cleared by the service (the condition ended).
    pub cleared_by: Option<Uuid>,
    /// The escalation tier reached: 1 the device's care team, 2 the doctors of its ward (or
    /// hospital), 3 the hospital's admins.
    #[schemars(range(min = 1, max = 3))]
    pub escalation_level: i16,
    /// When it last escalated.
    pub escalated_at: Option<DateTime<Utc>>,
    /// When it escalates next if nobody acknowledges it (null: it will not).
    pub next_escalation_at: Option<DateTime<Utc>>,
    /// Silenced until then; if still present afterwards it re-alerts.
    pub snoozed_until: Option<DateTime<Utc>>,
    pub snoozed_by: Option<Uuid>,
    pub snooze_reason: Option<String>,
    /// A high-priority alert that cleared by itself before anyone acknowledged it: it stays
    /// shown (latched) until someone acknowledges it.
    pub latched: bool,
    /// A physiological alert whose value is back inside its limit (but not yet past the
    /// hysteresis band) since then: it may be cleared by hand.
    pub in_range_since: Option<DateTime<Utc>>,
}

/// A stored alert: its text columns (kind, priority, state; CHECK-constrained) read into
/// their types, so a value the schema does not know is an error, not a string passed on.
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Alert {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        fn text<T: std::str::FromStr<Err = nc_domain::UnknownVariant>>(
            row: &sqlx::postgres::PgRow,
            column: &str,
        ) -> Result<T, sqlx::Error> {
            let s: String = row.try_get(column)?;
            s.parse().map_err(|e: nc_domain::UnknownVariant| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: e.to_string().into(),
            })
        }
        Ok(Alert {
            id: row.try_get("id")?,
            hospital_id: row.try_get("hospital_id")?,
            device_id: row.try_get("device_id")?,
            patient_id: row.try_get("patient_id")?,
            session_id: row.try_get("session_id")?,
            kind: text(row, "kind")?,
            code: row.try_get("code")?,
            metric: row.try_get("metric")?,
            priority: text(row, "priority")?,
            state: text(row, "state")?,
            message: row.try_get("message")?,
            value: row.try_get("value")?,
            threshold: row.try_get("threshold")?,
            raised_at: row.try_get("raised_at")?,
            acknowledged_at: row.try_get("acknowledged_at")?,
            acknowledged_by: row.try_get("acknowledged_by")?,
            cleared_at: row.try_get("cleared_at")?,
            cleared_by: row.try_get("cleared_by")?,
            escalation_level: row.try_get("escalation_level")?,
            escalated_at: row.try_get("escalated_at")?,
            next_escalation_at: row.try_get("next_escalation_at")?,
            snoozed_until: row.try_get("snoozed_until")?,
            snoozed_by: row.try_get("snoozed_by")?,
            snooze_reason: row.try_get("snooze_reason")?,
            latched: row.try_get("latched")?,
            in_range_since: row.try_get("in_range_since")?,
        })
    }
}

/// The longest a change of an alert stays news: a phone away longer learns the alarm's
/// state from its open alarms (sent when it subscribes) instead.
pub const NEWS_FOR: chrono::Duration = chrono::Duration::minutes(15);
/// The least: what a phone connected now needs to be told it, even when the next step is
/// due at once (an unreachable tier escalates without waiting).
pub const NEWS_AT_LEAST: chrono::Duration = chrono::Duration::seconds(5);

impl Alert {
    /// Until when a change published `now` is news: until its next step (an escalation or
    /// re-alert, news of its own, or the end of a snooze), within [`NEWS_AT_LEAST`] and
    /// [`NEWS_FOR`].
    pub fn relevant_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let next = [self.next_escalation_at, self.snoozed_until].into_iter().flatten().min();
        next.unwrap_or(now + NEWS_FOR).clamp(now + NEWS_AT_LEAST, now + NEWS_FOR)
    }
}

/// Every column of [`Alert`], for `SELECT` and `RETURNING`.
pub(crate) const ALERT_COLUMNS: &str =
    "id, hospital_id, device_id, patient_id, session_id, kind, code, metric, priority, state, message, \
     value, threshold, raised_at, acknowledged_at, acknowledged_by, cleared_at, cleared_by, escalation_level, \
     escalated_at, next_escalation_at, snoozed_until, snoozed_by, snooze_reason, latched, in_range_since";

impl Alert {
    /// The view of an admin paged at tier 3: the device, the condition, its priority and
    /// state; no patient, session, value, threshold or clinical message.
    pub fn administrative(&self) -> Alert {
        Alert {
            patient_id: None,
            session_id: None,
            value: None,
            threshold: None,
            snooze_reason: None,
            in_range_since: None,
            message: format!("A {} priority {} alarm ({}) needs a clinician", self.priority, self.kind, self.code),
            ..self.clone()
        }
    }

    pub fn level(&self) -> u8 {
        self.escalation_level.clamp(1, 3) as u8
    }

    pub fn is_physiological(&self) -> bool {
        self.kind == AlertKind::Physiological
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertChange {
    Raised,
    /// Nobody acknowledged it in time (or nobody of the tier was reachable): it reached the
    /// next tier (`tier`).
    Escalated,
    Acknowledged,
    /// Silenced for a while by a person (see `snoozedUntil`).
    Snoozed,
    /// The snooze ended while the alert was still present: it needs an answer again.
    Realerted,
    Cleared,
    /// Not a change: the alert was already open and unanswered when the person subscribed
    /// to their notifications (sent to them only, on subscribing or resuming their session;
    /// not in the history).
    Present,
}

impl AlertChange {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AlertChange::Raised => "raised",
            AlertChange::Escalated => "escalated",
            AlertChange::Acknowledged => "acknowledged",
            AlertChange::Snoozed => "snoozed",
            AlertChange::Realerted => "realerted",
            AlertChange::Cleared => "cleared",
            AlertChange::Present => "present",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<AlertChange> {
        [
            AlertChange::Raised,
            AlertChange::Escalated,
            AlertChange::Acknowledged,
            AlertChange::Snoozed,
            AlertChange::Realerted,
            AlertChange::Cleared,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A change of an alert, as pushed to subscribers (`…/d/{device}/alerts`,
/// `…/p/{patient}/alerts`, the live streams).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    pub v: V1,
    pub event: AlertChange,
    pub alert: Alert,
    /// Until when this change is news ([`Alert::relevant_until`]); MQTT 5 subscribers get it
    /// as the Message Expiry Interval and never after it (topics.md, "Message expiry").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A change of an alert, to a person it concerns (`…/u/{user}/notifications`): the care team
/// of the device, and from tier 2 on everyone the alert has escalated to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AlertNote {
    pub v: V1,
    pub r#type: kind::Alert,
    pub event: AlertChange,
    /// The tier the alert reached (`escalated`), or whose people are alerted again
    /// (`realerted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3))]
    pub tier: Option<u8>,
    /// The alert, as on the device's alerts topic (admins get the administrative view: no
    /// patient, values or clinical message).
    pub alert: Alert,
    /// Until when this notification is news ([`Alert::relevant_until`]): a phone away longer
    /// is not told it (MQTT 5: Message Expiry Interval; topics.md, "Message expiry").
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// One step in an alert's life, as stored in `alert_events`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `raised`, `notified`, `escalated`, `unreachable`, `acknowledged`, `snoozed`,
    /// `realerted` or `cleared`.
    pub event: String,
    pub tier: Option<i16>,
    pub actor_id: Option<Uuid>,
    pub actor_name: Option<String>,
    pub actor_role: Option<String>,
    pub recipients: Vec<Uuid>,
    pub reachable: Vec<Uuid>,
    pub reason: Option<String>,
    pub snooze_until: Option<DateTime<Utc>>,
}

/// A person an alert was sent to: at which tier first, when, and whether they were
/// reachable then.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Notified {
    pub user_id: Uuid,
    pub name: Option<String>,
    pub role: Option<String>,
    pub tier: i16,
    pub at: DateTime<Utc>,
    pub reachable: bool,
}
