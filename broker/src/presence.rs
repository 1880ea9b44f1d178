//! Device presence: connect and disconnect (graceful, abrupt or keepalive expiry) mark a
//! device online/offline, update `last_seen`, log the change in `device_presence_events`
//! (uptime and connection drops, `GET /api/devices/{id}/performance`), publish the retained
//! status message and emit an event for the alert engine.

use chrono::Utc;
use nc_domain::{DeviceId, HospitalId};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::sync::broadcast;

pub use nc_messaging::PresenceEvent;

use crate::cluster::Bus;
use crate::payload::{Status, StatusReason};
use crate::publisher::ServicePublisher;
use crate::topic::{DeviceChannel, Topic};

/// The node event that carries presence changes to the other nodes.
const PRESENCE_EVENT: &str = "presence";

#[derive(Clone)]
pub struct Presence {
    db: DatabaseConnection,
    publisher: ServicePublisher,
    events: broadcast::Sender<PresenceEvent>,
    bus: Bus,
}

impl Presence {
    /// With an enabled `bus`, changes seen on other nodes are emitted here too (the alarm
    /// conditions and live streams of every node hear of every device; raising an alarm
    /// twice is harmless: one open alert per device and condition).
    pub fn new(db: DatabaseConnection, publisher: ServicePublisher, bus: Bus) -> Self {
        // Large enough for a whole fleet reconnecting at once.
        let (events, _) = broadcast::channel(32 * 1024);
        if bus.enabled() {
            let events = events.clone();
            bus.on(PRESENCE_EVENT, move |e: PresenceEvent| {
                let _ = events.send(e);
            });
        }
        Self { db, publisher, events, bus }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    /// Records the change (the device row and the presence log, in one statement), publishes
    /// the retained status (unless `publish` is false: an abrupt loss is announced by the
    /// last will the core fires) and emits the event.
    pub async fn set(&self, device: DeviceId, hospital: HospitalId, online: bool, reason: StatusReason, publish: bool) {
        let at = Utc::now();
        let updated = self
            .db
            .execute(Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "WITH d AS (UPDATE devices SET online = $2, last_seen = $3 WHERE id = $1 RETURNING id, hospital_id) \
                 INSERT INTO device_presence_events (device_id, hospital_id, at, online, reason) \
                 SELECT id, hospital_id, $3, $2, $4 FROM d",
                [device.as_uuid().into(), online.into(), at.into(), reason.as_str().into()],
            ))
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
        let event = PresenceEvent { device, hospital, online, at, reason };
        self.bus.send(PRESENCE_EVENT, &event).await;
        let _ = self.events.send(event);
    }
}
