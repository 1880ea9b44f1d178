//! The relay: one client's packets, both ways, between the client and its session in the
//! core, once CONNECT is done (see the parent module).
//!
//! The invariant that makes access hold for state that outlives a connection: **a message
//! from the core reaches the client only if its topic is matched by a subscription this
//! connection holds under the current rights** ([`Session::may_deliver`]). A connection's
//! subscriptions are those it subscribed to (each authorized through the policy module)
//! and those a resumed persistent session carries, re-authorized before the CONNACK is
//! sent ([`reauthorize`]); the rights are re-checked on every access event, and a
//! connection that lost any is closed. Whatever rumqttd restores, queues or retains, every
//! byte towards the client passes this gate.

mod acks;
mod publish;
mod subscribe;
mod upstream;

pub(super) use self::subscribe::{reauthorize, watch_filter, Reauthorized};
use self::upstream::{read_core, Upstream};

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesOrdered, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use nc_access::authn::AuthnError;
use nc_access::Subject;
use nc_domain::PatientId;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{Packet, Publish, QoS, UnsubAck, Unsubscribe};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::acks::{ClientAck, DeliveryAcks};
use super::v5::{self, FromClient, Request, V5};
use super::{write_packet, End, Identity};
use crate::acl::{self, AclError, Grant};
use crate::payload::{kind, EndedReason, SubscriptionEnded, V1};
use crate::registry::Control;
use crate::sessions::Carried;

use crate::topic::{Filter, Topic};
use crate::transport::{ClientRx, ClientTx};
use crate::Shared;

/// What a waiting acknowledgement resolves to, in publish order.
enum Settled {
    /// Forward `publish` to the core (if any; also on the patient's own topic when the
    /// message belongs to a patient), then PUBACK `pkid` (if QoS 1).
    Forward { pkid: Option<u16>, publish: Option<Publish>, patient: Option<PatientId>, received: Option<Instant> },
    /// Invalid: PUBACK (if QoS 1), publish `error` on the device's errors topic, do not forward.
    Rejected { pkid: Option<u16>, error: serde_json::Value, received: Option<Instant> },
    /// Storage unavailable: close without acknowledging.
    Unavailable(String, Option<Instant>),
    /// Refused before it reached the service (MQTT 5 only: its PUBACK says why).
    Refused { pkid: Option<u16>, refusal: v5::PubRefusal, why: String },
}

/// A waiting acknowledgement, and the request to answer once it is settled.
type Pending = Pin<Box<dyn Future<Output = (Settled, Option<Request>)> + Send>>;

/// A subscription the connection holds: what it matches, and the QoS granted (as asked, at
/// most 1; the core may grant less for a session in the core, but only a session kept here
/// delivers by it).
#[derive(Debug, Clone, Copy)]
struct Held {
    filter: Filter,
    qos: QoS,
}

pub(super) struct Session {
    shared: Arc<Shared>,
    identity: Identity,
    peer: SocketAddr,
    /// The identity's key and this connection's hold on its slot in the session book.
    owner: Uuid,
    generation: u64,
    conn_id: u64,
    tx: ClientTx,
    /// The session in the core; `None` for a machine's session with the embedded core,
    /// which the edge keeps itself (see `serve`): subscriptions answered here, committed
    /// messages forwarded through the service's publisher, PINGREQ answered here.
    up_tx: Option<crate::core::CoreTx>,
    /// Packets for the core not yet written: everything one turn of the loop produces (a
    /// reading's device and patient copies, acknowledgements) goes out in one write.
    core_out: BytesMut,
    /// When the edge last wrote to the core: the upstream link is kept alive from it (a
    /// machine whose readings nobody subscribes to sends nothing upstream, and the core
    /// would end the link after 1.5 × its keep-alive).
    core_written_at: tokio::time::Instant,
    /// The edge's own PINGREQs whose PINGRESP has not come back (not the client's to see).
    own_pings: u32,
    /// The subscriptions this connection holds under the current rights, by filter string:
    /// the delivery gate.
    subscriptions: HashMap<String, Held>,
    upstream: HashMap<u16, Upstream>,
    /// The core's QoS 1 deliveries not yet acknowledged to it, in delivery order.
    delivery_acks: DeliveryAcks,
    next_pkid: u16,
    pending: FuturesOrdered<Pending>,
    limiter: DefaultDirectRateLimiter,
    subscribe_limiter: DefaultDirectRateLimiter,
    /// When the earliest temporary grant a subscription rests on expires.
    grant_until: Option<DateTime<Utc>>,
    /// A re-check that could not be answered (storage unavailable) is tried again then.
    retry_recheck: Option<tokio::time::Instant>,
    /// What an MQTT 5 client negotiated (`None`: MQTT 3.1.1).
    v5: Option<V5>,
    /// The connection to the client is closed (after its DISCONNECT, for MQTT 5).
    closed: bool,
}

