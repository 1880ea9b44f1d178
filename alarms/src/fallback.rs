//! An alarm never ends with nobody told. When the last tier an alarm reaches (or tier 1 of
//! one that does not escalate) has nobody reachable, it goes to the hospital's unit
//! fallback (`PUT /api/alerts/fallback`, table `alarm_fallbacks`): an e-mail to a unit
//! address — priority, condition, machine, bay and a link, never patient data — and/or a
//! report to the alert manager addressed to a named recipient (e.g. the charge nurse's
//! phone), both through the outbox in the transaction that found nobody. The alarm's
//! history records `fallback`; with no fallback set, it is logged as an error (IEC 60601-1-8
//! §6.11: a failure to deliver must itself be signalled).

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::model::Alert;
use crate::Alarms;

/// A hospital's unit fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Fallback {
    /// A unit e-mail address.
    pub email: Option<String>,
    /// A recipient at the alert manager.
    pub acm_recipient: Option<String>,
}

/// Sends `alert` to its hospital's fallback, if it has one (in the caller's transaction).
/// Returns whether it had one.
pub(crate) async fn tell(c: &mut PgConnection, alert: &Alert, tier: u8, link_base: &str) -> Result<bool, sqlx::Error> {
    let fallback: Option<Fallback> =
        sqlx::query_as("SELECT email, acm_recipient FROM alarm_fallbacks WHERE hospital_id = $1")
            .bind(alert.hospital_id)
            .fetch_optional(&mut *c)
            .await?;
    let Some(fallback) = fallback else { return Ok(false) };
    let mut told = Vec::new();
    if let Some(email) = &fallback.email {
        let note = format!("reached nobody at tier {tier}");
        queue_email(c, alert, email, &note, link_base).await?;
        told.push(format!("email: {email}"));
    }
    if let Some(recipient) = &fallback.acm_recipient {
        if crate::acm::report_to(c, alert, tier, recipient).await? {
            told.push(format!("acm: {recipient}"));
        }
    }
    sqlx::query(
        "INSERT INTO alert_events (id, alert_id, hospital_id, at, event, tier, reason, published_at)
         VALUES ($1, $2, $3, now(), 'fallback', $4, left($5, 500), now())",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(alert.id)
    .bind(alert.hospital_id)
    .bind(i16::from(tier))
    .bind(if told.is_empty() { "nothing configured could take it".to_owned() } else { told.join("; ") })
    .execute(&mut *c)
    .await?;
    Ok(true)
}

/// Queues an e-mail about `alert` to `to` (priority, condition, machine, bay, `note` and a
/// link; never patient data), in the caller's transaction.
pub(crate) async fn queue_email(
    c: &mut PgConnection,
    alert: &Alert,
    to: &str,
    note: &str,
    link_base: &str,
) -> Result<(), sqlx::Error> {
    let (machine, ward): (String, Option<String>) =
        sqlx::query_as("SELECT name, ward FROM devices WHERE id = $1").bind(alert.device_id).fetch_one(&mut *c).await?;
    let priority = alert.priority.as_str().to_uppercase();
    let place = ward.map_or(machine.clone(), |w| format!("{machine}, {w}"));
    let subject = format!("[{priority}] Alarm on {place}: {note}");
    let body = format!(
        "A {} priority alarm ({}) on {place}: {note}.\n\
         Raised at {} UTC.\n\nOpen it: {link_base}/#/alarms/{}\n\n\
         (No patient data is sent by e-mail; sign in to see the alarm.)\n",
        alert.priority.as_str(),
        alert.code,
        alert.raised_at.format("%Y-%m-%d %H:%M:%S"),
        alert.id
    );
    let payload = serde_json::json!({"subject": subject, "body": body}).to_string();
    nc_outbox::enqueue(
        c,
        nc_outbox::NewItem {
            channel: nc_outbox::Channel::Email,
            hospital: Some(alert.hospital_id),
            alert: Some(alert.id),
            // Not behind the alarm's reports to an alert manager that may be down.
            ordering_key: None,
            destination: to,
            payload: &payload,
        },
    )
    .await?;
    Ok(())
}

/// E-mails the people of `tier` among `recipients` who chose to get their alarms by e-mail
/// too (`users.alarm_email`). Returns how many.
pub(crate) async fn email_tier(
    c: &mut PgConnection,
    alert: &Alert,
    tier: u8,
    recipients: &[uuid::Uuid],
    link_base: &str,
) -> Result<usize, sqlx::Error> {
    if recipients.is_empty() {
        return Ok(0);
    }
    let emails: Vec<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE id = ANY($1) AND alarm_email AND is_active ORDER BY email")
            .bind(recipients)
            .fetch_all(&mut *c)
            .await?;
    let note = if tier == 1 { "for you (care team)".to_owned() } else { format!("escalated to you (tier {tier})") };
    for email in &emails {
        queue_email(c, alert, email, &note, link_base).await?;
    }
    Ok(emails.len())
}

impl Alarms {
    /// Whether `user` gets their alarms by e-mail too.
    pub async fn alarm_email(&self, user: nc_domain::UserId) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT alarm_email FROM users WHERE id = $1")
            .bind(user.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map(|v| v.unwrap_or(false))
    }

    /// Sets whether `user` gets their alarms by e-mail too.
    pub async fn set_alarm_email(&self, user: nc_domain::UserId, on: bool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE users SET alarm_email = $2 WHERE id = $1")
            .bind(user.as_uuid())
            .bind(on)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A hospital's unit fallback, if set.
    pub async fn fallback(&self, hospital: nc_domain::HospitalId) -> Result<Option<Fallback>, sqlx::Error> {
        sqlx::query_as("SELECT email, acm_recipient FROM alarm_fallbacks WHERE hospital_id = $1")
            .bind(hospital.as_uuid())
            .fetch_optional(self.pool())
            .await
    }

    /// Sets (or, with nothing in it, removes) a hospital's unit fallback.
    pub async fn set_fallback(
        &self,
        hospital: nc_domain::HospitalId,
        fallback: &Fallback,
        by: nc_domain::UserId,
    ) -> Result<(), sqlx::Error> {
        if fallback.email.is_none() && fallback.acm_recipient.is_none() {
            sqlx::query("DELETE FROM alarm_fallbacks WHERE hospital_id = $1")
                .bind(hospital.as_uuid())
                .execute(self.pool())
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO alarm_fallbacks (hospital_id, email, acm_recipient, updated_at, updated_by)
             VALUES ($1, $2, $3, now(), $4)
             ON CONFLICT (hospital_id) DO UPDATE SET email = $2, acm_recipient = $3, updated_at = now(), updated_by = $4",
        )
        .bind(hospital.as_uuid())
        .bind(&fallback.email)
        .bind(&fallback.acm_recipient)
        .bind(by.as_uuid())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
