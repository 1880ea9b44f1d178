//! The hospital's alert manager (IHE PCD Alarm Communication Management): the alarm system
//! is its *Alert Reporter*. Every phase of an alarm — raised, escalated, re-alerted,
//! snoozed, acknowledged, cleared — is reported as a PCD-04 (`ORU^R40`, built by `nc_hl7`),
//! queued in the outbox in the transaction that stored the phase, delivered in the alarm's
//! order over MLLP, and each attempt written into the alarm's history (`delivered`,
//! `delivery_failed`, `delivery_parked`). A hospital configures its manager through
//! `PUT /api/alerts/alert-manager` (table `alert_managers`); patient data (PID, the value)
//! goes only where it allows it.

use std::future::Future;
use std::pin::Pin;

use chrono::{FixedOffset, Utc};
use nc_domain::{AlertKind, AlertPriority};
use nc_hl7::acm::{
    self, AlertLocation, AlertPatient, AlertReport, Code, Designator, Inactivation, Phase, SourceDevice,
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::Alert;
use crate::outgoing::{self, Surroundings};
use crate::Alarms;

/// The history events reported to the alert manager, and as which ACM phase.
fn phase(event: &str) -> Option<(Phase, acm::AlertState, Vec<Inactivation>)> {
    use acm::AlertState::{Active, Inactive};
    Some(match event {
        "raised" => (Phase::Start, Active, vec![]),
        "escalated" => (Phase::Escalate, Active, vec![]),
        "realerted" => (Phase::Continue, Active, vec![]),
        "snoozed" => (Phase::Update, Active, vec![Inactivation::AlarmPaused]),
        "acknowledged" => (Phase::Acknowledged, Active, vec![Inactivation::Acknowledged]),
        "cleared" => (Phase::End, Inactive, vec![]),
        _ => return None,
    })
}

/// Whether a channel outside MQTT may still reach the tier just notified: the hospital's
/// alert manager, or an e-mail to one of its people queued for `alert` in this transaction
/// (`created_at` is the clock's, `now()` the transaction's start).
pub(crate) async fn has_channel(c: &mut PgConnection, alert: &Alert) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM alert_managers WHERE hospital_id = $1 AND enabled)
             OR EXISTS (SELECT 1 FROM outbox WHERE alert_id = $2 AND channel = 'email' AND state = 'pending'
                                              AND created_at >= now())",
    )
    .bind(alert.hospital_id)
    .bind(alert.id)
    .fetch_one(c)
    .await
}

/// Whether the alert manager accepted a report of the alert, or an SMTP server an e-mail
/// about it, since the tier began waiting (its `reach_unknown`).
pub(crate) async fn accepted_since_waiting(c: &mut PgConnection, alert: Uuid, tier: u8) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM alert_events d
                         WHERE d.alert_id = $1 AND d.event = 'delivered' AND (d.reason LIKE 'acm:%' OR d.reason LIKE 'email:%')
                           AND d.at >= (SELECT max(w.at) FROM alert_events w
                                         WHERE w.alert_id = $1 AND w.event = 'reach_unknown' AND w.tier = $2))",
    )
    .bind(alert)
    .bind(i16::from(tier))
    .fetch_one(c)
    .await
}

/// A hospital's alert manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AlertManager {
    /// `host:port` of its MLLP listener.
    pub address: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// Whether reports carry the patient and the value.
    pub include_patient: bool,
    /// MLLP over TLS.
    pub tls: bool,
    pub enabled: bool,
}

/// Queues the PCD-04 of `event` of `alert` for the hospital's alert manager, if it has
/// one enabled, in the caller's transaction.
pub(crate) async fn report(
    c: &mut PgConnection,
    alert: &Alert,
    event: &str,
    tier: Option<u8>,
) -> Result<(), sqlx::Error> {
    if phase(event).is_none() {
        return Ok(());
    }
    let around = outgoing::read(&mut *c, alert.device_id, alert.patient_id).await?;
    if let Some(item) = report_message(&around, alert, event, tier) {
        nc_outbox::enqueue(c, item).await?;
    }
    Ok(())
}

/// The PCD-04 of `event` of `alert` for the hospital's alert manager, if it has one enabled
/// and the event is one it hears of.
pub(crate) fn report_message(
    around: &Surroundings,
    alert: &Alert,
    event: &str,
    tier: Option<u8>,
) -> Option<nc_outbox::NewItem> {
    let phase = phase(event)?;
    let state = if alert.latched && event == "cleared" { acm::AlertState::Latched } else { phase.1 };
    let escalation = tier.filter(|_| event == "escalated").map(|t| (u32::from(t), format!("escalated to tier {t}")));
    message(around, alert, (phase.0, state, phase.2), escalation, None)
}

