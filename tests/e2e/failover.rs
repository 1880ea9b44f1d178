//! The database as a pg_auto_failover cluster (`scripts/pg-ha.sh`: a monitor, a primary and a
//! synchronous standby, TimescaleDB on both): the service is given the multi-host
//! `DATABASE_URL` and finds the primary; the primary's server is lost (`kill -9` of its
//! pg_autoctl and postmaster) while a machine posts readings; the standby takes over, the
//! service follows it without a restart, and every reading that was acknowledged (201) is on
//! the new primary, once; readings resume within 30 s of the kill. The old primary rejoins
//! as the standby, and a second failover, back, loses nothing either. `/readyz` says when a
//! commit is confirmed by a standby and when it is not. An escalation due during the
//! failover reaches its tier once.

use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm_migration::MigratorTrait;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::alarms::{now_s, World};
use crate::support::{test_config, TestApp, TestDb};

const SECRET: &str = "Failover-pass-2026";

/// `scripts/pg-ha.sh CMD DIR [ARG]`, its stdout.
fn pg_ha(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-ha.sh");
    let out = std::process::Command::new("bash").arg(script).args(args).output().expect("scripts/pg-ha.sh runs");
    assert!(
        out.status.success(),
        "scripts/pg-ha.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Loses the primary's server (`scripts/pg-ha.sh kill-primary`) off the test's runtime thread
/// (the service runs on it too); returns the node lost.
async fn kill_primary(dir: &str) -> String {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || pg_ha(&["kill-primary", &dir])).await.expect("the kill ran")
}

/// Stops the cluster and removes its files, whatever happens to the test.
struct Cluster(String);

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-ha.sh");
        let _ = std::process::Command::new("bash").arg(script).args(["destroy", &self.0]).output();
    }
}

/// Posts readings `seqs` (each retried until acknowledged, 60 s at most), losing the
/// primary before `kill_at`; returns which node was lost and how long after the kill
/// readings were acknowledged again (30 s at most).
#[allow(clippy::too_many_arguments)]
async fn round(
    http: &reqwest::Client,
    base: &str,
    device: uuid::Uuid,
    start: chrono::DateTime<Utc>,
    seqs: std::ops::Range<i64>,
    kill_at: i64,
    dir: &str,
    acked: &mut Vec<i64>,
) -> (String, Duration) {
    let post = format!("{base}/api/health-metrics");
    let mut killed: Option<Instant> = None;
    let mut lost = String::new();
    let mut resumed: Option<Duration> = None;
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    for seq in seqs {
        if seq == kill_at {
            lost = kill_primary(dir).await;
            killed = Some(Instant::now());
        }
        let body = json!({"v": 1, "seq": seq, "ts": (start + chrono::Duration::seconds(seq)).to_rfc3339(),
                          "systemStatus": "normal", "heartRate": 70, "bloodPressure": 120});
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = http.post(&post).basic_auth(device, Some(SECRET)).json(&body).send().await;
            match r.map(|r| r.status().as_u16()) {
                Ok(201) => {
                    acked.push(seq);
                    if let (Some(k), None) = (killed, resumed) {
                        resumed = Some(k.elapsed());
                    }
                    break;
                }
                Ok(status) => *refused.entry(status).or_default() += 1,
                Err(_) => *refused.entry(0).or_default() += 1,
            }
            assert!(Instant::now() < deadline, "reading {seq} not acknowledged within 60 s: {refused:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = resumed.expect("readings after the kill");
    assert!(resumed < Duration::from_secs(30), "readings resumed {resumed:?} after the kill");
    assert!(!refused.contains_key(&500), "a database outage is not a 500: {refused:?}");
    (lost, resumed)
}

#[tokio::test]
async fn a_lost_primary_loses_no_acknowledged_reading_and_the_service_follows_it_there_and_back() {
    let (cluster, t, config) = ha_database(5540).await;
    let hospital = t.hospital("Failover", "fo").await;
    let device = t.machine(hospital, "fo-1", "Machine 1", None, SECRET).await;
    let app = TestApp::spawn_configured(t, config).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let base = app.client.base.clone();
    let synchronous = |expected: i64| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            crate::support::eventually(&format!("{expected} synchronous standby(s)"), Duration::from_secs(60), || {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let r = http.get(format!("{base}/readyz")).send().await.ok()?;
                    let body: serde_json::Value = r.json().await.ok()?;
                    (body["synchronousStandbys"] == expected).then_some(())
                }
            })
            .await
        }
    };
    // A commit is confirmed by the standby: an acknowledged reading survives the primary.
    synchronous(1).await;

    let start = Utc::now() - chrono::Duration::minutes(30);
    let mut acked = Vec::new();
    // The primary (node1) is lost mid-stream: the standby takes over.
    let (lost, first) = round(&http, &base, device, start, 0..120, 40, &cluster.0, &mut acked).await;
    // Alone, node2 commits without a standby (availability over durability), and says so.
    synchronous(0).await;
    // node1 comes back: it rejoins as node2's standby, synchronous again.
    pg_ha(&["restart", &cluster.0, &lost]);
    synchronous(1).await;
    // And the second failover, back to node1, loses nothing either.
    let (lost_again, second) = round(&http, &base, device, start, 120..240, 160, &cluster.0, &mut acked).await;
    assert_ne!(lost, lost_again, "the second failover goes back");

    // Every acknowledged reading is on the primary, once.
    let pool = app.running().db.get_postgres_connection_pool();
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, count(*) FROM health_metrics WHERE device_id = $1 GROUP BY seq ORDER BY seq")
            .bind(device)
            .fetch_all(pool)
            .await
            .expect("read from the new primary");
    let seqs: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, acked, "every acknowledged reading stored");
    // (None twice is the unique reading identity's: a resent reading is the same row.)
    let now: (bool, i32) =
        sqlx::query_as("SELECT pg_is_in_recovery(), inet_server_port()").fetch_one(pool).await.unwrap();
    let expected = if lost_again == "node1" { 5542 } else { 5541 };
    assert_eq!(now, (false, expected), "the pool followed the primary back to {lost}");
    eprintln!(
        "failover: readings resumed {:.1} s and {:.1} s after the kills",
        first.as_secs_f64(),
        second.as_secs_f64()
    );
    app.stop().await;
}

