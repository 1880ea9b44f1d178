//! Publishing an alert's changes once they are stored: on the device's `alerts` topic, on
//! the patient's (except escalations, which are between staff), to the live streams, and
//! on the `notifications` topic of everyone the alert concerns at its tier (the care team;
//! from tier 2 the ward's doctors; at tier 3 the admins, in the administrative view). The
//! broker's delivery gate checks each notification again at delivery.
//!
//! The event row is the outbox: it is marked published once its messages are handed to the
//! broker; one left unmarked (the process died in between) is published again by the
//! scheduler ([`Alarms::republish`]).

use std::borrow::Cow;

use nc_domain::{DeviceId, HospitalId, PatientId, Role, UserId};
use nc_messaging::payload::{kind, V1};
use nc_messaging::topic::{DeviceChannel, PatientChannel, Topic};
use uuid::Uuid;

use crate::model::{Alert, AlertChange, AlertEvent, AlertNote};
use crate::{Alarms, Reachability};

/// A person notified of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    pub user: UserId,
    pub role: Role,
    /// Their tier for this alert (1: the care team).
    pub tier: u8,
    /// Connected so as to see it at once (see [`crate::reach`]).
    pub reach: Reachability,
}

impl Recipient {
    pub fn reachable(&self) -> bool {
        self.reach == Reachability::Reachable
    }
}

impl Alarms {
    /// Everyone the alert concerns at `tier`, and whether each is reachable now.
    pub(crate) async fn recipients(&self, alert: &Alert, tier: u8) -> Result<Vec<Recipient>, sqlx::Error> {
        self.recipients_of(HospitalId(alert.hospital_id), DeviceId(alert.device_id), tier).await
    }

    /// The people of tiers up to `tier` for a device's alerts, with their reachability now.
    pub(crate) async fn recipients_of(
        &self,
        hospital: HospitalId,
        device: DeviceId,
        tier: u8,
    ) -> Result<Vec<Recipient>, sqlx::Error> {
        let people = self.inner.policy.alert_recipients(device, tier).await.map_err(db_err)?;
        Ok(people
            .into_iter()
            .map(|(user, role, tier)| Recipient {
                user,
                role,
                tier,
                reach: self.inner.reach.reachability(user, hospital, device),
            })
            .collect())
    }

    /// Publishes a stored change and marks its event published. `recipients`: those just
    /// computed for it, if any (otherwise they are looked up for the alert's tier).
    pub(crate) async fn publish(
        &self,
        event_id: Uuid,
        change: AlertChange,
        tier: Option<u8>,
        alert: &Alert,
        recipients: Option<&[Recipient]>,
    ) {
        if self.send(change, tier, alert, recipients).await {
            let marked = sqlx::query("UPDATE alert_events SET published_at = now() WHERE id = $1")
                .bind(event_id)
                .execute(self.pool())
                .await;
            if let Err(e) = marked {
                tracing::warn!(error = %e, "could not mark an alert event published; it may be sent again");
            }
        }
    }

    /// Sends a change to every topic and person it concerns; whether all of it went out.
    async fn send(
        &self,
        change: AlertChange,
        tier: Option<u8>,
        alert: &Alert,
        recipients: Option<&[Recipient]>,
    ) -> bool {
        let expires_at = Some(alert.relevant_until(chrono::Utc::now()));
        let body = AlertEvent { v: V1, event: change, alert: alert.clone(), expires_at };
        let publisher = &self.inner.publisher;
        let mut sent = true;
        let json = nc_messaging::payload::to_json(&body);
        let hospital = HospitalId(alert.hospital_id);
        let topic = Topic::Device { hospital, device: DeviceId(alert.device_id), channel: DeviceChannel::Alerts };
        if let Err(e) = publisher.publish_json(&topic, &json).await {
            tracing::warn!(error = %e, "could not publish an alert");
            sent = false;
        }
        // The patient's own copy (topics.md: a patient receives their own treatment only);
        // escalation is a matter between staff.
        if let (Some(patient), false) = (alert.patient_id, change == AlertChange::Escalated) {
            let topic = Topic::Patient { hospital, patient: PatientId(patient), channel: PatientChannel::Alerts };
            if let Err(e) = publisher.publish_json(&topic, &json).await {
                tracing::warn!(error = %e, "could not publish an alert to its patient");
                sent = false;
            }
        }
        let recipients: Cow<'_, [Recipient]> = match recipients {
            Some(r) => Cow::Borrowed(r),
            None => match self.recipients(alert, alert.level()).await {
                Ok(r) => Cow::Owned(r),
                Err(e) => {
                    tracing::warn!(error = %e, "could not find whom to notify of an alert; sent again later");
                    sent = false;
                    Cow::Owned(Vec::new())
                }
            },
        };
        let note = |alert: Alert| {
            nc_messaging::payload::to_json(&AlertNote {
                v: V1,
                r#type: kind::Alert,
                event: change,
                tier,
                alert,
                expires_at,
            })
        };
        let full = note(alert.clone());
        let mut administrative = None;
        for r in recipients.iter() {
            let body = match r.role {
                Role::Admin => administrative.get_or_insert_with(|| note(alert.administrative())),
                _ => &full,
            };
            let topic = Topic::Notifications { hospital, user: r.user };
            if let Err(e) = publisher.publish_json(&topic, body).await {
                tracing::warn!(error = %e, "could not publish an alert notification");
                sent = false;
            }
        }
        self.emit(body).await;
        sent
    }

    /// To this node's live streams, and to the other nodes'.
    async fn emit(&self, body: AlertEvent) {
        self.inner.bus.send(crate::ALERTS_EVENT, &body).await;
        let _ = self.inner.events.send(body);
    }

    /// Publishes the events left unpublished for longer than the configured delay (the
    /// process that stored them died before sending). Returns how many.
    pub async fn republish(&self) -> Result<usize, sqlx::Error> {
        let after = self.inner.settings.republish_after.as_secs_f64();
        let mut tx = self.pool().begin().await?;
        let due: Vec<(Uuid, Uuid, String, Option<i16>)> = sqlx::query_as(
            "SELECT id, alert_id, event, tier FROM alert_events
              WHERE published_at IS NULL AND at < now() - make_interval(secs => $1)
              ORDER BY at LIMIT 100 FOR UPDATE SKIP LOCKED",
        )
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let mut count = 0;
        for (event_id, alert_id, event, tier) in due {
            let Some(change) = AlertChange::parse(&event) else { continue };
            let Some(alert) = self.get(alert_id).await? else { continue };
            tracing::info!(alert = %alert_id, event, "publishing an alert event stored but not sent before");
            if self.send(change, tier.and_then(|t| u8::try_from(t).ok()), &alert, None).await {
                sqlx::query("UPDATE alert_events SET published_at = now() WHERE id = $1")
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?;
                count += 1;
            }
        }
        tx.commit().await?;
        Ok(count)
    }
}

pub(crate) fn db_err(e: sea_orm::DbErr) -> sqlx::Error {
    match e {
        sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
        | sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
