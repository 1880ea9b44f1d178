//! The service started in-process on a test database, and a small HTTP client for its API.

use std::sync::Arc;
use std::time::Duration;

use nc_messaging::TelemetrySink;
use nephrocare::config::Config;
use nephrocare::{App, RunningApp};

use super::{test_config, TestDb};

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
        TestApp::start(db, App::new(config)).await
    }

    /// The service on a fresh database, storing device messages through `sink`.
    pub async fn spawn_with_sink(sink: Arc<dyn TelemetrySink>) -> TestApp {
        let db = TestDb::migrated().await;
        let app = App::new(test_config(&db.url)).with_sink(sink);
        TestApp::start(db, app).await
    }

    async fn start(db: TestDb, app: App) -> TestApp {
        init_logs();
        let app = app.start().await.expect("the service starts");
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
