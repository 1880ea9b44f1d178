//! A person who subscribes to their notifications (a clean session, the dashboard, a
//! persistent session that subscribes again after the service restarted and lost it) gets their open alarms that
//! nobody has answered yet, as `present` notes on that topic: an alarm raised or escalated
//! while their app was closed is not lost to them. Which alarms is the policy's list scope
//! for notifications ([`nc_access::Policy::alert_notification_scope`]); apps recognise an
//! alarm they already show by its id.

use nc_access::{Subject, UserSubject};
use nc_domain::{AlertState, HospitalId};
use nc_entities::alerts;
use nc_messaging::payload::{kind, V1};
use nc_messaging::topic::Topic;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::model::{Alert, AlertChange, AlertNote, ALERT_COLUMNS};
use crate::Alarms;

/// The most alarms sent on one subscription (the oldest first beyond it are left to the
/// app's list over REST).
const MOST: u64 = 100;

impl nc_messaging::Subscribed for Alarms {
    fn subscribed(&self, who: UserSubject, topic: Topic) {
        let Topic::Notifications { hospital, user } = topic else { return };
        if user != who.id {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.catch_up(who, hospital).await {
                tracing::warn!(error = %e, user = %who.id, "could not send a subscriber their open alarms");
            }
        });
    }
}

impl Alarms {
    /// Sends `who` their open, unanswered alarms on their notifications topic. Returns how
    /// many.
    pub async fn catch_up(&self, who: UserSubject, hospital: HospitalId) -> Result<usize, sqlx::Error> {
        let subject = Subject::User(who);
        let scope = match self.inner.policy.alert_notification_scope(&subject).await {
            Ok(Some(scope)) => scope,
            Ok(None) => return Ok(0),
            Err(e) => return Err(sqlx::Error::Protocol(e.to_string())),
        };
        let unanswered = Condition::any()
            .add(
                Condition::all()
                    .add(alerts::Column::State.eq(AlertState::Active))
                    .add(alerts::Column::SnoozedUntil.is_null()),
            )
            .add(Condition::all().add(alerts::Column::Latched.eq(true)).add(alerts::Column::AcknowledgedAt.is_null()));
        let ids: Vec<Uuid> = alerts::Entity::find()
            .select_only()
            .column(alerts::Column::Id)
            .filter(scope.condition())
            .filter(unanswered)
            .order_by_desc(alerts::Column::RaisedAt)
            .limit(MOST)
            .into_tuple()
            .all(&self.inner.db)
            .await
            .map_err(crate::fanout::db_err)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let found: Vec<Alert> =
            sqlx::query_as(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ANY($1) ORDER BY raised_at, id"))
                .bind(&ids)
                .fetch_all(self.pool())
                .await?;
        let topic = Topic::Notifications { hospital, user: who.id };
        let administrative = scope.view() == nc_access::policy::AlertView::Administrative;
        for alert in &found {
            let tier = Some(alert.level());
            let alert = if administrative { alert.administrative() } else { alert.clone() };
            let expires_at = Some(alert.relevant_until(chrono::Utc::now()));
            let note = AlertNote { v: V1, r#type: kind::Alert, event: AlertChange::Present, tier, alert, expires_at };
            if let Err(e) = self.inner.publisher.publish_json(&topic, &nc_messaging::payload::to_json(&note)).await {
                tracing::warn!(error = %e, "could not send an open alarm to a subscriber");
            }
        }
        Ok(found.len())
    }
}
