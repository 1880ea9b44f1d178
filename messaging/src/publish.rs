//! The service's publisher handle: what the capabilities publish (alerts, chat messages,
//! receipts, typing, bookings, readings that came by another way than MQTT) goes through a
//! [`Publisher`], with the QoS and retain flag the topic contract states ([`contract`]). How
//! it travels is the [`Transport`]'s business: the broker provides one (its client connected
//! to the core).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::topic::{DeviceChannel, RoomChannel, Topic};

/// MQTT's delivery guarantees that the contract uses (QoS 2 is not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

impl Qos {
    /// The QoS level as MQTT numbers it.
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing failed: {0}")]
pub struct PublishError(pub String);

pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send + 'a>>;

/// How published messages travel (implemented by the broker).
pub trait Transport: Send + Sync + 'static {
    /// Publishes `payload` on the topic named `topic`, waiting for room in the transport's
    /// queue (backpressure) but not for delivery.
    fn publish(&self, topic: String, qos: Qos, retain: bool, payload: Vec<u8>) -> PublishFuture<'_>;
}

/// The QoS and retain flag the contract gives a topic.
pub fn contract(topic: &Topic) -> (Qos, bool) {
    match topic {
        Topic::Device { channel: DeviceChannel::Status, .. } => (Qos::AtLeastOnce, true),
        Topic::Room { channel: RoomChannel::Typing, .. } => (Qos::AtMostOnce, false),
        _ => (Qos::AtLeastOnce, false),
    }
}

/// Whether the contract lets the payloads of `topic` carry an `expiresAt` (notifications and
/// alarm events: a change stays news only so long). MQTT 5 subscribers get it as the Message
/// Expiry Interval and are never sent a message past it (topics.md, "Message expiry").
pub fn may_expire(topic: &Topic) -> bool {
    matches!(
        topic,
        Topic::Notifications { .. }
            | Topic::Device { channel: DeviceChannel::Alerts, .. }
            | Topic::Patient { channel: crate::topic::PatientChannel::Alerts, .. }
    )
}

/// Publishes on the contract's topics. Cheap to clone.
#[derive(Clone)]
pub struct Publisher(Arc<dyn Transport>);

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publisher")
    }
}

impl Publisher {
    pub fn new(transport: Arc<dyn Transport>) -> Publisher {
        Publisher(transport)
    }

    /// Publishes `payload` on `topic` with the contract's QoS and retain flag.
    pub async fn publish(&self, topic: &Topic, payload: Vec<u8>) -> Result<(), PublishError> {
        let (qos, retain) = contract(topic);
        self.0.publish(topic.to_string(), qos, retain, payload).await
    }

    /// Publishes a payload as JSON (the payload types are in [`crate::payload`] and with the
    /// code that builds them; the AsyncAPI document describes them).
    pub async fn publish_json(&self, topic: &Topic, body: &impl serde::Serialize) -> Result<(), PublishError> {
        self.publish(topic, crate::payload::to_bytes(body)).await
    }

    /// Publishes a machine's message that the service received and committed by another way
    /// than MQTT (a reading posted over HTTP) exactly as the edge forwards one published over
    /// MQTT: on the machine's topic and, when it belongs to a patient's treatment, on the
    /// patient's own copy of it.
    pub async fn publish_committed(
        &self,
        topic: &Topic,
        patient: Option<nc_domain::PatientId>,
        payload: Vec<u8>,
    ) -> Result<(), PublishError> {
        if let Some(copy) = patient.and_then(|p| topic.patient_copy(p)) {
            self.publish(&copy, payload.clone()).await?;
        }
        self.publish(topic, payload).await
    }
}
