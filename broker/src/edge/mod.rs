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

mod hello;
pub(crate) mod refusals;
mod relay;
mod v5;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use nc_access::authn::AuthnError;
use nc_access::Subject;
use nc_domain::{DeviceId, TokenFamilyId, UserId};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{ConnAck, Connect, ConnectReturnCode, LastWill, Login, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::hello::Refused;
use self::refusals::Refusal;
use crate::acl;
use crate::payload::{Status, StatusReason, TypingIndicator};
use crate::sessions::{Claim, Expiry};
use crate::topic::{DeviceChannel, RoomChannel, Topic};
use crate::transport::{ClientRx, ClientTx};
use crate::Shared;
use rumqttc::v5::mqttbytes::v5 as m5;

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
    /// The core closed the session.
    CoreClosed,
    /// A newer connection took over the client id.
    TakenOver,
    /// The credentials expired (the access token).
    Expired,
    /// An MQTT 5 client broke the protocol (said in the DISCONNECT).
    Broken(v5::Problem),
    Shutdown,
}

impl End {
    /// What an MQTT 5 DISCONNECT from the server says about this end (`None`: none is sent:
    /// the client left, or its socket is gone).
    fn goodbye(self) -> Option<v5::Goodbye> {
        use v5::Goodbye as G;
        match self {
            End::Graceful | End::Lost => None,
            End::KeepaliveTimeout => Some(G::KeepAliveTimeout),
            End::Revoked => Some(G::Revoked { expired: false }),
            End::Expired => Some(G::Revoked { expired: true }),
            End::Violation => Some(G::Problem(v5::Problem::ProtocolError)),
            End::Broken(p) => Some(G::Problem(p)),
            End::StorageUnavailable => Some(G::StorageUnavailable),
            End::CoreClosed => Some(G::CoreClosed),
            End::TakenOver => Some(G::TakenOver),
            End::Shutdown => Some(G::ShuttingDown),
        }
    }

    /// Whether the edge publishes the offline status itself (and so cancels the will).
    fn announced(self) -> bool {
        matches!(self, End::Graceful | End::Revoked | End::Expired | End::Shutdown)
    }

