//! MQTT 5 on the client side of the edge.
//!
//! The relay works in MQTT 3.1.1 packets (`rumqttc::Packet`), which is also what it speaks to
//! the core (rumqttd's loopback links and NATS both speak 3.1.1). A connection whose CONNECT
//! says level 5 is translated here, at the socket: what the client sends is read with
//! rumqttc's MQTT 5 codec and handed to the relay as the 3.1.1 packet that means the same
//! (topic aliases resolved, properties kept aside where the relay needs them), and what the
//! relay sends is written as MQTT 5, with the reason codes and reason strings 3.1.1 cannot
//! carry. One decision path (the policy) and one delivery gate serve both levels; only
//! the words differ.

use std::collections::HashMap;

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::v5::mqttbytes::QoS as Qos5;
use rumqttc::{Packet, QoS};

/// Topic aliases a client may set (announced in the CONNACK).
pub(crate) const TOPIC_ALIAS_MAX: u16 = 32;

/// Why the server ends an MQTT 5 connection, or refuses one message (the reason code and
/// what the reason string says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// 0x81: a packet the codec cannot read.
    Malformed,
    /// 0x82: a packet out of place (a second CONNECT, AUTH, an unknown alias).
    ProtocolError,
    /// 0x95: larger than the Maximum Packet Size the server announced.
    TooLarge,
    /// 0x94: a topic alias of 0 or above the announced maximum.
    TopicAliasInvalid,
    /// 0x9B: QoS 2 (the server announced Maximum QoS 1).
    QosNotSupported,
    /// 0xA1: a Subscription Identifier (announced as not available).
    SubscriptionIdsNotSupported,
}

impl Problem {
    fn code(self) -> m5::DisconnectReasonCode {
        use m5::DisconnectReasonCode as D;
        match self {
            Problem::Malformed => D::MalformedPacket,
            Problem::ProtocolError => D::ProtocolError,
            Problem::TooLarge => D::PacketTooLarge,
            Problem::TopicAliasInvalid => D::TopicAliasInvalid,
            Problem::QosNotSupported => D::QoSNotSupported,
            Problem::SubscriptionIdsNotSupported => D::SubscriptionIdentifiersNotSupported,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Problem::Malformed => "malformed packet",
            Problem::ProtocolError => "protocol error",
            Problem::TooLarge => "packet larger than the Maximum Packet Size",
            Problem::TopicAliasInvalid => "topic alias 0 or above the Topic Alias Maximum",
            Problem::QosNotSupported => "QoS 2 is not supported (Maximum QoS 1)",
            Problem::SubscriptionIdsNotSupported => "subscription identifiers are not supported",
        }
    }
}

/// Why the server ends a connection, as an MQTT 5 DISCONNECT says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goodbye {
    /// A packet broke the protocol.
    Problem(Problem),
    /// 0x87: a right the connection rested on is gone (and, with its reason string, the
    /// credentials expired: MQTT 5 has no DISCONNECT code of its own for that; 0x8C is a
    /// CONNACK code).
    Revoked { expired: bool },
    /// 0x8E: another connection took over the client id.
    TakenOver,
    /// 0x8D: nothing heard for 1.5 keep-alives.
    KeepAliveTimeout,
    /// 0x8B.
    ShuttingDown,
    /// 0x80: storage could not take the message; unacknowledged, so it is sent again.
    StorageUnavailable,
    /// 0x80: the core closed the session.
    CoreClosed,
}

impl Goodbye {
    fn packet(self) -> m5::Disconnect {
        use m5::DisconnectReasonCode as D;
        let (code, text) = match self {
            Goodbye::Problem(p) => (p.code(), p.text()),
            Goodbye::Revoked { expired: true } => {
                (D::NotAuthorized, "the access token expired; connect with a new one")
            }
            Goodbye::Revoked { expired: false } => (D::NotAuthorized, "a right this connection relied on was revoked"),
            Goodbye::TakenOver => (D::SessionTakenOver, "another connection took over this client id"),
            Goodbye::KeepAliveTimeout => (D::KeepAliveTimeout, "no packet within 1.5 times the keep-alive"),
            Goodbye::ShuttingDown => (D::ServerShuttingDown, "the server is shutting down"),
            Goodbye::StorageUnavailable => {
                (D::UnspecifiedError, "storage unavailable: unacknowledged messages must be sent again")
            }
            Goodbye::CoreClosed => (D::UnspecifiedError, "the session ended in the broker core"),
        };
        m5::Disconnect {
            reason_code: code,
            properties: Some(m5::DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some(text.to_owned()),
                user_properties: Vec::new(),
                server_reference: None,
            }),
        }
    }
}

