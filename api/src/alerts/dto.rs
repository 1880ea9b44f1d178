//! The alarm endpoints' request and response bodies.

use chrono::{DateTime, Utc};
use nc_domain::*;
use nc_entities::alerts;
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// An alert.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct AlertOut {
    pub id: AlertId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    /// Null in the administrative view (admins paged at tier 3).
    pub patient_id: Option<PatientId>,
    pub session_id: Option<SessionId>,
    pub kind: AlertKind,
    /// The condition, e.g. `systolic_bp_low`, `system_status_danger`, `device_offline`, `maintenance_due`.
    pub code: String,
    pub metric: Option<String>,
    pub priority: AlertPriority,
    pub state: AlertState,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// When the condition had lasted its delay (the machine's reading time).
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<UserId>,
    pub cleared_at: Option<DateTime<Utc>>,
    /// Absent with `clearedAt` set: cleared automatically when the condition ended.
    pub cleared_by: Option<UserId>,
    /// The escalation tier reached: 1 the device's care team (its doctors and technicians,
    /// hand-overs included), 2 the doctors of its ward (or hospital), 3 the hospital's admins.
    #[oai(validator(minimum(value = "1"), maximum(value = "3")))]
    pub escalation_level: i32,
    /// When it last escalated.
    pub escalated_at: Option<DateTime<Utc>>,
    /// When it escalates next unless acknowledged (null: it will not: acknowledged, snoozed,
    /// cleared, at its last tier, or a priority that does not escalate).
    pub next_escalation_at: Option<DateTime<Utc>>,
    /// Silenced until then; still present afterwards, it re-alerts.
    pub snoozed_until: Option<DateTime<Utc>>,
    pub snoozed_by: Option<UserId>,
    pub snooze_reason: Option<String>,
    /// A high-priority alert that cleared by itself before anyone acknowledged it: it stays
    /// listed (`openOnly`) until acknowledged.
    pub latched: bool,
    /// A physiological alert whose value is back inside its limit since then (not yet past
    /// the hysteresis band): it may be cleared by hand. Null while the value is outside it.
    pub in_range_since: Option<DateTime<Utc>>,
}

impl AlertOut {
    /// The administrative view (admins paged at tier 3): no patient, session, value,
    /// threshold or clinical message.
    pub fn administrative(self) -> Self {
        let message = format!(
            "A {} priority {} alarm ({}) needs a clinician",
            self.priority.as_str(),
            self.kind.as_str(),
            self.code
        );
        AlertOut {
            patient_id: None,
            session_id: None,
            value: None,
            threshold: None,
            snooze_reason: None,
            in_range_since: None,
            message,
            ..self
        }
    }
}

impl From<alerts::Model> for AlertOut {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: a.id,
            hospital_id: a.hospital_id,
            device_id: a.device_id,
            patient_id: a.patient_id,
            session_id: a.session_id,
            kind: a.kind,
            code: a.code,
            metric: a.metric,
            priority: a.priority,
            state: a.state,
            message: a.message,
            value: a.value,
            threshold: a.threshold,
            raised_at: a.raised_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            cleared_at: a.cleared_at,
            cleared_by: a.cleared_by,
            escalation_level: a.escalation_level.into(),
            escalated_at: a.escalated_at,
            next_escalation_at: a.next_escalation_at,
            snoozed_until: a.snoozed_until,
            snoozed_by: a.snoozed_by,
            snooze_reason: a.snooze_reason,
            latched: a.latched,
            in_range_since: a.in_range_since,
        }
    }
}

