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
        crate::email::queue(c, alert, email, &note, link_base).await?;
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

impl Alarms {
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