/// Why a client's PUBLISH is refused (MQTT 5 PUBACK reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PubRefusal {
    /// 0x87: the policy does not let this client publish there.
    NotAuthorized,
    /// 0x90: not a topic of the contract.
    TopicNameInvalid,
    /// 0x99: the payload breaks the contract's rules.
    PayloadFormatInvalid,
    /// 0x97: a rate limit.
    QuotaExceeded,
    /// 0x83: valid, but not accepted (a reading's `seq` taken by another).
    ImplementationSpecific,
    /// 0x80.
    Unspecified,
}

impl PubRefusal {
    fn reason(self) -> m5::PubAckReason {
        use m5::PubAckReason as R;
        match self {
            PubRefusal::NotAuthorized => R::NotAuthorized,
            PubRefusal::TopicNameInvalid => R::TopicNameInvalid,
            PubRefusal::PayloadFormatInvalid => R::PayloadFormatInvalid,
            PubRefusal::QuotaExceeded => R::QuotaExceeded,
            PubRefusal::ImplementationSpecific => R::ImplementationSpecificError,
            PubRefusal::Unspecified => R::UnspecifiedError,
        }
    }

    /// The refusal a service's error body means (`code`: see topics.md, "Errors").
    pub(crate) fn of_error_code(code: &str) -> PubRefusal {
        match code {
            "validation_failed" => PubRefusal::PayloadFormatInvalid,
            "seq_conflict" => PubRefusal::ImplementationSpecific,
            "forbidden" | "not_found" => PubRefusal::NotAuthorized,
            "rate_limited" => PubRefusal::QuotaExceeded,
            _ => PubRefusal::Unspecified,
        }
    }
}

/// Why one filter of a SUBSCRIBE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubRefusal {
    /// 0x87: the policy does not allow it.
    NotAuthorized,
    /// 0x8F: not a filter of the contract.
    FilterInvalid,
    /// 0x97: too many filters at once, or too fast.
    QuotaExceeded,
    /// 0x9E: shared subscriptions with a core that has none.
    SharedNotSupported,
    /// 0x80: storage could not decide, or the core refused.
    Unspecified,
}

/// The answer to one filter of a SUBSCRIBE, at either level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Granted(QoS),
    Refused(SubRefusal),
}

impl Answer {
    /// The core's 3.1.1 answer.
    pub(crate) fn of_core(code: &rumqttc::SubscribeReasonCode) -> Answer {
        match code {
            rumqttc::SubscribeReasonCode::Success(q) => Answer::Granted(*q),
            rumqttc::SubscribeReasonCode::Failure => Answer::Refused(SubRefusal::Unspecified),
        }
    }

    /// The 3.1.1 answer code of an answer (for the relay's 3.1.1 clients).
    pub(crate) fn v4(self) -> rumqttc::SubscribeReasonCode {
        match self {
            Answer::Granted(q) => rumqttc::SubscribeReasonCode::Success(q),
            Answer::Refused(_) => rumqttc::SubscribeReasonCode::Failure,
        }
    }

    fn v5(self) -> m5::SubscribeReasonCode {
        use m5::SubscribeReasonCode as S;
        match self {
            Answer::Granted(q) => S::Success(qos5(q)),
            Answer::Refused(SubRefusal::NotAuthorized) => S::NotAuthorized,
            Answer::Refused(SubRefusal::FilterInvalid) => S::TopicFilterInvalid,
            Answer::Refused(SubRefusal::QuotaExceeded) => S::QuotaExceeded,
            Answer::Refused(SubRefusal::SharedNotSupported) => S::SharedSubscriptionsNotSupported,
            Answer::Refused(SubRefusal::Unspecified) => S::Unspecified,
        }
    }
}

