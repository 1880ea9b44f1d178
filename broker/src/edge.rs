//! The edge: every client connection terminates here. It authenticates the client at
//! CONNECT, binds its client id to its identity, authorizes every SUBSCRIBE filter, PUBLISH
//! topic and will topic through the policy module, and relays what is permitted to the
//! embedded rumqttd over a per-client loopback connection, so the core's sessions, QoS,
//! retained messages and last will keep working for the client.
//!
//! For a device's telemetry and session messages it acknowledges only what is stored: each
//! QoS 1 PUBLISH goes to the [`TelemetrySink`]; the PUBACK is sent when the sink reports the
//! commit, in publish order, and only then is the message forwarded to subscribers. At most
//! `max_inflight` messages wait per connection; beyond that the edge stops reading the
//! socket, so a slow database slows the device down instead of filling memory. If storage
//! is unavailable the connection is closed without PUBACK, and the device resends.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesOrdered, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use nc_access::authn::AuthnError;
use nc_access::Subject;
use nc_domain::{DeviceId, UserId};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Login, Packet, PubAck, Publish, QoS, SubAck, Subscribe,
    SubscribeFilter, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::acl::{self, AclError};
use crate::core::INTERNAL_USER;
use crate::presence::status_payload;
use crate::registry::Control;
use crate::sink::{DeviceMessage, SinkOutcome};
use crate::topic::{DeviceChannel, Filter, Topic};
use crate::transport::{ClientRx, ClientTx};
use crate::Shared;

/// Why a connection ended, for logs and presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT.
    Graceful,
    /// The socket closed or broke without DISCONNECT.
    Lost,
    KeepaliveTimeout,
    /// A right it relied on is gone.
    Revoked,
    /// The client broke the protocol or a rule (logged).
    Violation,
    /// Storage failed: closed without acknowledging, so the device resends.
    StorageUnavailable,
    /// The core closed the session (e.g. the same client id connected again).
    CoreClosed,
    Shutdown,
}

impl End {
    /// Whether the edge publishes the offline status itself (and so cancels the will).
    fn announced(self) -> bool {
        matches!(self, End::Graceful | End::Revoked | End::Shutdown)
    }

    fn reason(self) -> &'static str {
        match self {
            End::Graceful => "disconnected",
            End::Lost | End::Violation | End::CoreClosed | End::StorageUnavailable => "connection_lost",
            End::KeepaliveTimeout => "keepalive_timeout",
            End::Revoked => "revoked",
            End::Shutdown => "shutdown",
        }
    }
}

/// The authenticated identity of a connection.
#[derive(Clone, Copy, Debug)]
struct Identity {
    subject: Subject,
    /// When the credentials stop being valid (the access token's expiry).
    valid_until: Option<DateTime<Utc>>,
    connected_at: DateTime<Utc>,
}

/// What a waiting acknowledgement resolves to, in publish order.
enum Settled {
    /// Forward `publish` to the core (if any), then PUBACK `pkid` (if QoS 1).
    Forward { pkid: Option<u16>, publish: Option<Publish> },
    /// Invalid: PUBACK (if QoS 1), publish `error` on the device's errors topic, do not forward.
    Rejected { pkid: Option<u16>, error: serde_json::Value },
    /// Storage unavailable: close without acknowledging.
    Unavailable(String),
}

type Pending = Pin<Box<dyn Future<Output = Settled> + Send>>;

/// Waiting acknowledgements from the core, by the packet id the edge used upstream.
enum Upstream {
    /// A publish the edge forwarded; its PUBACK is swallowed, or resolves `done`.
    Publish(Option<tokio::sync::oneshot::Sender<()>>),
    /// A SUBSCRIBE carrying some of the client's filters: `codes[i]` is `Some` for a filter
    /// refused here, `None` for one whose answer comes from the core.
    Subscribe {
        client_pkid: u16,
        codes: Vec<Option<SubscribeReasonCode>>,
    },
    Unsubscribe {
        client_pkid: u16,
    },
}

