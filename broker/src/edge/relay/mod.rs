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
use nc_access::{audit, Subject};
use nc_domain::{AuditAction, Interface, PatientId};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{
    Packet, PubAck, Publish, QoS, SubAck, Subscribe, SubscribeFilter, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::acks::{ClientAck, DeliveryAcks};
use super::{write_packet, End, Identity};
use crate::acl::{self, AclError, Grant};
use crate::payload::{kind, EndedReason, SubscriptionEnded, V1};
use crate::publisher::Publisher;
use crate::registry::Control;
use crate::sessions::Carried;

use crate::topic::{DeviceChannel, Filter, RoomChannel, Topic};
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
}

type Pending = Pin<Box<dyn Future<Output = Settled> + Send>>;

/// Most filters in one SUBSCRIBE.
const MAX_FILTERS: usize = 128;

/// Waiting acknowledgements from the core, by the packet id the edge used upstream.
enum Upstream {
    /// A publish the edge forwarded; its PUBACK is swallowed, or resolves `done`.
    Publish(Option<tokio::sync::oneshot::Sender<()>>),
    /// A SUBSCRIBE carrying some of the client's filters: `codes[i]` is `Some` for a filter
    /// refused here, `None` for one whose answer comes from the core (`forwarded`, in order).
    Subscribe {
        client_pkid: u16,
        codes: Vec<Option<SubscribeReasonCode>>,
        forwarded: Vec<Carried>,
    },
    Unsubscribe {
        client_pkid: u16,
    },
    /// The edge's own UNSUBSCRIBE (subscriptions a resumed session may no longer hold).
    Internal,
}

/// A resumed session's subscriptions, decided with the current rights.
pub(super) struct Reauthorized {
    pub kept: Vec<(Carried, Grant)>,
    pub dropped: Vec<Carried>,
}