/// A pg_auto_failover cluster on ports `base`..`base + 2` (stopped and removed when
/// dropped), a fresh database on its primary migrated by the real migrator (the name is
/// unique, so `TestDb`'s drop finds nothing of it on the ordinary test server), and the test
/// configuration with its multi-host URL.
async fn ha_database(base: u16) -> (Cluster, TestDb, nephrocare::config::Config) {
    let dir = std::env::temp_dir().join(format!("nc-failover-{}", uuid::Uuid::now_v7().simple()));
    let cluster = Cluster(dir.to_string_lossy().into_owned());
    let url = pg_ha(&["start", &cluster.0, &base.to_string()]);
    let (n1, n2) = (base + 1, base + 2);
    assert!(url.contains(&format!("127.0.0.1:{n1},127.0.0.1:{n2}")), "{url}");
    // template1 has the extensions.
    let name = format!("nc_failover_{}", uuid::Uuid::now_v7().simple());
    let mut admin =
        PgConnection::connect(&format!("postgres://nephrocare:nephrocare@127.0.0.1:{n1}/nephrocare")).await.unwrap();
    admin.execute(format!(r#"CREATE DATABASE "{name}""#).as_str()).await.unwrap();
    let _ = admin.close().await;
    let url = url.replace("/nephrocare?", &format!("/{name}?"));
    let config = test_config(&url);
    let db = nephrocare::app::connect(&config).await.expect("the primary is found");
    nc_migration::Migrator::up(&db, None).await.expect("migrations apply");
    // `TestDb::sql` connects to one host: the primary at the start.
    let first = format!("postgres://nephrocare:nephrocare@127.0.0.1:{n1}/{name}");
    (cluster, TestDb { name, url: first, db }, config)
}

#[tokio::test]
async fn an_escalation_due_during_a_failover_reaches_its_people_once() {
    let (cluster, t, config) = ha_database(5550).await;
    let (hospital, hospital_b, device, patient, patient2, users) = crate::alarms::seed(&t).await;
    let app = TestApp::spawn_configured(t, config).await;
    let tokens = crate::alarms::login_all(&app.client).await;
    let w = World { app, hospital, hospital_b, device, patient, patient2, users, tokens };
    w.escalate(4, &[2]).await;
    let mut doc = w.listener("doc").await;
    let mut ward_doc = w.listener("ward_doc").await;

    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let raised = doc.expect(&w.notes("doc"), "raised", |m| m["event"] == "raised").await;
    let id = raised["alert"]["id"].as_str().expect("id").to_owned();
    // The primary is lost before tier 2 is due (4 s): the new primary's scheduler sends it.
    kill_primary(&cluster.0).await;
    let t2 = ward_doc.expect(&w.notes("ward_doc"), "tier 2 after the failover", |m| m["event"] == "escalated").await;
    assert_eq!((t2["tier"].as_i64(), t2["alert"]["id"].as_str()), (Some(2), Some(id.as_str())));
    // Once.
    ward_doc.expect_silence(&w.notes("ward_doc"), Duration::from_secs(3)).await;
    let history = crate::alarms::events(&w.history(&id).await);
    let escalations: Vec<_> = history.iter().filter(|(e, _)| e == "escalated").collect();
    assert_eq!(escalations, [&("escalated".to_owned(), Some(2))], "{history:?}");
    w.app.stop().await;
}
