//! The service's own publisher: alerts, presence, chat and notifications go into the
//! broker through one rumqttc client connected to the core, with the QoS and retain flag
//! the topic contract states. It is the transport behind the capabilities'
//! [`nc_messaging::Publisher`] and the node bus's link ([`nc_messaging::bus::Link`]).

use std::sync::Arc;
use std::time::Duration;

use nc_messaging::publish::{PublishFuture, Qos, Transport};
use nc_messaging::PublishError;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::cluster::Bus;
use crate::core::Core;
use crate::topic::Topic;

#[derive(Clone)]
pub struct ServicePublisher {
    client: AsyncClient,
    link: Arc<LinkState>,
}

/// The service's link to the core: when it was last lost and came back. The people whose
/// connections went with a core server reconnect meanwhile (see
/// [`nc_messaging::Connections::link_unsettled_at`]).
#[derive(Default)]
pub(crate) struct LinkState(std::sync::Mutex<(bool, Option<std::time::Instant>)>);

impl LinkState {
    fn lost(&self) {
        *self.0.lock().expect("link") = (true, Some(std::time::Instant::now()));
    }
    fn back(&self) {
        let mut s = self.0.lock().expect("link");
        if s.0 {
            *s = (false, Some(std::time::Instant::now()));
        }
    }
    /// `now` while down; when it came back; `None` if never lost.
    pub(crate) fn unsettled_at(&self) -> Option<std::time::Instant> {
        match *self.0.lock().expect("link") {
            (true, _) => Some(std::time::Instant::now()),
            (false, at) => at,
        }
    }
}

fn qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

impl Transport for ServicePublisher {
    fn publish(&self, topic: String, q: Qos, retain: bool, payload: Vec<u8>) -> PublishFuture<'_> {
        Box::pin(async move {
            self.client.publish(topic, qos(q), retain, payload).await.map_err(|e| PublishError(e.to_string()))
        })
    }
}

impl nc_messaging::bus::Link for ServicePublisher {
    fn send(&self, topic: String, payload: Vec<u8>) -> PublishFuture<'_> {
        Box::pin(async move {
            self.client.publish(topic, QoS::AtMostOnce, false, payload).await.map_err(|e| PublishError(e.to_string()))
        })
    }

    fn try_send(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        self.client.try_publish(topic, QoS::AtMostOnce, false, payload).map_err(|e| PublishError(e.to_string()))
    }
}

impl ServicePublisher {
    /// Connects to the core, waits until the core accepts the session (this is also how
    /// the edge knows the core is up), and keeps the connection up (reconnecting, to the
    /// core's next address after a failure). With an external core it also carries the
    /// node-to-node events of `bus` (see [`crate::cluster`]).
    pub async fn start(core: &Core, bus: &Bus) -> std::io::Result<ServicePublisher> {
        let id = format!("svc-{}", uuid::Uuid::new_v4().simple());
        let options = move |core: &Core| {
            let addr = core.addr();
            let mut options = MqttOptions::new(id.clone(), addr.host, addr.port);
            options.set_credentials(core.user.clone(), core.credential.clone());
            options.set_keep_alive(Duration::from_secs(30));
            options.set_max_packet_size(1024 * 1024, 1024 * 1024);
            options.set_inflight(200);
            if let (true, Some(tls)) = (addr.tls, core.tls()) {
                options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
            }
            options
        };
        let (client, mut eventloop) = AsyncClient::new(options(core), 1024);
        let started = tokio::time::Instant::now();
        let wait = if core.embedded() { Duration::from_secs(10) } else { Duration::from_secs(30) };
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) if started.elapsed() < wait => {
                    tracing::debug!(error = %e, "waiting for the broker core");
                    core.rotate();
                    eventloop.mqtt_options = options(core);
                    tokio::time::sleep(Duration::from_millis(if core.embedded() { 20 } else { 500 })).await;
                }
                Err(e) => {
                    return Err(std::io::Error::other(format!("the broker core did not accept the service: {e}")))
                }
            }
        }
        let link = Arc::new(LinkState::default());
        if bus.enabled() {
            bus.attach(Arc::new(ServicePublisher { client: client.clone(), link: link.clone() }));
            subscribe_bus(&client);
        }
        let state = link.clone();
        let core = core.clone();
        let bus = bus.clone();
        let sub = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => bus.deliver(&p.topic, &p.payload),
                    // A new connection (clean session): the node's subscription again.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        state.back();
                        if bus.enabled() {
                            subscribe_bus(&sub);
                        }
                    }
                    Ok(Event::Incoming(_)) | Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        state.lost();
                        tracing::warn!(error = %e, "service publisher disconnected from the core; reconnecting");
                        if !core.embedded() {
                            core.rotate();
                            eventloop.mqtt_options = options(&core);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(ServicePublisher { client, link })
    }

    /// The state of the link to the core.
    pub(crate) fn link(&self) -> Arc<LinkState> {
        self.link.clone()
    }

    /// The QoS and retain flag the contract gives a topic ([`nc_messaging::publish::contract`]).
    pub fn contract(topic: &Topic) -> (QoS, bool) {
        let (q, retain) = nc_messaging::publish::contract(topic);
        (qos(q), retain)
    }

    /// The capabilities' handle on this publisher.
    pub fn handle(&self) -> nc_messaging::Publisher {
        nc_messaging::Publisher::new(Arc::new(self.clone()))
    }

    /// Publishes `payload` on `topic` with the contract's QoS and retain flag.
    pub async fn publish(&self, topic: &Topic, payload: Vec<u8>) -> Result<(), PublishError> {
        let (qos, retain) = Self::contract(topic);
        self.client.publish(topic.to_string(), qos, retain, payload).await.map_err(|e| PublishError(e.to_string()))
    }

    /// Forwards a machine's committed message as it was published (topic, QoS, payload;
    /// never retained): for the machine sessions the edge keeps itself.
    pub async fn forward(&self, publish: &rumqttc::Publish) -> Result<(), PublishError> {
        let topic = publish.topic.clone();
        self.client
            .publish_bytes(topic, publish.qos, false, publish.payload.clone())
            .await
            .map_err(|e| PublishError(e.to_string()))
    }

    /// Publishes a payload as JSON (the payload types are in [`crate::payload`] and with the
    /// code that builds them; the AsyncAPI document describes them).
    pub async fn publish_json(&self, topic: &Topic, body: &impl serde::Serialize) -> Result<(), PublishError> {
        self.publish(topic, crate::payload::to_bytes(body)).await
    }
}

fn subscribe_bus(client: &AsyncClient) {
    if let Err(e) = client.try_subscribe(format!("{}/#", crate::cluster::PREFIX), QoS::AtMostOnce) {
        tracing::error!(error = %e, "cannot subscribe to the other nodes' events");
    }
}