/// Decides every subscription a resumed session carries, as if it were subscribed anew, and
/// audits the ones kept. A lookup or audit failure fails the whole CONNECT (code 3): nothing
/// is dropped for a transient error. A technician's subscription to a device is dropped too
/// when its current right on the device began after the session was left: the queue may
/// hold messages from the time it had none.
pub(super) async fn reauthorize(
    shared: &Arc<Shared>,
    subject: &Subject,
    peer: SocketAddr,
    carried: Vec<Carried>,
    released_at: Option<DateTime<Utc>>,
) -> Result<Reauthorized, String> {
    let mut out = Reauthorized { kept: Vec::new(), dropped: Vec::new() };
    let windows = match (subject, released_at) {
        (Subject::User(u), Some(_)) if u.role == nc_domain::Role::Technician && !carried.is_empty() => {
            Some(shared.policy.technician_windows(u.id).await.map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    for c in carried {
        let gap = match (&windows, released_at, filter_device(&c.filter)) {
            (Some(w), Some(left), Some(device)) => !w.iter().any(|w| w.device == device && w.from <= left),
            _ => false,
        };
        match acl::may_subscribe(&shared.policy, subject, &c.filter).await {
            Ok(_) if gap => {
                tracing::info!(client = ?subject, filter = %c.path, "right regained after the session was left; removed");
                out.dropped.push(c);
            }
            Ok(until) => {
                audit_subscription(shared.clone(), *subject, peer, c.filter, "mqtt.subscription.resumed")
                    .await
                    .map_err(|e| e.to_string())?;
                out.kept.push((c, until));
            }
            Err(AclError::Denied(why)) => {
                tracing::info!(client = ?subject, filter = %c.path, %why, "resumed subscription no longer permitted; removed");
                out.dropped.push(c);
            }
            Err(AclError::Lookup(e)) => return Err(e),
        }
    }
    Ok(out)
}

fn filter_device(filter: &Filter) -> Option<nc_domain::DeviceId> {
    match filter {
        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => Some(*device),
        _ => None,
    }
}

/// Makes access events about what `filter` rests on (its device, patient or room, and a
/// room's device and patient) reach connection `conn`.
pub(super) async fn watch_filter(shared: &Shared, conn: u64, filter: &Filter) {
    let (device, room, patient) = match *filter {
        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => {
            (Some(device), None, None)
        }
        Filter::Exact(Topic::Room { room, .. }) | Filter::AnyRoomChannel { room, .. } => (None, Some(room), None),
        Filter::Exact(Topic::Patient { patient, .. }) | Filter::AnyPatientChannel { patient, .. } => {
            (None, None, Some(patient))
        }
        Filter::Exact(Topic::Notifications { .. }) => (None, None, None),
    };
    shared.registry.watch(conn, device, room, patient);
    if let Some(room) = room {
        match shared.policy.room_subjects(room).await {
            Ok((device, patient)) => shared.registry.watch(conn, device, None, patient),
            Err(e) => tracing::warn!(error = %e, "cannot look up what a room is about"),
        }
    }
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
    /// A session kept here: the QoS granted to each subscription.
    direct_qos: HashMap<String, QoS>,
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
    subscriptions: HashMap<String, Filter>,
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
}

fn too_many_in_flight(_: acks::Overflow) -> std::io::Error {
    std::io::Error::other("too many deliveries in flight without acknowledgement")
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
    pub(super) fn new(shared: Arc<Shared>, link: Link, tx: ClientTx, up_tx: Option<crate::core::CoreTx>) -> Session {
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
            direct_qos: HashMap::new(),
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
        }
    }

    /// Adopts what a resumed session may still hold, and removes the rest from the core
    /// before anything is relayed. The person is told on their notification topic which
    /// subscriptions ended. Returns whether the session is present for the client.
    pub(super) async fn resume(&mut self, core_present: bool, decided: Reauthorized) -> std::io::Result<bool> {
        for (c, until) in decided.kept {
            self.note_grant(until);
            if self.direct() {
                self.direct_qos.insert(c.path.clone(), c.qos);
            }
            self.subscriptions.insert(c.path, c.filter);
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

    /// A granted subscription to a patient's or a device's clinical data is audited once
    /// (not per message): who, what, through MQTT, when.
    fn audit(
        &self,
        filter: &Filter,
        resource: &'static str,
    ) -> impl Future<Output = Result<(), sea_orm::DbErr>> + Send + 'static {
        audit_subscription(self.shared.clone(), self.identity.subject, self.peer, *filter, resource)
    }

    /// The delivery gate: the topic of a message the core sends, if it may reach the client.
    fn may_deliver(&self, topic: &str) -> Option<Topic> {
        let t = Topic::parse(topic).ok()?;
        self.subscriptions.values().any(|f| f.matches(&t)).then_some(t)
    }

    /// A notification about a device's alert (e.g. queued while a persistent session was
    /// away) is delivered only if the person may still receive that device's alerts.
    fn notification_allowed(&self, payload: &[u8]) -> impl Future<Output = Result<bool, String>> + Send + 'static {
        let (shared, subject, payload) = (self.shared.clone(), self.identity.subject, payload.to_vec());
        notification_allowed(shared, subject, payload)
    }
}

/// Whether a notification may reach `subject` now; `Err` when storage cannot say (after a
/// few tries over about a second). An alert notification reaches the device's care team
/// (who may receive its alerts topic) and, once the alert has escalated, the people of the
/// tiers it reached (the policy's `escalation_tier`).
async fn notification_allowed(shared: Arc<Shared>, subject: Subject, payload: Vec<u8>) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    struct Note {
        #[serde(rename = "type")]
        kind: Option<String>,
        alert: Option<AlertRef>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AlertRef {
        hospital_id: nc_domain::HospitalId,
        device_id: nc_domain::DeviceId,
        #[serde(default)]
        escalation_level: Option<u8>,
    }
    let Ok(note) = serde_json::from_slice::<Note>(&payload) else { return Ok(true) };
    let (Some("alert"), Some(a)) = (note.kind.as_deref(), note.alert) else { return Ok(true) };
    let topic = Topic::Device { hospital: a.hospital_id, device: a.device_id, channel: DeviceChannel::Alerts };
    let mut wait = Duration::from_millis(100);
    loop {
        let decided = match acl::may_receive(&shared.policy, &subject, &topic).await {
            Ok(_) => Ok(true),
            Err(AclError::Denied(_)) if subject.hospital() != a.hospital_id => Ok(false),
            Err(AclError::Denied(_)) => match shared.policy.escalation_tier(&subject, a.device_id).await {
                Ok(tier) => Ok(nc_access::policy::decide_alert_notice(tier, a.escalation_level.unwrap_or(1)).is_ok()),
                Err(e) => Err(e.to_string()),
            },
            Err(AclError::Lookup(e)) => Err(e),
        };
        match decided {
            Ok(allowed) => return Ok(allowed),
            Err(e) if wait > Duration::from_millis(800) => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

impl Session {
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.upstream.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Queues a packet for the core; [`Session::flush_core`] writes it.
    async fn send_core(&mut self, packet: &Packet) -> std::io::Result<()> {
        packet.write(&mut self.core_out, usize::MAX).map_err(std::io::Error::other)?;
        if self.core_out.len() >= 64 * 1024 {
            self.flush_core().await?;
        }
        Ok(())
    }

    /// Writes what is queued for the core, in one write.
    async fn flush_core(&mut self) -> std::io::Result<()> {
        if !self.core_out.is_empty() {
            if let Some(up) = self.up_tx.as_mut() {
                up.write_all(&self.core_out).await?;
                self.core_written_at = tokio::time::Instant::now();
            }
            self.core_out.clear();
        }
        Ok(())
    }

    pub(super) async fn send_client(&mut self, packet: &Packet) -> std::io::Result<()> {
        write_packet(&mut self.tx, packet, usize::MAX).await
    }

    /// Forwards a publish to the core at the same QoS (QoS 1 with the edge's own packet
    /// id, whose PUBACK resolves `done`). A session kept here forwards through the
    /// service's publisher (in order: one connection).
    async fn forward(
        &mut self,
        mut publish: Publish,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> std::io::Result<()> {
        if self.direct() {
            if let Err(e) = self.shared.publisher.forward(&publish).await {
                tracing::warn!(error = %e, topic = %publish.topic, "could not forward a committed message");
            }
            if let Some(d) = done {
                let _ = d.send(());
            }
            return Ok(());
        }
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            publish.pkid = 0;
            if let Some(d) = done {
                let _ = d.send(());
            }
        } else {
            publish.qos = QoS::AtLeastOnce;
            let pkid = self.allocate_pkid();
            publish.pkid = pkid;
            self.upstream.insert(pkid, Upstream::Publish(done));
        }
        self.send_core(&Packet::Publish(publish)).await
    }

    fn deadline(&self) -> Option<DateTime<Utc>> {
        match (self.identity.valid_until, self.grant_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
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
                match Packet::read(&mut buf, max) {
                    Ok(packet) => {
                        last_heard = tokio::time::Instant::now();
                        match self.on_client(packet).await {
                            Ok(None) => continue,
                            Ok(Some(end)) => return self.finish(end).await,
                            Err(_) => return End::Lost,
                        }
                    }
                    Err(CodecError::InsufficientBytes(_)) => {}
                    Err(e) => {
                        tracing::info!(error = %e, "malformed or oversized packet; closing this connection");
                        return End::Violation;
                    }
                }
            }
            while let Ok(packet) = Packet::read(&mut up_buf, usize::MAX) {
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
                read = read_core(&mut up_rx, &mut up_buf) => match read {
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
                        return self.finish(End::CoreClosed).await;
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
                        return self.finish(End::Revoked).await;
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
        self.tx.close().await;
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
        let filters: Vec<Filter> = self.subscriptions.values().copied().collect();
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

    /// Handles a packet from the client. `Ok(Some(end))` ends the connection.
    async fn on_client(&mut self, packet: Packet) -> std::io::Result<Option<End>> {
        match packet {
            Packet::Publish(publish) => self.client_publish(publish).await,
            Packet::Subscribe(subscribe) => self.client_subscribe(subscribe).await.map(|_| None),
            Packet::Unsubscribe(unsubscribe) => {
                for t in &unsubscribe.topics {
                    self.subscriptions.remove(t);
                }
                self.shared.sessions.unsubscribed(self.owner, self.generation, &unsubscribe.topics);
                self.shared.keep(self.owner, self.generation, false).await;
                if self.direct() {
                    for t in &unsubscribe.topics {
                        self.direct_qos.remove(t);
                    }
                    self.send_client(&Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid })).await?;
                    return Ok(None);
                }
                let pkid = self.allocate_pkid();
                self.upstream.insert(pkid, Upstream::Unsubscribe { client_pkid: unsubscribe.pkid });
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

    async fn client_subscribe(&mut self, subscribe: Subscribe) -> std::io::Result<()> {
        let subject = self.identity.subject;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut forward = Vec::new();
        let mut forwarded = Vec::new();
        // Each filter costs policy lookups and an audit row: the rate counts filters, and a
        // SUBSCRIBE carries at most MAX_FILTERS of them.
        let n = NonZeroU32::new(subscribe.filters.len().max(1) as u32).expect("non-zero");
        let over_rate =
            subscribe.filters.len() > MAX_FILTERS || !matches!(self.subscribe_limiter.check_n(n), Ok(Ok(())));
        if over_rate {
            tracing::warn!(client = ?subject, filters = subscribe.filters.len(), "SUBSCRIBE rate or size exceeded; refusing its filters");
        }
        let mut withdrawn = Vec::new();
        for f in subscribe.filters {
            let parsed = if over_rate {
                Err("too many subscriptions at once".to_owned())
            } else {
                Filter::parse(&f.path).map_err(|e| e.to_string())
            };
            let decision = match parsed {
                Err(e) => Err(e),
                Ok(filter) => {
                    // Watch first: an access event after the decision then reaches us.
                    watch_filter(&self.shared, self.conn_id, &filter).await;
                    match acl::may_subscribe(&self.shared.policy, &subject, &filter).await {
                        Ok(until) => match self.audit(&filter, "mqtt.subscription").await {
                            Ok(()) => Ok((filter, until)),
                            Err(e) => Err(format!("cannot audit the access: {e}")),
                        },
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            match decision {
                Ok((filter, until)) => {
                    self.note_grant(until);
                    self.subscriptions.insert(f.path.clone(), filter);
                    // QoS 2 is not offered: granted QoS is at most 1.
                    let qos = if f.qos == QoS::ExactlyOnce { QoS::AtLeastOnce } else { f.qos };
                    forwarded.push(Carried { path: f.path.clone(), filter, qos });
                    forward.push(SubscribeFilter { path: f.path, qos });
                    codes.push(None);
                }
                Err(why) => {
                    tracing::warn!(client = ?subject, filter = %f.path, %why, "subscription refused");
                    // A refused re-SUBSCRIBE ends the earlier subscription to the same filter.
                    if self.subscriptions.remove(&f.path).is_some() {
                        withdrawn.push(f.path.clone());
                    }
                    codes.push(Some(SubscribeReasonCode::Failure));
                }
            }
        }
        if !withdrawn.is_empty() {
            self.shared.sessions.unsubscribed(self.owner, self.generation, &withdrawn);
            self.shared.keep(self.owner, self.generation, false).await;
        }
        if !withdrawn.is_empty() && !self.direct() {
            let pkid = self.allocate_pkid();
            self.upstream.insert(pkid, Upstream::Internal);
            self.send_core(&Packet::Unsubscribe(Unsubscribe { pkid, topics: withdrawn })).await?;
        }
        if forward.is_empty() {
            let return_codes = codes.into_iter().map(|c| c.unwrap_or(SubscribeReasonCode::Failure)).collect();
            return self.send_client(&Packet::SubAck(SubAck { pkid: subscribe.pkid, return_codes })).await;
        }
        self.shared.sessions.subscribing(self.owner, self.generation, forwarded.iter().map(|c| &c.filter));
        if self.direct() {
            // Kept here: granted as asked (at most QoS 1).
            let granted = forwarded.iter().map(|c| SubscribeReasonCode::Success(c.qos)).collect();
            for c in &forwarded {
                self.direct_qos.insert(c.path.clone(), c.qos);
            }
            return self.subscribe_answered(subscribe.pkid, codes, forwarded, granted).await;
        }
        let pkid = self.allocate_pkid();
        self.upstream.insert(pkid, Upstream::Subscribe { client_pkid: subscribe.pkid, codes, forwarded });
        self.send_core(&Packet::Subscribe(Subscribe { pkid, filters: forward })).await
    }

    /// Settles a QoS 1 delivery of the core at the edge: its PUBACK goes out once every
    /// earlier delivery is acknowledged too.
    async fn settle_delivery_here(&mut self, pkid: u16) -> std::io::Result<()> {
        let due = self.delivery_acks.settled_here(pkid).map_err(too_many_in_flight)?;
        self.ack_core(due).await
    }

    async fn ack_core(&mut self, due: Vec<u16>) -> std::io::Result<()> {
        for pkid in due {
            self.send_core(&Packet::PubAck(PubAck { pkid })).await?;
        }
        Ok(())
    }

    /// A delivery from the core: relayed if the gate lets it through, settled here otherwise.
    async fn core_publish(&mut self, mut p: Publish) -> std::io::Result<Option<End>> {
        let mut allowed = self.may_deliver(&p.topic);
        if let Some(Topic::Notifications { .. }) = allowed {
            match self.notification_allowed(&p.payload).await {
                Ok(true) => {}
                Ok(false) => allowed = None,
                Err(why) => {
                    // Unacknowledged, so a persistent session gets it again.
                    tracing::warn!(client = ?self.identity.subject, %why, "cannot decide whether a notification may be delivered; closing without acknowledging it");
                    return Ok(Some(End::StorageUnavailable));
                }
            }
        }
        if let Some(topic) = allowed {
            // Delivered at most at the contract's QoS (typing indicators: 0), whatever
            // the subscription asked for; the core's QoS 1 flow is settled here.
            if Publisher::contract(&topic).0 == QoS::AtMostOnce && p.qos != QoS::AtMostOnce {
                self.settle_delivery_here(p.pkid).await?;
                p.qos = QoS::AtMostOnce;
                p.pkid = 0;
            } else if p.qos != QoS::AtMostOnce {
                self.delivery_acks.relayed(p.pkid).map_err(too_many_in_flight)?;
            }
            p.retain = p.retain && Publisher::contract(&topic).1;
            return self.send_client(&Packet::Publish(p)).await.map(|_| None);
        }
        // Not for this client under its current rights (e.g. queued for a session
        // before a right ended): acknowledged to the core, never delivered.
        tracing::debug!(client = ?self.identity.subject, topic = %p.topic, "delivery withheld by the gate");
        if p.qos != QoS::AtMostOnce {
            self.settle_delivery_here(p.pkid).await?;
        }
        Ok(None)
    }

    /// Handles a packet from the core. `Ok(Some(end))` ends the connection.
    async fn on_core(&mut self, packet: Packet) -> std::io::Result<Option<End>> {
        let done = match packet {
            Packet::PubAck(ack) => {
                if let Some(Upstream::Publish(Some(done))) = self.upstream.remove(&ack.pkid) {
                    let _ = done.send(());
                }
                Ok(())
            }
            Packet::SubAck(ack) => {
                let Some(Upstream::Subscribe { client_pkid, codes, forwarded }) = self.upstream.remove(&ack.pkid)
                else {
                    return Ok(None);
                };
                self.subscribe_answered(client_pkid, codes, forwarded, ack.return_codes).await
            }
            Packet::UnsubAck(ack) => match self.upstream.remove(&ack.pkid) {
                Some(Upstream::Unsubscribe { client_pkid }) => {
                    self.send_client(&Packet::UnsubAck(UnsubAck { pkid: client_pkid })).await
                }
                _ => Ok(()),
            },
            Packet::Publish(p) => return self.core_publish(p).await,
            // The answer to the edge's own keep-alive ping stays here.
            Packet::PingResp if self.own_pings > 0 => {
                self.own_pings -= 1;
                Ok(())
            }
            // The rest of the QoS flows of deliveries pass through.
            p @ (Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) | Packet::PingResp) => {
                self.send_client(&p).await
            }
            other => {
                tracing::debug!(packet = ?other, "ignoring unexpected packet from the core");
                Ok(())
            }
        };
        done.map(|()| None)
    }
}

impl Session {
    /// The core (or, for a session kept here, the edge) answered the filters `forwarded`
    /// with `answers`: the book learns what is held, the client gets its SUBACK in the
    /// order it asked (`codes`: `Some` for a filter refused before).
    async fn subscribe_answered(
        &mut self,
        client_pkid: u16,
        codes: Vec<Option<SubscribeReasonCode>>,
        forwarded: Vec<Carried>,
        answers: Vec<SubscribeReasonCode>,
    ) -> std::io::Result<()> {
        let mut granted = Vec::new();
        let asked: Vec<Filter> = forwarded.iter().map(|c| c.filter).collect();
        for (c, code) in forwarded.into_iter().zip(answers.iter()) {
            if matches!(code, SubscribeReasonCode::Failure) {
                self.subscriptions.remove(&c.path);
            } else {
                granted.push(c);
            }
        }
        self.shared.sessions.subscribed(self.owner, self.generation, asked, granted);
        self.shared.keep(self.owner, self.generation, false).await;
        let mut from_core = answers.into_iter();
        let return_codes = codes
            .into_iter()
            .map(|c| c.unwrap_or_else(|| from_core.next().unwrap_or(SubscribeReasonCode::Failure)))
            .collect();
        self.send_client(&Packet::SubAck(SubAck { pkid: client_pkid, return_codes })).await
    }

    /// Delivers the service's message on `topic` straight to a session kept here, if one
    /// of its subscriptions matches (at the QoS granted; not queued while it is away: a
    /// machine's errors answer its own publishes).
    async fn deliver_here(&mut self, topic: &Topic, payload: Vec<u8>) -> std::io::Result<()> {
        let path = topic.to_string();
        let Some(granted) = self
            .subscriptions
            .iter()
            .filter(|(_, f)| f.matches(topic))
            .map(|(p, _)| self.direct_qos.get(p).copied().unwrap_or(QoS::AtMostOnce))
            .max_by_key(|q| *q as u8)
        else {
            return Ok(());
        };
        let qos = if Publisher::contract(topic).0 == QoS::AtMostOnce { QoS::AtMostOnce } else { granted };
        let mut publish = Publish::new(path, qos, payload);
        if qos != QoS::AtMostOnce {
            publish.pkid = self.allocate_pkid();
        }
        self.send_client(&Packet::Publish(publish)).await
    }
}

/// Reads from the core, when the session is in the core (otherwise never ready).
async fn read_core(up_rx: &mut Option<crate::core::CoreRx>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match up_rx {
        Some(rx) => rx.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

/// Writes the audit row of a granted subscription (see `Session::audit`).
async fn audit_subscription(
    shared: Arc<Shared>,
    subject: Subject,
    peer: SocketAddr,
    filter: Filter,
    resource: &'static str,
) -> Result<(), sea_orm::DbErr> {
    let (device, patient) = match filter {
        Filter::Exact(Topic::Device { channel: DeviceChannel::Status, .. }) => return Ok(()),
        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => (Some(device), None),
        Filter::Exact(Topic::Patient { patient, .. }) | Filter::AnyPatientChannel { patient, .. } => {
            (None, Some(patient))
        }
        // Following a conversation is a read of it (chat is PHI): audited with what the room
        // is about.
        Filter::Exact(Topic::Room { room, channel: RoomChannel::Messages, .. })
        | Filter::AnyRoomChannel { room, .. } => shared.policy.room_subjects(room).await?,
        Filter::Exact(Topic::Room { .. } | Topic::Notifications { .. }) => return Ok(()),
    };
    if matches!(subject, Subject::Device { .. }) {
        return Ok(());
    }
    audit::record(
        &shared.db,
        audit::Access {
            subject: &subject,
            action: AuditAction::Subscribe,
            resource,
            patient,
            device,
            interface: Interface::Mqtt,
            client_addr: Some(peer.ip().to_string()),
        },
    )
    .await
}
