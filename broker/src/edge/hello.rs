//! A client's CONNECT at either protocol level, and the CONNACK that answers it.
//!
//! The level is byte 7 of CONNECT's variable header: 4 (MQTT 3.1.1) or 5 (MQTT 5.0). An MQTT 5
//! CONNECT is read with rumqttc's MQTT 5 codec and given the 3.1.1 form the edge decides on
//! (client id, keep-alive, will, login), its MQTT 5 asks kept aside: Clean Start and Session
//! Expiry (→ [`SessionAsk`]), Receive Maximum, Maximum Packet Size and Request Problem
//! Information (→ [`V5`]). A refusal is said in the client's own protocol: a 3.1.1 return
//! code, or an MQTT 5 reason code with a reason string.

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{ConnAck, Connect, ConnectReturnCode, LastWill, Login, Packet, QoS};

use super::v5::{self, V5};
use super::write_packet;
use crate::sessions::{Expiry, SessionAsk};
use crate::transport::{ClientRx, ClientTx};

/// A CONNECT, in the edge's terms.
pub(super) struct Hello {
    /// The 3.1.1 form (for MQTT 5: `clean_session` is Clean Start).
    pub connect: Connect,
    /// What only MQTT 5 asks (`None`: MQTT 3.1.1).
    pub v5: Option<V5Hello>,
}

pub(super) struct V5Hello {
    pub properties: Option<m5::ConnectProperties>,
    /// Session Expiry Interval asked, seconds (0: the session ends with the connection).
    pub expiry: u32,
}

/// Why no CONNECT was read.
pub(super) enum NoHello {
    /// A protocol level other than 4 and 5.
    Level,
    /// Nothing readable (closed, malformed, or too slow).
    Nothing,
}

impl Hello {
    /// What the CONNECT asks of its session, and the Session Expiry granted when it is less
    /// than asked (said in the CONNACK). MQTT 5's expiry is bounded by `max_expiry`.
    pub(super) fn session_ask(&self, max_expiry: u32) -> (SessionAsk, Option<u32>) {
        let Some(h) = &self.v5 else { return (SessionAsk::v4(self.connect.clean_session), None) };
        let granted = h.expiry.min(max_expiry.max(1));
        let expiry = if h.expiry == 0 { Expiry::AtDisconnect } else { Expiry::After(granted) };
        let reduced = (h.expiry > 0 && granted < h.expiry).then_some(granted);
        (SessionAsk { clean_start: self.connect.clean_session, expiry }, reduced)
    }

    /// An MQTT 5 client's negotiated limits.
    pub(super) fn negotiated(&self) -> Option<V5> {
        self.v5.as_ref().map(|h| V5::new(h.properties.as_ref()))
    }

    /// MQTT 5 enhanced authentication was asked for (not offered).
    pub(super) fn wants_enhanced_auth(&self) -> bool {
        self.v5.as_ref().and_then(|h| h.properties.as_ref()).is_some_and(|p| p.authentication_method.is_some())
    }
}

/// Reads the first packet, which must be a CONNECT of level 4 or 5.
pub(super) async fn read(rx: &mut ClientRx, buf: &mut BytesMut, max: usize) -> Result<Hello, NoHello> {
    loop {
        match super::connect_level(buf) {
            Some(5) => match m5::Packet::read(buf, Some(u32::try_from(max).unwrap_or(u32::MAX))) {
                Ok(m5::Packet::Connect(c, will, login)) => return Ok(from_v5(c, will, login)),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                _ => return Err(NoHello::Nothing),
            },
            _ => match Packet::read(buf, max) {
                Ok(Packet::Connect(connect)) => return Ok(Hello { connect, v5: None }),
                Ok(_) => return Err(NoHello::Nothing),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(CodecError::InvalidProtocol | CodecError::InvalidProtocolLevel(_)) => return Err(NoHello::Level),
                Err(_) => return Err(NoHello::Nothing),
            },
        }
        match rx.read(buf).await {
            Ok(0) | Err(_) => return Err(NoHello::Nothing),
            Ok(_) => {}
        }
    }
}

fn from_v5(c: m5::Connect, will: Option<m5::LastWill>, login: Option<m5::Login>) -> Hello {
    let last_will = will.map(|w| LastWill {
        topic: String::from_utf8_lossy(&w.topic).into_owned(),
        message: w.message,
        qos: match w.qos {
            rumqttc::v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        },
        retain: w.retain,
    });
    let expiry = c.properties.as_ref().and_then(|p| p.session_expiry_interval).unwrap_or(0);
    Hello {
        connect: Connect {
            protocol: rumqttc::mqttbytes::Protocol::V4,
            keep_alive: c.keep_alive,
            client_id: c.client_id,
            clean_session: c.clean_start,
            last_will,
            login: login.map(|l| Login { username: l.username, password: l.password }),
        },
        v5: Some(V5Hello { properties: c.properties, expiry }),
    }
}

