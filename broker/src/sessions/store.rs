//! The shared store of kept sessions (`mqtt_kept_sessions`), used when several nodes share
//! an external core: the core (NATS) keeps a persistent session's subscriptions and queued
//! messages cluster-wide, and this keeps what the edge must know to resume it on any node —
//! its slot, its login session and the subscriptions to decide again. Written through on
//! every change of a persistent session (claim, subscribe, unsubscribe, release), read when a
//! client connects. Security never rests on it being current: every carried subscription is
//! decided again by the policy before the session resumes, and the delivery gate checks
//! every message.

use nc_domain::TokenFamilyId;
use rumqttc::QoS;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Carried, Kept};
use crate::topic::Filter;

#[derive(Clone)]
pub struct KeptStore {
    pool: PgPool,
}

/// client_id, slot, family_id, subscriptions, released_at, expiry_seconds.
type Row = (String, i16, Option<Uuid>, serde_json::Value, Option<chrono::DateTime<chrono::Utc>>, Option<i32>);

#[derive(serde::Serialize, serde::Deserialize)]
struct Subscription {
    path: String,
    qos: u8,
}

impl KeptStore {
    pub fn new(pool: PgPool) -> KeptStore {
        KeptStore { pool }
    }

    /// The sessions kept for `owner`.
    pub async fn load(&self, owner: Uuid) -> Result<Vec<Kept>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT client_id, slot, family_id, subscriptions, released_at, expiry_seconds
               FROM mqtt_kept_sessions WHERE owner_id = $1",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(client_id, slot, family, subscriptions, released_at, expiry)| {
                let subscriptions = serde_json::from_value::<Vec<Subscription>>(subscriptions)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| {
                        let filter = Filter::parse(&s.path).ok()?;
                        let qos = if s.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                        Some(Carried { path: s.path, filter, qos })
                    })
                    .collect();
                Kept {
                    client_id,
                    slot: slot.max(0) as usize,
                    family: family.map(TokenFamilyId),
                    subscriptions,
                    released_at,
                    expiry: expiry.and_then(|s| u32::try_from(s).ok()),
                }
            })
            .collect())
    }

    /// Records `kept` (replacing another client id's record of the same slot: evicted).
    pub async fn put(&self, owner: Uuid, kept: &Kept) -> Result<(), sqlx::Error> {
        let subscriptions: Vec<Subscription> =
            kept.subscriptions.iter().map(|c| Subscription { path: c.path.clone(), qos: c.qos as u8 }).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM mqtt_kept_sessions WHERE owner_id = $1 AND slot = $2 AND client_id <> $3")
            .bind(owner)
            .bind(kept.slot as i16)
            .bind(&kept.client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO mqtt_kept_sessions (owner_id, client_id, slot, family_id, subscriptions, released_at, expiry_seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (owner_id, client_id) DO UPDATE
                SET slot = EXCLUDED.slot, family_id = EXCLUDED.family_id, subscriptions = EXCLUDED.subscriptions,
                    released_at = EXCLUDED.released_at, expiry_seconds = EXCLUDED.expiry_seconds, updated_at = now()",
        )
        .bind(owner)
        .bind(&kept.client_id)
        .bind(kept.slot as i16)
        .bind(kept.family.map(|f| f.0))
        .bind(serde_json::to_value(&subscriptions).unwrap_or_default())
        .bind(kept.released_at)
        .bind(kept.expiry.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Forgets the sessions of these client ids (a clean session, or an evicted slot).
    pub async fn remove(&self, owner: Uuid, client_ids: &[String]) -> Result<(), sqlx::Error> {
        if client_ids.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM mqtt_kept_sessions WHERE owner_id = $1 AND client_id = ANY($2)")
            .bind(owner)
            .bind(client_ids)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
