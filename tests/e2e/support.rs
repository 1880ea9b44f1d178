//! The test harness: fresh databases, the in-process service, the real binary, a client.

#![allow(dead_code)]

use std::time::Duration;

use nephrocare::config::{Config, Secret};
use nephrocare::{App, RunningApp};
use sea_orm::{Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use sqlx::{Connection, Executor, PgConnection};

pub const DEFAULT_TEST_URL: &str = "postgres://nephrocare:nephrocare@127.0.0.1:5432/nephrocare";

/// The URL of the database through which test databases are created.
pub fn admin_url() -> String {
    std::env::var("NEPHROCARE_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| DEFAULT_TEST_URL.to_owned())
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub db: DatabaseConnection,
}

impl TestDb {
    /// A fresh database with the whole schema, migrated by the real migrator.
    pub async fn migrated() -> TestDb {
        let t = TestDb::empty().await;
        nc_migration::Migrator::up(&t.db, None).await.expect("migrations apply");
        t
    }

    /// A fresh database with no schema.
    pub async fn empty() -> TestDb {
        let name = format!("nc_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach the test PostgreSQL at {} ({e}). Run scripts/provision-db.sh, \
                 or set NEPHROCARE_TEST_DATABASE_URL.",
                nephrocare::config::redact_url(&admin)
            )
        });
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str()).await.expect("create test database");
        conn.close().await.ok();
        let url = with_database(&admin, &name);
        let mut options = sea_orm::ConnectOptions::new(url.clone());
        options.max_connections(5).sqlx_logging(false);
        let db = Database::connect(options).await.expect("connect to the test database");
        TestDb { name, url, db }
    }

    /// A hospital, created the one way hospitals are (`nc_care::hospitals::create`).
    pub async fn hospital(&self, name: &str, code: &str) -> uuid::Uuid {
        nc_care::hospitals::create(&self.db, name, code).await.expect("a hospital").as_uuid()
    }

    /// A plain sqlx connection, for assertions in SQL.
    pub async fn sql(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect")
    }

    /// Waits until the deriver has applied every committed reading: current values, rollups
    /// (trends) and session counters follow the readings after the acknowledgement, within
    /// the derive interval.
    pub async fn derived(&self) {
        let mut c = self.sql().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM derived_backlog").fetch_one(&mut c).await.expect("backlog");
            if n == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the deriver caught up within 20 s ({n} batches waiting)");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Async drop does not exist: drop the database from a thread with its own runtime.
        // The pool is not closed from there: its connections belong to the test's runtime,
        // which is blocked in this very drop, so closing them would wait forever. `FORCE`
        // ends them on the server side instead.
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str()).await;
                }
            });
        })
        .join();
    }
}

/// The test configuration: the given database, every listener on port 0.
pub fn test_config(url: &str) -> Config {
    let mut c = Config::default();
    c.database.url = Secret::new(url);
    // The live-revocation listener holds one connection and each of the writers (2 to 4) one while
    // it writes: 10 leaves room for policy lookups, REST and chat when the machine is slow.
    c.database.max_connections = 10;
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.mqtt.addr = "127.0.0.1:0".parse().unwrap();
    c.mqtt.ws_addr = "127.0.0.1:0".parse().unwrap();
    c.auth.jwt_secret = Secret::new("test-secret-test-secret-test-secret-0123456789");
    // Alerts do not escalate unless a test sets its hospital's escalation policy (the
    // alarm tests do, through the REST API): other tests see exactly the notifications of
    // what they do.
    c.alarms.escalate_high_after_secs = 0;
    c.alarms.escalate_medium_after_secs = 0;
    c
}

/// Logs of the in-process service, captured per test by libtest (printed only when a test
/// fails). `NEPHROCARE_TEST_LOG` sets the filter; the default keeps why connections end and
/// every warning.
fn init_logs() {
    let filter = std::env::var("NEPHROCARE_TEST_LOG").unwrap_or_else(|_| "warn,nephrocare_broker=info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// The service running in-process on a fresh database.
pub struct TestApp {
    pub app: Option<RunningApp>,
    pub client: Client,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let db = TestDb::migrated().await;
        TestApp::spawn_on(db).await
    }

    pub async fn spawn_on(db: TestDb) -> TestApp {
        let config = test_config(&db.url);
        TestApp::spawn_configured(db, config).await
    }

    /// The service on a fresh database, with the test configuration changed by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::migrated().await;
        let mut config = test_config(&db.url);
        tweak(&mut config);
        TestApp::spawn_configured(db, config).await
    }

    pub async fn spawn_configured(db: TestDb, config: Config) -> TestApp {
        init_logs();
        let app = App::new(config).start().await.expect("the service starts");
        let client = Client::new(format!("http://{}", app.http_addr));
        TestApp { app: Some(app), client, db }
    }

    pub fn running(&self) -> &RunningApp {
        self.app.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("clean shutdown");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = &self.app {
            app.shutdown();
        }
    }
}

/// A small typed HTTP client for the API.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

/// A response: status, headers and the body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Reply {
    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Client {
    pub fn new(base: String) -> Client {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Client { base, http, token: None }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client { token: Some(token.to_owned()), ..self.clone() }
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply { status, headers, body, text }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Reply {
        self.request("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> Reply {
        self.request("PUT", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str, body: Option<serde_json::Value>) -> Reply {
        self.request("DELETE", path, body).await
    }
}

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

/// Polls `probe` until it yields a value (every 50 ms, for at most `within`), or fails the
/// test naming `what`: the one way the tests wait for something that happens
/// asynchronously (an alert stored, a job done, a figure updated), instead of a fixed sleep.
pub async fn eventually<T, Fut>(what: &str, within: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