/// A refused CONNECT: the 3.1.1 return code, and what MQTT 5 says more precisely.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refused {
    pub v4: ConnectReturnCode,
    pub v5: m5::ConnectReturnCode,
    pub text: &'static str,
}

impl Refused {
    /// The MQTT 5 words for a 3.1.1 code decided by authentication.
    pub(super) fn of(code: ConnectReturnCode) -> Refused {
        use m5::ConnectReturnCode as C;
        let (v5, text) = match code {
            ConnectReturnCode::BadUserNamePassword => (C::BadUserNamePassword, "bad user name or password"),
            ConnectReturnCode::NotAuthorized => (C::NotAuthorized, "not authorized"),
            ConnectReturnCode::BadClientId => (
                C::ClientIdentifierNotValid,
                "client id not valid: a machine connects as its device id, a person as their user id (or user id-suffix)",
            ),
            ConnectReturnCode::RefusedProtocolVersion => (C::UnsupportedProtocolVersion, "unsupported protocol version"),
            _ => (C::ServerUnavailable, "server unavailable; retry later"),
        };
        Refused { v4: code, v5, text }
    }

    /// Server unavailable (3), with what MQTT 5 says.
    pub(super) fn unavailable(v5: m5::ConnectReturnCode, text: &'static str) -> Refused {
        Refused { v4: ConnectReturnCode::ServiceUnavailable, v5, text }
    }
}

/// Answers a CONNECT with a refusal in the client's protocol, and closes.
pub(super) async fn refuse(tx: &mut ClientTx, hello: &Hello, r: Refused) {
    if hello.v5.is_some() {
        if let Ok(bytes) = v5::connack(false, r.v5, Some(v5::refusal_props(r.text))) {
            let _ = tx.write(&bytes).await;
        }
    } else {
        let _ = write_packet(tx, &Packet::ConnAck(ConnAck { session_present: false, code: r.v4 }), 16).await;
    }
    tx.close().await;
}

/// Refuses a CONNECT of a level the edge does not speak (MQTT 3.1.1's code 1).
pub(super) async fn refuse_level(tx: &mut ClientTx) {
    let ack = Packet::ConnAck(ConnAck { session_present: false, code: ConnectReturnCode::RefusedProtocolVersion });
    let _ = write_packet(tx, &ack, 16).await;
    tx.close().await;
}

/// What every MQTT 5 CONNACK accepting a client announces: the server's limits and what
/// it does not offer (the caller adds what is particular to the connection).
pub(super) fn limits(settings: &crate::BrokerSettings) -> m5::ConnAckProperties {
    let mut p = v5::empty_connack_props();
    p.receive_max = Some(u16::try_from(settings.max_inflight).unwrap_or(u16::MAX).max(1));
    p.max_qos = Some(1);
    p.max_packet_size = Some(u32::try_from(settings.max_packet_size).unwrap_or(u32::MAX));
    p.topic_alias_max = Some(v5::TOPIC_ALIAS_MAX);
    p.wildcard_subscription_available = Some(1);
    p.subscription_identifiers_available = Some(0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(clean_start: bool, expiry: Option<u32>) -> Hello {
        let mut p = m5::ConnectProperties::new();
        p.session_expiry_interval = expiry;
        from_v5(m5::Connect { keep_alive: 30, client_id: "c".into(), clean_start, properties: Some(p) }, None, None)
    }

    #[test]
    fn session_expiry_is_asked_bounded_and_said_when_reduced() {
        let (ask, reduced) = hello(true, None).session_ask(60);
        assert_eq!((ask, reduced), (SessionAsk { clean_start: true, expiry: Expiry::AtDisconnect }, None));
        let (ask, reduced) = hello(false, Some(30)).session_ask(60);
        assert_eq!((ask, reduced), (SessionAsk { clean_start: false, expiry: Expiry::After(30) }, None));
        let (ask, reduced) = hello(false, Some(u32::MAX)).session_ask(60);
        assert_eq!((ask.expiry, reduced), (Expiry::After(60), Some(60)));
        let v4 = Hello { connect: hello(false, None).connect, v5: None };
        assert_eq!(v4.session_ask(60), (SessionAsk::v4(false), None));
    }
}
