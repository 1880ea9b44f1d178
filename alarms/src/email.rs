//! Alarms by e-mail: a person who chose it (`users.alarm_email`, `PUT
//! /api/alerts/email-preference`) gets each alarm that reaches their tier by e-mail too, and
//! the unit fallback's address gets what reached nobody ([`crate::fallback`]). Priority,
//! condition, machine, bay and a link — never patient data. Queued in the outbox in the
//! transaction of the step, so an e-mail is sent exactly when the step is stored; the SMTP
//! server's acceptance counts as reaching the person ([`crate::acm::accepted_since_waiting`]).

use sqlx::PgConnection;

use crate::model::Alert;
use crate::outgoing::{self, Surroundings};
use crate::Alarms;

/// Queues an e-mail about `alert` to `to` (priority, condition, machine, bay, `note` and a
/// link; never patient data), in the caller's transaction.
pub(crate) async fn queue(
    c: &mut PgConnection,
    alert: &Alert,
    to: &str,
    note: &str,
    link_base: &str,
) -> Result<(), sqlx::Error> {
    let around = outgoing::read(&mut *c, alert.device_id, None).await?;
    nc_outbox::enqueue(c, message(&around, alert, to, note, link_base)).await?;
    Ok(())
}

/// The e-mail about `alert` to `to` (see [`queue`]).
pub(crate) fn message(
    around: &Surroundings,
    alert: &Alert,
    to: &str,
    note: &str,
    link_base: &str,
) -> nc_outbox::NewItem {
    let machine = &around.device_name;
    let priority = alert.priority.as_str().to_uppercase();
    let place = around.ward.as_ref().map_or(machine.clone(), |w| format!("{machine}, {w}"));
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
    nc_outbox::NewItem {
        channel: nc_outbox::Channel::Email,
        hospital: Some(alert.hospital_id),
        alert: Some(alert.id),
        // Not behind the alarm's reports to an alert manager that may be down.
        ordering_key: None,
        destination: to.to_owned(),
        payload: serde_json::json!({"subject": subject, "body": body}).to_string(),
    }
}

/// The addresses of those among `people` who chose to get their alarms by e-mail too.
pub(crate) async fn addresses<'e>(
    c: impl sqlx::PgExecutor<'e>,
    people: &[uuid::Uuid],
) -> Result<Vec<String>, sqlx::Error> {
    if people.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT email FROM users WHERE id = ANY($1) AND alarm_email AND is_active ORDER BY email")
        .bind(people)
        .fetch_all(c)
        .await
}

/// What an e-mail to a person of `tier` says of why they get it.
pub(crate) fn tier_note(tier: u8) -> String {
    if tier == 1 {
        "for you (care team)".to_owned()
    } else {
        format!("escalated to you (tier {tier})")
    }
}

/// E-mails the people of `tier` among `recipients` who chose to get their alarms by e-mail
/// too (`users.alarm_email`). Returns how many.
pub(crate) async fn to_tier(
    c: &mut PgConnection,
    alert: &Alert,
    tier: u8,
    recipients: &[uuid::Uuid],
    link_base: &str,
) -> Result<usize, sqlx::Error> {
    let emails = addresses(&mut *c, recipients).await?;
    if emails.is_empty() {
        return Ok(0);
    }
    let around = outgoing::read(&mut *c, alert.device_id, None).await?;
    let note = tier_note(tier);
    let items: Vec<_> = emails.iter().map(|to| message(&around, alert, to, &note, link_base)).collect();
    nc_outbox::enqueue_all(c, &items).await?;
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
}
