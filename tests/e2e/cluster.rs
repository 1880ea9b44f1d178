//! Several nodes: two Nephrocare processes on one database, their edges on a real 3-node
//! NATS cluster (Debian's `nats-server`, MQTT listener and JetStream; started by
//! `scripts/nats-cluster.sh`), and real clients on either node:
//!
//! - a machine on node A, a doctor's MQTT client and live WebSocket on node B: every reading
//!   arrives once and in order on both, and the alert the machine's danger raises on A
//!   notifies the doctor on B;
//! - chat between a patient on A (MQTT) and a doctor on B (the chat WebSocket), both ways,
//!   with a read receipt;
//! - an assignment ended through node B's REST cuts the doctor's subscription held on node A
//!   within a second (access events travel through PostgreSQL);
//! - `kill -9` of node A mid-ingest: the machine goes on through node B, and every
//!   acknowledged reading is stored exactly once; the same with the simulator's fleet;
//! - persistent sessions made on node A come back on node B: after `kill -9` of A with the
//!   QoS 1 messages queued meanwhile, and — for each of the seven triggers (assignment ended,
//!   hand-over revoked, expired or ended with its grantor's right, patient moved, logout,
//!   account deactivated) — with nothing their ended right covered;
//! - an alarm raised on node A counts a doctor watching through node B as reachable;
//! - `kill -9` of one broker node: ingest and delivery go on through the others;
//! - a cluster whose MQTT listeners speak TLS (`mqtts://`), its certificate verified.
//!
//! `scripts/test.sh` installs `nats-server` (scripts/provision-nats.sh); without it these
//! tests fail and say so.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    eventually, exec, hand_over, hospital_of, is_device, now, options, ws_next, ws_open, Client, EventClient,
    JsonClient, Live, Service, TestDb, World, Ws, CUT, GRANTED, SECRET,
};

/// Anything that must happen across nodes may take this long.
const WAIT: Duration = Duration::from_secs(20);

/// A 3-node NATS cluster in a temporary directory, stopped when dropped.
struct Nats {
    dir: PathBuf,
    /// The MQTT URLs of nodes 1, 2 and 3.
    urls: Vec<String>,
}

