//! The real `nephrocare` binary, run as a child process.

use std::time::Duration;

use super::TestDb;

/// The real `nephrocare` binary, built by cargo for these tests.
pub fn binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nephrocare"));
    for var in [
        "DATABASE_URL",
        "NEPHROCARE_CONFIG",
        "NEPHROCARE_HTTP_ADDR",
        "NEPHROCARE_MQTT_ADDR",
        "NEPHROCARE_MQTT_WS_ADDR",
        "NEPHROCARE_LOG_FORMAT",
        "NEPHROCARE_LOG",
        "NEPHROCARE_JWT_SECRET",
        "NEPHROCARE_HTTP_MAX_BODY_BYTES",
        "NEPHROCARE_HTTP_HEADER_TIMEOUT_SECS",
        "NEPHROCARE_HTTP_BODY_TIMEOUT_SECS",
        "NEPHROCARE_MQTT_PUBLIC_WS_URL",
        "NEPHROCARE_MQTT_CORE_URL",
        "NEPHROCARE_MQTT_CORE_CA",
        "NEPHROCARE_INGEST_DERIVE_INTERVAL_MS",
        "NEPHROCARE_INGEST_GATHER_MS",
        "NEPHROCARE_INGEST_WRITERS",
        "NEPHROCARE_HL7_LISTEN_ADDR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The real binary serving a test database on free ports, killed (SIGKILL) and waited for
/// when dropped, whatever happens in the test.
pub struct Service {
    child: std::process::Child,
    /// `http://host:port`.
    pub http: String,
    pub mqtt: std::net::SocketAddr,
}

impl Service {
    /// Starts `serve` with `env` added, and waits until it logs that it is ready.
    pub fn start(db: &TestDb, env: &[(&str, &str)]) -> Service {
        use std::io::{BufRead, BufReader};
        let mut cmd = binary();
        cmd.args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--mqtt-ws-addr",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", &db.url)
        .env("NEPHROCARE_LOG_FORMAT", "json")
        // As in `test_config` (a test passes its own to try the grace).
        .env("NEPHROCARE_ALARM_REACH_GRACE_SECS", "0")
        .env("NEPHROCARE_JWT_SECRET", "service-test-secret-service-test-secret-0123456789")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let logs = child.stderr.take().unwrap();
        let mut service = Service { child, http: String::new(), mqtt: "127.0.0.1:0".parse().unwrap() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(logs).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .expect("the service logs its address");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
            if v["message"] == "nephrocare ready" {
                service.http = format!("http://{}", v["http"].as_str().expect("http address"));
                service.mqtt = v["mqtt"].as_str().expect("mqtt address").parse().expect("an address");
                // NEPHROCARE_TEST_SERVICE_LOG=path: the rest of the log, for debugging a test.
                let keep = std::env::var_os("NEPHROCARE_TEST_SERVICE_LOG")
                    .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
                std::thread::spawn(move || {
                    use std::io::Write;
                    let mut keep = keep;
                    while let Ok(line) = rx.recv() {
                        if let Some(f) = keep.as_mut() {
                            let _ = writeln!(f, "{line}");
                        }
                    }
                });
                return service;
            }
        }
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
