//! `serve`: health and readiness probes, the OpenAPI document, errors as JSON, the MQTT
//! listener's answer, and a clean shutdown of the real binary on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sea_orm_migration::MigratorTrait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{binary, Client, TestApp, TestDb};

#[tokio::test]
async fn healthz_readyz_openapi_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let c = &app.client;

    let r = c.get("/healthz").await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let r = c.get("/readyz").await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ready")), "{}", r.text);

    let spec = c.get("/api/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert!(spec.body["openapi"].as_str().unwrap_or("").starts_with("3."), "an OpenAPI 3 document");
    // Every operation has an explicit operationId.
    let mut operations = 0;
    for (path, item) in spec.body["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(!id.is_empty() && !id.contains('/'), "{method} {path}: {id}");
        }
    }
    assert!(operations >= 2);
    assert_eq!(spec.body["paths"]["/healthz"]["get"]["operationId"], "healthz");

    let metrics = c.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    // The process's metrics (tests/e2e/metrics.rs checks them after traffic).
    for name in [
        "\nnephrocare_readings_accepted_total ",
        "\nnephrocare_readings_rejected_total ",
        "\nnephrocare_mqtt_connections{kind=\"machine\"} ",
    ] {
        assert!(metrics.text.contains(name), "{name} in {}", metrics.text);
    }

    let docs = c.get("/docs").await;
    assert_eq!(docs.status, 200);
    assert!(docs.text.to_lowercase().contains("swagger"), "interactive docs page");

    let missing = c.get("/no/such/path").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"), "errors are JSON: {}", missing.text);
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_pending_migrations() {
    let app = TestApp::spawn().await;
    nc_migration::Migrator::down(&app.db.db, Some(1)).await.unwrap();
    let r = app.client.get("/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["status"], "not_ready");
    assert!(r.body["reason"].as_str().unwrap().contains("migrate up"), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn the_service_refuses_to_start_on_an_unmigrated_database() {
    let db = TestDb::empty().await;
    let err = nephrocare::App::new(crate::support::test_config(&db.url)).start().await.err().expect("refused");
    assert!(err.to_string().contains("nephrocare migrate up"), "{err}");
}

#[tokio::test]
async fn mqtt_listener_answers_a_connect_without_credentials_with_a_refusing_connack() {
    let app = TestApp::spawn().await;
    let mut s = tokio::net::TcpStream::connect(app.running().mqtt_addr).await.unwrap();
    // MQTT 3.1.1 CONNECT, clean session, keepalive 30 s, client id "t".
    s.write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 1, b't']).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut connack)).await.unwrap().unwrap();
    assert_eq!(connack[0], 0x20, "CONNACK");
    assert_ne!(connack[3], 0, "a CONNECT without credentials is not accepted");
    app.stop().await;
}

/// The real binary on port 0 with JSON logs: reads the bound HTTP address from the log,
/// checks it serves, sends SIGTERM and expects exit code 0.
#[tokio::test]
async fn the_binary_serves_and_shuts_down_cleanly_on_sigterm() {
    let db = TestDb::migrated().await;
    let mut child = binary()
        .args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("NEPHROCARE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let logs = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut http = None;
    let mut seen = Vec::new();
    while http.is_none() {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no 'nephrocare ready' log line; saw {seen:#?}")
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("log line is JSON: {line}"));
        assert!(!line.contains("nephrocare:nephrocare@"), "no secrets in logs: {line}");
        if v["message"] == "nephrocare ready" {
            http = v["http"].as_str().map(str::to_owned);
        }
        seen.push(line);
    }
    let http = http.unwrap();
    assert!(!http.ends_with(":0"), "the real port is logged: {http}");
    let r = Client::new(format!("http://{http}")).get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);

    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within 20 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(0), "clean exit on SIGTERM");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM received")), "{rest:#?}");
}

/// Security headers on every answer, set in one place: patient data is never stored by a
/// browser or proxy (`Cache-Control: no-store`) nor sniffed, data runs nothing and is never
/// framed; the API docs page allows exactly its own inline scripts (by hash); the dashboard
/// keeps the headers it sets itself.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let w = crate::support::World::new(TestApp::spawn().await).await;
    let doc = w.as_user("doc");
    let header = |r: &crate::support::Reply, name: &str| {
        r.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };
    let p1 = w.id("p1").to_owned();
    for (what, r) in [
        ("profile", doc.get("/api/users/profile").await),
        ("patient", doc.get(&format!("/api/patients/{p1}")).await),
        ("FHIR patient", doc.get(&format!("/fhir/r4/Patient/{p1}")).await),
        ("an error", w.app.client.get("/api/users/profile").await),
        ("OpenAPI", w.app.client.get("/api/openapi.json").await),
    ] {
        assert!(r.status == 200 || r.status == 401, "{what}: {}", r.status);
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header(&r, "cache-control"), "no-store", "{what}");
        assert_eq!(header(&r, "x-frame-options"), "DENY", "{what}");
        assert!(header(&r, "content-security-policy").starts_with("default-src 'none'"), "{what}");
    }
    let docs = w.app.client.get("/docs").await;
    assert_eq!(docs.status, 200);
    let csp = header(&docs, "content-security-policy");
    assert!(csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'unsafe-inline'"), "{csp}");
    assert_eq!(header(&docs, "x-frame-options"), "DENY");
    assert_eq!(header(&docs, "x-content-type-options"), "nosniff");
    let page = w.app.client.get("/").await;
    assert_eq!(header(&page, "cache-control"), "no-cache", "the dashboard's own caching is kept");
    assert!(header(&page, "content-security-policy").contains("require-trusted-types-for"), "its own policy too");
    w.app.stop().await;
}
