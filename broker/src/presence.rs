//! Device presence: connect and disconnect (graceful, abrupt or keepalive expiry) mark a
//! device online/offline, update `last_seen`, publish the retained status message and emit
//! an event for the alert engine.

use chrono::{DateTime, Utc};
use nc_domain::{DeviceId, HospitalId};
use nc_entities::devices;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::broadcast;

use crate::payload::{Status, StatusReason};
use crate::publisher::Publisher;
use crate::topic::{DeviceChannel, Topic};

/// A device came online or went offline.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceEvent {
    pub device: DeviceId,
    pub hospital: HospitalId,
    pub online: bool,
    pub at: DateTime<Utc>,
    pub reason: StatusReason,
}

#[derive(Clone)]
pub struct Presence {
    db: DatabaseConnection,
    publisher: Publisher,
    events: broadcast::Sender<PresenceEvent>,
}

impl Presence {
    pub fn new(db: DatabaseConnection, publisher: Publisher) -> Self {
        // Large enough for a whole fleet reconnecting at once.
        let (events, _) = broadcast::channel(32 * 1024);
        Self { db, publisher, events }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    /// Records the change, publishes the retained status (unless `publish` is false: an
    /// abrupt loss is announced by the last will the core fires) and emits the event.
    pub async fn set(&self, device: DeviceId, hospital: HospitalId, online: bool, reason: StatusReason, publish: bool) {
        let at = Utc::now();
        let updated = devices::Entity::update_many()
            .col_expr(devices::Column::Online, Expr::value(online))
            .col_expr(devices::Column::LastSeen, Expr::value(at))
            .filter(devices::Column::Id.eq(device))
            .exec(&self.db)
            .await;
        if let Err(e) = updated {
            tracing::warn!(%device, error = %e, "could not record device presence");
        }
        if publish {
            let topic = Topic::Device { hospital, device, channel: DeviceChannel::Status };
            if let Err(e) = self.publisher.publish_json(&topic, &Status::new(online, reason, Some(at))).await {
                tracing::warn!(%device, error = %e, "could not publish device status");
            }
        }
        let _ = self.events.send(PresenceEvent { device, hospital, online, at, reason });
    }
}