impl From<nc_alarms::Alert> for AlertOut {
    fn from(a: nc_alarms::Alert) -> Self {
        let (kind, priority, state) = (a.kind, a.priority, a.state);
        Self {
            id: AlertId(a.id),
            hospital_id: HospitalId(a.hospital_id),
            device_id: DeviceId(a.device_id),
            patient_id: a.patient_id.map(PatientId),
            session_id: a.session_id.map(SessionId),
            kind,
            code: a.code,
            metric: a.metric,
            priority,
            state,
            message: a.message,
            value: a.value,
            threshold: a.threshold,
            raised_at: a.raised_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by.map(UserId),
            cleared_at: a.cleared_at,
            cleared_by: a.cleared_by.map(UserId),
            escalation_level: a.escalation_level.into(),
            escalated_at: a.escalated_at,
            next_escalation_at: a.next_escalation_at,
            snoozed_until: a.snoozed_until,
            snoozed_by: a.snoozed_by.map(UserId),
            snooze_reason: a.snooze_reason,
            latched: a.latched,
            in_range_since: a.in_range_since,
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AlertPage {
    pub items: Vec<AlertOut>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// Someone an alert was sent to.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct NotifiedOut {
    pub user_id: UserId,
    pub name: Option<String>,
    pub role: Option<Role>,
    /// The tier at which they were first notified (1: the care team).
    pub tier: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// Connected then so as to see it at once (MQTT with their notifications subscribed, or
    /// the device's live stream).
    pub reachable: bool,
}

impl From<nc_alarms::Notified> for NotifiedOut {
    fn from(n: nc_alarms::Notified) -> Self {
        NotifiedOut {
            user_id: UserId(n.user_id),
            name: n.name,
            role: n.role.and_then(|r| r.parse().ok()),
            tier: n.tier.into(),
            at: n.at,
            reachable: n.reachable,
        }
    }
}

/// An alert with everyone it was sent to.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AlertDetail {
    #[oai(flatten)]
    pub alert: AlertOut,
    /// Everyone notified so far, each once (admins see only who, not their reachability).
    pub notified: Vec<NotifiedOut>,
}

/// A step in an alert's life.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum AlertEventKind {
    /// The condition had lasted its delay.
    Raised,
    /// Sent to the care team (tier 1).
    Notified,
    /// Nobody acknowledged in time, or nobody of the tier was reachable: sent to the next tier.
    Escalated,
    /// Nobody of the tier just notified was reachable.
    Unreachable,
    /// Nobody of the tier had been seen yet since the service started (apps reconnecting):
    /// decided once the start's grace is over (`unreachable`, or nothing).
    #[oai(rename = "reach_unknown")]
    ReachUnknown,
    /// A message about it reached a channel outside MQTT (`reason`: the channel and its
    /// answer, e.g. `acm: AA` from the hospital's alert manager).
    Delivered,
    /// An attempt failed and is tried again (`reason`: why, and when).
    #[oai(rename = "delivery_failed")]
    DeliveryFailed,
    /// Given up after the last attempt, or refused (`reason`: why).
    #[oai(rename = "delivery_parked")]
    DeliveryParked,
    /// What the alert manager reported of it (PCD-05: delivered to, read or accepted by a
    /// recipient; `reason`).
    Dissemination,
    /// Nobody was reachable and nobody further: sent to the hospital's unit fallback
    /// (`reason`: where).
    Fallback,
    Acknowledged,
    Snoozed,
    /// The snooze ended while the alert was present: sent again.
    Realerted,
    Cleared,
}

/// One step of an alert's history.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AlertHistoryEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub event: AlertEventKind,
    /// The tier notified, escalated to, or found unreachable.
    pub tier: Option<i32>,
    /// Who acted (acknowledged, snoozed, cleared by hand); null for the service.
    pub actor_id: Option<UserId>,
    pub actor_name: Option<String>,
    pub actor_role: Option<Role>,
    /// Who was sent the alert at this step.
    pub recipients: Vec<UserId>,
    /// Which of them were reachable then.
    pub reachable: Vec<UserId>,
    /// A snooze's reason; a clearing's cause: `condition_ended`, `treatment_ended`,
    /// `maintenance_done` or `by_hand`.
    pub reason: Option<String>,
    /// The end of a snooze.
    pub snooze_until: Option<DateTime<Utc>>,
}