fn encode(packet: &Packet, max: usize) -> Result<BytesMut, CodecError> {
    let mut buf = BytesMut::with_capacity(packet.size() + 8);
    packet.write(&mut buf, max)?;
    Ok(buf)
}

/// The protocol level of a CONNECT still in `buf`, if it can be read.
fn connect_level(buf: &[u8]) -> Option<u8> {
    // Fixed header byte, remaining length (1-4 bytes), then "\0\x04MQTT" and the level.
    let mut i = 1;
    while i < 5 && buf.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let name_len = u16::from_be_bytes([*buf.get(i + 1)?, *buf.get(i + 2)?]) as usize;
    buf.get(i + 3 + name_len).copied()
}

async fn write_packet(tx: &mut ClientTx, packet: &Packet, max: usize) -> std::io::Result<()> {
    let bytes = encode(packet, max).map_err(std::io::Error::other)?;
    tx.write(&bytes).await
}

async fn refuse_connect(tx: &mut ClientTx, code: ConnectReturnCode) {
    let _ = write_packet(tx, &Packet::ConnAck(ConnAck { session_present: false, code }), 16).await;
    tx.close().await;
}

fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.matches('.').count() == 2
}

/// Client ids are bound to identities: a device connects as its device id; a person as
/// their user id, optionally followed by `-` and 1-23 letters or digits (one per app
/// install). Nobody can take over another identity's client id.
fn client_id_allowed(subject: &Subject, client_id: &str) -> bool {
    match subject {
        Subject::Device { id, .. } => client_id == id.to_string(),
        Subject::User(u) => {
            let own = u.id.to_string();
            client_id == own
                || client_id.strip_prefix(&own).and_then(|rest| rest.strip_prefix('-')).is_some_and(|suffix| {
                    (1..=23).contains(&suffix.len()) && suffix.chars().all(|c| c.is_ascii_alphanumeric())
                })
        }
    }
}