/// A time far enough away to stand for "never" in a `select!` branch that is disabled.
fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// The answer of a re-check of a live connection's rights.
enum Recheck {
    Allowed,
    Denied(String),
    /// Storage could not answer: the connection keeps what it had (a revocation is written
    /// to that same storage, so none can have happened unseen) and the check is retried.
    Unknown(String),
}

pub(super) struct Link {
    pub identity: Identity,
    pub peer: SocketAddr,
    pub owner: Uuid,
    pub generation: u64,
    pub conn_id: u64,
}

impl Session {
    pub(super) fn new(
        shared: Arc<Shared>,
        link: Link,
        tx: ClientTx,
        up_tx: Option<crate::core::CoreTx>,
        v5: Option<V5>,
    ) -> Session {
        let per_second = |n: u32| Quota::per_second(NonZeroU32::new(n.max(1)).expect("non-zero"));
        let settings = &shared.settings;
        Session {
            limiter: RateLimiter::direct(per_second(settings.messages_per_second)),
            subscribe_limiter: RateLimiter::direct(
                per_second(settings.subscribes_per_second)
                    .allow_burst(NonZeroU32::new(settings.subscribe_burst.max(1)).expect("non-zero")),
            ),
            shared: shared.clone(),
            identity: link.identity,
            peer: link.peer,
            owner: link.owner,
            generation: link.generation,
            conn_id: link.conn_id,
            tx,
            up_tx,
            core_out: BytesMut::with_capacity(4096),
            core_written_at: tokio::time::Instant::now(),
            own_pings: 0,
            subscriptions: HashMap::new(),
            upstream: HashMap::new(),
            delivery_acks: DeliveryAcks::default(),
            next_pkid: 0,
            pending: FuturesOrdered::new(),
            grant_until: None,
            retry_recheck: None,
            v5,
            closed: false,
        }
    }

    /// Adopts what a resumed session may still hold, and removes the rest from the core
    /// before anything is relayed. The person is told on their notification topic which
    /// subscriptions ended. Returns whether the session is present for the client.
    pub(super) async fn resume(&mut self, core_present: bool, decided: Reauthorized) -> std::io::Result<bool> {
        for (c, until) in decided.kept {
            self.note_grant(until);
            self.subscriptions.insert(c.path, Held { filter: c.filter, qos: c.qos });
        }
        if !decided.dropped.is_empty() {
            if let Subject::User(u) = self.identity.subject {
                let topic = Topic::Notifications { hospital: u.hospital, user: u.id };
                let filters: Vec<&str> = decided.dropped.iter().map(|c| c.path.as_str()).collect();
                let note = SubscriptionEnded {
                    v: V1,
                    r#type: kind::SubscriptionEnded,
                    filters: filters.into_iter().map(str::to_owned).collect(),
                    reason: EndedReason::NotPermitted,
                    at: Utc::now(),
                };
                if let Err(e) = self.shared.publisher.publish_json(&topic, &note).await {
                    tracing::debug!(error = %e, "could not tell the client which subscriptions ended");
                }
            }
            self.drop_upstream(decided.dropped).await?;
        }
        Ok(core_present)
    }

    async fn drop_upstream(&mut self, dropped: Vec<Carried>) -> std::io::Result<()> {
        let paths: Vec<String> = dropped.into_iter().map(|c| c.path).collect();
        self.shared.sessions.unsubscribed(self.owner, self.generation, &paths);
        self.shared.keep(self.owner, self.generation, false).await;
        if self.direct() {
            return Ok(());
        }
        let pkid = self.allocate_pkid();
        self.upstream.insert(pkid, Upstream::Internal);
        self.send_core(&Packet::Unsubscribe(Unsubscribe { pkid, topics: paths })).await
    }

    /// Whether the edge keeps this session itself (no session in the core).
    fn direct(&self) -> bool {
        self.up_tx.is_none()
    }

    fn note_grant(&mut self, until: Grant) {
        if let Some(t) = until {
            self.grant_until = Some(self.grant_until.map_or(t, |u| u.min(t)));
        }
    }

    /// The delivery gate: the topic of a message the core sends, if it may reach the client.
    fn may_deliver(&self, topic: &str) -> Option<Topic> {
        let t = Topic::parse(topic).ok()?;
        self.subscriptions.values().any(|h| h.filter.matches(&t)).then_some(t)
    }
}

