//! An alert's life: raised (one open alert per device and condition: the database's
//! `alerts_open_condition_key`), notified to the device's care team, acknowledged (stops
//! escalation; the condition keeps being tracked), snoozed for a bounded time (no
//! notification, no escalation; re-alerts if still present afterwards, see
//! [`crate::escalation`]), cleared: by the service when the condition ends, or by a person
//! for a technical alarm or a physiological one whose value is back in range. A
//! high-priority alert that clears by itself before anyone acknowledged it is *latched*: it
//! stays shown until acknowledged.
//!
//! Each step is stored with its event row in one transaction, then published
//! ([`crate::fanout`]).

use chrono::{DateTime, Utc};
use nc_access::UserSubject;
use nc_domain::{AlertId, AlertKind, AlertPriority, DeviceId, HospitalId, UserId};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::fanout::Recipient;
use crate::model::{Alert, AlertChange, HistoryEntry, Notified, ALERT_COLUMNS};
use crate::policy::EscalationPolicy;
use crate::Reachability;
use crate::{AlarmError, Alarms};

/// Whose alert it is: the machine's hospital and, while a treatment runs, its patient and
/// session.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub hospital: Uuid,
    pub device: Uuid,
    pub patient: Option<Uuid>,
    pub session: Option<Uuid>,
}

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    pub on: Subject,
    pub code: &'a str,
    pub kind: AlertKind,
    pub metric: Option<&'a str>,
    /// IEC 60601-1-8.
    pub priority: AlertPriority,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// When the condition had lasted its delay (reading time).
    pub at: DateTime<Utc>,
}

impl<'a> NewAlert<'a> {
    /// A technical alert (the machine's status, connection or upkeep): no metric, value or
    /// limit.
    pub fn technical(on: Subject, code: &'a str, priority: AlertPriority, message: String, at: DateTime<Utc>) -> Self {
        NewAlert {
            on,
            code,
            kind: AlertKind::Technical,
            metric: None,
            priority,
            message,
            value: None,
            threshold: None,
            at,
        }
    }
}

/// Why the service cleared an alert (the history's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearCause {
    /// The value came back inside its limit past the hysteresis band, or the machine's
    /// status or connection recovered.
    ConditionEnded,
    /// The patient's treatment on the machine ended (another patient started, or none
    /// resumed within the grace period).
    TreatmentEnded,
    /// A maintenance was recorded.
    MaintenanceDone,
}

impl ClearCause {
    fn as_str(self) -> &'static str {
        match self {
            ClearCause::ConditionEnded => "condition_ended",
            ClearCause::TreatmentEnded => "treatment_ended",
            ClearCause::MaintenanceDone => "maintenance_done",
        }
    }
}

/// One event row (see the migration's `alert_events`).
pub(crate) struct EventRow<'a> {
    pub alert: &'a Alert,
    pub event: &'static str,
    pub tier: Option<u8>,
    pub actor: Option<UserId>,
    pub recipients: &'a [Recipient],
    pub reason: Option<&'a str>,
    pub snooze_until: Option<DateTime<Utc>>,
    /// Whether it has notifications to send (the outbox); history-only rows are published.
    pub announces: bool,
}

/// Stores an event, and reports it to the hospital's alert manager if it announces a
/// phase; returns its id.
pub(crate) async fn insert_event(c: &mut PgConnection, e: EventRow<'_>) -> Result<Uuid, sqlx::Error> {
    let report = e.announces.then_some((e.alert, e.event, e.tier));
    let id = store_events(&mut *c, std::slice::from_ref(&e)).await?[0];
    // The hospital's alert manager hears of every phase, in the same transaction.
    if let Some((alert, event, tier)) = report {
        crate::acm::report(c, alert, event, tier).await?;
    }
    Ok(id)
}

