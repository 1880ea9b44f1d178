//! Real clients for the end-to-end tests: an MQTT client (rumqttc) whose event loop runs in
//! a task and whose events are read in order, and the live WebSocket stream.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// How long any single awaited event may take (generous: the suite runs tests in parallel).
pub const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// An MQTT client whose event loop runs in a task; events are read here, in order.
// ---------------------------------------------------------------------------------------

pub struct Mqtt {
    pub client: AsyncClient,
    pub events: tokio::sync::mpsc::UnboundedReceiver<Result<Event, String>>,
    pub task: tokio::task::JoinHandle<()>,
    /// Publishes received and not yet taken: (topic, JSON body).
    pub inbox: VecDeque<(String, Value)>,
    pub suback: VecDeque<Vec<SubscribeReasonCode>>,
    /// How many of our publishes went out; the n-th has index n - 1.
    pub sent: usize,
    pub pending: HashMap<u16, usize>,
    /// Indexes (0-based, in publish order) of our publishes that were acknowledged.
    pub acked: Vec<usize>,
    pub closed: Option<String>,
}

impl Mqtt {
    pub async fn connect(addr: SocketAddr, client_id: &str, user: &str, password: &str, clean: bool) -> Mqtt {
        Mqtt::try_connect(addr, client_id, user, password, clean)
            .await
            .unwrap_or_else(|e| panic!("mqtt connect {client_id}: {e}"))
    }

    pub async fn try_connect(
        addr: SocketAddr,
        client_id: &str,
        user: &str,
        password: &str,
        clean: bool,
    ) -> Result<Mqtt, String> {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(user, password);
        options.set_clean_session(clean);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        options.set_inflight(20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        // Polls until the first error, then drops the connection (no automatic reconnect).
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(e) => {
                        if tx.send(Ok(e)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut m = Mqtt {
            client,
            events,
            task,
            inbox: VecDeque::new(),
            suback: VecDeque::new(),
            sent: 0,
            pending: HashMap::new(),
            acked: Vec::new(),
            closed: None,
        };
        loop {
            match tokio::time::timeout(WAIT, m.events.recv()).await.map_err(|_| "no CONNACK in time".to_owned())? {
                Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {
                    return Ok(m)
                }
                Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return Err(format!("refused: {:?}", ack.code)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err("event loop ended".into()),
            }
        }
    }

    /// Reads one event into the state. False once the connection has failed.
    pub async fn pump(&mut self) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match self.events.recv().await {
            Some(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                self.inbox.push_back((p.topic.clone(), body));
            }
            Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(i) = self.pending.remove(&ack.pkid) {
                    self.acked.push(i);
                }
            }
            Some(Ok(Event::Incoming(Packet::SubAck(ack)))) => self.suback.push_back(ack.return_codes),
            Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                // The n-th outgoing publish is the n-th one we asked for (no reconnects here).
                self.pending.insert(pkid, self.sent);
                self.sent += 1;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => self.closed = Some(e),
            None => self.closed = Some("event loop ended".into()),
        }
        self.closed.is_none()
    }

    /// Pumps events until `f` answers, failing after [`WAIT`].
    pub async fn until<T>(&mut self, what: &str, mut f: impl FnMut(&mut Mqtt) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            match tokio::time::timeout_at(deadline, self.pump()).await {
                Ok(true) => {}
                Ok(false) => panic!("waiting for {what}: the connection failed: {:?}", self.closed),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Pumps events until the connection fails (e.g. the service stopped).
    pub async fn until_closed(&mut self) {
        tokio::time::timeout(WAIT, async { while self.pump().await {} }).await.expect("the connection ends");
    }

    pub async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe queued");
        let codes = self.until(&format!("SUBACK for {filter}"), |m| m.suback.pop_front()).await;
        codes[0]
    }

    pub async fn publish(&self, topic: &str, body: &Value) {
        self.client.publish(topic, QoS::AtLeastOnce, false, body.to_string()).await.expect("publish queued");
    }

    /// Publishes and waits for the PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, body: &Value) {
        let before = self.acked.len();
        self.publish(topic, body).await;
        self.until("PUBACK", |m| (m.acked.len() > before).then_some(())).await;
    }

    pub fn take(&mut self, topic: &str, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let i = self.inbox.iter().position(|(t, v)| t == topic && pred(v))?;
        self.inbox.remove(i).map(|(_, v)| v)
    }

    /// The next message on `topic` matching `pred`.
    pub async fn expect(&mut self, topic: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.until(&format!("{what} on {topic}"), |m| m.take(topic, &pred)).await
    }

    /// Nothing arrives on `topic` for `quiet`.
    pub async fn expect_silence(&mut self, topic: &str, quiet: Duration) {
        let _ = tokio::time::timeout(quiet, async { while self.pump().await {} }).await;
        let got: Vec<_> = self.inbox.iter().filter(|(t, _)| t == topic).collect();
        assert!(got.is_empty(), "nothing may arrive on {topic}, got {got:?}");
    }

    /// Drops the connection without DISCONNECT (the socket just closes).
    pub async fn drop_abruptly(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

// ---------------------------------------------------------------------------------------
// The live WebSocket stream.
// ---------------------------------------------------------------------------------------

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws/health-metrics/{device}`; the HTTP status when the upgrade is refused.
pub async fn ws_open(http: SocketAddr, device: Uuid, token: Option<&str>) -> Result<Ws, u16> {
    let mut url = format!("ws://{http}/ws/health-metrics/{device}");
    if let Some(t) = token {
        url.push_str(&format!("?token={t}"));
    }
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

#[derive(Debug)]
pub enum Live {
    Json(Value),
    /// Closed, with the close code if there was one.
    Closed(Option<u16>),
}

pub async fn ws_next(ws: &mut Ws) -> Live {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a websocket message in time") {
            Some(Ok(Message::Text(t))) => return Live::Json(serde_json::from_str(t.as_str()).expect("JSON message")),
            Some(Ok(Message::Close(frame))) => return Live::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Live::Closed(None),
        }
    }
}

/// Reads the stream until the reading `seq` arrives: alert evaluation of that reading is
/// complete by then (the stream gets a batch only after the alert engine has seen it).
/// Returns the other messages seen on the way.
pub async fn ws_until_reading(ws: &mut Ws, seq: i64) -> (Value, Vec<Value>) {
    let mut others = Vec::new();
    loop {
        match ws_next(ws).await {
            Live::Json(m) if m["type"] == "reading" && m["seq"] == seq => return (m, others),
            Live::Json(m) => others.push(m),
            Live::Closed(code) => panic!("the stream closed ({code:?}) before reading {seq}"),
        }
    }
}
