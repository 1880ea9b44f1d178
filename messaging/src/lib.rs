//! The messaging contract, without the transport: what the capabilities (ingest, alarms,
//! chat, bookings) need to speak to MQTT clients and to the other nodes, and nothing of how
//! it travels. The broker implements it (its edge, its core connection, the node bus over the
//! shared core); the capabilities depend on this crate only, never on the broker.
//!
//! - [`topic`]: the typed topics of the contract (`topics.md`), parsed and printed in one place;
//! - [`payload`]: the payloads the service publishes and the `v`/`type` pieces they share;
//! - [`publish`]: the [`Publisher`] handle (the contract's QoS and retain per topic) over a
//!   [`publish::Transport`] the broker provides;
//! - [`sink`]: the inbound interfaces, through which the edge hands what clients publish to
//!   the service and learns when it is stored;
//! - [`bus`]: node-to-node events when several nodes share a core;
//! - [`Connections`]: what a capability may ask about live connections;
//! - [`Outbound`]: all of it, given to each capability when it is built.

pub mod bus;
pub mod payload;
pub mod publish;
pub mod sink;
pub mod topic;

pub use bus::Bus;
pub use publish::{PublishError, Publisher};
pub use sink::{
    DeviceMessage, NoPersonSink, NothingOnSubscribe, PersonMessage, PersonSink, SinkFuture, SinkOutcome,
    SinkUnavailable, Subscribed, TelemetrySink,
};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use nc_domain::{DeviceId, HospitalId, RoomId, UserId};

/// A device came online or went offline (on this node or, with several nodes, another).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PresenceEvent {
    pub device: DeviceId,
    pub hospital: HospitalId,
    pub online: bool,
    pub at: DateTime<Utc>,
    pub reason: payload::StatusReason,
}

/// What a capability may ask the transport about live connections.
pub trait Connections: Send + Sync + 'static {
    /// The access epoch: a counter every access event moves on, `None` while access events
    /// may be being missed. A decision taken at epoch `e` still holds while it is `e`.
    fn epoch(&self) -> Option<u64>;
    /// Whether `user` has a live connection subscribed under `room` (it sees the room's
    /// messages at once, so a notification about them would be noise).
    fn user_in_room(&self, user: UserId, room: RoomId) -> bool;
    /// Whether `user` has a live connection subscribed to their notifications (the alarm
    /// system's reachability).
    fn notified(&self, user: UserId, hospital: HospitalId) -> bool;
    /// Everyone with a live connection subscribed to their notifications here.
    fn notification_listeners(&self) -> Vec<UserId>;
    /// When the transport's link to the rest of the messaging system (an MQTT core) last
    /// came back after it was lost, `now` while it is down; `None` if it was never lost. The
    /// people whose connections went with it are reconnecting meanwhile.
    fn link_unsettled_at(&self) -> Option<std::time::Instant> {
        None
    }
}

/// What the transport gives every capability when it is built: the publisher, the node bus
/// and what it knows of live connections. Nothing is attached later, so nothing a
/// capability publishes can be lost before it is wired.
#[derive(Clone)]
pub struct Outbound {
    pub publisher: Publisher,
    pub bus: Bus,
    pub connections: Arc<dyn Connections>,
}

impl Outbound {
    /// No transport: nothing is published and nobody is connected. For what only writes
    /// data with no broker running (the demo's seeding) and for tests of one component.
    pub fn none() -> Outbound {
        Outbound { publisher: Publisher::new(Arc::new(Nowhere)), bus: Bus::single(), connections: Arc::new(Nowhere) }
    }
}

/// The transport of [`Outbound::none`].
struct Nowhere;

impl publish::Transport for Nowhere {
    fn publish(&self, _: String, _: publish::Qos, _: bool, _: Vec<u8>) -> publish::PublishFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

impl Connections for Nowhere {
    fn epoch(&self) -> Option<u64> {
        None
    }
    fn user_in_room(&self, _: UserId, _: RoomId) -> bool {
        false
    }
    fn notified(&self, _: UserId, _: HospitalId) -> bool {
        false
    }
    fn notification_listeners(&self) -> Vec<UserId> {
        Vec::new()
    }
}