impl Session {
    pub(super) async fn send_client(&mut self, packet: &Packet) -> std::io::Result<()> {
        self.send_client_with(packet, v5::Extra::default()).await.map(|_| ())
    }

    /// Writes bytes already encoded for the client (the MQTT 5 CONNACK).
    pub(super) async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tx.write(bytes).await
    }

    /// Sends a packet in the client's protocol, with what only MQTT 5 can say. `Ok(false)`:
    /// not sent (a delivery larger than an MQTT 5 client's Maximum Packet Size).
    pub(super) async fn send_client_with(&mut self, packet: &Packet, extra: v5::Extra) -> std::io::Result<bool> {
        let Some(v) = &self.v5 else {
            return write_packet(&mut self.tx, packet, usize::MAX).await.map(|()| true);
        };
        match v5::encode(v, packet, extra).map_err(std::io::Error::other)? {
            Some(bytes) => self.tx.write(&bytes).await.map(|()| true),
            None => {
                tracing::debug!(client = ?self.identity.subject, "larger than the client's Maximum Packet Size; not sent");
                Ok(false)
            }
        }
    }

    /// The next packet from the client, in the relay's terms: `Ok(None)` until one is all in
    /// `buf`; `Err(end)` when the client broke the protocol (or left wanting its will sent).
    /// A PUBLISH comes with its request, if it is one (MQTT 5 only).
    fn read_client(&mut self, buf: &mut BytesMut, max: usize) -> Result<Option<(Packet, Option<Request>)>, End> {
        let Some(v) = &mut self.v5 else {
            return match Packet::read(buf, max) {
                Ok(p) => Ok(Some((p, None))),
                Err(CodecError::InsufficientBytes(_)) => Ok(None),
                Err(e) => {
                    tracing::info!(error = %e, "malformed or oversized packet; closing this connection");
                    Err(End::Violation)
                }
            };
        };
        match v5::read(v, buf, max) {
            Ok(Some(FromClient::Packet(p, request))) => Ok(Some((p, request))),
            Ok(None) => Ok(None),
            // The will fires as for a lost connection.
            Ok(Some(FromClient::DisconnectWithWill)) => Err(End::Lost),
            Err(problem) => {
                tracing::info!(?problem, "MQTT 5 protocol problem; disconnecting");
                Err(End::Broken(problem))
            }
        }
    }

    /// An MQTT 5 client has as many QoS 1 deliveries unacknowledged as its Receive Maximum:
    /// nothing more is read from the core until it acknowledges one.
    fn core_paused(&self) -> bool {
        self.v5.as_ref().is_some_and(|v| self.delivery_acks.at_client() >= usize::from(v.receive_max))
    }

    /// Closes the client's connection, telling an MQTT 5 client why first.
    async fn close_client(&mut self, end: End) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let (Some(v), Some(why)) = (&self.v5, end.goodbye()) {
            if let Some(bytes) = v5::goodbye(v, why) {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.tx.write(&bytes)).await;
            }
        }
        self.tx.close().await;
    }

    fn deadline(&self) -> Option<DateTime<Utc>> {
        match (self.identity.valid_until, self.grant_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Relays until the connection ends; closes it (saying why to an MQTT 5 client).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
        &mut self,
        rx: ClientRx,
        buf: BytesMut,
        up_rx: Option<crate::core::CoreRx>,
        up_buf: BytesMut,
        control: mpsc::Receiver<Control>,
        keep_alive: u16,
        shutdown: CancellationToken,
    ) -> End {
        let end = self.relay(rx, buf, up_rx, up_buf, control, keep_alive, shutdown).await;
        self.close_client(end).await;
        end
    }

    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &mut self,
        mut rx: ClientRx,
        mut buf: BytesMut,
        mut up_rx: Option<crate::core::CoreRx>,
        mut up_buf: BytesMut,
        mut control: mpsc::Receiver<Control>,
        keep_alive: u16,
        shutdown: CancellationToken,
    ) -> End {
        let max = self.shared.settings.max_packet_size;
        let max_inflight = self.shared.settings.max_inflight;
        let idle = (keep_alive > 0).then(|| Duration::from_millis(keep_alive as u64 * 1500));
        // The upstream link's keep-alive is the client's (u16::MAX for none): a PINGREQ goes
        // up when the edge has written nothing to the core for half of it.
        let ping_every = Duration::from_millis(if keep_alive == 0 { u16::MAX as u64 } else { keep_alive as u64 } * 500);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            // Packets already buffered from the client are handled before waiting again.
            if self.pending.len() < max_inflight {
                match self.read_client(&mut buf, max) {
                    Ok(Some((packet, request))) => {
                        last_heard = tokio::time::Instant::now();
                        match self.on_client(packet, request).await {
                            Ok(None) => continue,
                            Ok(Some(end)) => return self.finish(end).await,
                            Err(_) => return End::Lost,
                        }
                    }
                    Ok(None) => {}
                    Err(end) => return end,
                }
            }
            while !self.core_paused() {
                let Ok(packet) = Packet::read(&mut up_buf, usize::MAX) else { break };
                match self.on_core(packet).await {
                    Ok(None) => {}
                    Ok(Some(end)) => return self.finish(end).await,
                    Err(_) => return End::Lost,
                }
            }
            // Before waiting: what this turn produced for the core goes out in one write.
            if self.flush_core().await.is_err() {
                return End::CoreClosed;
            }
            let deadline = self.deadline();
            let until_deadline = deadline.map(|d| (d - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let keepalive_at = idle.map(|i| last_heard + i);
            tokio::select! {
                _ = shutdown.cancelled() => return self.finish(End::Shutdown).await,
                read = rx.read(&mut buf), if self.pending.len() < max_inflight => match read {
                    Ok(0) | Err(_) => return End::Lost,
                    Ok(_) => {}
                },
                read = read_core(&mut up_rx, &mut up_buf), if !self.core_paused() => match read {
                    Ok(0) | Err(_) => return End::CoreClosed,
                    Ok(_) => {}
                },
                Some(settled) = self.pending.next(), if !self.pending.is_empty() => {
                    match self.settle(settled).await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(_) => return End::Lost,
                    }
                }
                Some(c) = control.recv() => match c {
                    Control::Recheck => {
                        if let Some(end) = self.recheck("access changed", false).await {
                            return end;
                        }
                    }
                    Control::Replaced => {
                        tracing::debug!(client = ?self.identity.subject, "session taken over by a newer connection");
                        return self.finish(End::TakenOver).await;
                    }
                },
                _ = tokio::time::sleep_until(self.retry_recheck.unwrap_or_else(far)), if self.retry_recheck.is_some() => {
                    if let Some(end) = self.recheck("retrying a re-check", false).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep(until_deadline.unwrap_or(Duration::from_secs(3600))), if until_deadline.is_some() => {
                    if self.identity.valid_until.is_some_and(|v| v <= Utc::now()) {
                        tracing::info!(client = ?self.identity.subject, "credentials expired; disconnecting");
                        return self.finish(End::Expired).await;
                    }
                    // The clock ended the grant: without an answer from storage it is gone.
                    if let Some(end) = self.recheck("a grant expired", true).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(keepalive_at.unwrap_or_else(far)), if keepalive_at.is_some() => {
                    return End::KeepaliveTimeout;
                }
                _ = tokio::time::sleep_until(self.core_written_at + ping_every), if !self.direct() => {
                    self.own_pings += 1;
                    if self.send_core(&Packet::PingReq).await.is_err() || self.flush_core().await.is_err() {
                        return End::CoreClosed;
                    }
                }
            }
        }
    }

    /// Drains acknowledgements still waiting (bounded), then says goodbye to the core so
    /// the will does not fire when the edge announces the end itself (graceful, revoked,
    /// shutdown: see `serve`); otherwise the will's "connection_lost" would overwrite the
    /// retained status just published.
    async fn finish(&mut self, end: End) -> End {
        if matches!(end, End::Graceful | End::Shutdown) {
            let drain = async {
                while let Some(settled) = self.pending.next().await {
                    if !matches!(self.settle(settled).await, Ok(None)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        }
        if end.announced() && !self.direct() {
            let _ = self.send_core(&Packet::Disconnect).await;
        }
        let _ = self.flush_core().await;
        if let Some(up) = self.up_tx.as_mut() {
            let _ = up.shutdown().await;
        }
        self.close_client(end).await;
        end
    }

    /// Re-checks the connection's rights; `Some(end)` when it must end. A check storage
    /// cannot answer ends it when `fail_closed`, and is otherwise retried after a second,
    /// the connection meanwhile unchanged.
    async fn recheck(&mut self, why: &str, fail_closed: bool) -> Option<End> {
        match self.still_allowed().await {
            Recheck::Allowed => {
                self.retry_recheck = None;
                None
            }
            Recheck::Denied(reason) => {
                tracing::info!(client = ?self.identity.subject, %why, %reason, "access revoked; disconnecting");
                Some(self.finish(End::Revoked).await)
            }
            Recheck::Unknown(error) if fail_closed => {
                tracing::info!(client = ?self.identity.subject, %why, %error, "rights could not be re-checked; disconnecting");
                Some(self.finish(End::Revoked).await)
            }
            Recheck::Unknown(error) => {
                tracing::warn!(client = ?self.identity.subject, %why, %error, "rights could not be re-checked; retrying");
                self.retry_recheck = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                None
            }
        }
    }

    /// Whether the identity and every subscription are still permitted; narrows
    /// `grant_until` to the rights that remain.
    async fn still_allowed(&mut self) -> Recheck {
        let subject = self.identity.subject;
        let live = match subject {
            Subject::User(u) => self.shared.authn.recheck_user(&u).await,
            Subject::Device { id, .. } => self.shared.authn.recheck_device(id, self.identity.connected_at).await,
        };
        match live {
            Ok(()) => {}
            Err(AuthnError::Db(e)) => return Recheck::Unknown(e.to_string()),
            Err(e) => return Recheck::Denied(e.to_string()),
        }
        let mut until = None;
        let filters: Vec<Filter> = self.subscriptions.values().map(|h| h.filter).collect();
        for filter in filters {
            match acl::may_subscribe(&self.shared.policy, &subject, &filter).await {
                Ok(Some(t)) if t > Utc::now() => until = Some(until.map_or(t, |u: DateTime<Utc>| u.min(t))),
                Ok(Some(_)) => return Recheck::Denied("a temporary grant expired".to_owned()),
                Ok(None) => {}
                Err(AclError::Lookup(e)) => return Recheck::Unknown(e),
                Err(AclError::Denied(why)) => return Recheck::Denied(why),
            }
        }
        self.grant_until = until;
        Recheck::Allowed
    }

    /// Handles a packet from the client (a PUBLISH with its request, if any). `Ok(Some(end))`
    /// ends the connection.
    async fn on_client(&mut self, packet: Packet, request: Option<Request>) -> std::io::Result<Option<End>> {
        match packet {
            Packet::Publish(publish) => self.client_publish(publish, request).await,
            Packet::Subscribe(subscribe) => self.client_subscribe(subscribe).await.map(|_| None),
            Packet::Unsubscribe(unsubscribe) => {
                for t in &unsubscribe.topics {
                    self.subscriptions.remove(t);
                }
                self.shared.sessions.unsubscribed(self.owner, self.generation, &unsubscribe.topics);
                self.shared.keep(self.owner, self.generation, false).await;
                let filters = unsubscribe.topics.len();
                if self.direct() {
                    let ack = Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid });
                    self.send_client_with(&ack, v5::Extra { unsubscribed: filters, ..Default::default() }).await?;
                    return Ok(None);
                }
                let pkid = self.allocate_pkid();
                self.upstream.insert(pkid, Upstream::Unsubscribe { client_pkid: unsubscribe.pkid, filters });
                self.send_core(&Packet::Unsubscribe(Unsubscribe { pkid, topics: unsubscribe.topics })).await?;
                Ok(None)
            }
            // Acknowledgements of messages the core delivered (the core's own packet ids), in
            // line with those the edge settles itself.
            Packet::PubAck(ack) => {
                match self.delivery_acks.client_acked(ack.pkid) {
                    // Repeated, or from before a reconnect (the core numbers each connection's
                    // deliveries afresh): passed on, it would acknowledge another delivery or
                    // break the core's order.
                    ClientAck::Unknown => tracing::debug!(pkid = ack.pkid, "PUBACK of no delivery in flight; dropped"),
                    ClientAck::Due(due) => self.ack_core(due).await?,
                }
                Ok(None)
            }
            // Deliveries are at most QoS 1: a PUBREC or PUBCOMP answers none of them.
            Packet::PubRec(_) | Packet::PubComp(_) => {
                tracing::debug!("QoS 2 acknowledgement of a QoS 1 delivery; dropped");
                Ok(None)
            }
            Packet::PingReq if self.direct() => {
                self.send_client(&Packet::PingResp).await?;
                Ok(None)
            }
            // QoS 2 publishes are refused (see `client_publish`): no PUBREL answers one here.
            Packet::PubRel(_) if self.direct() => Ok(None),
            p @ (Packet::PubRel(_) | Packet::PingReq) => {
                self.send_core(&p).await?;
                Ok(None)
            }
            Packet::Disconnect => Ok(Some(End::Graceful)),
            other => {
                tracing::info!(packet = ?other, "unexpected packet from client; closing");
                Ok(Some(End::Violation))
            }
        }
    }
}