async fn authenticate(shared: &Shared, connect: &Connect) -> Result<Identity, ConnectReturnCode> {
    let Some(Login { username, password }) = &connect.login else {
        return Err(ConnectReturnCode::NotAuthorized);
    };
    let now = Utc::now();
    let identity = if looks_like_jwt(password) {
        let user = shared.authn.user(password).await.map_err(|e| match e {
            AuthnError::Expired | AuthnError::InvalidToken => ConnectReturnCode::BadUserNamePassword,
            AuthnError::Db(_) => ConnectReturnCode::ServiceUnavailable,
            _ => ConnectReturnCode::NotAuthorized,
        })?;
        if username.parse::<UserId>().ok() != Some(user.id) {
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
        let expires = shared.authn.tokens().verify(password).ok().and_then(|c| DateTime::from_timestamp(c.exp, 0));
        Identity { subject: Subject::User(user), valid_until: expires, connected_at: now }
    } else {
        let device: DeviceId = username.parse().map_err(|_| ConnectReturnCode::BadUserNamePassword)?;
        let subject = shared.authn.device(device, password).await.map_err(|e| match e {
            AuthnError::BadDeviceCredentials => ConnectReturnCode::BadUserNamePassword,
            AuthnError::Db(_) => ConnectReturnCode::ServiceUnavailable,
            _ => ConnectReturnCode::NotAuthorized,
        })?;
        Identity { subject, valid_until: None, connected_at: now }
    };
    if !client_id_allowed(&identity.subject, &connect.client_id) {
        return Err(ConnectReturnCode::BadClientId);
    }
    Ok(identity)
}

/// The will the core publishes if the client vanishes: for a device, always its offline
/// status (retained); for a person, their own will if they may publish on its topic.
async fn will_for(
    shared: &Shared,
    identity: &Identity,
    will: Option<LastWill>,
) -> Result<Option<LastWill>, ConnectReturnCode> {
    match identity.subject {
        Subject::Device { id, hospital } => {
            let status = Topic::Device { hospital, device: id, channel: DeviceChannel::Status };
            if let Some(w) = &will {
                if w.topic != status.to_string() {
                    return Err(ConnectReturnCode::NotAuthorized);
                }
            }
            Ok(Some(LastWill {
                topic: status.to_string(),
                message: status_payload(false, "connection_lost", None).to_string().into(),
                qos: QoS::AtLeastOnce,
                retain: true,
            }))
        }
        Subject::User(_) => match will {
            None => Ok(None),
            Some(w) => {
                let topic = Topic::parse(&w.topic).map_err(|_| ConnectReturnCode::NotAuthorized)?;
                acl::may_publish(&shared.policy, &identity.subject, &topic)
                    .await
                    .map_err(|_| ConnectReturnCode::NotAuthorized)?;
                Ok(Some(w))
            }
        },
    }
}

/// Serves one client connection from CONNECT to its end.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut rx: ClientRx,
    mut tx: ClientTx,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let settings = &shared.settings;
    let max = settings.max_packet_size;
    let mut buf = BytesMut::with_capacity(4096);

    // CONNECT, within the timeout.
    let first = tokio::time::timeout(settings.connect_timeout, async {
        loop {
            if let Some(level) = connect_level(&buf) {
                if level == 5 {
                    return Err(Some(5u8));
                }
            }
            match Packet::read(&mut buf, max) {
                Ok(p) => return Ok(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(CodecError::InvalidProtocol | CodecError::InvalidProtocolLevel(_)) => return Err(Some(3)),
                Err(_) => return Err(None),
            }
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            }
        }
    })
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Err(Some(5))) => {
            // MQTT 5 CONNACK, reason 0x84 "Unsupported Protocol Version".
            let _ = tx.write(&[0x20, 0x03, 0x00, 0x84, 0x00]).await;
            tx.close().await;
            return;
        }
        Ok(Err(Some(_))) => return refuse_connect(&mut tx, ConnectReturnCode::RefusedProtocolVersion).await,
        _ => {
            tracing::debug!(%peer, "no valid CONNECT; closing");
            tx.close().await;
            return;
        }
    };
    let Ok(_permit) = shared.connections.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "connection limit reached; refusing");
        return refuse_connect(&mut tx, ConnectReturnCode::ServiceUnavailable).await;
    };
    let identity = match authenticate(&shared, &connect).await {
        Ok(i) => i,
        Err(code) => {
            tracing::info!(%peer, client_id = %connect.client_id, ?code, "mqtt connection refused");
            return refuse_connect(&mut tx, code).await;
        }
    };
    let will = match will_for(&shared, &identity, connect.last_will.clone()).await {
        Ok(w) => w,
        Err(code) => {
            tracing::info!(%peer, client_id = %connect.client_id, "will topic not permitted; refused");
            return refuse_connect(&mut tx, code).await;
        }
    };

    // The client's session in the core.
    let upstream = match TcpStream::connect(shared.core.addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the embedded broker core");
            return refuse_connect(&mut tx, ConnectReturnCode::ServiceUnavailable).await;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let up_connect = Connect {
        protocol: rumqttc::mqttbytes::Protocol::V4,
        // rumqttd refuses keep-alive 0 (which MQTT allows: no keep-alive); the edge then
        // keeps the upstream session with the longest keep-alive instead.
        keep_alive: if connect.keep_alive == 0 { u16::MAX } else { connect.keep_alive },
        client_id: connect.client_id.clone(),
        clean_session: connect.clean_session,
        last_will: will,
        login: Some(Login { username: INTERNAL_USER.into(), password: shared.core.credential.clone() }),
    };
    let mut up_buf = BytesMut::with_capacity(4096);
    let connack = async {
        up_tx.write_all(&encode(&Packet::Connect(up_connect), usize::MAX).map_err(std::io::Error::other)?).await?;
        loop {
            match Packet::read(&mut up_buf, max) {
                Ok(Packet::ConnAck(ack)) => return Ok(ack),
                Ok(_) => return Err(std::io::Error::other("unexpected packet before CONNACK")),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            if up_rx.read_buf(&mut up_buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let ack = match tokio::time::timeout(Duration::from_secs(10), connack).await {
        Ok(Ok(ack)) if ack.code == ConnectReturnCode::Success => ack,
        other => {
            tracing::error!(?other, "the embedded broker core refused the session");
            return refuse_connect(&mut tx, ConnectReturnCode::ServiceUnavailable).await;
        }
    };
    if write_packet(&mut tx, &Packet::ConnAck(ack), max).await.is_err() {
        return;
    }

    let (conn_id, control) = shared.registry.register(identity.subject);
    if let Subject::Device { id, hospital } = identity.subject {
        shared.presence.set(id, hospital, true, "connected", true).await;
    }
    tracing::debug!(%peer, client_id = %connect.client_id, "mqtt client connected");

    let mut session = Session {
        shared: shared.clone(),
        identity,
        conn_id,
        tx,
        up_tx,
        subscriptions: HashMap::new(),
        upstream: HashMap::new(),
        next_pkid: 0,
        pending: FuturesOrdered::new(),
        limiter: RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(settings.messages_per_second.max(1)).expect("non-zero"),
        )),
        grant_until: None,
    };
    let end = session.run(rx, buf, up_rx, up_buf, control, connect.keep_alive, shutdown).await;
    shared.registry.unregister(conn_id);
    if let Subject::Device { id, hospital } = identity.subject {
        // A device that reconnected meanwhile is still online.
        if shared.registry.device_connections(id) == 0 {
            // After these ends the will does not fire (see `finish`): announce it ourselves.
            let publish = end.announced();
            shared.presence.set(id, hospital, false, end.reason(), publish).await;
        }
    }
    tracing::debug!(%peer, client_id = %connect.client_id, ?end, "mqtt client gone");
}

struct Session {
    shared: Arc<Shared>,
    identity: Identity,
    conn_id: u64,
    tx: ClientTx,
    up_tx: tokio::net::tcp::OwnedWriteHalf,
    /// The client's subscriptions, by filter string.
    subscriptions: HashMap<String, Filter>,
    upstream: HashMap<u16, Upstream>,
    next_pkid: u16,
    pending: FuturesOrdered<Pending>,
    limiter: DefaultDirectRateLimiter,
    /// When the earliest temporary grant a subscription rests on expires.
    grant_until: Option<DateTime<Utc>>,
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

    async fn send_core(&mut self, packet: &Packet) -> std::io::Result<()> {
        let bytes = encode(packet, usize::MAX).map_err(std::io::Error::other)?;
        self.up_tx.write_all(&bytes).await
    }

    async fn send_client(&mut self, packet: &Packet) -> std::io::Result<()> {
        write_packet(&mut self.tx, packet, usize::MAX).await
    }

    /// Forwards a client's publish to the core at the same QoS (QoS 1 with the edge's own
    /// packet id, whose PUBACK resolves `done`).
    async fn forward(
        &mut self,
        mut publish: Publish,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> std::io::Result<()> {
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
    async fn run(
        &mut self,
        mut rx: ClientRx,
        mut buf: BytesMut,
        mut up_rx: tokio::net::tcp::OwnedReadHalf,
        mut up_buf: BytesMut,
        mut control: mpsc::Receiver<Control>,
        keep_alive: u16,
        shutdown: CancellationToken,
    ) -> End {
        let max = self.shared.settings.max_packet_size;
        let max_inflight = self.shared.settings.max_inflight;
        let idle = (keep_alive > 0).then(|| Duration::from_millis(keep_alive as u64 * 1500));
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
                if self.on_core(packet).await.is_err() {
                    return End::Lost;
                }
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
                read = up_rx.read_buf(&mut up_buf) => match read {
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
                Some(Control::Recheck) = control.recv() => {
                    if !self.still_allowed().await {
                        tracing::info!(client = ?self.identity.subject, "access revoked; disconnecting");
                        return self.finish(End::Revoked).await;
                    }
                }
                _ = tokio::time::sleep(until_deadline.unwrap_or(Duration::from_secs(3600))), if until_deadline.is_some() => {
                    if !self.still_allowed().await || self.identity.valid_until.is_some_and(|v| v <= Utc::now()) {
                        tracing::info!(client = ?self.identity.subject, "credentials or grant expired; disconnecting");
                        return self.finish(End::Revoked).await;
                    }
                }
                _ = tokio::time::sleep_until(keepalive_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))), if keepalive_at.is_some() => {
                    return End::KeepaliveTimeout;
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
        if end.announced() {
            let _ = self.send_core(&Packet::Disconnect).await;
        }
        let _ = self.up_tx.shutdown().await;
        self.tx.close().await;
        end
    }

    /// Whether the identity and every subscription are still permitted; narrows
    /// `grant_until` to the rights that remain.
    async fn still_allowed(&mut self) -> bool {
        let subject = self.identity.subject;
        let live = match subject {
            Subject::User(u) => self.shared.authn.recheck_user(&u).await,
            Subject::Device { id, .. } => self.shared.authn.recheck_device(id, self.identity.connected_at).await,
        };
        if live.is_err() {
            return false;
        }
        let mut until = None;
        let filters: Vec<Filter> = self.subscriptions.values().copied().collect();
        for filter in filters {
            match acl::may_subscribe(&self.shared.policy, &subject, &filter).await {
                Ok(Some(t)) if t > Utc::now() => until = Some(until.map_or(t, |u: DateTime<Utc>| u.min(t))),
                Ok(Some(_)) => return false,
                Ok(None) => {}
                Err(_) => return false,
            }
        }
        self.grant_until = until;
        true
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
                let pkid = self.allocate_pkid();
                self.upstream.insert(pkid, Upstream::Unsubscribe { client_pkid: unsubscribe.pkid });
                self.send_core(&Packet::Unsubscribe(Unsubscribe { pkid, topics: unsubscribe.topics })).await?;
                Ok(None)
            }
            // Acknowledgements of messages the core delivered: the core's own packet ids.
            p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) | Packet::PingReq) => {
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

    async fn client_publish(&mut self, publish: Publish) -> std::io::Result<Option<End>> {
        self.limiter.until_ready().await;
        let subject = self.identity.subject;
        let topic = match Topic::parse(&publish.topic) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(client = ?subject, topic = %publish.topic, error = %e, "publish refused: not a contract topic");
                return Ok(Some(End::Violation));
            }
        };
        if publish.qos == QoS::ExactlyOnce {
            tracing::warn!(client = ?subject, topic = %publish.topic, "publish refused: QoS 2 is not supported (use QoS 1)");
            return Ok(Some(End::Violation));
        }
        match acl::may_publish(&self.shared.policy, &subject, &topic).await {
            Ok(_) => {}
            Err(AclError::Denied(why)) => {
                // MQTT 3.1.1 has no way to refuse one publish: the connection ends (logged).
                tracing::warn!(client = ?subject, %topic, %why, "publish refused; disconnecting");
                return Ok(Some(End::Violation));
            }
            Err(AclError::Lookup(e)) => {
                tracing::error!(error = %e, "policy lookup failed; closing without acknowledging");
                return Ok(Some(End::StorageUnavailable));
            }
        }
        let pkid = (publish.qos == QoS::AtLeastOnce).then_some(publish.pkid);
        match (subject, topic) {
            (
                Subject::Device { id, hospital },
                Topic::Device { channel: channel @ (DeviceChannel::Telemetry | DeviceChannel::Session), .. },
            ) => {
                let message = DeviceMessage { device: id, hospital, channel, payload: publish.payload.clone() };
                // A session message is a sequence point: what the device sent before it is
                // settled first, and what it sends after waits until it is stored, so the
                // storage sees "start, readings, end" in the device's order.
                if channel == DeviceChannel::Session {
                    if let Some(end) = self.drain_pending().await? {
                        return Ok(Some(end));
                    }
                }
                let stored = self.shared.sink.submit(message);
                let retained = publish.retain;
                self.pending.push_back(Box::pin(async move {
                    match stored.await {
                        Ok(SinkOutcome::Committed) => {
                            let mut forward = publish;
                            forward.retain = retained && channel == DeviceChannel::Session;
                            Settled::Forward { pkid, publish: Some(forward) }
                        }
                        Ok(SinkOutcome::Rejected { error }) => Settled::Rejected { pkid, error },
                        Err(e) => Settled::Unavailable(e.0),
                    }
                }));
                if channel == DeviceChannel::Session {
                    if let Some(end) = self.drain_pending().await? {
                        return Ok(Some(end));
                    }
                }
            }
            _ => {
                // Other permitted topics (typing indicators): relay; acknowledge when the core has it.
                let (done, acked) = tokio::sync::oneshot::channel();
                self.forward(publish, Some(done)).await?;
                self.pending.push_back(Box::pin(async move {
                    let _ = acked.await;
                    Settled::Forward { pkid, publish: None }
                }));
            }
        }
        Ok(None)
    }

    /// Settles every waiting acknowledgement, in order.
    async fn drain_pending(&mut self) -> std::io::Result<Option<End>> {
        while let Some(settled) = self.pending.next().await {
            if let Some(end) = self.settle(settled).await? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    async fn settle(&mut self, settled: Settled) -> std::io::Result<Option<End>> {
        match settled {
            Settled::Forward { pkid, publish } => {
                if let Some(p) = publish {
                    self.forward(p, None).await?;
                }
                if let Some(pkid) = pkid {
                    self.send_client(&Packet::PubAck(PubAck { pkid })).await?;
                }
                Ok(None)
            }
            Settled::Rejected { pkid, error } => {
                if let Subject::Device { id, hospital } = self.identity.subject {
                    let topic = Topic::Device { hospital, device: id, channel: DeviceChannel::Errors };
                    if let Err(e) = self.shared.publisher.publish_json(&topic, &error).await {
                        tracing::warn!(error = %e, "could not publish a rejection to the device");
                    }
                }
                if let Some(pkid) = pkid {
                    self.send_client(&Packet::PubAck(PubAck { pkid })).await?;
                }
                Ok(None)
            }
            Settled::Unavailable(why) => {
                tracing::warn!(client = ?self.identity.subject, %why, "storage unavailable; closing without acknowledging");
                Ok(Some(End::StorageUnavailable))
            }
        }
    }

    async fn client_subscribe(&mut self, subscribe: Subscribe) -> std::io::Result<()> {
        let subject = self.identity.subject;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut forward = Vec::new();
        for f in subscribe.filters {
            let decision = match Filter::parse(&f.path) {
                Err(e) => Err(e.to_string()),
                Ok(filter) => match acl::may_subscribe(&self.shared.policy, &subject, &filter).await {
                    Ok(until) => Ok((filter, until)),
                    Err(e) => Err(e.to_string()),
                },
            };
            match decision {
                Ok((filter, until)) => {
                    if let Some(t) = until {
                        self.grant_until = Some(self.grant_until.map_or(t, |u| u.min(t)));
                    }
                    let (device, room) = match filter {
                        Filter::Exact(Topic::Device { device, .. }) | Filter::AnyDeviceChannel { device, .. } => {
                            (Some(device), None)
                        }
                        Filter::Exact(Topic::Room { room, .. }) | Filter::AnyRoomChannel { room, .. } => {
                            (None, Some(room))
                        }
                        Filter::Exact(Topic::Notifications { .. }) => (None, None),
                    };
                    self.shared.registry.watch(self.conn_id, device, room);
                    self.subscriptions.insert(f.path.clone(), filter);
                    // QoS 2 is not offered: granted QoS is at most 1.
                    let qos = if f.qos == QoS::ExactlyOnce { QoS::AtLeastOnce } else { f.qos };
                    forward.push(SubscribeFilter { path: f.path, qos });
                    codes.push(None);
                }
                Err(why) => {
                    tracing::warn!(client = ?subject, filter = %f.path, %why, "subscription refused");
                    codes.push(Some(SubscribeReasonCode::Failure));
                }
            }
        }
        if forward.is_empty() {
            let return_codes = codes.into_iter().map(|c| c.unwrap_or(SubscribeReasonCode::Failure)).collect();
            return self.send_client(&Packet::SubAck(SubAck { pkid: subscribe.pkid, return_codes })).await;
        }
        let pkid = self.allocate_pkid();
        self.upstream.insert(pkid, Upstream::Subscribe { client_pkid: subscribe.pkid, codes });
        self.send_core(&Packet::Subscribe(Subscribe { pkid, filters: forward })).await
    }

    /// Handles a packet from the core.
    async fn on_core(&mut self, packet: Packet) -> std::io::Result<()> {
        match packet {
            Packet::PubAck(ack) => {
                if let Some(Upstream::Publish(Some(done))) = self.upstream.remove(&ack.pkid) {
                    let _ = done.send(());
                }
                Ok(())
            }
            Packet::SubAck(ack) => {
                let Some(Upstream::Subscribe { client_pkid, codes }) = self.upstream.remove(&ack.pkid) else {
                    return Ok(());
                };
                let mut from_core = ack.return_codes.into_iter();
                let return_codes = codes
                    .into_iter()
                    .map(|c| c.unwrap_or_else(|| from_core.next().unwrap_or(SubscribeReasonCode::Failure)))
                    .collect();
                self.send_client(&Packet::SubAck(SubAck { pkid: client_pkid, return_codes })).await
            }
            Packet::UnsubAck(ack) => {
                let Some(Upstream::Unsubscribe { client_pkid }) = self.upstream.remove(&ack.pkid) else {
                    return Ok(());
                };
                self.send_client(&Packet::UnsubAck(UnsubAck { pkid: client_pkid })).await
            }
            // Deliveries to the client, and the rest of their QoS flows, pass through.
            p
            @ (Packet::Publish(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) | Packet::PingResp) => {
                self.send_client(&p).await
            }
            other => {
                tracing::debug!(packet = ?other, "ignoring unexpected packet from the core");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc_access::UserSubject;
    use nc_domain::{HospitalId, Role};

    #[test]
    fn client_ids_are_bound_to_identities() {
        let (d, h) = (DeviceId::new(), HospitalId::new());
        let device = Subject::Device { id: d, hospital: h };
        assert!(client_id_allowed(&device, &d.to_string()));
        assert!(!client_id_allowed(&device, &DeviceId::new().to_string()));
        let u = UserId::new();
        let user = Subject::User(UserSubject { id: u, role: Role::Doctor, hospital: h, family: None });
        assert!(client_id_allowed(&user, &u.to_string()));
        assert!(client_id_allowed(&user, &format!("{u}-phone1")));
        assert!(!client_id_allowed(&user, &format!("{u}-")));
        assert!(!client_id_allowed(&user, &format!("{u}-a/b")));
        assert!(!client_id_allowed(&user, &format!("{u}-#")));
        assert!(!client_id_allowed(&user, &d.to_string()));
    }

    #[test]
    fn connect_level_is_read_from_raw_bytes() {
        let v5 = [0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02];
        assert_eq!(connect_level(&v5), Some(5));
        assert_eq!(connect_level(&[0x10]), None);
    }
}
