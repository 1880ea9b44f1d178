//! The outside check: python-hl7, not written by us, reads what we build and plays the
//! hospital's alert manager over real MLLP (`tests/peers/`, installed by `scripts/peers.sh`).
//! These tests fail, not skip, when the peers are not installed.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::ack::{acknowledge, AckCode, Acknowledgement};
use crate::acm::tests::sample;
use crate::acm::{read_alert_manager_message, report_alert, AlertKind, AlertManagerMessage, DeliveryStatus};
use crate::message::{parse_dtm, Limits, Message};
use crate::mllp::MllpConnection;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn python() -> PathBuf {
    let python = root().join(".tools/peers/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/peers.sh (python-hl7, hl7apy, aiosmtpd)", python.display());
    python
}

/// Runs tests/peers/parse_pcd04.py on `message`: its JSON summary, or its problems.
fn python_reads(message: &Message) -> Result<String, String> {
    let mut child = Command::new(python())
        .arg(root().join("tests/peers/parse_pcd04.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message.encode().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn python_hl7_reads_our_pcd04_as_tf2_requires() {
    let summary = python_reads(&report_alert(&sample())).unwrap();
    for part in [
        r#""control_id": "nc-000042""#,
        r#""alert_id": "0190f5a2-7c1e-7d2b-9a55-3c1f7e2b9d10""#,
        r#""phase": "start""#,
        r#""priority": "PH""#,
        r#""kind": "SP""#,
        r#""patient": "P-77""#,
    ] {
        assert!(summary.contains(part), "{part} in {summary}");
    }
    let mut technical = sample();
    technical.kind = AlertKind::Technical;
    technical.patient = None;
    technical.measurement = None;
    technical.event.text = "Blood leak | air ^ detector & more ~ \\".into();
    let summary = python_reads(&report_alert(&technical)).unwrap();
    assert!(summary.contains(r#""kind": "ST""#) && summary.contains(r#""patient": """#), "{summary}");
}

struct AlertManager {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
    log: PathBuf,
}

impl AlertManager {
    fn start() -> Self {
        let log = std::env::temp_dir().join(format!("nc-hl7-am-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let mut child = Command::new(python())
            .arg(root().join("tests/peers/alert_manager.py"))
            .args(["--port", "0", "--log"])
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || stdout.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
        let mut am = Self { child, lines, port: 0, log };
        let ready = am.line();
        am.port = ready.strip_prefix("listening ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{ready}"));
        am
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("a line from the alert manager")
    }

    fn command(&mut self, line: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }
}

impl Drop for AlertManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_manager_acknowledges_and_reports_status_over_mllp() {
    let mut am = AlertManager::start();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", am.port)).await.unwrap();
    let mut conn = MllpConnection::new(stream, Limits::default());
    let timeout = Duration::from_secs(10);

    let report = sample();
    let reply = conn.send_and_await_ack(&report_alert(&report), timeout).await.unwrap();
    assert_eq!(reply.message_type(), (Some("ORA"), Some("R41"), Some("ORA_R41")));
    let ack = Acknowledgement::from_message(&reply).unwrap();
    assert!(ack.is_accepted() && ack.errors.is_empty(), "{ack:?}");

    am.command("mode ae");
    assert_eq!(am.line(), "mode AE");
    let mut again = sample();
    again.control_id = "nc-000043".into();
    let reply = conn.send_and_await_ack(&report_alert(&again), timeout).await.unwrap();
    assert_eq!(Acknowledgement::from_message(&reply).unwrap().code, AckCode::Error);

    let log = std::fs::read_to_string(&am.log).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains(r#""problems": []"#) && log.contains(r#""ack": "AE""#), "{log}");

    // PCD-05 back to our listener: "accepted" by nurse N123.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = listener.local_addr().unwrap();
    am.command(&format!("status {} N123 accepted {ours}", report.alert_id));
    let (stream, _) = tokio::time::timeout(timeout, listener.accept()).await.unwrap().unwrap();
    let mut inbound = MllpConnection::new(stream, Limits::default());
    let msg = inbound.receive().await.unwrap().unwrap();
    let AlertManagerMessage::Status(status) = read_alert_manager_message(&msg).unwrap() else {
        panic!("a status: {}", msg.encode())
    };
    assert_eq!(status.alert_id, report.alert_id);
    assert_eq!(status.status, DeliveryStatus::Accepted);
    assert_eq!(status.recipient.id.as_deref(), Some("N123"));
    assert_eq!(status.report_control_id.as_deref(), Some("nc-000042"));
    let at = parse_dtm("20240301101800+0000").unwrap();
    inbound.send(&acknowledge(&msg, AckCode::Accepted, &[], "nc-ack-1", &at)).await.unwrap();
    assert_eq!(am.line(), format!("ack AA {}", status.control_id));
    am.command("quit");
}
