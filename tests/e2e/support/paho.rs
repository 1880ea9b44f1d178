//! An MQTT 5 client nobody here wrote: Eclipse Paho (paho-mqtt 2.x from PyPI, installed by
//! `scripts/peers.sh`), played by `tests/peers/mqtt5_client.py` and driven over its stdin and
//! stdout: commands in, the packets it received out (reason codes, reason strings, user
//! properties, message expiry, as paho read them).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::peers::peer_python;
use super::world::World;

/// How long an expected packet may take.
const WAIT: Duration = Duration::from_secs(10);

pub struct Paho {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events read but not yet asked for: paho's network thread may report a PUBACK before
    /// the command thread reports the publish it answers.
    backlog: std::collections::VecDeque<Value>,
}

impl Paho {
    pub fn start() -> Paho {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mqtt5_client.py");
        let mut child = Command::new(peer_python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the paho peer starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Paho { child, stdin, events, backlog: Default::default() }
    }

    /// `who` of the world (a person's client id gets `suffix`), connecting with MQTT 5 over
    /// TCP; `extra` adds to or replaces the connect command's fields. Returns the client and
    /// its CONNACK.
    pub async fn connect(w: &World, who: &str, suffix: &str, extra: Value) -> (Paho, Value) {
        let (client_id, username, password) = w.credentials(who, suffix);
        let mut cmd = json!({
            "op": "connect", "host": "127.0.0.1", "port": w.mqtt().port(),
            "client_id": client_id, "username": username, "password": password,
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            cmd[k] = v.clone();
        }
        let mut paho = Paho::start();
        paho.send(cmd);
        let connack = paho.expect("CONNACK", |e| e["event"] == "connack").await;
        (paho, connack)
    }

    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("the paho peer reads its commands");
        self.stdin.flush().unwrap();
    }

    /// The first event `pred` accepts (the others stay for later); fails after [`WAIT`], or
    /// on an error of the peer.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).expect("found");
        }
        let (events, backlog) = (&mut self.events, &mut self.backlog);
        let found = tokio::time::timeout(WAIT, async {
            while let Some(e) = events.recv().await {
                assert_ne!(e["event"], "error", "the paho peer failed: {e}");
                if pred(&e) {
                    return Some(e);
                }
                backlog.push_back(e);
            }
            None
        })
        .await;
        match found {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the paho peer ended before {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }

    /// Fails if an event `pred` accepts has come or comes within `d`.
    pub async fn quiet(&mut self, d: Duration, what: &str, pred: impl Fn(&Value) -> bool) {
        if let Some(e) = self.backlog.iter().find(|e| pred(e)) {
            panic!("{what}: {e}");
        }
        let _ = tokio::time::timeout(d, async {
            while let Some(e) = self.events.recv().await {
                assert!(!pred(&e), "{what}: {e}");
            }
        })
        .await;
    }

    /// Subscribes; the SUBACK's reason codes and properties.
    pub async fn subscribe(&mut self, filters: &[(&str, u8)]) -> Value {
        self.try_subscribe(filters).await.expect("paho sends the SUBSCRIBE")
    }

    /// Subscribes; `None` when paho will not send the filters (malformed: its own check).
    pub async fn try_subscribe(&mut self, filters: &[(&str, u8)]) -> Option<Value> {
        self.send(json!({"op": "subscribe", "filters": filters}));
        let e = self.expect("SUBACK", |e| e["event"] == "suback" || e["event"] == "refused_locally").await;
        (e["event"] == "suback").then_some(e)
    }

    /// Publishes at QoS 1; the PUBACK (reason code `rc`, properties `props`).
    pub async fn publish(&mut self, topic: &str, payload: &str) -> Value {
        self.publish_with(json!({"topic": topic, "payload": payload, "qos": 1})).await
    }

    /// Publishes with the fields of `cmd` (`topic`, `payload`, `qos`, `topic_alias`,
    /// `user_properties`); the PUBACK.
    pub async fn publish_with(&mut self, cmd: Value) -> Value {
        self.try_publish(cmd).await.expect("paho sends the PUBLISH")
    }

    /// Publishes with the fields of `cmd`; the PUBACK at QoS 1 (QoS 0: the publish event),
    /// `None` when paho will not send it (a malformed topic: its own check).
    pub async fn try_publish(&mut self, mut cmd: Value) -> Option<Value> {
        cmd["op"] = json!("publish");
        let qos0 = cmd["qos"] == 0;
        self.send(cmd);
        let sent = self.expect("the publish", |e| e["event"] == "publishing" || e["event"] == "refused_locally").await;
        if sent["event"] == "refused_locally" {
            return None;
        }
        if qos0 {
            return Some(sent);
        }
        let mid = sent["mid"].clone();
        Some(self.expect("PUBACK", |e| e["event"] == "puback" && e["mid"] == mid).await)
    }

    /// The next message received.
    pub async fn message(&mut self) -> Value {
        self.expect("a message", |e| e["event"] == "message").await
    }

    /// Disconnects normally.
    pub fn disconnect(&mut self) {
        self.send(json!({"op": "disconnect"}));
    }
}

impl Drop for Paho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