/// Reports `alert` to the hospital's alert manager again, for `recipient` (the unit
/// fallback, see [`crate::fallback`]): nobody was reachable at `tier`. Whether it has an
/// alert manager to report to.
pub(crate) async fn report_to(
    c: &mut PgConnection,
    alert: &Alert,
    tier: u8,
    recipient: &str,
) -> Result<bool, sqlx::Error> {
    let note = format!("nobody reachable at tier {tier}: unit fallback {recipient}");
    let around = outgoing::read(&mut *c, alert.device_id, alert.patient_id).await?;
    let item = message(
        &around,
        alert,
        (Phase::Escalate, acm::AlertState::Active, vec![]),
        Some((u32::from(tier), note.clone())),
        Some(format!("For {recipient}: {note}")),
    );
    let Some(item) = item else { return Ok(false) };
    nc_outbox::enqueue(c, item).await?;
    Ok(true)
}

/// Builds the PCD-04 for the hospital's alert manager, if it has one enabled.
fn message(
    around: &Surroundings,
    alert: &Alert,
    (phase, state, inactivation): (Phase, acm::AlertState, Vec<Inactivation>),
    escalation: Option<(u32, String)>,
    annotation: Option<String>,
) -> Option<nc_outbox::NewItem> {
    let manager = around.manager.as_ref()?;
    let context = around;
    let now = Utc::now().with_timezone(&FixedOffset::east_opt(0).expect("UTC"));
    let patient = match (&manager.include_patient, &context.patient_number) {
        (true, Some(number)) => Some(AlertPatient {
            id: number.clone(),
            assigning_authority: context.hospital_code.clone(),
            id_type: "MR".into(),
            family_name: context.patient_name.clone(),
            given_name: None,
        }),
        _ => None,
    };
    let measurement = match (manager.include_patient, alert.value, &alert.metric) {
        (true, Some(value), Some(metric)) => Some(acm::Measurement {
            code: Code::local(metric, metric),
            value: value.to_string(),
            units: None,
            limits: (None, alert.threshold.map(|t| t.to_string())),
            abnormality: None,
        }),
        _ => None,
    };
    let report = AlertReport {
        control_id: Uuid::now_v7().simple().to_string(),
        sending_app: Designator::named("NEPHROCARE"),
        sending_facility: Designator::named(&context.hospital_code),
        receiving_app: Designator::named(&manager.receiving_application),
        receiving_facility: Designator::named(&manager.receiving_facility),
        sent_at: now,
        alert_id: alert.id.simple().to_string(),
        occurred_at: alert.raised_at.with_timezone(&FixedOffset::east_opt(0).expect("UTC")),
        phase,
        state,
        inactivation,
        priority: match alert.priority {
            AlertPriority::High => acm::Priority::High,
            AlertPriority::Medium => acm::Priority::Medium,
            AlertPriority::Low => acm::Priority::Low,
        },
        kind: match alert.kind {
            AlertKind::Physiological => acm::AlertKind::Physiological,
            AlertKind::Technical => acm::AlertKind::Technical,
        },
        event: Code::local(&alert.code, &alert.code),
        source: SourceDevice {
            id: context.device_serial.clone(),
            assigner: Designator::named(&context.hospital_code),
            kind: Code::local("dialysis_machine", "Dialysis machine"),
        },
        location: Some(AlertLocation {
            unit: context.ward.clone().unwrap_or_else(|| context.hospital_code.clone()),
            room: None,
            bay: Some(context.device_name.clone()),
            facility: Some(context.hospital_code.clone()),
        }),
        patient,
        measurement,
        annotation,
        escalation,
        wants_status: true,
    };
    let message = acm::report_alert(&report).encode();
    let destination = if manager.tls { format!("mllps://{}", manager.address) } else { manager.address.clone() };
    Some(nc_outbox::NewItem {
        channel: nc_outbox::Channel::Acm,
        hospital: Some(alert.hospital_id),
        alert: Some(alert.id),
        ordering_key: Some(alert.id),
        destination,
        payload: message,
    })
}

impl Alarms {
    /// A hospital's alert manager, if set.
    pub async fn alert_manager(&self, hospital: nc_domain::HospitalId) -> Result<Option<AlertManager>, sqlx::Error> {
        sqlx::query_as(
            "SELECT address, receiving_application, receiving_facility, include_patient, tls, enabled
               FROM alert_managers WHERE hospital_id = $1",
        )
        .bind(hospital.as_uuid())
        .fetch_optional(self.pool())
        .await
    }