impl AlertHistoryEntry {
    pub fn from_entry(e: nc_alarms::HistoryEntry) -> Option<Self> {
        let event = match e.event.as_str() {
            "raised" => AlertEventKind::Raised,
            "notified" => AlertEventKind::Notified,
            "escalated" => AlertEventKind::Escalated,
            "unreachable" => AlertEventKind::Unreachable,
            "reach_unknown" => AlertEventKind::ReachUnknown,
            "delivered" => AlertEventKind::Delivered,
            "delivery_failed" => AlertEventKind::DeliveryFailed,
            "delivery_parked" => AlertEventKind::DeliveryParked,
            "dissemination" => AlertEventKind::Dissemination,
            "fallback" => AlertEventKind::Fallback,
            "acknowledged" => AlertEventKind::Acknowledged,
            "snoozed" => AlertEventKind::Snoozed,
            "realerted" => AlertEventKind::Realerted,
            "cleared" => AlertEventKind::Cleared,
            _ => return None,
        };
        Some(AlertHistoryEntry {
            id: e.id,
            at: e.at,
            event,
            tier: e.tier.map(i32::from),
            actor_id: e.actor_id.map(UserId),
            actor_name: e.actor_name,
            actor_role: e.actor_role.and_then(|r| r.parse().ok()),
            recipients: e.recipients.into_iter().map(UserId).collect(),
            reachable: e.reachable.into_iter().map(UserId).collect(),
            reason: e.reason,
            snooze_until: e.snooze_until,
        })
    }
}

/// Silence an alert for a while.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnoozeIn {
    /// How long, in minutes (at most the service's `alarms.max_snooze_minutes`, 30 by default).
    #[oai(validator(minimum(value = "1"), maximum(value = "240")))]
    pub minutes: u32,
    /// Why (shown in the alert's history).
    #[oai(validator(min_length = 1, max_length = 500, custom = "crate::validate::NoNul"))]
    pub reason: String,
}

/// One priority's escalation rule.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalationRuleDto {
    /// Seconds an alert may stay unacknowledged at a tier before it escalates to the next
    /// (1 to 3600); null: alerts of this priority never escalate.
    #[oai(validator(minimum(value = "1"), maximum(value = "3600")))]
    pub after_seconds: Option<u32>,
    /// The tiers reached one after the other: 2 (the doctors of the device's ward, or of the
    /// hospital when it has no ward) and/or 3 (the hospital's admins), increasing; empty
    /// with `afterSeconds` null.
    #[oai(validator(max_items = 2, unique_items, minimum(value = "2"), maximum(value = "3")))]
    pub tiers: Vec<u8>,
}

impl From<&nc_alarms::EscalationRule> for EscalationRuleDto {
    fn from(r: &nc_alarms::EscalationRule) -> Self {
        EscalationRuleDto { after_seconds: r.after_seconds, tiers: r.tiers.clone() }
    }
}

/// A hospital's escalation policy, per IEC 60601-1-8 priority.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct EscalationPolicyOut {
    pub high: EscalationRuleDto,
    pub medium: EscalationRuleDto,
    pub low: EscalationRuleDto,
    /// The service's configured defaults (the hospital has not set its own).
    pub is_default: bool,
    pub updated_by: Option<UserId>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<nc_alarms::EscalationPolicy> for EscalationPolicyOut {
    fn from(p: nc_alarms::EscalationPolicy) -> Self {
        EscalationPolicyOut {
            high: (&p.high).into(),
            medium: (&p.medium).into(),
            low: (&p.low).into(),
            is_default: p.updated_at.is_none(),
            updated_by: p.updated_by,
            updated_at: p.updated_at,
        }
    }
}

/// A new escalation policy (every priority's rule).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalationPolicyIn {
    pub high: EscalationRuleDto,
    pub medium: EscalationRuleDto,
    pub low: EscalationRuleDto,
}

/// Alarm counts for one slice (a priority or a condition).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct BurdenSlice {
    /// The priority (`high`, `medium`, `low`) or the condition code.
    pub key: String,
    /// The condition's kind (`physiological` or `technical`); null for a priority.
    pub kind: Option<String>,
    pub alarms: i64,
    /// Alarms per treatment hour (null when no treatment hour lies in the range).
    pub per_treatment_hour: Option<f64>,
    /// Share (0 to 1) acknowledged by someone.
    pub acknowledged_share: Option<f64>,
    /// Share (0 to 1) that cleared by themselves within 30 s: nuisance.
    pub self_cleared_within_30s_share: Option<f64>,
}

