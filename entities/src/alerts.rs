//! `alerts`: physiological and technical alerts raised by the alert engine, and their
//! life cycle (active, acknowledged, cleared). At most one open alert per device and code.

use nc_domain::{AlertId, AlertKind, AlertPriority, AlertState, DeviceId, HospitalId, PatientId, SessionId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AlertId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub patient_id: Option<PatientId>,
    pub session_id: Option<SessionId>,
    pub kind: AlertKind,
    /// The condition, e.g. `systolic_bp_low`, `system_status_danger`, `device_offline`.
    pub code: String,
    /// The metric concerned, for physiological alerts.
    pub metric: Option<String>,
    pub priority: AlertPriority,
    pub state: AlertState,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub raised_at: DateTimeUtc,
    /// Set together with `acknowledged_by`.
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<UserId>,
    /// Set exactly when `state` is `cleared`.
    pub cleared_at: Option<DateTimeUtc>,
    /// `None` with `cleared_at` set: cleared automatically when the condition cleared.
    pub cleared_by: Option<UserId>,
    /// When the alert last escalated (reached `escalation_level`).
    pub escalated_at: Option<DateTimeUtc>,
    /// The escalation tier reached: 1 (the device's care team) to 3 (the hospital's admins).
    pub escalation_level: i16,
    /// When the next escalation step is due; `None` when none is (acknowledged, snoozed,
    /// cleared, the last tier reached, or a priority that does not escalate).
    pub next_escalation_at: Option<DateTimeUtc>,
    /// Silenced until then (no re-notification, no escalation); re-alerts after it if open.
    pub snoozed_until: Option<DateTimeUtc>,
    pub snoozed_by: Option<UserId>,
    pub snooze_reason: Option<String>,
    /// A high-priority alert that cleared by itself before anyone acknowledged it: shown
    /// until acknowledged.
    pub latched: bool,
    /// A physiological alert's value is back inside its limit since then (not yet past the
    /// hysteresis band): it may be cleared by hand.
    pub in_range_since: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
