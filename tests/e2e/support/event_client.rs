//! A rumqttc client read as a timeline of events: each event of its event loop stamped with
//! when it happened (for revocation budgets and PUBACK order), publishes kept in an inbox
//! while waiting for something else, and optionally reconnecting; with the MQTT vocabulary
//! the tests share (connection options, SUBACK codes, a message's body).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{
    AsyncClient, ConnAck, ConnectionError, Event, MqttOptions, Outgoing, Packet, PubAck, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{Reply, WAIT};

/// The revocation budget.
pub const CUT: Duration = Duration::from_secs(1);

pub const GRANTED: SubscribeReasonCode = SubscribeReasonCode::Success(QoS::AtLeastOnce);
pub const REFUSED: SubscribeReasonCode = SubscribeReasonCode::Failure;

/// Options to connect to `addr` as `client_id` with these credentials.
pub fn options(addr: SocketAddr, client_id: &str, user: &str, pass: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, pass);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// A message's payload as JSON (a JSON string if it is not JSON).
pub fn body(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap_or_else(|_| json!(String::from_utf8_lossy(&p.payload)))
}

/// An event of a rumqttc event loop, with when it happened.
pub struct Stamped {
    pub at: Instant,
    pub wall: DateTime<Utc>,
    pub event: Result<Event, ConnectionError>,
}

/// A rumqttc client whose event loop runs in a task; its events come through a channel.
/// Publishes that arrive while waiting for something else are kept in `inbox`.
pub struct EventClient {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Stamped>,
    task: tokio::task::JoinHandle<()>,
    pub inbox: VecDeque<Publish>,
    pub connack: ConnAck,
}

impl Drop for EventClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventClient {
    /// Connects (waiting for the CONNACK). With `reconnect`, the event loop keeps polling
    /// after an error, which makes rumqttc reconnect and resend what was not acknowledged.
    pub async fn connect(options: MqttOptions, reconnect: bool) -> Result<EventClient, ConnectionError> {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let connack = loop {
            match tokio::time::timeout(WAIT, eventloop.poll()).await.expect("a CONNACK in time") {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => break ack,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        };
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if tx.send(Stamped { at: Instant::now(), wall: Utc::now(), event }).is_err() || (failed && !reconnect) {
                    return;
                }
                if failed {
                    // Paces reconnection attempts (rumqttc has no backoff of its own).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Ok(EventClient { client, events, task, inbox: VecDeque::new(), connack })
    }

    /// Sends DISCONNECT and waits until the service closes the connection: by then the
    /// edge has ended the connection in the core, which keeps a persistent session.
    pub async fn leave(mut self) {
        self.client.disconnect().await.expect("DISCONNECT queued");
        self.closed(WAIT, "DISCONNECT").await;
    }

    /// Drops the event loop, and so the socket, without DISCONNECT.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Waits for the event `f` picks; keeps publishes it does not want; panics on a
    /// connection error or after `within`.
    pub async fn until<T>(&mut self, within: Duration, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let s = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("{what}: nothing within {within:?}"),
                Ok(None) => panic!("{what}: the event loop has stopped"),
                Ok(Some(s)) => s,
            };
            match s.event {
                Err(e) => panic!("{what}: the connection failed: {e}"),
                Ok(event) => {
                    if let Some(t) = f(&event) {
                        return t;
                    }
                    if let Event::Incoming(Packet::Publish(p)) = event {
                        self.inbox.push_back(p);
                    }
                }
            }
        }
    }

