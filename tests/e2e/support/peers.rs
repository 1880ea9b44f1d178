//! Outside parties played by libraries nobody here wrote (from PyPI, installed by
//! `scripts/peers.sh` into `.tools/peers`): a real SMTP server (aiosmtpd).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use serde_json::Value;

/// The peers' Python; the test fails (never skips) without it.
pub fn peer_python() -> std::path::PathBuf {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/peers/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/peers.sh (scripts/test.sh does)", python.display());
    python
}

/// `tests/peers/{script}` started with the peers' Python and the arguments `args` adds, its
/// stdin and stdout piped (`what` names it if it does not start).
fn spawn_peer(
    script: &str,
    what: &str,
    args: impl FnOnce(&mut Command) -> &mut Command,
) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(script);
    let mut command = Command::new(peer_python());
    args(command.arg(script));
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect(what);
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdin, stdout)
}

/// A peer's printed lines, once it said `listening PORT`: the rest of them, and the port.
async fn listening(stdout: BufReader<ChildStdout>) -> (mpsc::UnboundedReceiver<String>, u16) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.ok().flatten().expect("it starts");
    let port = first.strip_prefix("listening ").and_then(|p| p.trim().parse().ok()).expect("listening PORT");
    (rx, port)
}

/// The JSON lines a peer logged.
fn json_lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// aiosmtpd on `port`, keeping every message it accepts (`tests/peers/smtp_server.py`).
pub struct SmtpServer {
    child: Child,
    _stdin: ChildStdin,
    mail: mpsc::UnboundedReceiver<Value>,
    pub port: u16,
}

impl SmtpServer {
    /// Starts it on `port` and waits until it listens.
    pub async fn start(port: u16) -> SmtpServer {
        let (child, stdin, stdout) =
            spawn_peer("smtp_server.py", "aiosmtpd starts", |c| c.args(["--port", &port.to_string()]));
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let (tx, mail) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if line.starts_with("listening ") {
                    let _ = ready_tx.send(());
                } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready.recv()).await.ok().flatten().expect("aiosmtpd listens");
        SmtpServer { child, _stdin: stdin, mail, port }
    }

    /// Whether no message is waiting (what arrived was all taken).
    pub fn mail_is_empty(&mut self) -> bool {
        matches!(self.mail.try_recv(), Err(mpsc::error::TryRecvError::Empty))
    }

    /// The next message it accepted.
    pub async fn next(&mut self, within: Duration) -> Value {
        tokio::time::timeout(within, self.mail.recv()).await.ok().flatten().expect("an e-mail arrives")
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self._stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LONG: Duration = Duration::from_secs(20);

/// The hospital's alert manager (IHE PCD ACM), played with python-hl7
/// (`tests/peers/alert_manager.py`): checks every PCD-04 against TF-2, answers `ORA^R41`,
/// logs each message it got.
pub struct AlertManagerPeer {
    child: Child,
    stdin: ChildStdin,
    said: mpsc::UnboundedReceiver<String>,
    log: std::path::PathBuf,
    pub port: u16,
}

impl AlertManagerPeer {
    /// Starts it (on `port`, 0 for any), accepting every report, and waits until it listens.
    pub async fn start(port: u16) -> AlertManagerPeer {
        Self::start_in(port, "aa").await
    }

    /// Starts it answering in `mode` (`aa`, `ae`, `ar`).
    pub async fn start_in(port: u16, mode: &str) -> AlertManagerPeer {
        Self::launch(port, mode, &[]).await
    }

    /// Starts it over TLS with the test certificate for `localhost`/`127.0.0.1`
    /// (`tests/fixtures/tls/core-cert.pem`, signed by `core-ca.pem`).
    pub async fn start_tls() -> AlertManagerPeer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let (cert, key) = (dir.join("core-cert.pem"), dir.join("core-key.pem"));
        let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
        Self::launch(0, "aa", &args).await
    }

    async fn launch(port: u16, mode: &str, extra: &[&str]) -> AlertManagerPeer {
        let log = std::env::temp_dir().join(format!("nc-acm-{}.jsonl", uuid::Uuid::now_v7().simple()));
        let (child, stdin, stdout) = spawn_peer("alert_manager.py", "the alert manager starts", |c| {
            c.args(["--port", &port.to_string(), "--mode", mode, "--log"]).arg(&log).args(extra)
        });
        let (rx, port) = listening(stdout).await;
        AlertManagerPeer { child, stdin, said: rx, log, port }
    }

    /// Sends a command (`mode ae`, …).
    pub fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the alert manager reads its commands");
        self.stdin.flush().unwrap();
    }

    /// The next line it printed (`ack AA …` after a `status` command, `error: …`).
    pub async fn said(&mut self) -> String {
        tokio::time::timeout(LONG, self.said.recv()).await.ok().flatten().expect("the alert manager answers")
    }

    /// Every PCD-04 it received, in order.
    pub fn received(&self) -> Vec<Value> {
        json_lines(&self.log)
    }
}

impl Drop for AlertManagerPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A device gateway (IHE PCD-01 Device Observation Reporter), played with python-hl7's MLLP
/// client (`tests/peers/pcd01_gateway.py`): builds each message from a JSON spec (checked as
/// a v2.6 ORU_R01 by hl7apy), sends it and answers the acknowledgement as python-hl7 reads it.
pub struct GatewayPeer {
    child: Child,
    stdin: ChildStdin,
    said: mpsc::UnboundedReceiver<Value>,
}

