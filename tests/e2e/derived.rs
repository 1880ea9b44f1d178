//! Derived data after the acknowledgement: each device's latest reading, the rollups and the
//! active sessions' counters are applied by the deriver from the durable backlog the
//! writer's transaction leaves, exactly once, across a `kill -9` of the service.

use std::time::Duration;

use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::support::{JsonClient, PatientLinks, Service, TestDb};

pub(crate) const SECRET: &str = "derived-test-device-secret-0123456789";

pub(crate) struct Seeded {
    pub hospital: Uuid,
    pub device: Uuid,
    pub patient: Uuid,
}

pub(crate) async fn seed(db: &TestDb) -> Seeded {
    let hospital = db.hospital("Derived", "derived").await;
    let device = db.machine(hospital, "dv-1", "Machine", None, SECRET).await;
    let patient =
        db.patient(hospital, "p1", "Patient", PatientLinks { device: Some(device), ..Default::default() }).await;
    Seeded { hospital, device, patient }
}

/// Reading `seq`, 7 s apart, ending a minute ago: spread over several 1-, 5- and 15-minute
/// buckets and two hours.
pub(crate) fn reading(s: &Seeded, seq: i64, base: DateTime<Utc>) -> serde_json::Value {
    let at = base + chrono::Duration::seconds(7 * seq);
    json!({
        "v": 1, "seq": seq, "ts": at.to_rfc3339_opts(SecondsFormat::Micros, true), "patientId": s.patient,
        "systemStatus": "normal", "heartRate": 60.0 + (seq % 23) as f64 * 0.7, "bloodPressure": 110 + seq % 17,
        "temperature": 98.6, "conductivity": 13.8 + (seq % 5) as f64 * 0.1,
    })
}

async fn send(s: &Seeded, service: &Service, seqs: impl Iterator<Item = i64>, base: DateTime<Utc>) {
    let id = s.device.to_string();
    let mut m = JsonClient::connect(service.mqtt, &id, &id, SECRET, true).await;
    let topic = format!("nc/v1/h/{}/d/{}/telemetry", s.hospital, s.device);
    let seqs: Vec<i64> = seqs.collect();
    for &q in &seqs {
        m.publish(&topic, &reading(s, q, base)).await;
    }
    m.until("every PUBACK", |m| (m.acked.len() == seqs.len()).then_some(())).await;
}

async fn scalar(c: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every rollup row against SQL over the stored readings: count, min and max exactly, the
/// sum to float precision; and no bucket more or less.
async fn assert_rollups_agree(c: &mut sqlx::PgConnection, patient: Uuid) {
    for (table, minutes) in [("fine", 1), ("fine", 5), ("fine", 15), ("hourly", 60)] {
        for column in ["heart_rate", "systolic_bp", "temperature_f", "dialysate_conductivity"] {
            let tier = if table == "fine" { format!("AND minutes = {minutes}") } else { String::new() };
            let sql = format!(
                "WITH r AS (SELECT bucket, {column}_n::int8 AS n, {column}_sum AS sum, {column}_min::float8 AS min, {column}_max::float8 AS max
                              FROM health_metric_rollups_{table} WHERE patient_id = $1 {tier} AND {column}_n > 0),
                      s AS (SELECT time_bucket(make_interval(mins => {minutes}), time) AS bucket, count({column}) AS n,
                                   sum({column}::float8) AS sum, min({column})::float8 AS min, max({column})::float8 AS max
                              FROM health_metrics WHERE patient_id = $1 AND {column} IS NOT NULL GROUP BY 1)
                 SELECT count(*) FROM r FULL JOIN s USING (bucket)
                  WHERE r.n IS DISTINCT FROM s.n OR r.min IS DISTINCT FROM s.min OR r.max IS DISTINCT FROM s.max
                     OR abs(r.sum - s.sum) > 1e-6 * abs(s.sum) OR r.sum IS NULL OR s.sum IS NULL"
            );
            let differing: i64 = sqlx::query_scalar(&sql).bind(patient).fetch_one(&mut *c).await.expect(&sql);
            assert_eq!(differing, 0, "{table} {minutes} min, {column}: buckets that differ from SQL");
        }
    }
}

#[tokio::test]
async fn derived_data_converges_exactly_after_a_kill_9() {
    let db = TestDb::migrated().await;
    let s = seed(&db).await;
    let base = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap() - chrono::Duration::hours(2);
    let mut c = db.sql().await;

    // A deriver that waits 10 s: 300 readings acknowledged (committed), none derived yet,
    // when the service is killed.
    let service = Service::start(&db, &[("NEPHROCARE_INGEST_DERIVE_INTERVAL_MS", "10000")]);
    send(&s, &service, 1..=300, base).await;
    assert!(scalar(&mut c, "SELECT count(*) FROM derived_backlog").await > 0, "batches wait for the deriver");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM device_latest_metrics").await, 0, "nothing derived yet");
    service.kill9();
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM health_metrics").await, 300, "every acknowledged reading stored");

    // Restarted: what was left is applied once; readings sent again (the last 50, as a
    // machine does when its PUBACKs were lost) change nothing; new ones are added.
    let service = Service::start(&db, &[]);
    send(&s, &service, (251..=300).chain(301..=360), base).await;
    db.derived().await;
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM health_metrics").await, 360);

    let (seq, time): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT seq, time FROM device_latest_metrics WHERE device_id = $1")
            .bind(s.device)
            .fetch_one(&mut c)
            .await
            .expect("the device's latest reading");
    assert_eq!((seq, time), (360, base + chrono::Duration::seconds(7 * 360)));
    let latest: serde_json::Value =
        sqlx::query_scalar("SELECT reading FROM device_latest_metrics WHERE device_id = $1")
            .bind(s.device)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(latest["conductivity"], json!(13.8), "a stored real reads back as the decimal sent: {latest}");
    assert_eq!(latest["patientId"], json!(s.patient));

    assert_rollups_agree(&mut c, s.patient).await;
    let (received, stored): (i64, i64) = sqlx::query_as(
        "SELECT s.readings_received, (SELECT count(*) FROM health_metrics h WHERE h.session_id = s.id)
           FROM device_sessions s WHERE s.device_id = $1 AND s.status = 'active'",
    )
    .bind(s.device)
    .fetch_one(&mut c)
    .await
    .expect("the active session");
    assert_eq!((received, stored), (360, 360), "the session counted each reading once");

    // Idle: nothing is applied twice later either (a negative check, not synchronisation).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_rollups_agree(&mut c, s.patient).await;
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM derived_backlog").await, 0);
    drop(service);
}
