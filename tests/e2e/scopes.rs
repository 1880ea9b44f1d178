//! How much of a patient's data each right reaches, and what the pipeline does with
//! treatments that do not end cleanly:
//!
//! - a technician reads a device's data only while it is responsible for it: a hand-over
//!   shows the treatment running when it was given and what follows, never the patients
//!   treated before it nor a patient's treatment on other devices;
//! - doctors list only the patient accounts of their patients;
//! - a reading naming the next patient ends the previous session (with its summary);
//! - an alert evaluation that fails after the commit is not lost.

use std::time::Duration;

use rumqttc::QoS;
use serde_json::{json, Value};

use crate::support::{
    ago, eventually, exec, grant, now, reading, reading_at, reading_for, TestApp, World, GRANTED, WAIT,
};

/// The seqs of a patient's readings `who` may read over REST.
async fn history(w: &World, who: &str, patient: &str) -> Result<Vec<i64>, u16> {
    let r = w.as_user(who).get(&format!("/api/patients/{}/health-metrics?limit=100", w.id(patient))).await;
    if r.status != 200 {
        return Err(r.status);
    }
    let mut seqs: Vec<i64> = r.body["items"].as_array().unwrap().iter().map(|i| i["seq"].as_i64().unwrap()).collect();
    seqs.sort();
    Ok(seqs)
}

#[tokio::test]
async fn a_technician_reads_a_device_only_while_responsible_for_it() {
    let w = World::new(TestApp::spawn().await).await;
    let (t1, s1) = (w.topic("d1", "telemetry"), w.topic("d1", "session"));
    let mut d1 = w.connect("d1", "").await;
    let mut d2 = w.connect("d2", "").await;
    let start = |p: &str, ts: String| json!({"v": 1, "event": "start", "ts": ts, "patientId": w.id(p)}).to_string();
    // p2 was treated on its own machine d2 first.
    d2.publish_acked(&w.topic("d2", "telemetry"), reading_for(20, w.id("p2"))).await;
    // On d1: p1's treatment (1-3), then p2's (4, 5), which is running when tec hands d1 over.
    // p1's treatment stamped in the recent past, so that p2's (stamped now) starts after it.
    d1.publish_acked(&s1, start("p1", ago(40))).await;
    for seq in 1..=3 {
        d1.publish_acked(&t1, reading_at(seq, &ago(40 - 10 * seq))).await;
    }
    d1.publish_acked(&s1, start("p2", now())).await;
    d1.publish_acked(&t1, reading(4)).await;
    grant(&w).await;
    d1.publish_acked(&t1, reading(5)).await;

    // The assigned technician: everything recorded on d1 since its assignment, nothing from d2.
    assert_eq!(history(&w, "tec", "p1").await, Ok(vec![1, 2, 3]));
    assert_eq!(history(&w, "tec", "p2").await, Ok(vec![4, 5]), "not p2's treatment on d2");
    // The technician holding the hand-over: the treatment running when it was given, on.
    assert_eq!(history(&w, "tec2", "p2").await, Ok(vec![4, 5]));
    assert_eq!(history(&w, "tec2", "p1").await, Ok(vec![]), "p1's treatment ended before the hand-over");
    let sessions = w.as_user("tec2").get(&format!("/api/devices/{}/sessions", w.id("d1"))).await;
    let items = sessions.body["items"].as_array().unwrap();
    assert!(items.len() == 1 && items[0]["patientId"] == w.id("p2"), "tec2 sees the running session only: {items:?}");
    let trends = w
        .as_user("tec2")
        .get(&format!("/api/patients/{}/health-trends?resolution=1h&metrics=heartRate", w.id("p2")))
        .await;
    assert_eq!(trends.status, 200, "{}", trends.text);
    let counted: i64 = trends.body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["stats"].as_array().unwrap().iter().map(|s| s["count"].as_i64().unwrap()))
        .sum();
    assert_eq!(counted, 2, "trends over the window only: {}", trends.text);
    // The doctors keep the longitudinal record of their patients.
    assert_eq!(history(&w, "doc", "p1").await, Ok(vec![1, 2, 3]));
    w.app.stop().await;
}

#[tokio::test]
async fn doctors_list_only_the_patient_accounts_of_their_patients() {
    let w = World::new(TestApp::spawn().await).await;
    let names = |r: &crate::support::Reply| -> Vec<String> {
        let mut n: Vec<String> =
            r.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&w.as_user("adm").get("/api/users/patient").await), vec!["pat", "pat2"]);
    assert_eq!(names(&w.as_user("doc").get("/api/users/patient").await), vec!["pat"], "doc's patient only");
    assert_eq!(names(&w.as_user("doc2").get("/api/users/patient").await), Vec::<String>::new());
    assert_eq!(w.as_user("tec").get("/api/users/patient").await.status, 403);
    w.app.stop().await;
}