impl GatewayPeer {
    /// Starts it, sending to our listener on `port`.
    pub async fn start(port: u16) -> GatewayPeer {
        Self::launch(port, &[]).await
    }

    /// Starts it over TLS (the listener's certificate checked against
    /// `tests/fixtures/tls/core-ca.pem`), with the client certificate `client`
    /// (`tests/fixtures/tls/{client}-cert.pem` and `-key.pem`), if any.
    pub async fn start_tls(port: u16, client: Option<&str>) -> GatewayPeer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let path = |f: String| dir.join(f).to_string_lossy().into_owned();
        let mut args = vec!["--tls-ca".to_owned(), path("core-ca.pem".into())];
        if let Some(c) = client {
            args.extend([
                "--tls-cert".into(),
                path(format!("{c}-cert.pem")),
                "--tls-key".into(),
                path(format!("{c}-key.pem")),
            ]);
        }
        Self::launch(port, &args).await
    }

    async fn launch(port: u16, extra: &[String]) -> GatewayPeer {
        let (child, stdin, stdout) =
            spawn_peer("pcd01_gateway.py", "the gateway starts", |c| c.args(["--port", &port.to_string()]).args(extra));
        let (tx, mut said) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(20), said.recv()).await.ok().flatten();
        assert_eq!(first, Some(serde_json::json!({"ready": true})), "the gateway starts");
        GatewayPeer { child, stdin, said }
    }

    /// Sends a command (a JSON object, see the script).
    pub fn command(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").expect("the gateway reads its commands");
        self.stdin.flush().unwrap();
    }

    /// Its next line.
    pub async fn said(&mut self) -> Value {
        tokio::time::timeout(LONG, self.said.recv()).await.ok().flatten().expect("the gateway answers")
    }

    /// Sends the PCD-01 `spec` and returns the acknowledgement (`msa`, `control`, `errors`).
    pub async fn send(&mut self, spec: &Value) -> Value {
        self.command(serde_json::json!({"send": spec}));
        self.said().await
    }

    /// Sends `text` as it is, in an MLLP frame.
    pub async fn raw(&mut self, text: &str) -> Value {
        self.command(serde_json::json!({"raw": text}));
        self.said().await
    }
}

impl Drop for GatewayPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hospital's record system (EMR), played by hl7apy's MLLP server (`tests/peers/emr.py`):
/// parses each treatment record as a v2.6 ORU_R01, logs what it read, answers ACK.
pub struct EmrPeer {
    child: Child,
    stdin: ChildStdin,
    said: mpsc::UnboundedReceiver<String>,
    log: std::path::PathBuf,
    pub port: u16,
}

impl EmrPeer {
    /// Starts it on `port` (0: any) answering in `mode` (`aa`, `ae`, `ar`), and waits until it
    /// listens.
    pub async fn start(port: u16, mode: &str) -> EmrPeer {
        let log = std::env::temp_dir().join(format!("nc-emr-{}.jsonl", uuid::Uuid::now_v7().simple()));
        let (child, stdin, stdout) = spawn_peer("emr.py", "the EMR starts", |c| {
            c.args(["--port", &port.to_string(), "--mode", mode, "--log"]).arg(&log)
        });
        let (said, port) = listening(stdout).await;
        EmrPeer { child, stdin, said, log, port }
    }

    /// Sends a command (`mode ae`, …) and waits for its answer.
    pub async fn command(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("the EMR reads its commands");
        self.stdin.flush().unwrap();
        tokio::time::timeout(LONG, self.said.recv()).await.ok().flatten().expect("the EMR answers")
    }

    /// Every record it received, in order.
    pub fn received(&self) -> Vec<Value> {
        json_lines(&self.log)
    }
}

impl Drop for EmrPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A FHIR subscriber's rest-hook endpoint: Python's HTTP server, every notification
/// validated with fhir.resources (`tests/peers/rest_hook.py`).
pub struct RestHookPeer {
    child: Child,
    stdin: ChildStdin,
    said: mpsc::UnboundedReceiver<String>,
    log: std::path::PathBuf,
    pub port: u16,
}

impl RestHookPeer {
    /// Starts it on `port` (0: any) answering `status`, and waits until it listens.
    pub async fn start(port: u16, status: u16) -> RestHookPeer {
        let log = std::env::temp_dir().join(format!("nc-hook-{}.jsonl", uuid::Uuid::now_v7().simple()));
        let (child, stdin, stdout) = spawn_peer("rest_hook.py", "the rest-hook receiver starts", |c| {
            c.args(["--port", &port.to_string(), "--status", &status.to_string(), "--log"]).arg(&log)
        });
        let (said, port) = listening(stdout).await;
        RestHookPeer { child, stdin, said, log, port }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sets the HTTP status it answers with.
    pub async fn answer(&mut self, status: u16) {
        writeln!(self.stdin, "status {status}").expect("the receiver reads its commands");
        self.stdin.flush().unwrap();
        tokio::time::timeout(LONG, self.said.recv()).await.ok().flatten().expect("the receiver answers");
    }

    /// Every notification it received, in order (what it read, `problems` it found).
    pub fn received(&self) -> Vec<Value> {
        json_lines(&self.log)
    }
}

impl Drop for RestHookPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
