//! A client speaking raw MQTT 3.1.1 packets over a TcpStream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{
    Connect, ConnectReturnCode, Packet, PubAck, Publish, QoS, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// A client speaking raw MQTT 3.1.1 packets: filters and topics no well-behaved client
/// library would send, exact CONNACK/SUBACK codes, and closing a socket without DISCONNECT.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    pkid: u16,
}

#[derive(Debug)]
pub enum Got {
    Packet(Packet),
    Closed,
    Timeout,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    Disconnected,
}

impl RawClient {
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<RawClient, ConnectReturnCode> {
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 30;
        if let Some((user, pass)) = login {
            connect.set_login(user, pass);
        }
        RawClient::open(addr, connect).await
    }

    pub async fn open(addr: SocketAddr, connect: Connect) -> Result<RawClient, ConnectReturnCode> {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let mut raw = RawClient { stream, buf: BytesMut::new(), pkid: 0 };
        raw.send(Packet::Connect(connect)).await.expect("CONNECT sent");
        match raw.recv(WAIT).await {
            Got::Packet(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => Ok(raw),
            Got::Packet(Packet::ConnAck(ack)) => {
                assert!(matches!(raw.recv(WAIT).await, Got::Closed), "a refused connection is closed");
                Err(ack.code)
            }
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }

    pub fn next_pkid(&mut self) -> u16 {
        self.pkid = self.pkid.wrapping_add(1).max(1);
        self.pkid
    }

    pub async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        let mut bytes = BytesMut::new();
        packet.write(&mut bytes, usize::MAX).expect("encodable");
        self.stream.write_all(&bytes).await
    }

    pub async fn recv(&mut self, within: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Got::Packet(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => panic!("malformed packet from the broker: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Got::Timeout,
                Ok(Ok(0) | Err(_)) => return Got::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits for the packet `f` picks, acknowledging deliveries meanwhile.
    pub async fn expect<T>(&mut self, what: &str, mut f: impl FnMut(&Packet) -> Option<T>) -> Result<T, Got> {
        loop {
            match self.recv(WAIT).await {
                Got::Packet(p) => {
                    if let Some(t) = f(&p) {
                        return Ok(t);
                    }
                    if let Packet::Publish(delivery) = p {
                        if delivery.qos == QoS::AtLeastOnce {
                            let _ = self.send(Packet::PubAck(PubAck::new(delivery.pkid))).await;
                        }
                    }
                }
                Got::Timeout => panic!("{what}: no answer within {WAIT:?}"),
                closed => return Err(closed),
            }
        }
    }

    /// One SUBSCRIBE with these filters; the SUBACK's codes.
    pub async fn subscribe(&mut self, filters: &[(String, QoS)]) -> Vec<SubscribeReasonCode> {
        let pkid = self.next_pkid();
        let subscribe = Subscribe {
            pkid,
            filters: filters.iter().map(|(path, qos)| SubscribeFilter::new(path.clone(), *qos)).collect(),
        };
        self.send(Packet::Subscribe(subscribe)).await.expect("SUBSCRIBE sent");
        let what = format!("SUBACK for {filters:?}");
        self.expect(&what, |p| match p {
            Packet::SubAck(ack) if ack.pkid == pkid => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|got| panic!("{what}: {got:?}"))
    }

    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) -> Outcome {
        let pkid = self.next_pkid();
        let mut publish = Publish::new(topic, qos, payload.to_vec());
        publish.pkid = pkid;
        if self.send(Packet::Publish(publish)).await.is_err() {
            return Outcome::Disconnected;
        }
        let acked = self
            .expect(&format!("PUBLISH on {topic}"), |p| match p {
                Packet::PubAck(a) if a.pkid == pkid => Some(()),
                Packet::PubRec(a) if a.pkid == pkid => Some(()),
                _ => None,
            })
            .await;
        match acked {
            Ok(()) => Outcome::Acked,
            Err(_) => Outcome::Disconnected,
        }
    }

    pub async fn disconnect(mut self) {
        let _ = self.send(Packet::Disconnect).await;
        assert!(matches!(self.expect("DISCONNECT", |_| None::<()>).await, Err(Got::Closed)));
    }
}
