//! The escalation scheduler. Unacknowledged alerts escalate tier by tier, and snoozed ones
//! re-alert, from what is stored — `alerts.next_escalation_at` and `alerts.snoozed_until` —
//! never from a timer held in memory:
//!
//! - every tick (and at once when an alert reached nobody), due alerts are taken with
//!   `FOR UPDATE SKIP LOCKED`, so several nodes share the work and none takes an alert
//!   another is handling;
//! - one step is one transaction: the alert moves to the next tier only if it is still at
//!   the tier read (`escalation_level` is part of the update), with its `escalated` event;
//!   a `kill -9` before the commit leaves the step due, after it leaves it done: each tier
//!   is reached exactly once across restarts;
//! - the step's notifications go out after the commit; the event row is the outbox that
//!   [`Alarms::republish`] drains if the process died in between;
//! - when nobody of the new tier is reachable, the next step is due at once.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fanout::Recipient;
use crate::model::{Alert, AlertChange, ALERT_COLUMNS};
use crate::{AlarmSettings, Alarms};

/// A step taken, to publish once committed.
struct Step {
    event: Uuid,
    change: AlertChange,
    tier: u8,
    alert: Alert,
    recipients: Vec<Recipient>,
}

impl Alarms {
    /// Runs the scheduler until `shutdown`: escalations, re-alerts after a snooze, and the
    /// outbox. Also ends the physiological alerts of treatments over for `grace`.
    pub fn run(&self, shutdown: CancellationToken, grace: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let AlarmSettings { tick, .. } = this.inner.settings;
            let mut sweep = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = this.inner.wake.notified() => {}
                    _ = tokio::time::sleep(tick) => {}
                    _ = sweep.tick() => {
                        if let Err(e) = this.end_finished_treatments(grace).await {
                            tracing::warn!(error = %e, "could not end the alerts of finished treatments");
                        }
                    }
                }
                loop {
                    match this.escalate_due().await {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "escalation step failed; retrying");
                            break;
                        }
                    }
                }
                if let Err(e) = this.settle_undecided().await {
                    tracing::warn!(error = %e, "could not decide the reach of tiers left open");
                }
                if let Err(e) = this.republish().await {
                    tracing::warn!(error = %e, "could not publish stored alert events");
                }
            }
        })
    }

    /// Takes the due steps (up to 50) and publishes them. Returns how many it took.
    pub async fn escalate_due(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let due: Vec<Alert> = sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
              WHERE id IN (SELECT id FROM alerts WHERE next_escalation_at <= now()
                           UNION ALL SELECT id FROM alerts WHERE snoozed_until <= now())
                AND state <> 'cleared'
              ORDER BY LEAST(next_escalation_at, snoozed_until) LIMIT 50
              FOR UPDATE SKIP LOCKED"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut steps = Vec::with_capacity(due.len());
        let now = Utc::now();
        for alert in due {
            let policy = self.escalation_policy(nc_domain::HospitalId(alert.hospital_id)).await?;
            let rule = policy.rule(alert.priority).clone();
            let snooze_over = alert.snoozed_until.is_some_and(|t| t <= now);
            let step = if snooze_over {
                // Still present after the snooze: it needs an answer again, at its tier.
                let level = alert.level();
                let mut alert: Alert = sqlx::query_as(&format!(
                    "UPDATE alerts SET state = 'active', acknowledged_at = NULL, acknowledged_by = NULL,
                            snoozed_until = NULL, snoozed_by = NULL, snooze_reason = NULL, next_escalation_at = $2
                      WHERE id = $1 RETURNING {ALERT_COLUMNS}"
                ))
                .bind(alert.id)
                .bind(rule.next_at(level, now))
                .fetch_one(&mut *tx)
                .await?;
                let (event, recipients) = self.notify_tier(&mut tx, &alert, "realerted", level).await?;
                let reach = crate::Reachability::of_any(recipients.iter().map(|r| r.reach));
                self.note_if_unreachable(&mut tx, &mut alert, level, reach, true).await?;
                Step { event, change: AlertChange::Realerted, tier: level, alert, recipients }
            } else {
                let Some(tier) = rule.next_tier(alert.level()) else {
                    // The policy changed since it was scheduled: nothing further.
                    sqlx::query("UPDATE alerts SET next_escalation_at = NULL WHERE id = $1")
                        .bind(alert.id)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                };
                let mut alert: Alert = sqlx::query_as(&format!(
                    "UPDATE alerts SET escalation_level = $3, escalated_at = now(), next_escalation_at = $4
                      WHERE id = $1 AND escalation_level = $2 RETURNING {ALERT_COLUMNS}"
                ))
                .bind(alert.id)
                .bind(alert.escalation_level)
                .bind(i16::from(tier))
                .bind(rule.next_at(tier, now))
                .fetch_one(&mut *tx)
                .await?;
                let (event, recipients) = self.notify_tier(&mut tx, &alert, "escalated", tier).await?;
                // The people this step adds: if none of them can be reached, go on at once.
                let reach = crate::Reachability::of_any(recipients.iter().filter(|r| r.tier == tier).map(|r| r.reach));
                self.note_if_unreachable(&mut tx, &mut alert, tier, reach, true).await?;
                tracing::info!(alert = %alert.id, tier, "alert escalated");
                let reached = match tier {
                    2 => "2",
                    3 => "3",
                    _ => "other",
                };
                nc_metrics::get().alarms_escalated.get_or_create(&nc_metrics::Tier { tier: reached }).inc();
                Step { event, change: AlertChange::Escalated, tier, alert, recipients }
            };
            steps.push(step);
        }
        tx.commit().await?;
        let n = steps.len();
        for s in steps {
            self.publish(s.event, s.change, Some(s.tier), &s.alert, Some(&s.recipients)).await;
        }
        Ok(n)
    }

    /// Records a step's `event` for the people up to `tier` (and reports it to the alert
    /// manager) and queues e-mails to `tier`'s own people. Returns the event and everyone
    /// it notifies.
    async fn notify_tier(
        &self,
        tx: &mut sqlx::PgConnection,
        alert: &Alert,
        event: &'static str,
        tier: u8,
    ) -> Result<(Uuid, Vec<Recipient>), sqlx::Error> {
        let recipients = self.recipients(alert, tier).await?;
        let event =
            crate::lifecycle::insert_event(&mut *tx, self.notified_row(alert, event, tier, &recipients)).await?;
        let tier_people = crate::lifecycle::of_tier(&recipients, tier);
        crate::email::to_tier(tx, alert, tier, &tier_people, &self.inner.settings.link_base).await?;
        Ok((event, recipients))
    }

    /// Decides the tiers whose reach was left open: once the start's grace is over, those
    /// whose people had not been seen (nobody reachable now escalates at once, as it would
    /// have then; someone reachable leaves the alert to its timer); after `channel_wait`,
    /// those waiting for the alert manager (its acceptance of the tier's report counts as
    /// reaching them).
    pub(crate) async fn settle_undecided(&self) -> Result<(), sqlx::Error> {
        let now = std::time::Instant::now();
        let settling = self.inner.reach.settling();
        let due: Vec<crate::Undecided> = {
            let mut all = self.inner.undecided.lock().expect("undecided");
            let (due, later) = all.drain(..).partition(|u| u.at <= now && (u.channel || !settling));
            *all = later;
            due
        };
        let mut due = due.into_iter();
        while let Some(u) = due.next() {
            if let Err(e) = self.settle(u).await {
                let mut all = self.inner.undecided.lock().expect("undecided");
                all.push(u);
                all.extend(due);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn settle(&self, u: crate::Undecided) -> Result<(), sqlx::Error> {
        let (id, tier) = (u.alert, u.tier);
        tracing::debug!(alert = %id, tier, channel = u.channel, "deciding a tier's reach");
        let mut tx = self.pool().begin().await?;
        let alert: Option<Alert> = sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND state = 'active' AND escalation_level = $2
                AND snoozed_until IS NULL FOR UPDATE"
        ))
        .bind(id)
        .bind(i16::from(tier))
        .fetch_optional(&mut *tx)
        .await?;
        // Acknowledged, snoozed, cleared or escalated meanwhile: decided already.
        let Some(mut alert) = alert else { return Ok(()) };
        let recipients = self.recipients(&alert, tier).await?;
        let mut reach = crate::Reachability::of_any(recipients.iter().filter(|r| r.tier == tier).map(|r| r.reach));
        if u.channel && crate::acm::accepted_since_waiting(&mut tx, id, tier).await? {
            reach = crate::Reachability::Reachable;
        }
        let now = self.note_if_unreachable(&mut tx, &mut alert, tier, reach, false).await?;
        tx.commit().await?;
        if now {
            self.inner.wake.notify_one();
        }
        Ok(())
    }
}