    /// Sets (or, with `None`, removes) a hospital's alert manager.
    pub async fn set_alert_manager(
        &self,
        hospital: nc_domain::HospitalId,
        manager: Option<&AlertManager>,
        by: nc_domain::UserId,
    ) -> Result<(), crate::AlarmError> {
        if let Some(m) = manager {
            nc_hl7::mllp::check_address(&m.address)
                .map_err(|message| crate::AlarmError::Invalid { field: "address", message })?;
        }
        match manager {
            None => {
                sqlx::query("DELETE FROM alert_managers WHERE hospital_id = $1")
                    .bind(hospital.as_uuid())
                    .execute(self.pool())
                    .await?;
            }
            Some(m) => {
                sqlx::query(
                    "INSERT INTO alert_managers (hospital_id, address, receiving_application, receiving_facility,
                                                 include_patient, enabled, updated_at, updated_by, tls)
                     VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8)
                     ON CONFLICT (hospital_id) DO UPDATE SET address = $2, receiving_application = $3,
                         receiving_facility = $4, include_patient = $5, enabled = $6, updated_at = now(), updated_by = $7,
                         tls = $8",
                )
                .bind(hospital.as_uuid())
                .bind(&m.address)
                .bind(&m.receiving_application)
                .bind(&m.receiving_facility)
                .bind(m.include_patient)
                .bind(m.enabled)
                .bind(by.as_uuid())
                .bind(m.tls)
                .execute(self.pool())
                .await?;
            }
        }
        Ok(())
    }
}

impl Alarms {
    /// The alert manager's recipients mapped to users of `hospital`: (recipient id, user).
    pub async fn alert_manager_recipients(
        &self,
        hospital: nc_domain::HospitalId,
    ) -> Result<Vec<(String, nc_domain::UserId)>, sqlx::Error> {
        let rows: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT recipient_id, user_id FROM alert_manager_recipients WHERE hospital_id = $1 ORDER BY recipient_id",
        )
        .bind(hospital.as_uuid())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(r, u)| (r, nc_domain::UserId(u))).collect())
    }

    /// Maps the alert manager's `recipient` to `user` (`None`: removes the mapping). The
    /// caller has asked the policy whether `user` is one of the hospital's people.
    pub async fn map_alert_manager_recipient(
        &self,
        hospital: nc_domain::HospitalId,
        recipient: &str,
        user: Option<nc_domain::UserId>,
    ) -> Result<bool, sqlx::Error> {
        let done = match user {
            Some(u) => {
                sqlx::query(
                    "INSERT INTO alert_manager_recipients (hospital_id, recipient_id, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT (hospital_id, recipient_id) DO UPDATE SET user_id = $3",
                )
                .bind(hospital.as_uuid())
                .bind(recipient)
                .bind(u.as_uuid())
                .execute(self.pool())
                .await?
            }
            None => {
                sqlx::query("DELETE FROM alert_manager_recipients WHERE hospital_id = $1 AND recipient_id = $2")
                    .bind(hospital.as_uuid())
                    .bind(recipient)
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(done.rows_affected() > 0)
    }
}

/// Each delivery attempt of an alarm's message, in its history.
impl nc_outbox::Attempts for Alarms {
    fn attempted<'a>(
        &'a self,
        item: &'a nc_outbox::Item,
        outcome: &'a nc_outbox::Outcome,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let (Some(alert), Some(channel)) = (item.alert_id, item.channel()) else { return };
            let (event, reason) = match outcome {
                nc_outbox::Outcome::Delivered(r) => ("delivered", format!("{}: {}", channel.as_str(), r.0)),
                nc_outbox::Outcome::Failed { error, retry_in } => (
                    "delivery_failed",
                    format!("{}: {error}; again in {:.1} s", channel.as_str(), retry_in.as_secs_f64()),
                ),
                nc_outbox::Outcome::Parked { error } => ("delivery_parked", format!("{}: {error}", channel.as_str())),
            };
            let stored = sqlx::query(
                "INSERT INTO alert_events (id, alert_id, hospital_id, at, event, reason, published_at)
                 SELECT $1, id, hospital_id, now(), $3, left($4, 500), now() FROM alerts WHERE id = $2",
            )
            .bind(Uuid::now_v7())
            .bind(alert)
            .bind(event)
            .bind(reason)
            .execute(self.pool())
            .await;
            if let Err(e) = stored {
                tracing::warn!(error = %e, %alert, "could not record a delivery attempt in the alarm's history");
            }
        })
    }
}