/// Escalations to one tier.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TierEscalations {
    pub tier: i32,
    pub escalations: i64,
}

/// A machine with many alarms.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct DeviceBurden {
    pub device_id: DeviceId,
    pub serial: Option<String>,
    pub alarms: i64,
    pub treatment_hours: f64,
    pub per_treatment_hour: Option<f64>,
    pub acknowledged_share: Option<f64>,
    pub self_cleared_within_30s_share: Option<f64>,
}

/// A unit's alarm burden over `[from, to)`: alarms counted by when they were raised;
/// treatment hours are the parts of the sessions in scope inside the range.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct BurdenOut {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub treatment_hours: f64,
    pub alarms: i64,
    /// Alarms per treatment hour (null without treatment hours).
    pub alarms_per_treatment_hour: Option<f64>,
    /// Share (0 to 1) of alarms acknowledged.
    pub acknowledged_share: Option<f64>,
    /// Median seconds from raising to the first acknowledgement, over acknowledged alarms.
    pub median_seconds_to_acknowledge: Option<f64>,
    /// 90th percentile of the same.
    pub p90_seconds_to_acknowledge: Option<f64>,
    /// Share (0 to 1) of alarms that cleared by themselves within 30 s (nuisance).
    pub self_cleared_within_30s_share: Option<f64>,
    pub by_priority: Vec<BurdenSlice>,
    /// Every condition, most frequent first (the top conditions lead).
    pub by_condition: Vec<BurdenSlice>,
    /// Escalations per tier reached.
    pub escalations: Vec<TierEscalations>,
    /// The ten machines with most alarms, most first.
    pub top_devices: Vec<DeviceBurden>,
}

fn share(part: i64, of: i64) -> Option<f64> {
    (of > 0).then(|| part as f64 / of as f64)
}

fn per_hour(n: i64, hours: f64) -> Option<f64> {
    (hours > 0.0).then(|| n as f64 / hours)
}

impl BurdenOut {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, b: nc_alarms::burden::Burden) -> Self {
        let hours = b.treatment_hours;
        let slice = |s: nc_alarms::burden::Slice| BurdenSlice {
            per_treatment_hour: per_hour(s.alarms, hours),
            acknowledged_share: share(s.acknowledged, s.alarms),
            self_cleared_within_30s_share: share(s.self_cleared_30s, s.alarms),
            key: s.key,
            kind: s.label,
            alarms: s.alarms,
        };
        BurdenOut {
            from,
            to,
            treatment_hours: hours,
            alarms: b.alarms,
            alarms_per_treatment_hour: per_hour(b.alarms, hours),
            acknowledged_share: share(b.acknowledged, b.alarms),
            median_seconds_to_acknowledge: b.median_seconds_to_acknowledge,
            p90_seconds_to_acknowledge: b.p90_seconds_to_acknowledge,
            self_cleared_within_30s_share: share(b.self_cleared_30s, b.alarms),
            by_priority: b.by_priority.into_iter().map(slice).collect(),
            by_condition: b.by_condition.into_iter().map(slice).collect(),
            escalations: b
                .escalations
                .into_iter()
                .map(|(tier, escalations)| TierEscalations { tier: tier.into(), escalations })
                .collect(),
            top_devices: b
                .top_devices
                .into_iter()
                .filter_map(|d| {
                    let hours = d.hours.unwrap_or(0.0);
                    Some(DeviceBurden {
                        device_id: DeviceId(d.key.parse().ok()?),
                        serial: d.label,
                        alarms: d.alarms,
                        treatment_hours: hours,
                        per_treatment_hour: per_hour(d.alarms, hours),
                        acknowledged_share: share(d.acknowledged, d.alarms),
                        self_cleared_within_30s_share: share(d.self_cleared_30s, d.alarms),
                    })
                })
                .collect(),
        }
    }
}