/// What an MQTT 5 client negotiated at CONNECT.
#[derive(Debug)]
pub(crate) struct V5 {
    /// The client's Receive Maximum: QoS 1 deliveries it takes unacknowledged.
    pub receive_max: u16,
    /// The client's Maximum Packet Size: larger deliveries are dropped, not sent.
    pub max_packet: Option<u32>,
    /// Reason strings and user properties on acknowledgements (Request Problem Information).
    pub problem_info: bool,
    /// Topic aliases the client has set.
    aliases: HashMap<u16, String>,
}

impl V5 {
    pub(crate) fn new(props: Option<&m5::ConnectProperties>) -> V5 {
        V5 {
            receive_max: props.and_then(|p| p.receive_maximum).filter(|n| *n > 0).unwrap_or(u16::MAX),
            max_packet: props.and_then(|p| p.max_packet_size).filter(|n| *n > 0),
            problem_info: props.and_then(|p| p.request_problem_info) != Some(0),
            aliases: HashMap::new(),
        }
    }
}

/// The Response Topic and Correlation Data of a request (MQTT 5 request/response): the
/// service answers there once it has settled the PUBLISH.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub topic: String,
    pub correlation: Option<bytes::Bytes>,
}

/// A packet from an MQTT 5 client, in the relay's terms (a PUBLISH with its request, if it
/// is one).
pub(crate) enum FromClient {
    Packet(Packet, Option<Request>),
    /// DISCONNECT 0x04: the client leaves but wants its will published.
    DisconnectWithWill,
}

/// Reads the next packet of an MQTT 5 client from `buf`: `Ok(None)` when it is not all
/// there yet.
pub(crate) fn read(v5: &mut V5, buf: &mut BytesMut, max: usize) -> Result<Option<FromClient>, Problem> {
    // A DISCONNECT without reason code (remaining length 0, as mosquitto sends it) is a
    // normal disconnection; the codec wants at least a reason byte.
    if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
        let _ = buf.split_to(2);
        return Ok(Some(FromClient::Packet(Packet::Disconnect, None)));
    }
    let max = u32::try_from(max).unwrap_or(u32::MAX);
    let packet = match m5::Packet::read(buf, Some(max)) {
        Ok(p) => p,
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. }) => return Err(Problem::TooLarge),
        Err(_) => return Err(Problem::Malformed),
    };
    let mut request = None;
    let packet = match packet {
        m5::Packet::Publish(p) => {
            let (publish, asked) = publish_in(v5, p)?;
            request = asked;
            Packet::Publish(publish)
        }
        m5::Packet::PubAck(a) => Packet::PubAck(rumqttc::PubAck { pkid: a.pkid }),
        m5::Packet::PubRec(a) => Packet::PubRec(rumqttc::PubRec { pkid: a.pkid }),
        m5::Packet::PubRel(a) => Packet::PubRel(rumqttc::PubRel { pkid: a.pkid }),
        m5::Packet::PubComp(a) => Packet::PubComp(rumqttc::PubComp { pkid: a.pkid }),
        m5::Packet::Subscribe(s) => {
            if s.properties.as_ref().is_some_and(|p| p.id.is_some()) {
                return Err(Problem::SubscriptionIdsNotSupported);
            }
            let filters =
                s.filters.into_iter().map(|f| rumqttc::SubscribeFilter { path: f.path, qos: qos4(f.qos) }).collect();
            Packet::Subscribe(rumqttc::Subscribe { pkid: s.pkid, filters })
        }
        m5::Packet::Unsubscribe(u) => Packet::Unsubscribe(rumqttc::Unsubscribe { pkid: u.pkid, topics: u.filters }),
        m5::Packet::PingReq(_) => Packet::PingReq,
        m5::Packet::Disconnect(d) if d.reason_code == m5::DisconnectReasonCode::DisconnectWithWillMessage => {
            return Ok(Some(FromClient::DisconnectWithWill))
        }
        m5::Packet::Disconnect(_) => Packet::Disconnect,
        // A second CONNECT, AUTH (no enhanced authentication is offered), or what only a
        // server sends.
        _ => return Err(Problem::ProtocolError),
    };
    Ok(Some(FromClient::Packet(packet, request)))
}