/// Stores events with one statement, *without* reporting them to the alert manager (the
/// caller queues the reports); returns their ids.
pub(crate) async fn store_events(c: &mut PgConnection, rows: &[EventRow<'_>]) -> Result<Vec<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO alert_events (id, alert_id, hospital_id, at, event, tier, actor_id, recipients, reachable, reason,
                                   snooze_until, published_at) ",
    );
    q.push_values(rows.iter().zip(&ids), |mut b, (e, id)| {
        let recipients: Vec<Uuid> = e.recipients.iter().map(|r| r.user.as_uuid()).collect();
        let reachable: Vec<Uuid> = e.recipients.iter().filter(|r| r.reachable()).map(|r| r.user.as_uuid()).collect();
        b.push_bind(*id)
            .push_bind(e.alert.id)
            .push_bind(e.alert.hospital_id)
            .push("now()")
            .push_bind(e.event)
            .push_bind(e.tier.map(i16::from))
            .push_bind(e.actor.map(|u| u.as_uuid()))
            .push_bind(recipients)
            .push_bind(reachable)
            .push_bind(e.reason)
            .push_bind(e.snooze_until)
            // Rows that announce something are published after the commit (the outbox of
            // MQTT notifications); history-only rows count as published.
            .push(if e.announces { "NULL" } else { "now()" });
    });
    q.build().execute(c).await?;
    Ok(ids)
}

/// The people of `tier` among a step's recipients.
pub(crate) fn of_tier(recipients: &[Recipient], tier: u8) -> Vec<Uuid> {
    recipients.iter().filter(|r| r.tier == tier).map(|r| r.user.as_uuid()).collect()
}

impl Alarms {
    /// The escalation policy in force for a hospital.
    pub async fn escalation_policy(&self, hospital: HospitalId) -> Result<EscalationPolicy, sqlx::Error> {
        EscalationPolicy::load(self.pool(), hospital, &self.inner.settings.defaults).await
    }

    /// Stores a new open alert for a condition (one per device and condition: if one is
    /// open already, returns its id and changes nothing), notifies the care team and
    /// schedules its escalation. Returns the open alert's id.
    pub async fn raise(&self, new: NewAlert<'_>) -> Result<Option<Uuid>, sqlx::Error> {
        let began = std::time::Instant::now();
        // Reads first, concurrently, so the transaction holds its locks only for its writes
        // and takes few round trips (it waits for each while the database is busy).
        let people = async {
            let recipients = self.recipients_of(HospitalId(new.on.hospital), DeviceId(new.on.device), 1).await?;
            let emails = crate::email::addresses(self.pool(), &of_tier(&recipients, 1)).await?;
            Ok::<_, sqlx::Error>((recipients, emails))
        };
        let (policy, (recipients, emails), around) = tokio::try_join!(
            self.escalation_policy(HospitalId(new.on.hospital)),
            people,
            crate::outgoing::read(self.pool(), new.on.device, new.on.patient)
        )?;
        let rule = policy.rule(new.priority);
        let now = Utc::now();
        let mut tx = self.pool().begin().await?;
        let inserted: Option<Alert> = sqlx::query_as(&format!(
            "INSERT INTO alerts (id, hospital_id, device_id, patient_id, session_id, kind, code, metric, priority, state,
                                 message, value, threshold, raised_at, escalation_level, next_escalation_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $12, $13, 1, $14)
             ON CONFLICT (device_id, code) WHERE state <> 'cleared' DO NOTHING
             RETURNING {ALERT_COLUMNS}"
        ))
        .bind(AlertId::new().as_uuid())
        .bind(new.on.hospital)
        .bind(new.on.device)
        .bind(new.on.patient)
        .bind(new.on.session)
        .bind(new.kind.as_str())
        .bind(new.code)
        .bind(new.metric)
        .bind(new.priority.as_str())
        .bind(&new.message)
        .bind(new.value)
        .bind(new.threshold)
        .bind(new.at)
        .bind(rule.next_at(1, now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut alert) = inserted else {
            // Already open (raised by another instance, or before a restart).
            drop(tx);
            return sqlx::query_scalar(
                "SELECT id FROM alerts WHERE device_id = $1 AND code = $2 AND state <> 'cleared'",
            )
            .bind(new.on.device)
            .bind(new.code)
            .fetch_optional(self.pool())
            .await;
        };
        let raised = EventRow {
            alert: &alert,
            event: "raised",
            tier: Some(1),
            actor: None,
            recipients: &[],
            reason: None,
            snooze_until: None,
            announces: true,
        };
        let raised = store_events(&mut tx, &[raised, self.notified_row(&alert, "notified", 1, &recipients)]).await?[0];
        // The alert manager's start report, then the tier's e-mails: one statement.
        let note = crate::email::tier_note(1);
        let link = &self.inner.settings.link_base;
        let messages: Vec<_> = crate::acm::report_message(&around, &alert, "raised", Some(1))
            .into_iter()
            .chain(emails.iter().map(|to| crate::email::message(&around, &alert, to, &note, link)))
            .collect();
        nc_outbox::enqueue_all(&mut tx, &messages).await?;
        let reach = Reachability::of_any(recipients.iter().map(|r| r.reach));
        let unreachable = self.note_if_unreachable(&mut tx, &mut alert, 1, reach, true).await?;
        tx.commit().await?;
        let committed = began.elapsed();
        let priority = new.priority.as_str();
        nc_metrics::get().alarms_raised.get_or_create(&nc_metrics::Priority { priority }).inc();
        self.publish(raised, AlertChange::Raised, None, &alert, Some(&recipients)).await;
        tracing::info!(
            alert = %alert.id,
            device = %new.on.device,
            code = new.code,
            priority,
            stored_ms = committed.as_secs_f64() * 1e3,
            published_ms = began.elapsed().as_secs_f64() * 1e3,
            "alert raised"
        );
        if unreachable {
            self.inner.wake.notify_one();
        }
        Ok(Some(alert.id))
    }