impl Nats {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/nats-cluster.sh")
    }

    /// Starts a cluster on ports no other test uses (`slot` tells tests apart).
    fn start(slot: u16) -> Nats {
        Nats::start_with(slot, &[])
    }

    /// The same, with `env` for the script (e.g. TLS).
    fn start_with(slot: u16, env: &[(&str, &str)]) -> Nats {
        let installed = ["nats-server", "/usr/sbin/nats-server"]
            .iter()
            .any(|s| Command::new(s).arg("--version").output().is_ok_and(|o| o.status.success()));
        assert!(installed, "nats-server is not installed: run scripts/provision-nats.sh (scripts/test.sh does)");
        let dir = std::env::temp_dir().join(format!("nc-nats-{}-{slot}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Below the ephemeral port range; 40 ports per cluster (see the script's layout).
        let base = 21000 + (std::process::id() as u16 % 50) * 160 + slot * 40;
        let out = Command::new("bash")
            .arg(Nats::script())
            .args(["start", dir.to_str().expect("utf-8 path"), &base.to_string()])
            .envs(env.iter().copied())
            .output()
            .expect("the cluster script runs");
        assert!(out.status.success(), "the NATS cluster did not start:\n{}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
        let urls: Vec<String> = line.split(',').map(str::to_owned).collect();
        assert_eq!(urls.len(), 3, "three MQTT URLs: {line}");
        Nats { dir, urls }
    }

    /// The core URL list of a node, in this failover order (1-based server numbers).
    fn core_url(&self, order: [usize; 3]) -> String {
        order.iter().map(|n| self.urls[n - 1].clone()).collect::<Vec<_>>().join(",")
    }

    fn kill9(&self, n: usize) {
        let ok = Command::new("bash")
            .arg(Nats::script())
            .args(["kill9", self.dir.to_str().expect("utf-8 path"), &n.to_string()])
            .status()
            .expect("the cluster script runs");
        assert!(ok.success(), "kill -9 of broker node {n}");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Nats::script())
            .args(["stop", self.dir.to_str().unwrap_or("/nonexistent")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // NEPHROCARE_TEST_KEEP_NATS: keep the servers' logs and stores, for debugging.
        if std::env::var_os("NEPHROCARE_TEST_KEEP_NATS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The mqtt tests' world (hospital A: `doc` and `tec` on `d1`, patient `pat` on `d1`, room
/// `r1` between `doc` and `pat`), served by two nodes.
struct Cluster {
    nats: Nats,
    db: TestDb,
    a: Option<Service>,
    b: Service,
    ids: HashMap<&'static str, String>,
    access: HashMap<&'static str, String>,
    refresh: HashMap<&'static str, String>,
}

impl Cluster {
    /// Node A tries broker node 1 first, node B broker node 2.
    async fn start(slot: u16) -> Cluster {
        let nats = Nats::start(slot);
        let db = TestDb::migrated().await;
        let a = Service::start(&db, &[("NEPHROCARE_MQTT_CORE_URL", &nats.core_url([1, 2, 3]))]);
        let b = Service::start(&db, &[("NEPHROCARE_MQTT_CORE_URL", &nats.core_url([2, 3, 1]))]);
        let (ids, access, refresh) = World::seed(&db, &Client::new(a.http.clone())).await;
        Cluster { nats, db, a: Some(a), b, ids, access, refresh }
    }

    fn a(&self) -> &Service {
        self.a.as_ref().expect("node A runs")
    }

    fn id(&self, k: &str) -> &str {
        &self.ids[k]
    }

    fn topic(&self, device: &str, channel: &str) -> String {
        format!("nc/v1/h/{}/d/{}/{channel}", self.id(hospital_of(device)), self.id(device))
    }

    fn room_topic(&self, channel: &str) -> String {
        format!("nc/v1/h/{}/chat/{}/{channel}", self.id("ha"), self.id("r1"))
    }

    /// `who` on the node whose MQTT listener is `addr` (`suffix` makes a person's client id).
    async fn mqtt(&self, addr: SocketAddr, who: &str, suffix: &str) -> EventClient {
        let id = self.id(who).to_owned();
        let o = if is_device(who) {
            options(addr, &id, &id, SECRET)
        } else {
            options(addr, &format!("{id}{suffix}"), &id, &self.access[who])
        };
        EventClient::connect(o, false).await.unwrap_or_else(|e| panic!("{who} connects: {e}"))
    }

    /// `who`'s persistent session (client id suffix `-app`) on the node at `addr`.
    async fn persistent(&self, addr: SocketAddr, who: &str, token: &str) -> EventClient {
        let id = self.id(who);
        let mut o = options(addr, &format!("{id}-app"), id, token);
        o.set_clean_session(false);
        EventClient::connect(o, false).await.unwrap_or_else(|e| panic!("{who} reconnects: {e}"))
    }

    /// A fresh access token of `who`'s login session (the refresh token is rotated), from node B.
    async fn refreshed(&mut self, who: &'static str) -> String {
        let r = Client::new(self.b.http.clone())
            .post("/api/auth/refresh", json!({"refreshToken": self.refresh[who]}))
            .await;
        assert_eq!(r.status, 200, "refresh: {}", r.text);
        self.refresh.insert(who, r.body["refreshToken"].as_str().unwrap().to_owned());
        r.body["accessToken"].as_str().unwrap().to_owned()
    }

    fn notifications(&self, who: &str) -> String {
        format!("nc/v1/h/{}/u/{}/notifications", self.id("ha"), self.id(who))
    }

    fn rest(service: &Service, token: &str) -> Client {
        Client::new(service.http.clone()).with_token(token)
    }

    async fn stored(&self, device: &str) -> (i64, i64) {
        let mut c = self.db.sql().await;
        sqlx::query_as(&format!(
            "SELECT count(*), count(DISTINCT seq) FROM health_metrics WHERE device_id = '{}'",
            self.id(device)
        ))
        .fetch_one(&mut c)
        .await
        .expect("count")
    }
}

fn http_addr(s: &Service) -> SocketAddr {
    s.http.trim_start_matches("http://").parse().expect("an address")
}

fn reading(seq: i64, patient: &str, status: &str) -> String {
    json!({"v": 1, "seq": seq, "ts": now(), "patientId": patient, "systemStatus": status, "heartRate": 72}).to_string()
}

fn body(p: &rumqttc::Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("JSON payload")
}

/// The seqs of readings on `topic` that `m` receives until `last` arrives.
async fn seqs_until(m: &mut EventClient, topic: &str, last: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let p = m.message(topic, WAIT).await;
        seqs.push(body(&p)["seq"].as_i64().expect("a seq"));
    }
    seqs
}

/// The seqs of reading frames on a live stream until every seq of `expected` has arrived.
async fn ws_seqs_missing(ws: &mut Ws, expected: &[i64]) -> Vec<i64> {
    let mut got = Vec::new();
    while expected.iter().any(|s| !got.contains(s)) {
        match ws_next(ws).await {
            Live::Json(m) if m["type"] == "reading" => got.push(m["seq"].as_i64().expect("a seq")),
            Live::Json(_) => {}
            Live::Closed(code) => panic!("the stream closed ({code:?})"),
        }
    }
    got
}

async fn chat_ws(http: SocketAddr, room: &str, token: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws/chat/{room}?token={token}"))
        .await
        .expect("the chat stream opens");
    ws
}

/// The next chat frame of `kind` (`message`, `read`, `ack`, …).
async fn chat_frame(ws: &mut Ws, kind: &str) -> Value {
    loop {
        match ws_next(ws).await {
            Live::Json(m) if m["type"] == kind => return m,
            Live::Json(_) => {}
            Live::Closed(code) => panic!("the chat stream closed ({code:?}) before a {kind}"),
        }
    }
}

#[tokio::test]
async fn two_nodes_share_readings_alerts_chat_and_revocations() {
    let c = Cluster::start(0).await;
    let (a, b) = (c.a().mqtt, c.b.mqtt);
    let telemetry = c.topic("d1", "telemetry");
    let notifications = format!("nc/v1/h/{}/u/{}/notifications", c.id("ha"), c.id("doc"));

    // The doctor on node B: MQTT (telemetry and notifications) and the live stream.
    let mut doc = c.mqtt(b, "doc", "-b").await;
    assert_eq!(
        doc.subscribe(&[(&telemetry, QoS::AtLeastOnce), (&notifications, QoS::AtLeastOnce)]).await,
        [GRANTED; 2]
    );
    let mut live = ws_open(http_addr(&c.b), c.id("d1").parse().unwrap(), Some(&c.access["doc"])).await.expect("stream");

    // Node A hears within about a second that the doctor is reachable through node B. No
    // signal of that reaches a client: this is the one wait on a period rather than an event.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The machine on node A: 40 readings, then danger.
    let machine = c.mqtt(a, "d1", "").await;
    let p1 = c.id("p1").to_owned();
    for seq in 1..=40 {
        machine.client.publish(&telemetry, QoS::AtLeastOnce, false, reading(seq, &p1, "normal")).await.unwrap();
    }
    machine.client.publish(&telemetry, QoS::AtLeastOnce, false, reading(41, &p1, "danger")).await.unwrap();
    let expected: Vec<i64> = (1..=41).collect();
    assert_eq!(seqs_until(&mut doc, &telemetry, 41).await, expected, "the doctor's MQTT client on B: once, in order");
    let streamed = ws_seqs_missing(&mut live, &expected).await;
    assert_eq!(streamed, expected, "the live stream on B: once, in order");
    let note = doc.message(&notifications, WAIT).await;
    let note = body(&note);
    assert_eq!((note["type"].as_str(), note["event"].as_str()), (Some("alert"), Some("raised")), "{note}");
    assert_eq!(note["alert"]["code"], "system_status_danger");
    // Node A raised it and counted the doctor on B as reachable: it waits for an answer at
    // tier 1 instead of escalating at once (a negative check, not synchronisation: time for an
    // escalation, were there one).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sql = c.db.sql().await;
    let level: i16 = sqlx::query_scalar(&format!(
        "SELECT escalation_level FROM alerts WHERE device_id = '{}' AND code = 'system_status_danger'",
        c.id("d1")
    ))
    .fetch_one(&mut sql)
    .await
    .expect("the alert");
    assert_eq!(level, 1, "the alert escalated although the doctor was reachable through node B");
    // Nothing more: no reading twice.
    let late = doc.collect(Duration::from_millis(500)).await;
    assert!(late.iter().all(|p| p.topic != telemetry), "a reading arrived twice: {late:?}");

    // Chat: the patient on node A over MQTT, the doctor on node B over the chat WebSocket.
    let mut pat = c.mqtt(a, "pat", "-a").await;
    let (messages, read) = (c.room_topic("messages"), c.room_topic("read"));
    assert_eq!(pat.subscribe(&[(&messages, QoS::AtLeastOnce), (&read, QoS::AtLeastOnce)]).await, [GRANTED; 2]);
    let mut room = chat_ws(http_addr(&c.b), c.id("r1"), &c.access["doc"]).await;
    let post = json!({"v": 1, "clientMessageId": "from-a-1", "message": "Hello from node A"}).to_string();
    pat.client.publish(c.room_topic("post"), QoS::AtLeastOnce, false, post).await.unwrap();
    let got = chat_frame(&mut room, "message").await;
    assert_eq!(got["message"]["message"], "Hello from node A", "{got}");
    let from_patient = got["message"]["id"].as_str().expect("an id").to_owned();
    // The patient's own message comes back on `messages` too.
    assert_eq!(body(&pat.message(&messages, WAIT).await)["message"]["id"], from_patient.as_str());
    let frame = json!({"type": "message", "clientMessageId": "from-b-1", "message": "Hello from node B"});
    room.send(Message::Text(frame.to_string().into())).await.unwrap();
    let back = body(&pat.message(&messages, WAIT).await);
    assert_eq!(back["message"]["message"], "Hello from node B", "{back}");
    room.send(Message::Text(json!({"type": "read", "messageId": from_patient}).to_string().into())).await.unwrap();
    let receipt = body(&pat.message(&read, WAIT).await);
    assert_eq!(receipt["userId"], c.id("doc"), "{receipt}");
    assert_eq!(receipt["lastReadMessageId"], from_patient.as_str());

    // Revocation: the doctor also holds d1 on node A; an admin ends the assignment on B.
    let mut held = c.mqtt(a, "doc", "-a").await;
    assert_eq!(held.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, [GRANTED]);
    // Both of the doctor's clean sessions, one per node, stay up and get the next reading.
    machine.client.publish(&telemetry, QoS::AtLeastOnce, false, reading(42, &p1, "normal")).await.unwrap();
    assert_eq!(seqs_until(&mut held, &telemetry, 42).await, [42], "the doctor's session on node A");
    assert_eq!(seqs_until(&mut doc, &telemetry, 42).await, [42], "the doctor's session on node B");
    let admin = Cluster::rest(&c.b, &c.access["adm"]);
    let r =
        admin.delete("/api/users/assign-device", Some(json!({"userId": c.id("doc"), "deviceId": c.id("d1")}))).await;
    let returned = Instant::now();
    assert_eq!(r.status, 204, "{}", r.text);
    let (at, _) = held.closed(WAIT, "the subscription held on node A").await;
    let took = at.saturating_duration_since(returned);
    println!("assignment ended on node B: node A cut the doctor {took:?} later");
    assert!(took < CUT, "node A cut the doctor only after {took:?}");
    drop((machine, live, room, pat));
}

/// Machine d1 of the cluster's world over the test client that tracks acknowledgements.
async fn machine(c: &Cluster, addr: SocketAddr) -> Result<JsonClient, String> {
    let id = c.id("d1");
    JsonClient::try_connect(addr, id, id, SECRET, true).await
}

/// Connects machine d1 to the first node of `nodes` that takes it, retrying for a while.
async fn machine_on(c: &Cluster, nodes: &[SocketAddr]) -> JsonClient {
    eventually("a node accepts the machine", WAIT, || async {
        for addr in nodes {
            if let Ok(m) = machine(c, *addr).await {
                return Some(m);
            }
        }
        None
    })
    .await
}

fn reading_value(seq: i64, patient: &str) -> Value {
    serde_json::from_str(&reading(seq, patient, "normal")).expect("JSON")
}

#[tokio::test]
async fn a_node_killed_mid_ingest_loses_and_duplicates_no_acknowledged_reading() {
    let mut c = Cluster::start(1).await;
    let (node_a, node_b) = (c.a().mqtt, c.b.mqtt);
    let telemetry = c.topic("d1", "telemetry");
    let p1 = c.id("p1").to_owned();
    let total: i64 = 400;
    let mut todo: VecDeque<i64> = (1..=total).collect();
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let mut conn = machine_on(&c, &[node_a]).await;
    // The seqs sent on this connection, in publish order (the client's `acked` indexes them).
    let mut sent: Vec<i64> = Vec::new();
    let mut reconnects = 0;
    while acked.len() < total as usize {
        // Like a machine: up to 20 readings in flight.
        let mut broken = false;
        while sent.len() - conn.acked.len() < 20 {
            let Some(seq) = todo.pop_front() else { break };
            // The client's event loop ends with its connection: then this fails at once.
            let body = reading_value(seq, &p1).to_string();
            if conn.client.publish(&telemetry, QoS::AtLeastOnce, false, body).await.is_err() {
                todo.push_front(seq);
                broken = true;
                break;
            }
            sent.push(seq);
        }
        if c.a.is_some() && acked.len() >= total as usize / 2 {
            c.a.take().expect("node A").kill9();
        }
        let alive = !broken && tokio::time::timeout(WAIT, conn.pump()).await.expect("the machine hears from its node");
        acked.extend(conn.acked.iter().map(|i| sent[*i]));
        if !alive {
            // Node A is gone: reconnect to B and resend whatever was not acknowledged.
            let done: BTreeSet<usize> = conn.acked.iter().copied().collect();
            let unacked = sent.iter().enumerate().filter(|(i, _)| !done.contains(i)).map(|(_, s)| *s);
            todo = unacked.chain(todo).collect();
            conn = machine_on(&c, &[node_b]).await;
            sent.clear();
            reconnects += 1;
        }
    }
    assert!(c.a.is_none(), "node A was killed mid-ingest");
    assert_eq!(reconnects, 1, "the machine moved to node B once");
    assert_eq!(c.stored("d1").await, (total, total), "every acknowledged reading stored exactly once");
}

#[tokio::test]
async fn a_broker_node_killed_leaves_ingest_and_delivery_running() {
    let c = Cluster::start(2).await;
    let telemetry = c.topic("d1", "telemetry");
    let p1 = c.id("p1").to_owned();
    let mut doc = c.mqtt(c.b.mqtt, "doc", "-b").await;
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, [GRANTED]);
    let mut m = machine_on(&c, &[c.a().mqtt]).await;
    m.publish_acked(&telemetry, &reading_value(1, &p1)).await;
    assert_eq!(seqs_until(&mut doc, &telemetry, 1).await, [1]);

    // Node A uses broker node 1 first, node B broker node 2: kill broker node 1. Node A's
    // clients lose their sessions there and reconnect; the edge opens them on the next one.
    // Messages in flight to the dead node, and those the cluster cannot store while it
    // elects new stream leaders (NATS closes such a session after 4 s), are stored (they
    // were acknowledged after their commit) but may miss their live delivery: an app
    // catches up from the history. Then delivery goes on.
    c.nats.kill9(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seq = 1;
    let mut resumed = None;
    while resumed.is_none_or(|r| seq < r + 10) {
        assert!(Instant::now() < deadline, "node A took readings up to {seq} only (delivery resumed at {resumed:?})");
        let before = m.acked.len();
        let payload = reading_value(seq + 1, &p1).to_string();
        // The client's event loop ends with its connection: then this fails at once.
        let queued = m.client.publish(&telemetry, QoS::AtLeastOnce, false, payload).await.is_ok();
        let acked = queued
            && tokio::time::timeout(Duration::from_secs(5), async {
                while m.acked.len() == before {
                    if !m.pump().await {
                        return false;
                    }
                }
                true
            })
            .await
            .unwrap_or(false);
        if !acked {
            m = machine_on(&c, &[c.a().mqtt]).await;
            continue;
        }
        seq += 1;
        if resumed.is_none() && doc.collect(Duration::from_millis(300)).await.iter().any(|p| body(p)["seq"] == seq) {
            resumed = Some(seq);
        }
    }
    let resumed = resumed.expect("delivery resumed");
    println!("broker node 1 killed: delivery through node 2 resumed with reading {resumed}");
    // From then on, every reading reaches the doctor once and in order.
    let after: Vec<i64> = seqs_until(&mut doc, &telemetry, seq).await.into_iter().filter(|s| *s > resumed).collect();
    assert_eq!(after, (resumed + 1..=seq).collect::<Vec<_>>());
    assert_eq!(c.stored("d1").await, (seq, seq), "every acknowledged reading stored once");
}

/// A persistent session kept on node A moves to node B: after `kill -9` of A it resumes on
/// B with the QoS 1 messages queued while it was away; one whose right ended meanwhile (an
/// assignment ended through B) resumes without it, told why, and nothing of the device
/// reaches it; after a logout, the new login starts clean on the other node.
#[tokio::test]
async fn persistent_sessions_move_between_nodes_with_only_what_they_may_still_receive() {
    let mut c = Cluster::start(3).await;
    let telemetry = c.topic("d1", "telemetry");
    let p1 = c.id("p1").to_owned();
    let (a, b) = (c.a().mqtt, c.b.mqtt);

    // The technician's session, kept on A, loses its right while away; it comes back on B.
    let token = c.refreshed("tec").await;
    let mut tec = c.persistent(a, "tec", &token).await;
    let notes = c.notifications("tec");
    assert_eq!(tec.subscribe(&[(&telemetry, QoS::AtLeastOnce), (&notes, QoS::AtLeastOnce)]).await, [GRANTED; 2]);
    // The doctor's session, kept on A too, keeps its right.
    let token = c.refreshed("doc").await;
    let mut doc = c.persistent(a, "doc", &token).await;
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, [GRANTED]);
    tec.kill();
    drop(tec);
    let admin = Cluster::rest(&c.b, &c.access["adm"]);
    let r =
        admin.delete("/api/users/assign-device", Some(json!({"userId": c.id("tec"), "deviceId": c.id("d1")}))).await;
    assert_eq!(r.status, 204, "{}", r.text);

    // Node A dies with the doctor connected; the machine reports through B meanwhile.
    c.a.take().expect("node A").kill9();
    drop(doc);
    let mut m = machine_on(&c, &[b]).await;
    for seq in 1..=3 {
        m.publish_acked(&telemetry, &reading_value(seq, &p1)).await;
    }

    let token = c.refreshed("doc").await;
    let mut doc = c.persistent(b, "doc", &token).await;
    assert!(doc.connack.session_present, "the doctor's session resumes on node B");
    assert_eq!(seqs_until(&mut doc, &telemetry, 3).await, [1, 2, 3], "with what was queued while away, in order");
    m.publish_acked(&telemetry, &reading_value(4, &p1)).await;
    assert_eq!(seqs_until(&mut doc, &telemetry, 4).await, [4], "and the subscription goes on");

    let token = c.refreshed("tec").await;
    let mut tec = c.persistent(b, "tec", &token).await;
    assert!(tec.connack.session_present, "the technician's session resumes (its notifications are still allowed)");
    m.publish_acked(&telemetry, &reading_value(5, &p1)).await;
    let got = tec.collect(Duration::from_millis(800)).await;
    assert!(got.iter().all(|p| p.topic != telemetry), "a reading of d1 reached the unassigned technician: {got:?}");
    assert!(
        got.iter().any(|p| p.topic == notes && body(p)["type"] == "subscription_ended"),
        "the technician is told which subscription ended: {got:?}"
    );
    drop(tec);

    // Logout on B of a session kept on B; the new login, on B, starts clean.
    drop(doc);
    let r = Client::new(c.b.http.clone()).post("/api/auth/logout", json!({"refreshToken": c.refresh["doc"]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    m.publish_acked(&telemetry, &reading_value(6, &p1)).await;
    let r = Client::new(c.b.http.clone())
        .post("/api/auth/login", json!({"email": "doc@mqtt.test", "password": crate::support::PASSWORD}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut doc = c.persistent(b, "doc", r.body["accessToken"].as_str().unwrap()).await;
    assert!(!doc.connack.session_present, "a new login starts a fresh session");
    let got = doc.collect(Duration::from_millis(800)).await;
    assert!(got.is_empty(), "nothing queued for the ended login reaches the new one: {got:?}");
}

/// `nephrocare simulate` given both nodes' addresses: when node A dies, its machines move to
/// node B and resend; every acknowledged reading is stored once.
#[tokio::test]
async fn the_simulator_moves_its_machines_to_another_node_when_one_dies() {
    let mut c = Cluster::start(4).await;
    let addrs = format!("{},{}", c.a().mqtt, c.b.mqtt);
    let sim = crate::support::binary()
        .args(["simulate", "--hospital", "mqtt-a", "--devices", "4", "--rate", "10", "--duration", "12s"])
        .args(["--no-disconnects", "--progress-every", "0", "--mqtt", &addrs])
        .env("DATABASE_URL", &c.db.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the simulator starts");
    // Under test, not synchronisation: node A dies mid-run, five seconds into twelve.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.a.take().expect("node A").kill9();
    let out = tokio::task::spawn_blocking(move || sim.wait_with_output()).await.unwrap().expect("the simulator ends");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = out.lines().find(|l| l.starts_with("simulate: done")).unwrap_or_else(|| panic!("no summary: {out}"));
    let number = |after: &str| -> i64 {
        let i = summary.find(after).unwrap_or_else(|| panic!("{after} in {summary}"));
        summary[..i].split_whitespace().last().unwrap().parse().unwrap()
    };
    let (sent, acked) = (number(" readings sent"), number(" acknowledged"));
    // Acknowledgements include session messages and resends.
    assert!(sent > 100 && acked >= sent, "every reading acknowledged in the end: {summary}");
    assert!(summary.contains(" reconnects") && !summary.contains(", 0 reconnects"), "machines moved: {summary}");
    let mut sql = c.db.sql().await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (device_id, seq)) FROM health_metrics")
            .fetch_one(&mut sql)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (sent, sent), "every reading stored once");
}

/// A fresh access token of a login session from node B (`refresh` is rotated).
async fn refreshed_on(node: &Service, refresh: &mut String) -> String {
    let r = Client::new(node.http.clone()).post("/api/auth/refresh", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status, 200, "refresh: {}", r.text);
    *refresh = r.body["refreshToken"].as_str().unwrap().to_owned();
    r.body["accessToken"].as_str().unwrap().to_owned()
}

/// `who`'s persistent session is made on node A (subscribed to `filter` and their
/// notifications) and left; `trigger` ends the right `filter` rests on (through node B);
/// d1 publishes through B; the session comes back on node B without SUBSCRIBE.
async fn away_on_a_back_on_b(
    c: &Cluster,
    who: &str,
    refresh: &mut String,
    filter: &str,
    trigger: impl std::future::Future<Output = ()>,
) -> Result<EventClient, rumqttc::ConnectionError> {
    let persistent = |addr: SocketAddr, token: &str| {
        let id = c.id(who);
        let mut o = options(addr, &format!("{id}-app"), id, token);
        o.set_clean_session(false);
        o
    };
    let token = refreshed_on(&c.b, refresh).await;
    let mut s = EventClient::connect(persistent(c.a().mqtt, &token), false).await.expect("connects to A");
    let notes = c.notifications(who);
    assert_eq!(s.subscribe(&[(filter, QoS::AtLeastOnce), (&notes, QoS::AtLeastOnce)]).await, [GRANTED; 2], "{who}");
    s.leave().await;
    trigger.await;
    // A witness (doc, whom no trigger touches) on d1's status and telemetry: the core stores
    // a message for every session of its filter before it delivers it, so once the witness
    // has d1's live status and reading, the away session has them queued.
    let (status, telemetry) = (c.topic("d1", "status"), c.topic("d1", "telemetry"));
    let mut witness = c.mqtt(c.b.mqtt, "doc", "-witness").await;
    let both = [(status.as_str(), QoS::AtLeastOnce), (telemetry.as_str(), QoS::AtLeastOnce)];
    assert_eq!(witness.subscribe(&both).await, [GRANTED; 2]);
    let mut d1 = c.mqtt(c.b.mqtt, "d1", "").await;
    // A reading naming no patient (one naming a patient would start their treatment on d1).
    // A seq of its own each time (a seq taken by another reading is refused, not relayed).
    d1.publish_acked(&telemetry, crate::support::reading(chrono::Utc::now().timestamp_millis())).await;
    let (mut live_status, mut reading) = (false, false);
    witness
        .until(WAIT, "the witness has d1's live status and reading", |e| {
            if let Event::Incoming(Packet::Publish(p)) = e {
                // A retained status is from before; a live one has the retain flag clear.
                live_status |= p.topic == status && !p.retain;
                reading |= p.topic == telemetry;
            }
            (live_status && reading).then_some(())
        })
        .await;
    // A deactivated account cannot refresh: it comes back with the token it had.
    let r = Client::new(c.b.http.clone()).post("/api/auth/refresh", json!({"refreshToken": refresh})).await;
    let token = if r.status == 200 {
        *refresh = r.body["refreshToken"].as_str().unwrap().to_owned();
        r.body["accessToken"].as_str().unwrap().to_owned()
    } else {
        token
    };
    EventClient::connect(persistent(c.b.mqtt, &token), false).await
}

/// Nothing of d1 reaches `s`; a resumed session is told which subscriptions ended.
async fn nothing_of_d1(c: &Cluster, s: &mut EventClient, who: &str, what: &str) {
    let prefix = format!("nc/v1/h/{}/d/{}/", c.id("ha"), c.id("d1"));
    let got = s.collect(Duration::from_millis(800)).await;
    assert!(got.iter().all(|p| !p.topic.starts_with(&prefix)), "{what}: {who} got d1's messages: {got:?}");
    if s.connack.session_present {
        let notes = c.notifications(who);
        let told = got.iter().any(|p| p.topic == notes && body(p)["type"] == "subscription_ended");
        assert!(told, "{what}: {who} is told which subscriptions ended: {got:?}");
    }
}

/// The persistent-session triggers the other cluster test does not cover (an ended
/// assignment and a logout are there), each with the session made on node A, the right
/// ended through node B, and the session back on node B.
#[tokio::test]
async fn persistent_sessions_that_move_nodes_bring_back_nothing_whose_right_ended() {
    let c = Cluster::start(5).await;
    let telemetry = c.topic("d1", "telemetry");
    let (on_a, on_b) = (|t: &str| Cluster::rest(c.a(), t), |t: &str| Cluster::rest(&c.b, t));
    let adm = on_b(&c.access["adm"]);
    let mut refresh = c.refresh.clone();
    let tec_on_a = on_a(&c.access["tec"]);

    // A hand-over revoked by its grantor.
    let id = hand_over(&tec_on_a, &c.ids).await;
    let tec = on_b(&c.access["tec"]);
    let mut s = away_on_a_back_on_b(&c, "tec2", refresh.get_mut("tec2").unwrap(), &telemetry, async {
        assert_eq!(tec.delete(&format!("/api/devices/temporary-access/{id}"), None).await.status, 204);
    })
    .await
    .unwrap();
    nothing_of_d1(&c, &mut s, "tec2", "hand-over revoked").await;
    drop(s);

    // A hand-over that expired while the technician was away.
    let mut sql = c.db.sql().await;
    exec(
        &mut sql,
        &format!(
            "INSERT INTO temporary_access_grants (id, hospital_id, device_id, granted_to, granted_by, expires_at)
             VALUES (gen_random_uuid(), '{}', '{}', '{}', '{}', now() + interval '1 second')",
            c.id("ha"),
            c.id("d1"),
            c.id("tec2"),
            c.id("tec")
        ),
    )
    .await;
    // The hand-over's time running out is what is tested, not a wait for an event.
    let expire = tokio::time::sleep(Duration::from_millis(1200));
    let mut s = away_on_a_back_on_b(&c, "tec2", refresh.get_mut("tec2").unwrap(), &telemetry, expire).await.unwrap();
    nothing_of_d1(&c, &mut s, "tec2", "hand-over expired").await;
    drop(s);

    // The grantor lost their own right: the hand-over ends with it.
    hand_over(&tec_on_a, &c.ids).await;
    let unassign = adm.delete("/api/users/assign-device", Some(json!({"userId": c.id("tec"), "deviceId": c.id("d1")})));
    let mut s = away_on_a_back_on_b(&c, "tec2", refresh.get_mut("tec2").unwrap(), &telemetry, async {
        assert_eq!(unassign.await.status, 204);
    })
    .await
    .unwrap();
    nothing_of_d1(&c, &mut s, "tec2", "grantor unassigned").await;
    drop(s);

    // The patient was moved to another device: d1's status is no longer theirs.
    let status = c.topic("d1", "status");
    let record = format!("/api/patients/{}", c.id("p1"));
    let moved = adm.put(&record, json!({"assignedDeviceId": c.id("d2")}));
    let mut s = away_on_a_back_on_b(&c, "pat", refresh.get_mut("pat").unwrap(), &status, async {
        let r = moved.await;
        assert_eq!(r.status, 200, "{}", r.text);
    })
    .await
    .unwrap();
    nothing_of_d1(&c, &mut s, "pat", "patient moved").await;
    drop(s);

    // The account was deactivated: it cannot come back at all.
    let account = format!("/api/users/{}/deactivate", c.id("doc2"));
    let deactivate = adm.post(&account, json!({}));
    let back = away_on_a_back_on_b(&c, "doc2", refresh.get_mut("doc2").unwrap(), &status, async {
        assert_eq!(deactivate.await.status, 200);
    })
    .await;
    assert!(back.is_err(), "a deactivated account's session came back");
}

/// `mqtts://`: a cluster whose MQTT listeners speak TLS, its certificate verified against
/// `NEPHROCARE_MQTT_CORE_CA`; clients on the node are served through it as ever.
#[tokio::test]
async fn a_node_reaches_a_cluster_over_tls() {
    let fixture = |f: &str| format!("{}/tests/fixtures/tls/{f}", env!("CARGO_MANIFEST_DIR"));
    let (ca, cert, key) = (fixture("core-ca.pem"), fixture("core-cert.pem"), fixture("core-key.pem"));
    let nats = Nats::start_with(6, &[("NATS_TLS_CERT", &cert), ("NATS_TLS_KEY", &key)]);
    assert!(nats.urls.iter().all(|u| u.starts_with("mqtts://")), "{:?}", nats.urls);
    let db = TestDb::migrated().await;
    let node = Service::start(
        &db,
        &[("NEPHROCARE_MQTT_CORE_URL", &nats.core_url([1, 2, 3])), ("NEPHROCARE_MQTT_CORE_CA", &ca)],
    );
    let (ids, access, _) = World::seed(&db, &Client::new(node.http.clone())).await;
    let id = |k: &str| ids[k].clone();
    let telemetry = format!("nc/v1/h/{}/d/{}/telemetry", id("ha"), id("d1"));
    let mut doc =
        EventClient::connect(options(node.mqtt, &format!("{}-tls", id("doc")), &id("doc"), &access["doc"]), false)
            .await
            .expect("the doctor connects");
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, [GRANTED]);
    let mut machine =
        EventClient::connect(options(node.mqtt, &id("d1"), &id("d1"), SECRET), false).await.expect("machine");
    machine.publish_acked(&telemetry, reading(1, &id("p1"), "normal")).await;
    assert_eq!(seqs_until(&mut doc, &telemetry, 1).await, [1], "routed through the TLS cluster");
}