/// A client's PUBLISH with its topic alias resolved (or set), and its request.
fn publish_in(v5: &mut V5, p: m5::Publish) -> Result<(rumqttc::Publish, Option<Request>), Problem> {
    let topic = std::str::from_utf8(&p.topic).map_err(|_| Problem::Malformed)?.to_owned();
    let alias = p.properties.as_ref().and_then(|props| props.topic_alias);
    let request = p.properties.as_ref().and_then(|props| {
        let topic = props.response_topic.clone()?;
        Some(Request { topic, correlation: props.correlation_data.clone() })
    });
    let topic = match alias {
        Some(a) if a == 0 || a > TOPIC_ALIAS_MAX => return Err(Problem::TopicAliasInvalid),
        Some(a) if topic.is_empty() => v5.aliases.get(&a).cloned().ok_or(Problem::ProtocolError)?,
        Some(a) => {
            v5.aliases.insert(a, topic.clone());
            topic
        }
        None if topic.is_empty() => return Err(Problem::ProtocolError),
        None => topic,
    };
    if p.qos == Qos5::ExactlyOnce {
        return Err(Problem::QosNotSupported);
    }
    let mut out = rumqttc::Publish::from_bytes(topic, qos4(p.qos), p.payload);
    out.pkid = p.pkid;
    out.retain = p.retain;
    out.dup = p.dup;
    Ok((out, request))
}