    /// The `notified`/`escalated`/`realerted` row for `recipients` at `tier`.
    pub(crate) fn notified_row<'a>(
        &self,
        alert: &'a Alert,
        event: &'static str,
        tier: u8,
        recipients: &'a [Recipient],
    ) -> EventRow<'a> {
        EventRow {
            alert,
            event,
            tier: Some(tier),
            actor: None,
            recipients,
            reason: None,
            snooze_until: None,
            announces: event != "notified",
        }
    }

    /// When nobody of the tier just notified is reachable and the alert may escalate
    /// further, it escalates now: its next step is due at once (the scheduler takes it).
    /// Records the `unreachable` event either way. Returns whether it escalates now. When
    /// it is not known yet (the start's grace, see [`crate::reach`]), records
    /// `reach_unknown` and leaves the decision to the end of the grace
    /// ([`Alarms::settle_undecided`]); so too, with `may_wait_for_channel`, when the
    /// hospital's alert manager may still accept the tier's report.
    pub(crate) async fn note_if_unreachable(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        alert: &mut Alert,
        tier: u8,
        reach: Reachability,
        may_wait_for_channel: bool,
    ) -> Result<bool, sqlx::Error> {
        match reach {
            Reachability::Reachable => return Ok(false),
            Reachability::Unknown => {
                insert_event(&mut *tx, EventRow { event: "reach_unknown", ..unreached(alert, tier) }).await?;
                tracing::info!(alert = %alert.id, tier, "nobody of the tier seen yet since the start; deciding after the grace");
                self.undecided(alert.id, tier, std::time::Instant::now(), false);
                return Ok(false);
            }
            Reachability::Unreachable if may_wait_for_channel && crate::acm::has_channel(tx, alert).await? => {
                // The alert manager reaches people on pagers and phones, an e-mail those who
                // chose it: reachable if it accepts the tier's message (`delivered`),
                // decided after `channel_wait`.
                let waiting = "waiting for the alert manager or the e-mail to be accepted";
                insert_event(
                    &mut *tx,
                    EventRow { event: "reach_unknown", reason: Some(waiting), ..unreached(alert, tier) },
                )
                .await?;
                let at = std::time::Instant::now() + self.inner.settings.channel_wait;
                tracing::debug!(alert = %alert.id, tier, "nobody on MQTT: waiting for the alert manager");
                self.undecided(alert.id, tier, at, true);
                return Ok(false);
            }
            Reachability::Unreachable => {}
        }
        insert_event(&mut *tx, unreached(alert, tier)).await?;
        if alert.next_escalation_at.is_none() {
            // Nobody further to escalate to: the unit fallback, if the hospital has one.
            if crate::fallback::tell(tx, alert, tier, &self.inner.settings.link_base).await? {
                tracing::warn!(alert = %alert.id, tier, "nobody reachable for an alert and nobody further: sent to the unit fallback");
                return Ok(false);
            }
            if tier > 1 {
                // The last tier reached nobody: the distributed alarm system failed to deliver.
                tracing::error!(alert = %alert.id, tier, "nobody is reachable for an alert at its last escalation tier");
            } else {
                tracing::info!(alert = %alert.id, "nobody reachable for an alert that does not escalate");
            }
            return Ok(false);
        }
        tracing::warn!(alert = %alert.id, tier, "nobody reachable for an alert: escalating now");
        alert.next_escalation_at = sqlx::query_scalar(
            "UPDATE alerts SET next_escalation_at = now() WHERE id = $1 RETURNING next_escalation_at",
        )
        .bind(alert.id)
        .fetch_one(&mut **tx)
        .await?;
        Ok(true)
    }

    fn undecided(&self, alert: Uuid, tier: u8, at: std::time::Instant, channel: bool) {
        self.inner.undecided.lock().expect("undecided").push(crate::Undecided { alert, tier, at, channel });
    }

    /// Clears an open alert by the service (`at`: when the condition ended, reading time).
    /// A high-priority alert nobody acknowledged stays latched. An alert already cleared is fine.
    pub async fn clear_auto(&self, id: Uuid, at: DateTime<Utc>, cause: ClearCause) -> Result<(), sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let cleared: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET state = 'cleared', cleared_at = GREATEST($2, raised_at), cleared_by = NULL,
                    next_escalation_at = NULL, snoozed_until = NULL, snoozed_by = NULL, snooze_reason = NULL,
                    latched = (priority = 'high' AND acknowledged_at IS NULL)
              WHERE id = $1 AND state <> 'cleared' RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(alert) = cleared else { return Ok(()) };
        let event = insert_event(
            &mut tx,
            EventRow {
                alert: &alert,
                event: "cleared",
                tier: None,
                actor: None,
                recipients: &[],
                reason: Some(cause.as_str()),
                snooze_until: None,
                announces: true,
            },
        )
        .await?;
        tx.commit().await?;
        self.publish(event, AlertChange::Cleared, None, &alert, None).await;
        Ok(())
    }

    /// Records that a physiological alert's value is back inside its limit since `since`
    /// (`None`: outside it again). Only an open alert changes.
    pub async fn value_in_range(&self, id: Uuid, since: Option<DateTime<Utc>>) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE alerts SET in_range_since = $2 WHERE id = $1 AND state <> 'cleared'")
            .bind(id)
            .bind(since)
            .execute(self.pool())
            .await
            .map(|_| ())
    }

    /// Whether the alert is still open (not cleared).
    pub async fn is_open(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT state <> 'cleared' FROM alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map(|open| open.unwrap_or(false))
    }

    /// The device's open alerts: (id, code, raised at, patient, value in range since).
    #[allow(clippy::type_complexity)]
    pub async fn open_of_device(
        &self,
        device: DeviceId,
    ) -> Result<Vec<(Uuid, String, DateTime<Utc>, Option<Uuid>, Option<DateTime<Utc>>)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, code, raised_at, patient_id, in_range_since FROM alerts WHERE device_id = $1 AND state <> 'cleared'",
        )
        .bind(device.as_uuid())
        .fetch_all(self.pool())
        .await
    }

    /// Acknowledges an alert (active, or latched): stops its escalation and ends a snooze.
    /// Acknowledging twice is harmless; a cleared alert (not latched) cannot be.
    pub async fn acknowledge(&self, id: Uuid, by: &UserSubject) -> Result<Alert, AlarmError> {
        let mut tx = self.pool().begin().await?;
        let acked: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET state = CASE WHEN state = 'active' THEN 'acknowledged' ELSE state END,
                    acknowledged_at = now(), acknowledged_by = $2, latched = false, next_escalation_at = NULL,
                    snoozed_until = NULL, snoozed_by = NULL, snooze_reason = NULL
              WHERE id = $1 AND (state = 'active' OR latched) RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(by.id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(alert) = acked else {
            drop(tx);
            let current = self.get(id).await?.ok_or(AlarmError::NotFound)?;
            return if current.state == nc_domain::AlertState::Cleared {
                Err(AlarmError::AlreadyCleared)
            } else {
                Ok(current)
            };
        };
        let event = self.person_event(&mut tx, &alert, "acknowledged", by, None, None).await?;
        tx.commit().await?;
        self.publish(event, AlertChange::Acknowledged, None, &alert, None).await;
        Ok(alert)
    }

    /// Silences an open alert for `minutes` (1 to the configured maximum) with a reason:
    /// no notification and no escalation meanwhile; if still open afterwards it re-alerts.
    /// Snoozing again replaces the snooze.
    pub async fn snooze(&self, id: Uuid, by: &UserSubject, minutes: u32, reason: &str) -> Result<Alert, AlarmError> {
        let max = (self.inner.settings.max_snooze.as_secs() / 60).max(1) as u32;
        if !(1..=max).contains(&minutes) {
            return Err(AlarmError::Invalid { field: "minutes", message: format!("must be between 1 and {max}") });
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(AlarmError::Invalid {
                field: "reason",
                message: "give a reason of 1 to 500 characters".into(),
            });
        }
        let mut tx = self.pool().begin().await?;
        let snoozed: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET snoozed_until = now() + make_interval(mins => $2), snoozed_by = $3, snooze_reason = $4,
                    next_escalation_at = NULL
              WHERE id = $1 AND state <> 'cleared' RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(minutes as i32)
        .bind(by.id.as_uuid())
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(alert) = snoozed else {
            drop(tx);
            return Err(self.missing_or_cleared(id).await);
        };
        let event = self.person_event(&mut tx, &alert, "snoozed", by, Some(reason), alert.snoozed_until).await?;
        tx.commit().await?;
        self.publish(event, AlertChange::Snoozed, None, &alert, None).await;
        Ok(alert)
    }

    /// Clears an alert by hand: a technical alarm at any time (it is raised again only
    /// once its condition has ended and recurs), a physiological one only while its value
    /// is back inside its limit ([`AlarmError::ConditionPersists`] otherwise).
    pub async fn clear_by_hand(&self, id: Uuid, by: &UserSubject) -> Result<Alert, AlarmError> {
        let mut tx = self.pool().begin().await?;
        let cleared: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET state = 'cleared', cleared_at = GREATEST(now(), raised_at), cleared_by = $2,
                    next_escalation_at = NULL, snoozed_until = NULL, snoozed_by = NULL, snooze_reason = NULL, latched = false
              WHERE id = $1 AND state <> 'cleared' AND (kind = 'technical' OR in_range_since IS NOT NULL)
              RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(by.id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(alert) = cleared else {
            drop(tx);
            return Err(match self.get(id).await? {
                None => AlarmError::NotFound,
                Some(a) if a.state == nc_domain::AlertState::Cleared => AlarmError::AlreadyCleared,
                Some(_) => AlarmError::ConditionPersists,
            });
        };
        let event = self.person_event(&mut tx, &alert, "cleared", by, Some("by_hand"), None).await?;
        tx.commit().await?;
        self.publish(event, AlertChange::Cleared, None, &alert, None).await;
        Ok(alert)
    }

    async fn person_event(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        alert: &Alert,
        event: &'static str,
        by: &UserSubject,
        reason: Option<&str>,
        snooze_until: Option<DateTime<Utc>>,
    ) -> Result<Uuid, sqlx::Error> {
        insert_event(
            &mut *tx,
            EventRow {
                alert,
                event,
                tier: None,
                actor: Some(by.id),
                recipients: &[],
                reason,
                snooze_until,
                announces: true,
            },
        )
        .await
    }

    async fn missing_or_cleared(&self, id: Uuid) -> AlarmError {
        match self.get(id).await {
            Ok(Some(_)) => AlarmError::AlreadyCleared,
            Ok(None) => AlarmError::NotFound,
            Err(e) => AlarmError::Db(e),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Alert>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
    }

    /// Every step of an alert's life, oldest first, with who acted.
    pub async fn history(&self, id: Uuid) -> Result<Vec<HistoryEntry>, sqlx::Error> {
        sqlx::query_as(
            "SELECT e.id, e.at, e.event, e.tier, e.actor_id, u.name AS actor_name, u.role AS actor_role,
                    e.recipients, e.reachable, e.reason, e.snooze_until
               FROM alert_events e LEFT JOIN users u ON u.id = e.actor_id
              WHERE e.alert_id = $1 ORDER BY e.at, e.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
    }

    /// Everyone the alert was sent to, each once: the tier at which they were first
    /// notified, when, and whether they were reachable then.
    pub async fn notified(&self, id: Uuid) -> Result<Vec<Notified>, sqlx::Error> {
        sqlx::query_as(
            "SELECT DISTINCT ON (r.user_id) r.user_id, u.name, u.role, e.tier, e.at, r.user_id = ANY(e.reachable) AS reachable
               FROM alert_events e CROSS JOIN LATERAL unnest(e.recipients) AS r(user_id)
               LEFT JOIN users u ON u.id = r.user_id
              WHERE e.alert_id = $1 AND e.event IN ('notified', 'escalated', 'realerted')
              ORDER BY r.user_id, e.at",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
    }

    /// Ends the physiological alerts of treatments that ended more than `grace` ago with
    /// no session of the same patient on the machine since (a machine that restarts its
    /// session within the grace period keeps its alerts: no duplicate alarm). Returns how
    /// many it cleared.
    pub async fn end_finished_treatments(&self, grace: std::time::Duration) -> Result<usize, sqlx::Error> {
        let stale: Vec<Uuid> = sqlx::query_scalar(
            "SELECT a.id FROM alerts a
              WHERE a.kind = 'physiological' AND a.state <> 'cleared' AND a.session_id IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM device_sessions s
                                 WHERE s.device_id = a.device_id AND s.patient_id IS NOT DISTINCT FROM a.patient_id
                                   AND (s.status = 'active' OR s.ended_at > now() - make_interval(secs => $1)))",
        )
        .bind(grace.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        for id in &stale {
            self.clear_auto(*id, Utc::now(), ClearCause::TreatmentEnded).await?;
        }
        Ok(stale.len())
    }
}

/// The `unreachable` row of `alert` at `tier`.
fn unreached(alert: &Alert, tier: u8) -> EventRow<'_> {
    EventRow {
        alert,
        event: "unreachable",
        tier: Some(tier),
        actor: None,
        recipients: &[],
        reason: None,
        snooze_until: None,
        announces: false,
    }
}
