//! Node-to-node events, when several nodes share an external MQTT core (the transport, a
//! [`Link`], is the broker's: its service client on the shared core).
//!
//! MQTT clients of every node already meet in the core. What a node fans out *in process* —
//! committed readings, alert changes, presence and chat events, which its live WebSocket
//! streams (`/ws/health-metrics`, `/ws/chat`) and its alarm conditions listen to — must
//! reach the other nodes too. Each node publishes those events on
//! `nc-node/v1/{kind}/{node id}` through its service publisher and subscribes to
//! `nc-node/v1/#`; an event from another node is handed to the handler its component
//! registered for the kind ([`Bus::on`]), which feeds the same in-process channel as a
//! local event. Clients can never reach these topics: the edge relays only topics of the
//! contract (`nc/v1/…`), and the core accepts only the nodes' credential.
//!
//! QoS 0, in order per node: these are live views (a WebSocket stream already says
//! `lagged` when it falls behind); everything durable is in PostgreSQL, and the MQTT
//! deliveries to clients keep their own QoS through the core. With the embedded core
//! (one node) the bus is off and costs nothing.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::publish::{PublishError, PublishFuture};

/// The topic prefix of node-to-node events.
pub const PREFIX: &str = "nc-node/v1";

/// Largest payload a node publishes on the bus (the core's packet limit is 1 MiB); a
/// component splits larger batches itself.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

type Handler = Box<dyn Fn(&[u8]) + Send + Sync>;

/// How node events travel to the other nodes (QoS 0, never retained).
pub trait Link: Send + Sync + 'static {
    /// Sends, waiting for room in the transport's queue.
    fn send(&self, topic: String, payload: Vec<u8>) -> PublishFuture<'_>;
    /// Sends without waiting: an error when the queue is full.
    fn try_send(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError>;
}

struct Inner {
    node: Uuid,
    /// `node` as it appears in topics (`simple` form), built once.
    key: String,
    enabled: bool,
    link: OnceLock<Arc<dyn Link>>,
    handlers: RwLock<HashMap<&'static str, Handler>>,
}

/// The node's link to the others. Cheap to clone.
#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("node", &self.0.node).field("enabled", &self.0.enabled).finish()
    }
}

impl Bus {
    /// A bus; `enabled`: other nodes may exist (an external core).
    pub fn new(enabled: bool) -> Bus {
        let node = Uuid::now_v7();
        Bus(Arc::new(Inner {
            node,
            key: node.simple().to_string(),
            enabled,
            link: OnceLock::new(),
            handlers: RwLock::new(HashMap::new()),
        }))
    }

    /// A bus that is off (one node; tests of a single component).
    pub fn single() -> Bus {
        Bus::new(false)
    }

    /// Whether other nodes may exist (an external core).
    pub fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// This node's id (random per process).
    pub fn node(&self) -> Uuid {
        self.0.node
    }

    /// The transport to the other nodes (the broker's, once it is connected to the core).
    pub fn attach(&self, link: Arc<dyn Link>) {
        let _ = self.0.link.set(link);
    }

    /// Publishes an event of `kind` to the other nodes (nothing when the bus is off),
    /// waiting for room in the publisher's queue (backpressure, as for everything the node
    /// publishes): presence, alert changes and committed readings must not be dropped in a
    /// burst (a lost "online" would let another node raise a false offline alarm).
    pub async fn send<T: Serialize>(&self, kind: &'static str, value: &T) {
        let Some((link, topic, payload)) = self.encode(kind, value) else { return };
        if let Err(e) = link.send(topic, payload).await {
            tracing::warn!(kind, error = %e, "a node event could not be published to the other nodes");
        }
    }

    /// Like [`Bus::send`] without waiting, for callers that cannot (chat's room events, a
    /// few per message): when the publisher's queue is full the event is dropped and logged.
    pub fn publish<T: Serialize>(&self, kind: &'static str, value: &T) {
        let Some((link, topic, payload)) = self.encode(kind, value) else { return };
        if let Err(e) = link.try_send(topic, payload) {
            tracing::warn!(kind, error = %e, "a node event could not be queued for the other nodes; dropped");
        }
    }

    fn encode<T: Serialize>(&self, kind: &'static str, value: &T) -> Option<(&Arc<dyn Link>, String, Vec<u8>)> {
        if !self.0.enabled {
            return None;
        }
        let link = self.0.link.get()?;
        let payload = match serde_json::to_vec(value) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(kind, error = %e, "a node event could not be encoded");
                return None;
            }
        };
        if payload.len() > MAX_EVENT_BYTES {
            tracing::error!(kind, bytes = payload.len(), "a node event is too large for the bus; dropped");
            return None;
        }
        Some((link, format!("{PREFIX}/{kind}/{}", self.0.key), payload))
    }

    /// Runs `handler` for every event of `kind` another node publishes (one handler per kind).
    pub fn on<T: DeserializeOwned>(&self, kind: &'static str, handler: impl Fn(T) + Send + Sync + 'static) {
        let wrapped: Handler = Box::new(move |bytes: &[u8]| match serde_json::from_slice::<T>(bytes) {
            Ok(v) => handler(v),
            Err(e) => tracing::error!(kind, error = %e, "a node event from another node could not be read"),
        });
        self.0.handlers.write().expect("bus handlers").insert(kind, wrapped);
    }

    /// An event the core delivered on `topic` (from the subscription to `nc-node/v1/#`).
    pub fn deliver(&self, topic: &str, payload: &[u8]) {
        let Some(rest) = topic.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('/')) else { return };
        let Some((kind, origin)) = rest.split_once('/') else { return };
        if origin == self.0.key {
            return; // our own, delivered in process already
        }
        if let Some(handler) = self.0.handlers.read().expect("bus handlers").get(kind) {
            handler(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_of_other_nodes_reach_their_handler_and_our_own_do_not() {
        let bus = Bus::new(true);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        bus.on("readings", move |v: Vec<u32>| s.lock().unwrap().extend(v));
        let other = Uuid::now_v7().simple();
        bus.deliver(&format!("{PREFIX}/readings/{other}"), b"[1,2]");
        bus.deliver(&format!("{PREFIX}/readings/{}", bus.node().simple()), b"[3]");
        bus.deliver(&format!("{PREFIX}/alerts/{other}"), b"[4]");
        bus.deliver(&format!("{PREFIX}/readings/{other}"), b"not json");
        bus.deliver("nc/v1/h/x/d/y/telemetry", b"[5]");
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    }
}
