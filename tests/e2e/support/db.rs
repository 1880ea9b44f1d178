//! Test databases: a fresh one per test, migrated by the real migrator, dropped afterwards;
//! and the test configuration of the service.

use std::time::Duration;

use nephrocare::config::{Config, Secret};
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
    // Nobody reconnects after a test's start: whom it reaches is known at once.
    c.alarms.reach_grace_secs = 0.0;
    c
}