    /// The next message on `topic` (already received or arriving within `within`).
    pub async fn message(&mut self, topic: &str, within: Duration) -> Publish {
        if let Some(i) = self.inbox.iter().position(|p| p.topic == topic) {
            return self.inbox.remove(i).expect("present");
        }
        self.until(within, &format!("a message on {topic}"), |e| match e {
            Event::Incoming(Packet::Publish(p)) if p.topic == topic => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Everything that arrives within `within` (plus what is in the inbox); panics if the
    /// connection fails meanwhile.
    pub async fn collect(&mut self, within: Duration) -> Vec<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(s)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match s.event {
                Err(e) => panic!("the connection failed while collecting messages: {e}"),
                Ok(Event::Incoming(Packet::Publish(p))) => self.inbox.push_back(p),
                Ok(_) => {}
            }
        }
        self.inbox.drain(..).collect()
    }

    /// Asserts that no event `f` flags happens within `within`, and that the connection stays up.
    pub async fn quiet(&mut self, within: Duration, what: &str, mut f: impl FnMut(&Event) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(s)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match s.event {
                Err(e) => panic!("{what}: the connection failed: {e}"),
                Ok(event) => {
                    assert!(!f(&event), "{what}: {event:?}");
                    if let Event::Incoming(Packet::Publish(p)) = event {
                        self.inbox.push_back(p);
                    }
                }
            }
        }
    }

    /// Waits until the connection fails; returns when (monotonic and wall clock).
    pub async fn closed(&mut self, within: Duration, what: &str) -> (Instant, DateTime<Utc>) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("{what}: still connected after {within:?}"),
                Ok(None) => panic!("{what}: the event loop has stopped"),
                Ok(Some(Stamped { event: Err(_), at, wall })) => return (at, wall),
                Ok(Some(Stamped { event: Ok(Event::Incoming(Packet::Publish(p))), .. })) => self.inbox.push_back(p),
                Ok(Some(_)) => {}
            }
        }
    }

    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
        let all: Vec<SubscribeFilter> =
            filters.iter().map(|(f, q)| SubscribeFilter::new((*f).to_owned(), *q)).collect();
        self.client.subscribe_many(all).await.expect("subscribe queued");
        let what = format!("SUBSCRIBE {filters:?}");
        let pkid = self
            .until(WAIT, &what, |e| match e {
                Event::Outgoing(Outgoing::Subscribe(pkid)) => Some(*pkid),
                _ => None,
            })
            .await;
        self.until(WAIT, &what, |e| match e {
            Event::Incoming(Packet::SubAck(ack)) if ack.pkid == pkid => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1; returns the packet id rumqttc used.
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) -> u16 {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.expect("publish queued");
        self.until(WAIT, &format!("PUBLISH on {topic}"), |e| match e {
            Event::Outgoing(Outgoing::Publish(pkid)) => Some(*pkid),
            _ => None,
        })
        .await
    }

    pub async fn puback(&mut self, pkid: u16, within: Duration) {
        self.until(within, &format!("PUBACK {pkid}"), |e| {
            matches!(e, Event::Incoming(Packet::PubAck(PubAck { pkid: p })) if *p == pkid).then_some(())
        })
        .await
    }

    pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        let pkid = self.publish(topic, payload).await;
        self.puback(pkid, WAIT).await;
    }
}

/// Asserts that `conn` is disconnected less than [`CUT`] after `since` (the moment the
/// triggering call returned).
pub async fn assert_cut(conn: &mut EventClient, since: Instant, what: &str) {
    let (at, _) = conn.closed(WAIT, what).await;
    let took = at.saturating_duration_since(since);
    if at < since {
        println!("{what}: disconnected {:?} before the triggering call returned", since - at);
    } else {
        println!("{what}: disconnected {took:?} after the triggering call returned");
    }
    assert!(took < CUT, "{what}: disconnected only after {took:?}");
}

/// Awaits `call` (the REST call that takes a right away), asserts it answered `status`, and
/// that `conn` is then disconnected within [`CUT`] ([`assert_cut`]); the answer, and when it
/// came.
pub async fn assert_cut_by(
    conn: &mut EventClient,
    call: impl std::future::Future<Output = Reply>,
    status: u16,
    what: &str,
) -> (Reply, Instant) {
    let r = call.await;
    let returned = Instant::now();
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_cut(conn, returned, what).await;
    (r, returned)
}
