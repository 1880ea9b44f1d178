//! A rumqttc client read as JSON messages: its event loop runs in a task; what arrives is
//! kept as (topic, JSON body), SUBACKs in a queue, and which of its publishes (by index, in
//! publish order) were acknowledged.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode};
use serde_json::Value;

/// How long any single awaited event may take (generous: the suite runs tests in parallel).
pub const LONG_WAIT: Duration = Duration::from_secs(20);

pub struct JsonClient {
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

impl JsonClient {
    pub async fn connect(addr: SocketAddr, client_id: &str, user: &str, password: &str, clean: bool) -> JsonClient {
        JsonClient::try_connect(addr, client_id, user, password, clean)
            .await
            .unwrap_or_else(|e| panic!("mqtt connect {client_id}: {e}"))
    }

    pub async fn try_connect(
        addr: SocketAddr,
        client_id: &str,
        user: &str,
        password: &str,
        clean: bool,
    ) -> Result<JsonClient, String> {
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
        let mut m = JsonClient {
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
            match tokio::time::timeout(LONG_WAIT, m.events.recv()).await.map_err(|_| "no CONNACK in time".to_owned())? {
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

    /// Pumps events until `f` answers, failing after [`LONG_WAIT`].
    pub async fn until<T>(&mut self, what: &str, mut f: impl FnMut(&mut JsonClient) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + LONG_WAIT;
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
        tokio::time::timeout(LONG_WAIT, async { while self.pump().await {} }).await.expect("the connection ends");
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