    fn reason(self) -> StatusReason {
        match self {
            End::Graceful => StatusReason::Disconnected,
            End::Lost
            | End::Violation
            | End::Broken(_)
            | End::CoreClosed
            | End::TakenOver
            | End::StorageUnavailable => StatusReason::ConnectionLost,
            End::KeepaliveTimeout => StatusReason::KeepaliveTimeout,
            End::Revoked | End::Expired => StatusReason::Revoked,
            End::Shutdown => StatusReason::Shutdown,
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

impl Identity {
    /// The key of the identity's sessions in the session book.
    fn owner(&self) -> Uuid {
        match self.subject {
            Subject::User(u) => u.id.as_uuid(),
            Subject::Device { id, .. } => id.as_uuid(),
        }
    }

    /// The login session the credentials belong to (people only).
    fn family(&self) -> Option<TokenFamilyId> {
        match self.subject {
            Subject::User(u) => u.family,
            Subject::Device { .. } => None,
        }
    }
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

/// Authenticates a CONNECT; its client id must be one the identity may use, unless the
/// server assigns one (`assign`: an MQTT 5 CONNECT without client id).
async fn authenticate(shared: &Shared, connect: &Connect, assign: bool) -> Result<Identity, ConnectReturnCode> {
    let Some(Login { username, password }) = &connect.login else {
        return Err(ConnectReturnCode::NotAuthorized);
    };
    let now = Utc::now();
    let identity = if looks_like_jwt(password) {
        let (user, expires) = shared.authn.user_until(password).await.map_err(|e| match e {
            AuthnError::Expired | AuthnError::InvalidToken => ConnectReturnCode::BadUserNamePassword,
            AuthnError::Db(_) => ConnectReturnCode::ServiceUnavailable,
            _ => ConnectReturnCode::NotAuthorized,
        })?;
        if username.parse::<UserId>().ok() != Some(user.id) {
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
        Identity { subject: Subject::User(user), valid_until: Some(expires), connected_at: now }
    } else {
        let device: DeviceId = username.parse().map_err(|_| ConnectReturnCode::BadUserNamePassword)?;
        let subject = shared.authn.device(device, password).await.map_err(|e| match e {
            AuthnError::BadDeviceCredentials => ConnectReturnCode::BadUserNamePassword,
            AuthnError::Db(_) => ConnectReturnCode::ServiceUnavailable,
            _ => ConnectReturnCode::NotAuthorized,
        })?;
        Identity { subject, valid_until: None, connected_at: now }
    };
    if !assign && !client_id_allowed(&identity.subject, &connect.client_id) {
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
                message: crate::payload::to_bytes(&Status::new(false, StatusReason::ConnectionLost, None)).into(),
                qos: QoS::AtLeastOnce,
                retain: true,
            }))
        }
        Subject::User(user) => match will {
            None => Ok(None),
            Some(w) => {
                let topic = Topic::parse(&w.topic).map_err(|_| ConnectReturnCode::NotAuthorized)?;
                acl::may_publish(&shared.policy, &identity.subject, &topic)
                    .await
                    .map_err(|_| ConnectReturnCode::NotAuthorized)?;
                // People may publish typing indicators only: the will is normalized to the
                // stamped "stopped typing" (QoS 0, never retained), whatever the client sent.
                match topic {
                    Topic::Room { channel: RoomChannel::Typing, .. } => Ok(Some(LastWill {
                        topic: w.topic,
                        message: crate::payload::to_bytes(&TypingIndicator::now(&user, false)).into(),
                        qos: QoS::AtMostOnce,
                        retain: false,
                    })),
                    _ => Err(ConnectReturnCode::NotAuthorized),
                }
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
    let mut hello = match tokio::time::timeout(settings.connect_timeout, hello::read(&mut rx, &mut buf, max)).await {
        Ok(Ok(h)) => h,
        Ok(Err(hello::NoHello::Level)) => return hello::refuse_level(&mut tx).await,
        _ => {
            tracing::debug!(%peer, "no valid CONNECT; closing");
            tx.close().await;
            return;
        }
    };
    if hello.wants_enhanced_auth() {
        let r = Refused {
            v4: ConnectReturnCode::NotAuthorized,
            v5: m5::ConnectReturnCode::BadAuthenticationMethod,
            text: "enhanced authentication is not offered: use user name and password",
        };
        return hello::refuse(&mut tx, &hello, r).await;
    }
    let client_id = hello.connect.client_id.clone();
    let Ok(pending) = shared.pending.clone().try_acquire_owned() else {
        shared.refusals.note(Refusal::TooManyPending, peer, &client_id);
        let r = Refused::unavailable(m5::ConnectReturnCode::ServerBusy, "server busy; retry later");
        return hello::refuse(&mut tx, &hello, r).await;
    };
    // Answered within a second even when the database is down (code 3, retry later).
    let assign = hello.v5.is_some() && client_id.is_empty();
    let authenticated = tokio::time::timeout(settings.auth_timeout, authenticate(&shared, &hello.connect, assign))
        .await
        .unwrap_or(Err(ConnectReturnCode::ServiceUnavailable));
    let identity = match authenticated {
        Ok(i) => i,
        Err(code) => {
            shared.refusals.note(Refusal::NotAuthenticated, peer, &client_id);
            return hello::refuse(&mut tx, &hello, Refused::of(code)).await;
        }
    };
    drop(pending);
    // MQTT 5: an empty client id gets one the identity may use.
    let assigned = assign.then(|| assigned_client_id(&identity.subject));
    if let Some(id) = &assigned {
        hello.connect.client_id = id.clone();
    }
    let connect = hello.connect.clone();
    // Machines and people have separate pools: apps can never take a machine's place.
    let pool = match identity.subject {
        Subject::Device { .. } => &shared.connections,
        Subject::User(_) => &shared.people_connections,
    };
    let Ok(_permit) = pool.clone().try_acquire_owned() else {
        shared.refusals.note(Refusal::LimitReached, peer, &connect.client_id);
        let r = Refused::unavailable(m5::ConnectReturnCode::QuotaExceeded, "too many connections; retry later");
        return hello::refuse(&mut tx, &hello, r).await;
    };
    let will = match will_for(&shared, &identity, connect.last_will.clone()).await {
        Ok(w) => w,
        Err(code) => {
            shared.refusals.note(Refusal::WillRefused, peer, &connect.client_id);
            let r = Refused {
                v4: code,
                v5: m5::ConnectReturnCode::NotAuthorized,
                text: "the will's topic is not one this client may publish on",
            };
            return hello::refuse(&mut tx, &hello, r).await;
        }
    };

    // The client's slot in the core (see `sessions`): a bounded set of core client ids per
    // identity, and the subscriptions a resumed session carries.
    let owner = identity.owner();
    let cannot_resume =
        Refused::unavailable(m5::ConnectReturnCode::ServerUnavailable, "cannot resume the session now; retry later");
    // Several nodes: the sessions other nodes kept (or changed) for this identity first.
    if let Some(store) = &shared.kept {
        match tokio::time::timeout(settings.auth_timeout, store.load(owner)).await {
            Ok(Ok(kept)) => shared.sessions.adopt(owner, kept),
            _ => {
                shared.refusals.note(Refusal::CannotReauthorize, peer, &connect.client_id);
                return hello::refuse(&mut tx, &hello, cannot_resume).await;
            }
        }
    }
    let (ask, expiry_granted) = hello.session_ask(settings.max_session_expiry_secs);
    let persistent = ask.expiry != Expiry::AtDisconnect;
    let mut claim = match shared.sessions.claim_with(owner, &connect.client_id, ask, identity.family()) {
        Ok(c) => c,
        Err(_) => {
            shared.refusals.note(Refusal::IdentityCap, peer, &connect.client_id);
            let r =
                Refused::unavailable(m5::ConnectReturnCode::QuotaExceeded, "too many connections for this identity");
            return hello::refuse(&mut tx, &hello, r).await;
        }
    };
    // Registered (and watching what the carried subscriptions rest on) before deciding them,
    // so that an access event after the decision cannot be missed.
    let (conn_id, control) = shared.registry.register(identity.subject);
    let end_early = |shared: &Shared| {
        shared.registry.unregister(conn_id);
        shared.sessions.release(owner, claim.generation);
    };
    let carried = std::mem::take(&mut claim.carried);
    for c in &carried {
        relay::watch_filter(&shared, conn_id, &c.filter).await;
    }
    // Re-authorize (and audit) what a resumed session carries before it resumes in the core.
    let decided = match tokio::time::timeout(
        settings.auth_timeout,
        relay::reauthorize(&shared, &identity.subject, peer, carried, claim.released_at),
    )
    .await
    {
        Ok(Ok(d)) => d,
        _ => {
            shared.refusals.note(Refusal::CannotReauthorize, peer, &connect.client_id);
            end_early(&shared);
            return hello::refuse(&mut tx, &hello, cannot_resume).await;
        }
    };
    // A machine's session with the embedded core is kept here, not in the core: see
    // ARCHITECTURE.md "Machine sessions".
    let kept_here = match identity.subject {
        Subject::Device { id, .. } if shared.core.embedded() => Some(id),
        _ => None,
    };
    let direct = kept_here.is_some();
    let (up_rx, up_tx, up_buf, present) = if let Some(device) = kept_here {
        shared.registry.replace_device(device, conn_id);
        (None, None, BytesMut::new(), claim.resumed)
    } else {
        let mut up = connect.clone();
        up.clean_session = claim.core_clean;
        match open_upstream(&shared, &claim, &up, will).await {
            Ok((up_rx, up_tx, up_buf, ack)) => (Some(up_rx), Some(up_tx), up_buf, ack.session_present),
            Err(e) => {
                tracing::error!(error = %e, "the broker core refused the session");
                end_early(&shared);
                let r = Refused::unavailable(
                    m5::ConnectReturnCode::ServerUnavailable,
                    "the broker core is unavailable; retry later",
                );
                return hello::refuse(&mut tx, &hello, r).await;
            }
        }
    };
    shared.sessions.confirm(owner, claim.generation);
    // Several nodes: what the other nodes must know to resume (or not) this session.
    let mut forgotten: Vec<String> = claim.evicted.iter().cloned().collect();
    if persistent {
        shared.keep(owner, claim.generation, false).await;
    } else {
        forgotten.push(connect.client_id.clone());
    }
    shared.unkeep(owner, &forgotten).await;
    // MQTT 5: the server's keep-alive when the client's is none or longer than allowed.
    let cap = settings.max_keep_alive_secs.max(1);
    let server_keep_alive =
        (hello.v5.is_some() && (connect.keep_alive == 0 || connect.keep_alive > cap)).then_some(cap);
    let keep_alive = server_keep_alive.unwrap_or(connect.keep_alive);
    let link = relay::Link { identity, peer, owner, generation: claim.generation, conn_id };
    let mut session = relay::Session::new(shared.clone(), link, tx, up_tx, hello.negotiated());
    let present = match session.resume(present, decided).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection lost while resuming its session");
            end_early(&shared);
            return;
        }
    };
    let accepted = if hello.v5.is_some() {
        let mut props = hello::limits(settings);
        props.session_expiry_interval = expiry_granted;
        props.assigned_client_identifier = assigned;
        props.server_keep_alive = server_keep_alive;
        props.shared_subscription_available = Some(u8::from(session.shares()));
        match v5::connack(present, m5::ConnectReturnCode::Success, Some(props)).map_err(std::io::Error::other) {
            Ok(bytes) => session.send_raw(&bytes).await,
            Err(e) => Err(e),
        }
    } else {
        let code = ConnectReturnCode::Success;
        session.send_client(&Packet::ConnAck(ConnAck { session_present: present, code })).await
    };
    if accepted.is_err() {
        end_early(&shared);
        return;
    }
    if let Subject::Device { id, hospital } = identity.subject {
        shared.presence.set(id, hospital, true, StatusReason::Connected, true).await;
    }
    tracing::debug!(%peer, client_id = %connect.client_id, v5 = hello.v5.is_some(), "mqtt client connected");

    let end = session.run(rx, buf, up_rx, up_buf, control, keep_alive, shutdown).await;
    shared.registry.unregister(conn_id);
    shared.keep(owner, claim.generation, true).await;
    shared.sessions.release(owner, claim.generation);
    if let Subject::Device { id, hospital } = identity.subject {
        // A device that reconnected meanwhile is still online.
        if shared.registry.device_connections(id) == 0 {
            // After these ends the will does not fire (see `finish`): announce it ourselves.
            // A session kept here has no will in the core: every end is announced.
            let publish = end.announced() || direct;
            shared.presence.set(id, hospital, false, end.reason(), publish).await;
        }
    }
    match end {
        End::Graceful | End::Lost | End::KeepaliveTimeout | End::Shutdown | End::CoreClosed | End::TakenOver => {
            tracing::debug!(%peer, client_id = %connect.client_id, ?end, "mqtt client gone")
        }
        End::Revoked | End::Expired | End::Violation | End::Broken(_) | End::StorageUnavailable => {
            tracing::info!(%peer, client_id = %connect.client_id, ?end, "mqtt client disconnected")
        }
    }
}

/// The client id an MQTT 5 client that sent none is given: a machine's device id, a
/// person's user id with a random suffix (one per app install, as the binding rule allows).
fn assigned_client_id(subject: &Subject) -> String {
    match subject {
        Subject::Device { id, .. } => id.to_string(),
        Subject::User(u) => {
            let suffix: String = Uuid::new_v4().simple().to_string().chars().take(12).collect();
            format!("{}-{suffix}", u.id)
        }
    }
}

type CoreLink = (crate::core::CoreRx, crate::core::CoreTx, BytesMut, ConnAck);

/// Connects to the core under the slot's client id. A session the core must not resume
/// (another login's, or an evicted client id's) is discarded first, by a clean CONNECT
/// and DISCONNECT under the same id.
async fn open_upstream(
    shared: &Shared,
    claim: &Claim,
    connect: &Connect,
    will: Option<LastWill>,
) -> std::io::Result<CoreLink> {
    if claim.reset {
        let (mut up_rx, mut up_tx, _, _) = connect_core(shared, &claim.upstream_id, 30, true, None).await?;
        up_tx.write_all(&encode(&Packet::Disconnect, usize::MAX).map_err(std::io::Error::other)?).await?;
        // rumqttd hands the router the end of that session before it closes the socket:
        // wait for the close, or the router could see the next CONNECT first and then end
        // the new session in place of the old one.
        let mut sink = [0u8; 256];
        let closed = async { while matches!(up_rx.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), closed).await;
    }
    // rumqttd refuses keep-alive 0 (which MQTT allows: no keep-alive); the edge then keeps
    // the upstream session with the longest keep-alive instead.
    let keep_alive = if connect.keep_alive == 0 { u16::MAX } else { connect.keep_alive };
    // Should the core resume subscriptions the book does not know of, the relay's delivery
    // gate still withholds their messages.
    connect_core(shared, &claim.upstream_id, keep_alive, connect.clean_session, will).await
}

async fn connect_core(
    shared: &Shared,
    client_id: &str,
    keep_alive: u16,
    clean_session: bool,
    last_will: Option<LastWill>,
) -> std::io::Result<CoreLink> {
    let (mut up_rx, mut up_tx) = shared.core.connect().await?;
    let up_connect = Connect {
        protocol: rumqttc::mqttbytes::Protocol::V4,
        keep_alive,
        client_id: client_id.to_owned(),
        clean_session,
        last_will,
        login: Some(Login { username: shared.core.user.clone(), password: shared.core.credential.clone() }),
    };
    let mut up_buf = BytesMut::with_capacity(4096);
    let connack = async {
        up_tx.write_all(&encode(&Packet::Connect(up_connect), usize::MAX).map_err(std::io::Error::other)?).await?;
        loop {
            match Packet::read(&mut up_buf, usize::MAX) {
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
    match tokio::time::timeout(Duration::from_secs(10), connack).await {
        Ok(Ok(ack)) if ack.code == ConnectReturnCode::Success => Ok((up_rx, up_tx, up_buf, ack)),
        Ok(Ok(ack)) => Err(std::io::Error::other(format!("the core answered {:?}", ack.code))),
        Ok(Err(e)) => {
            // A broken core node: the next connection tries the next address first.
            shared.core.rotate();
            Err(e)
        }
        Err(_) => {
            shared.core.rotate();
            Err(std::io::Error::other("the core did not answer CONNECT within 10 s"))
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