fn qos4(q: Qos5) -> QoS {
    match q {
        Qos5::AtMostOnce => QoS::AtMostOnce,
        Qos5::AtLeastOnce => QoS::AtLeastOnce,
        Qos5::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos5(q: QoS) -> Qos5 {
    match q {
        QoS::AtMostOnce => Qos5::AtMostOnce,
        QoS::AtLeastOnce => Qos5::AtLeastOnce,
        QoS::ExactlyOnce => Qos5::ExactlyOnce,
    }
}

/// Reason string and user properties, if the client asked for problem information.
fn problem_props(v5: &V5, text: String, user: Vec<(String, String)>) -> (Option<String>, Vec<(String, String)>) {
    if v5.problem_info {
        (Some(text), user)
    } else {
        (None, Vec::new())
    }
}

/// A refused PUBLISH, as its MQTT 5 PUBACK says it: the reason, the reason string, and
/// user properties.
pub(crate) type Refusal = (PubRefusal, String, Vec<(String, String)>);

/// What the relay sends a client, beyond the 3.1.1 packet.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// PUBACK: the refusal, its reason string and user properties.
    pub refusal: Option<Refusal>,
    /// SUBACK: each filter's answer and what the refusals say.
    pub answers: Option<(Vec<Answer>, Option<String>)>,
    /// UNSUBACK: how many filters it answers.
    pub unsubscribed: usize,
    /// PUBLISH: seconds left of the message's life (Message Expiry Interval).
    pub expiry: Option<u32>,
    /// PUBLISH: a response's Correlation Data.
    pub correlation: Option<bytes::Bytes>,
}

/// Encodes a 3.1.1 packet of the relay for an MQTT 5 client. `Ok(None)`: nothing to send
/// (a delivery larger than the client takes: MQTT 5 says to drop it as if sent).
pub(crate) fn encode(v5: &V5, packet: &Packet, extra: Extra) -> Result<Option<BytesMut>, String> {
    let out = match packet {
        Packet::Publish(p) => {
            let properties = (extra.expiry.is_some() || extra.correlation.is_some()).then(|| m5::PublishProperties {
                message_expiry_interval: extra.expiry,
                correlation_data: extra.correlation,
                ..Default::default()
            });
            let mut publish = m5::Publish::new(p.topic.clone(), qos5(p.qos), p.payload.clone(), properties);
            publish.pkid = p.pkid;
            publish.retain = p.retain;
            publish.dup = p.dup;
            m5::Packet::Publish(publish)
        }
        Packet::PubAck(a) => {
            let mut ack = m5::PubAck::new(a.pkid, None);
            if let Some((refusal, text, user)) = extra.refusal {
                ack.reason = refusal.reason();
                let (reason_string, user_properties) = problem_props(v5, text, user);
                if reason_string.is_some() {
                    ack.properties = Some(m5::PubAckProperties { reason_string, user_properties });
                }
            }
            m5::Packet::PubAck(ack)
        }
        Packet::SubAck(s) => {
            let (answers, text) =
                extra.answers.unwrap_or_else(|| (s.return_codes.iter().map(Answer::of_core).collect(), None));
            let properties = text.and_then(|t| problem_props(v5, t, Vec::new()).0).map(|reason_string| {
                m5::SubAckProperties { reason_string: Some(reason_string), user_properties: Vec::new() }
            });
            m5::Packet::SubAck(m5::SubAck {
                pkid: s.pkid,
                return_codes: answers.into_iter().map(Answer::v5).collect(),
                properties,
            })
        }
        Packet::UnsubAck(u) => m5::Packet::UnsubAck(m5::UnsubAck {
            pkid: u.pkid,
            reasons: vec![m5::UnsubAckReason::Success; extra.unsubscribed.max(1)],
            properties: None,
        }),
        Packet::PubRec(a) => m5::Packet::PubRec(m5::PubRec::new(a.pkid, None)),
        Packet::PubRel(a) => m5::Packet::PubRel(m5::PubRel::new(a.pkid, None)),
        Packet::PubComp(a) => m5::Packet::PubComp(m5::PubComp::new(a.pkid, None)),
        Packet::PingResp => m5::Packet::PingResp(m5::PingResp),
        other => return Err(format!("no MQTT 5 form for {other:?} from the server")),
    };
    write(v5, &out)
}

/// The DISCONNECT that says why the server ends the connection.
pub(crate) fn goodbye(v5: &V5, why: Goodbye) -> Option<BytesMut> {
    write(v5, &m5::Packet::Disconnect(why.packet())).ok().flatten()
}

/// A CONNACK to an MQTT 5 client.
pub(crate) fn connack(
    session_present: bool,
    code: m5::ConnectReturnCode,
    properties: Option<m5::ConnAckProperties>,
) -> Result<BytesMut, String> {
    let mut buf = BytesMut::with_capacity(64);
    m5::Packet::ConnAck(m5::ConnAck { session_present, code, properties })
        .write(&mut buf, None)
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// The reason string of a refused CONNECT (Request Problem Information does not apply to
/// CONNACK).
pub(crate) fn refusal_props(text: &str) -> m5::ConnAckProperties {
    let mut p = empty_connack_props();
    p.reason_string = Some(text.to_owned());
    p
}

/// CONNACK properties with nothing set.
pub(crate) fn empty_connack_props() -> m5::ConnAckProperties {
    m5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

fn write(v5: &V5, packet: &m5::Packet) -> Result<Option<BytesMut>, String> {
    let mut buf = BytesMut::with_capacity(packet.size() + 8);
    match packet.write(&mut buf, v5.max_packet) {
        Ok(_) => Ok(Some(buf)),
        // Larger than the client takes: a delivery is dropped; an acknowledgement loses its
        // reason string and user properties first (MQTT 5 §3.4.2.2.2).
        Err(rumqttc::v5::mqttbytes::Error::OutgoingPacketTooLarge { .. }) => match packet {
            m5::Packet::PubAck(a) if a.properties.is_some() => {
                write(v5, &m5::Packet::PubAck(m5::PubAck { properties: None, ..a.clone() }))
            }
            m5::Packet::SubAck(a) if a.properties.is_some() => {
                write(v5, &m5::Packet::SubAck(m5::SubAck { properties: None, ..a.clone() }))
            }
            m5::Packet::Disconnect(d) if d.properties.is_some() => {
                write(v5, &m5::Packet::Disconnect(m5::Disconnect { properties: None, ..d.clone() }))
            }
            _ => Ok(None),
        },
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5() -> V5 {
        V5::new(None)
    }

    fn bytes(p: m5::Packet) -> BytesMut {
        let mut b = BytesMut::new();
        p.write(&mut b, None).unwrap();
        b
    }

    #[test]
    fn a_disconnect_without_reason_code_is_a_normal_one() {
        let mut buf = BytesMut::from(&[0xE0u8, 0x00][..]);
        assert!(matches!(read(&mut v5(), &mut buf, 1024), Ok(Some(FromClient::Packet(Packet::Disconnect, None)))));
        assert!(buf.is_empty());
    }

    #[test]
    fn topic_aliases_are_set_resolved_and_bounded() {
        let mut v = v5();
        let props = |a| Some(m5::PublishProperties { topic_alias: Some(a), ..Default::default() });
        let mut buf = bytes(m5::Packet::Publish(m5::Publish::new("a/b", Qos5::AtMostOnce, "x", props(3))));
        let Ok(Some(FromClient::Packet(Packet::Publish(p), _))) = read(&mut v, &mut buf, 1024) else { panic!() };
        assert_eq!(p.topic, "a/b");
        let mut buf = bytes(m5::Packet::Publish(m5::Publish::new("", Qos5::AtMostOnce, "y", props(3))));
        let Ok(Some(FromClient::Packet(Packet::Publish(p), _))) = read(&mut v, &mut buf, 1024) else { panic!() };
        assert_eq!(p.topic, "a/b", "the alias stands for the topic");
        let mut buf = bytes(m5::Packet::Publish(m5::Publish::new("", Qos5::AtMostOnce, "y", props(4))));
        assert_eq!(read(&mut v, &mut buf, 1024).err(), Some(Problem::ProtocolError), "an alias never set");
        let mut buf =
            bytes(m5::Packet::Publish(m5::Publish::new("c", Qos5::AtMostOnce, "y", props(TOPIC_ALIAS_MAX + 1))));
        assert_eq!(read(&mut v, &mut buf, 1024).err(), Some(Problem::TopicAliasInvalid));
    }

    #[test]
    fn qos_2_and_oversized_packets_are_problems() {
        let mut qos2 = m5::Publish::new("a", Qos5::ExactlyOnce, "x", None);
        qos2.pkid = 1;
        let mut buf = bytes(m5::Packet::Publish(qos2));
        assert_eq!(read(&mut v5(), &mut buf, 1024).err(), Some(Problem::QosNotSupported));
        let mut buf = bytes(m5::Packet::Publish(m5::Publish::new("a", Qos5::AtMostOnce, vec![0u8; 2000], None)));
        assert_eq!(read(&mut v5(), &mut buf, 1024).err(), Some(Problem::TooLarge));
    }

    #[test]
    fn a_refusal_carries_its_reason_unless_the_client_declined_problem_information() {
        let refusal = || Extra {
            refusal: Some((PubRefusal::PayloadFormatInvalid, "seq: missing".into(), vec![("code".into(), "x".into())])),
            ..Default::default()
        };
        let ack = Packet::PubAck(rumqttc::PubAck { pkid: 7 });
        let mut out = encode(&v5(), &ack, refusal()).unwrap().unwrap();
        let m5::Packet::PubAck(a) = m5::Packet::read(&mut out, None).unwrap() else { panic!() };
        assert_eq!(a.reason, m5::PubAckReason::PayloadFormatInvalid);
        assert_eq!(a.properties.unwrap().reason_string.as_deref(), Some("seq: missing"));
        let quiet = V5::new(Some(&m5::ConnectProperties { request_problem_info: Some(0), ..connect_props() }));
        let mut out = encode(&quiet, &ack, refusal()).unwrap().unwrap();
        let m5::Packet::PubAck(a) = m5::Packet::read(&mut out, None).unwrap() else { panic!() };
        assert_eq!((a.reason, a.properties), (m5::PubAckReason::PayloadFormatInvalid, None));
    }

    #[test]
    fn a_delivery_larger_than_the_client_takes_is_dropped() {
        let small = V5::new(Some(&m5::ConnectProperties { max_packet_size: Some(64), ..connect_props() }));
        let p = Packet::Publish(rumqttc::Publish::new("a/b", QoS::AtMostOnce, vec![0u8; 100]));
        assert!(encode(&small, &p, Extra::default()).unwrap().is_none());
        let p = Packet::Publish(rumqttc::Publish::new("a/b", QoS::AtMostOnce, vec![0u8; 10]));
        assert!(encode(&small, &p, Extra::default()).unwrap().is_some());
    }

    fn connect_props() -> m5::ConnectProperties {
        m5::ConnectProperties {
            session_expiry_interval: None,
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: Vec::new(),
            authentication_method: None,
            authentication_data: None,
        }
    }
}