#[tokio::test]
async fn a_reading_naming_the_next_patient_ends_the_previous_session_with_its_summary() {
    let w = World::new(TestApp::spawn().await).await;
    let t1 = w.topic("d1", "telemetry");
    let mut c = w.app.db.sql().await;
    exec(
        &mut c,
        &format!(
            "INSERT INTO alert_thresholds (id, hospital_id, metric, high, priority, delay_seconds, hysteresis, enabled)
             VALUES (gen_random_uuid(), '{}', 'heart_rate', 150, 'high', 0, 5, true)",
            w.id("ha")
        ),
    )
    .await;
    let mut d1 = w.connect("d1", "").await;
    d1.publish_acked(&t1, reading_for(1, w.id("p1"))).await;
    let tachy = json!({"v": 1, "seq": 2, "ts": now(), "systemStatus": "normal", "heartRate": 180}).to_string();
    d1.publish_acked(&t1, tachy).await;
    let open: Vec<(uuid::Uuid, String)> = eventually("p1's tachycardia raised", WAIT, || async {
        let mut c = w.app.db.sql().await;
        let open: Vec<(uuid::Uuid, String)> =
            sqlx::query_as("SELECT patient_id, state FROM alerts WHERE code = 'heart_rate_high'")
                .fetch_all(&mut c)
                .await
                .unwrap();
        (!open.is_empty()).then_some(open)
    })
    .await;
    assert_eq!(open.len(), 1, "p1's tachycardia is raised: {open:?}");
    // The machine moves on to p2 without an `end`.
    d1.publish_acked(&t1, reading_for(3, w.id("p2"))).await;
    let rows: Vec<(uuid::Uuid, String, i64, Option<Value>)> = sqlx::query_as(
        "SELECT patient_id, status, readings_received, summary FROM device_sessions WHERE device_id = $1::uuid ORDER BY started_at, created_at",
    )
    .bind(w.id("d1"))
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.to_string(), rows[0].1.as_str(), rows[0].2), (w.id("p1").to_owned(), "completed", 2));
    assert!(rows[0].3.as_ref().is_some_and(|s| s["metrics"]["heartRate"]["max"] == 180.0), "{:?}", rows[0].3);
    assert_eq!((rows[1].0.to_string(), rows[1].1.as_str()), (w.id("p2").to_owned(), "active"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics WHERE patient_id = $1::uuid")
        .bind(w.id("p2"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the reading is kept, as p2's");
    // p1's alert ended with p1's treatment: it does not hang over p2.
    let state: String =
        sqlx::query_scalar("SELECT state FROM alerts WHERE code = 'heart_rate_high'").fetch_one(&mut c).await.unwrap();
    assert_eq!(state, "cleared");
    w.app.stop().await;
}

#[tokio::test]
async fn an_alert_evaluation_that_fails_after_the_commit_is_retried_not_lost() {
    let w = World::new(TestApp::spawn().await).await;
    let mut doc = w.connect("doc", "").await;
    let alerts = w.topic("d1", "alerts");
    assert_eq!(doc.subscribe(&[(&alerts, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut c = w.app.db.sql().await;
    // The alert engine reads its rules from this table: while it is gone, evaluation fails.
    exec(&mut c, "ALTER TABLE alert_thresholds RENAME TO alert_thresholds_gone").await;
    let mut d1 = w.connect("d1", "").await;
    let danger =
        json!({"v": 1, "seq": 1, "ts": now(), "patientId": w.id("p1"), "systemStatus": "danger", "heartRate": 70});
    d1.publish_acked(&w.topic("d1", "telemetry"), danger.to_string()).await;
    // A negative check, not synchronisation: time for an evaluation that should fail to
    // have run, had it not.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts").fetch_one(&mut c).await.unwrap();
    assert_eq!(open, 0, "the evaluation cannot have run yet");
    exec(&mut c, "ALTER TABLE alert_thresholds_gone RENAME TO alert_thresholds").await;
    let raised = doc.message(&alerts, WAIT).await;
    let body: Value = serde_json::from_slice(&raised.payload).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["alert"]["code"].as_str()),
        (Some("raised"), Some("system_status_danger"))
    );
    w.app.stop().await;
}
