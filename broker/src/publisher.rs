//! The service's own publisher: alerts, presence, chat and notifications go into the
//! broker through one rumqttc client connected to the core, with the QoS and retain flag
//! the topic contract states.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, QoS};

use crate::core::{Core, INTERNAL_USER};
use crate::topic::{DeviceChannel, RoomChannel, Topic};

#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
}

#[derive(Debug, thiserror::Error)]
#[error("publishing failed: {0}")]
pub struct PublishError(String);

impl Publisher {
    /// Connects to the core, waits until the core accepts the session (this is also how
    /// the edge knows the core is up), and keeps the connection up (rumqttc reconnects).
    pub async fn start(core: &Core) -> std::io::Result<Publisher> {
        let mut options = MqttOptions::new(
            format!("svc-{}", uuid::Uuid::new_v4().simple()),
            core.addr.ip().to_string(),
            core.addr.port(),
        );
        options.set_credentials(INTERNAL_USER, core.credential.clone());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options.set_inflight(200);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let started = tokio::time::Instant::now();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    tracing::debug!(error = %e, "waiting for the embedded broker core");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(std::io::Error::other(format!("the embedded broker core did not start: {e}"))),
            }
        }
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(_)) | Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "service publisher disconnected from the core; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(Publisher { client })
    }

    /// The QoS and retain flag the contract gives a topic.
    pub fn contract(topic: &Topic) -> (QoS, bool) {
        match topic {
            Topic::Device { channel: DeviceChannel::Status, .. } => (QoS::AtLeastOnce, true),
            Topic::Room { channel: RoomChannel::Typing, .. } => (QoS::AtMostOnce, false),
            _ => (QoS::AtLeastOnce, false),
        }
    }

    /// Publishes `payload` on `topic` with the contract's QoS and retain flag.
    pub async fn publish(&self, topic: &Topic, payload: Vec<u8>) -> Result<(), PublishError> {
        let (qos, retain) = Self::contract(topic);
        self.client.publish(topic.to_string(), qos, retain, payload).await.map_err(|e| PublishError(e.to_string()))
    }

    /// Publishes a payload as JSON (the payload types are in [`crate::payload`] and with the
    /// code that builds them; the AsyncAPI document describes them).
    pub async fn publish_json(&self, topic: &Topic, body: &impl serde::Serialize) -> Result<(), PublishError> {
        self.publish(topic, crate::payload::to_bytes(body)).await
    }
}
