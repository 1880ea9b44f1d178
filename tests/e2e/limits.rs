//! What a client may send, end to end: body size (with and without `Content-Length`, and
//! that refusing a huge body costs the server no memory), slow-loris headers and bodies,
//! malformed and out-of-range query parameters, too-long and NUL-carrying fields, a
//! readiness probe that answers quickly when the database does not, and a request log that
//! never shows a credential.
//!
//! Memory and logs are measured on the real binary (its own process): the in-process
//! service shares this test process with every other test running at the same time.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephrocare::bootstrap::bootstrap_hospital;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{binary, test_config, Client, Reply, TestApp, TestDb};

const ADMIN_EMAIL: &str = "chief@general.example.org";
const ADMIN_PASSWORD: &str = "Admin-pass-2026!";
const PASSWORD: &str = "Kidney-care-2026";
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A hospital with an admin, a doctor assigned to a device, and a patient of both.
struct World {
    doctor: Client,
    patient: String,
    device: String,
}

async fn world(app: &TestApp) -> World {
    bootstrap_hospital(&app.db.db, "General Hospital", "general-1", ADMIN_EMAIL, "Ada Admin", ADMIN_PASSWORD)
        .await
        .expect("bootstrap");
    let login = |email: &'static str, password: &'static str| async move {
        let r = app.client.post("/api/auth/login", json!({ "email": email, "password": password })).await;
        assert_eq!(r.status, 200, "{}", r.text);
        app.client.with_token(r.body["accessToken"].as_str().unwrap())
    };
    let admin = login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r = admin
        .post(
            "/api/users",
            json!({"email": "doc@general.example.org", "name": "Dr Doc", "role": "doctor", "initialPassword": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let doctor_id = r.body["id"].as_str().unwrap().to_owned();
    let r = admin.post("/api/devices", json!({"serial": "DM-1", "name": "Machine 1"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let device = r.body["device"]["id"].as_str().unwrap().to_owned();
    let r = admin.post("/api/users/assign-device", json!({"userId": doctor_id, "deviceId": device})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin
        .post(
            "/api/patients",
            json!({"patientNumber": "P-1", "name": "Pat Patient", "assignedDoctorId": doctor_id, "assignedDeviceId": device}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let patient = r.body["id"].as_str().unwrap().to_owned();
    World { doctor: login("doc@general.example.org", PASSWORD).await, patient, device }
}

/// Asserts a 422 `validation_failed` naming `field`.
fn assert_invalid(r: &Reply, field: &str, what: &str) {
    assert_eq!((r.status, r.code()), (422, "validation_failed"), "{what}: {}", r.text);
    assert_eq!(r.body["fields"][0]["field"], field, "{what}: {}", r.text);
}

/// The resident memory of process `pid`, in KiB.
/// The process's peak resident set (`VmHWM`) in KiB: it catches a body held even briefly,
/// which the current RSS misses once the allocator has given the memory back.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// Sends a POST of `total` bytes to `path` (with `Content-Length`, or chunked), reading the
/// answer while still sending, without ever holding more than 64 KiB. Returns the status
/// and the JSON body of the answer.
async fn upload(addr: SocketAddr, path: &str, total: usize, chunked: bool) -> (u16, Value) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let framing = if chunked { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {total}") };
    let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                wr.write_all(&chunk).await?;
                wr.write_all(b"\r\n").await?;
            } else {
                wr.write_all(&chunk).await?;
            }
            sent += chunk.len();
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        wr.shutdown().await?;
        Ok::<usize, std::io::Error>(sent)
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answers and closes within 20 s");
    // The upload itself may have been cut short once the server closed: that is its right.
    let _ = writer.await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("an answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or(Value::Null, |(_, b)| serde_json::from_str(b).unwrap_or(Value::Null));
    (status, body)
}

/// The real binary serving a fresh database, with its JSON log lines on a channel.
struct Served {
    child: Child,
    http: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    _db: TestDb,
}

// The child is waited for by `Served` (on stop, or when dropped by a failing test).
#[allow(clippy::zombie_processes)]
async fn serve_binary(envs: &[(&str, &str)]) -> Served {
    let db = TestDb::migrated().await;
    let mut cmd = binary();
    cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("NEPHROCARE_LOG_FORMAT", "json")
        .env("NEPHROCARE_JWT_SECRET", "test-secret-test-secret-test-secret-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let logs = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no 'nephrocare ready' log line")
        });
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "nephrocare ready" {
            let http = v["http"].as_str().unwrap().parse().unwrap();
            return Served { child, http, lines, _db: db };
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Stops the binary with SIGTERM and returns every log line it wrote.
    async fn stop(mut self) -> Vec<String> {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the binary did not stop within 20 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The reader thread ends with the pipe; give it a moment to hand over the last lines.
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            out.push(line);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// 1. Body size
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_20_mb_body_is_refused_with_413_with_or_without_content_length_and_memory_stays_flat() {
    let served = serve_binary(&[]).await;
    let pid = served.child.id();
    let client = Client::new(format!("http://{}", served.http));

    // Warm up the refusal paths (allocator arenas, worker threads), then measure.
    for chunked in [false, true] {
        let (status, body) = upload(served.http, "/api/auth/login", 2 * MIB, chunked).await;
        assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "chunked: {chunked}: {body}");
    }
    let before = peak_rss_kib(pid);
    for chunked in [false, true] {
        let (status, body) = upload(served.http, "/api/auth/login", 20 * MIB, chunked).await;
        assert_eq!(status, 413, "a 20 MB body (chunked: {chunked}): {body}");
        assert_eq!(body["code"], "payload_too_large", "{body}");
        assert!(body["message"].as_str().unwrap().contains("1048576"), "the limit is named: {body}");
    }
    // Holding either body, even for a moment, would raise the peak by its 20 MiB; the margin
    // is for what a freshly started server allocates meanwhile (pool connections, workers:
    // up to ~10 MiB measured on CI).
    let after = peak_rss_kib(pid);
    assert!(after < before + 16 * 1024, "the server's peak grew from {before} KiB to {after} KiB refusing 2 × 20 MiB");

    // A body just under the limit is read (and refused for what it says, not for its size).
    let padding = " ".repeat(MIB - 100);
    let r = client
        .http
        .post(format!("{}/api/auth/login", client.base))
        .header("content-type", "application/json")
        .body(format!("{padding}{{\"email\":\"a@b.example\",\"password\":\"x\"}}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 401, "a body under the limit is parsed");
    // The server is unharmed.
    assert_eq!(client.get("/healthz").await.status, 200);
    served.stop().await;
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 4096).await;
    let addr = app.running().http_addr;
    let (status, body) = upload(addr, "/api/auth/login", 8192, false).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("4096"), "{body}");
    let (status, _) = upload(addr, "/api/auth/login", 8192, true).await;
    assert_eq!(status, 413, "chunked");
    let spec = app.client.get("/api/openapi.json").await;
    let login = &spec.body["paths"]["/api/auth/login"]["post"]["responses"];
    assert!(login["413"].is_object() && login["408"].is_object(), "413 and 408 are documented: {login}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Slow clients
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn slow_loris_headers_and_bodies_are_cut_off() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_read_timeout_secs = 1;
        c.http.body_read_timeout_secs = 1;
    })
    .await;
    let addr = app.running().http_addr;

    // Half the headers, then nothing: the connection is closed after the header timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    let elapsed = started.elapsed();
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected the connection to be closed, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => panic!("the connection is still open after 5 s"),
    }
    assert!(elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(4), "closed after {elapsed:?}");

    // Headers, then a body that stops halfway: 408, and the connection is closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 6 s")
        .ok();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A prompt client is served as always.
    assert_eq!(app.client.get("/healthz").await.status, 200);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. Query parameters and fields
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_and_out_of_range_query_parameters_answer_4xx_never_500() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let (p, d) = (&w.patient, &w.device);
    let huge = "9".repeat(10_000);
    let far_cursor = format!("-8000000000000000000.{d}.1");
    // (path, expected field when the answer names one)
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("/api/health-metrics/history/{p}?from=-262143-01-01T00:00:00Z"), Some("from")),
        (format!("/api/health-metrics/history/{p}?to=-262143-01-01T00:00:00Z"), Some("to")),
        (format!("/api/health-metrics/history/{p}?to=%2B262143-12-31T23:59:59Z"), Some("to")),
        (format!("/api/health-metrics/history/{p}?to=+262143-12-31T23:59:59Z"), Some("to")),
        (format!("/api/health-metrics/history/{p}?from=0001-01-01T00:00:00Z"), Some("from")),
        (format!("/api/health-metrics/history/{p}?from=not-a-time"), Some("from")),
        (format!("/api/health-metrics/history/{p}?limit=0"), Some("limit")),
        (format!("/api/health-metrics/history/{p}?limit=1001"), Some("limit")),
        (format!("/api/health-metrics/history/{p}?limit=-1"), Some("limit")),
        (format!("/api/health-metrics/history/{p}?limit=18446744073709551616"), Some("limit")),
        (format!("/api/health-metrics/history/{p}?cursor={huge}"), Some("cursor")),
        (format!("/api/health-metrics/history/{p}?cursor={far_cursor}"), Some("cursor")),
        (format!("/api/health-metrics/history/{p}?cursor=-9223372036854775808.{d}.1"), Some("cursor")),
        (format!("/api/health-metrics/history/{p}?cursor=1.2.3%00"), Some("cursor")),
        (format!("/api/patients/{p}/health-metrics?to=-262143-01-01T00:00:00Z"), Some("to")),
        (format!("/api/patients/{p}/health-trends?from=-262143-01-01T00:00:00Z&to=%2B262143-12-31T23:59:59Z"), None),
        (format!("/api/patients/{p}/health-trends?to=-262143-01-01T00:00:00Z"), Some("to")),
        (format!("/api/patients/{p}/health-trends?from=1900-01-01T00:00:00Z&resolution=1m"), Some("resolution")),
        (format!("/api/patients/{p}/health-trends?metrics=heartRate%00"), Some("metrics")),
        (format!("/api/patients/{p}/health-trends?metrics={huge}"), Some("metrics")),
        (format!("/api/patients/{p}/sessions?offset=9223372036854775808"), Some("offset")),
        (format!("/api/patients/{p}/sessions?offset=-1"), Some("offset")),
        (format!("/api/patients/{p}/sessions?limit=201"), Some("limit")),
        (format!("/api/devices/{d}/sessions?offset=18446744073709551615"), Some("offset")),
        (format!("/api/devices/{d}/sessions?offset={huge}"), Some("offset")),
        ("/api/devices?offset=9223372036854775807".into(), Some("offset")),
        ("/api/devices?limit=1e3".into(), Some("limit")),
        ("/api/alerts?offset=9223372036854775808&limit=10".into(), Some("offset")),
        (format!("/api/alerts?deviceId={d}%00"), Some("deviceId")),
        ("/api/users/doctor?q=%00".into(), Some("q")),
        (format!("/api/users/doctor?q={}", "x".repeat(201)), Some("q")),
        ("/api/users/doctor?offset=-5".into(), Some("offset")),
        ("/api/users/nobody".into(), None),
        ("/api/patients/%00".into(), None),
        ("/api/health-metrics/history/not-a-uuid".into(), None),
        (format!("/api/devices/{d}%00/sessions"), None),
    ];
    for (path, field) in &cases {
        let r = w.doctor.get(path).await;
        assert!((400..500).contains(&r.status), "{path}: {} {}", r.status, r.text);
        assert!(!r.code().is_empty(), "{path}: an ErrorBody: {}", r.text);
        if let Some(field) = field {
            assert_eq!(r.body["fields"][0]["field"], *field, "{path}: {}", r.text);
        }
    }
    // Values within the rules are served.
    for path in [
        format!("/api/health-metrics/history/{p}?from=1900-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&limit=1000"),
        format!("/api/patients/{p}/sessions?offset=1000000000&limit=200"),
        format!("/api/patients/{p}/health-trends?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"),
    ] {
        let r = w.doctor.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn too_long_fields_nul_characters_and_far_times_answer_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let c = &w.doctor;
    let p = format!("/api/patients/{}", w.patient);
    let long = |n: usize| "x".repeat(n);

    let r = c.post("/api/patients", json!({"patientNumber": "P-2", "name": long(201)})).await;
    assert_invalid(&r, "name", "a 201-character name");
    assert!(r.body["fields"][0]["message"].as_str().unwrap().contains("at most 200 characters"), "{}", r.text);
    let r = c.post("/api/patients", json!({"patientNumber": "P-2", "name": "Ok", "diagnosis": long(4001)})).await;
    assert_invalid(&r, "diagnosis", "a 4001-character diagnosis");
    let r = c.post("/api/patients", json!({"patientNumber": "P-2", "name": "Ok", "diagnosis": long(4000)})).await;
    assert_eq!(r.status, 201, "4000 characters are allowed: {}", r.text);

    for field in ["notes", "allergies", "medications", "diagnosis"] {
        let r = c.put(&p, json!({ field: long(4001) })).await;
        assert_invalid(&r, field, field);
        let r = c.put(&p, json!({ field: "before\u{0}after" })).await;
        assert_invalid(&r, field, "a NUL character");
    }
    let r = c.put(&p, json!({"dialysisSchedule": {"days": ["mon\u{0}"]}})).await;
    assert_invalid(&r, "dialysisSchedule", "a NUL character in JSON");
    let r = c.put(&p, json!({"lastDialysisAt": "-262143-01-01T00:00:00Z"})).await;
    assert_invalid(&r, "lastDialysisAt", "a far time");
    let r = c.put(&p, json!({"dateOfBirth": "-262143-01-01"})).await;
    assert_invalid(&r, "dateOfBirth", "a far date");
    let r = c.put(&p, json!({"dryWeightKg": 1e300})).await;
    assert_invalid(&r, "dryWeightKg", "a huge weight");
    let r = c.put("/api/users/profile", json!({"name": "\u{0}"})).await;
    assert_invalid(&r, "name", "a NUL name");
    let r = c.put("/api/users/profile", json!({"phone": long(33)})).await;
    assert_invalid(&r, "phone", "a long phone");

    // Unauthenticated inputs too: these were looked up in the database as they came.
    let r = app.client.post("/api/auth/login", json!({"email": "a\u{0}@b.example", "password": "x"})).await;
    assert_invalid(&r, "email", "a NUL in a login e-mail");
    let r = app.client.post("/api/auth/login", json!({"email": long(255), "password": "x"})).await;
    assert_invalid(&r, "email", "a 255-character e-mail");
    let r = app.client.post("/api/auth/refresh", json!({"refreshToken": "\u{0}"})).await;
    assert_invalid(&r, "refreshToken", "a NUL refresh token");
    let r = app
        .client
        .post(
            "/api/auth/register",
            json!({"email": "new@x.example", "password": PASSWORD, "name": "N", "hospitalCode": "general-1\u{0}"}),
        )
        .await;
    assert_invalid(&r, "hospitalCode", "a NUL hospital code");
    let r = c
        .post(
            "/api/devices/temporary-access",
            json!({"deviceId": w.device, "technicianId": w.device, "durationMinutes": 60, "reason": long(1001)}),
        )
        .await;
    assert_invalid(&r, "reason", "a 1001-character reason");

    // The limits are in the OpenAPI document.
    let spec = app.client.get("/api/openapi.json").await.body;
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["CreatePatientRequest"]["properties"]["name"]["maxLength"], 200);
    assert_eq!(schemas["UpdatePatientRequest"]["properties"]["notes"]["maxLength"], 4000);
    assert_eq!(schemas["RegisterRequest"]["properties"]["email"]["maxLength"], 254);
    let params = spec["paths"]["/api/devices"]["get"]["parameters"].as_array().unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!((limit["schema"]["minimum"].as_f64(), limit["schema"]["maximum"].as_f64()), (Some(1.0), Some(200.0)));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. Readiness when the database does not answer
// ---------------------------------------------------------------------------------------

/// A TCP proxy to PostgreSQL that can be cut: its connections are dropped, and new ones are
/// accepted but never answered (a network partition: the worst case for a client).
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let upstream = upstream.clone();
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test]
async fn readyz_answers_503_within_a_second_when_the_database_does_not_answer() {
    let db = TestDb::migrated().await;
    let (_, rest) = db.url.split_once('@').expect("a URL with credentials");
    let upstream = rest.split('/').next().unwrap().to_owned();
    let proxy = Proxy::start(upstream.clone()).await;
    let config = test_config(&db.url.replacen(&upstream, &proxy.addr.to_string(), 1));
    let app = TestApp::spawn_configured(db, config).await;

    let r = app.client.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    proxy.cut();
    for attempt in 0..3 {
        let started = Instant::now();
        let r = app.client.get("/readyz").await;
        let took = started.elapsed();
        assert_eq!((r.status, r.body["status"].as_str()), (503, Some("not_ready")), "attempt {attempt}: {}", r.text);
        assert!(r.body["reason"].as_str().unwrap().contains("database"), "{}", r.text);
        assert!(took < Duration::from_millis(1500), "attempt {attempt} took {took:?}");
    }
    // Liveness does not depend on the database.
    assert_eq!(app.client.get("/healthz").await.status, 200);
    drop(app);
}

// ---------------------------------------------------------------------------------------
// 5. The request log
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_request_log_never_shows_a_token_and_client_disconnects_are_not_errors() {
    let served = serve_binary(&[]).await;
    let base = format!("http://{}", served.http);
    let secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.U0VDUkVULVNJR05BVFVSRQ";
    let device = uuid::Uuid::new_v4();

    // The live stream's token in the query string, with and without a WebSocket upgrade.
    let url = format!("ws://{}/ws/health-metrics/{device}?token={secret}", served.http);
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(refused.is_err(), "an invalid token is refused before the upgrade");
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/ws/health-metrics/{device}?token={secret}")).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = http.get(format!("{base}/api/users/doctor?q=Ann%20Secretname&token={secret}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(format!("{base}/healthz?{secret}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Clients that go away: mid-body, mid-headers, and before reading the answer.
    let mut s = TcpStream::connect(served.http).await.unwrap();
    s.write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"em")
        .await
        .unwrap();
    // Under test: a client that stops in the middle of its body, and then goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    let mut s = TcpStream::connect(served.http).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHo").await.unwrap();
    drop(s);
    let mut s = TcpStream::connect(served.http).await.unwrap();
    s.write_all(b"GET /api/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    drop(s);
    // A negative check, not synchronisation: time for the server to meet the clients that
    // went away; nothing it logs about them may be an error.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let lines = served.stop().await;
    let requests: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert!(
        requests.iter().any(|v| v["path"] == format!("/ws/health-metrics/{device}") && v["query_params"] == "token"),
        "the live stream's request is logged by path: {requests:#?}"
    );
    assert!(requests.iter().any(|v| v["path"] == "/api/users/doctor" && v["status"] == 401), "{requests:#?}");
    for line in &lines {
        assert!(!line.contains(secret) && !line.contains("c2VjcmV0LXRva2VuLXZhbHVl"), "a token in the log: {line}");
        assert!(!line.contains("Secretname"), "a query value in the log: {line}");
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        assert_ne!(v["level"], "ERROR", "an error logged: {line}");
    }
}
