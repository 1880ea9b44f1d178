//! What the hospital's alert manager tells us back (IHE PCD-05, Report Alert Status): an
//! alarm delivered to, read, accepted or rejected by a recipient. Every status goes into the
//! alarm's history (`dissemination`); one that means the recipient *accepted* the alarm
//! acknowledges it in Nephrocare as the user the admins mapped that recipient to
//! (`alert_manager_recipients`), if the policy lets that user acknowledge it — audited, over
//! `hl7`. Only the alarm's hospital's configured alert manager is heard (the sender's address
//! must be its host's); anything else is rejected (`AR`).

use std::net::SocketAddr;

use chrono::Utc;
use nc_access::policy::{AlertAction, AlertRef};
use nc_access::{audit, Subject, UserSubject};
use nc_domain::{AuditAction, DeviceId, HospitalId, Interface, PatientId, Role, UserId};
use nc_hl7::ack::{acknowledge, acknowledge_error, AckCode, ErrorEntry, Severity};
use nc_hl7::acm::{read_alert_manager_message, AlertManagerMessage, DisseminationStatus};
use nc_hl7::message::Message;
use uuid::Uuid;

use crate::Alarms;

/// Why a status is not taken.
enum Refusal {
    /// Never (an unknown alarm, a sender that is not its manager): `AR`.
    Rejected(String),
    /// Not now (storage): `AE`, the manager sends it again.
    Unavailable(String),
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Refusal::Unavailable(e.to_string())
    }
}

impl Alarms {
    /// A message from an alert manager at `peer` (a PCD-05, or an acknowledgement on its own);
    /// returns the acknowledgement to answer with.
    pub async fn from_alert_manager(&self, message: Message, peer: SocketAddr) -> Message {
        let now = Utc::now().fixed_offset();
        let control = Uuid::now_v7().simple().to_string();
        let status = match read_alert_manager_message(&message) {
            Err(e) => return acknowledge_error(&e, Some(&message), &control, &now),
            Ok(AlertManagerMessage::Ack(_)) => {
                tracing::info!(%peer, "an acknowledgement without a status from an alert manager");
                return acknowledge(&message, AckCode::Accepted, &[], &control, &now);
            }
            Ok(AlertManagerMessage::Status(s)) => s,
        };
        tracing::info!(%peer, alert = %status.alert_id, status = status.status.as_str(), "alert status from an alert manager");
        let (code, why) = match self.dissemination(&status, peer).await {
            Ok(()) => (AckCode::Accepted, None),
            Err(Refusal::Rejected(why)) => (AckCode::Rejected, Some((207, why))),
            Err(Refusal::Unavailable(why)) => (AckCode::Error, Some((207, why))),
        };
        if let Some((_, why)) = &why {
            tracing::warn!(%peer, alert = %status.alert_id, %why, "an alert status was not taken");
        }
        let errors: Vec<ErrorEntry> = why
            .map(|(code, diagnostic)| ErrorEntry {
                code,
                location: None,
                severity: Severity::Error,
                diagnostic: Some(diagnostic),
            })
            .into_iter()
            .collect();
        acknowledge(&message, code, &errors, &control, &now)
    }

    async fn dissemination(&self, s: &DisseminationStatus, peer: SocketAddr) -> Result<(), Refusal> {
        let unknown = || Refusal::Rejected(format!("no alarm {}", s.alert_id));
        let id = Uuid::try_parse(&s.alert_id).map_err(|_| unknown())?;
        let alert = self.get(id).await?.ok_or_else(unknown)?;
        let hospital = HospitalId(alert.hospital_id);
        let manager = self
            .alert_manager(hospital)
            .await?
            .ok_or_else(|| Refusal::Rejected("the alarm's hospital has no alert manager".into()))?;
        let known: Vec<std::net::IpAddr> = match tokio::net::lookup_host(manager.address.as_str()).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(e) => return Err(Refusal::Unavailable(format!("cannot resolve {}: {e}", manager.address))),
        };
        if !known.contains(&peer.ip()) {
            return Err(Refusal::Rejected("not the alert manager of the alarm's hospital".into()));
        }
        let recipient = s.recipient.id.as_deref().unwrap_or("");
        let user: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT u.id, u.role FROM alert_manager_recipients r JOIN users u ON u.id = r.user_id
              WHERE r.hospital_id = $1 AND r.recipient_id = $2 AND u.is_active AND u.hospital_id = $1",
        )
        .bind(hospital.as_uuid())
        .bind(recipient)
        .fetch_optional(self.pool())
        .await?;
        let user: Option<(Uuid, Role)> = user.and_then(|(u, r)| r.parse().ok().map(|r| (u, r)));
        let who = s.recipient.name.as_deref().unwrap_or(recipient);
        let reason = format!("acm: {} by {who}", s.status.as_str().to_ascii_lowercase());
        sqlx::query(
            "INSERT INTO alert_events (id, alert_id, hospital_id, at, event, actor_id, reason, published_at)
             VALUES ($1, $2, $3, now(), 'dissemination', $4, left($5, 500), now())",
        )
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(hospital.as_uuid())
        .bind(user.map(|(u, _)| u))
        .bind(&reason)
        .execute(self.pool())
        .await?;
        let (Some((user, role)), true) = (user, s.status.is_accepted()) else { return Ok(()) };
        let subject = UserSubject { id: UserId(user), role, hospital, family: None };
        let target = AlertRef {
            hospital,
            device: DeviceId(alert.device_id),
            patient: alert.patient_id.map(PatientId),
            raised_at: alert.raised_at,
            escalation_level: alert.level(),
        };
        if let Err(e) = self.inner.policy.alert(&Subject::User(subject), &target, AlertAction::Acknowledge).await {
            tracing::info!(%user, alert = %id, error = %e, "accepted on the alert manager by someone who may not acknowledge it here");
            return Ok(());
        }
        let acknowledged = self.acknowledge(id, &subject).await.map_err(|e| Refusal::Unavailable(e.to_string()))?;
        audit::record_with(
            &self.inner.db,
            audit::Access {
                subject: &Subject::User(subject),
                action: AuditAction::Update,
                resource: "alert",
                patient: acknowledged.patient_id.map(PatientId),
                device: Some(DeviceId(acknowledged.device_id)),
                interface: Interface::Hl7,
                client_addr: Some(peer.ip().to_string()),
            },
            Some(serde_json::json!({"alertId": id, "code": acknowledged.code, "action": "acknowledge", "via": "alert manager", "recipient": recipient})),
        )
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        tracing::info!(%user, alert = %id, "alarm acknowledged through the alert manager");
        Ok(())
    }
}
