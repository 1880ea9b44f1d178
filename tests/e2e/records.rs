//! Treatment records pushed to the hospital's EMR, played by hl7apy's MLLP server: a
//! treatment that ends arrives once as an HL7 v2.6 `ORU^R01` that hl7apy reads whole, with
//! the patient's identifiers and the treatment's figures; an EMR that is down for a while
//! gets every record once it is up, once each, in order; only admins set where records go.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::alarms::{now_s, rfc3339, World};
use crate::support::{eventually, free_port, EmrPeer, JsonClient, LONG_WAIT};

async fn point_at(w: &World, port: u16) {
    let body = json!({"address": format!("127.0.0.1:{port}"), "receivingFacility": "MAIN"});
    let r = w.as_("admin").put("/api/records/emr", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A treatment of `patient` on the machine: start, readings at `at`, end; returns the session.
pub(crate) async fn treat(w: &World, dev: &mut JsonClient, patient: Uuid, at: DateTime<Utc>, bps: &[i64]) -> String {
    let (telemetry, session) = (
        format!("nc/v1/h/{}/d/{}/telemetry", w.hospital, w.device),
        format!("nc/v1/h/{}/d/{}/session", w.hospital, w.device),
    );
    let sec = chrono::Duration::seconds;
    dev.publish_acked(&session, &json!({"v": 1, "event": "start", "ts": rfc3339(at), "patientId": patient})).await;
    for (i, bp) in bps.iter().enumerate() {
        let seq = at.timestamp() * 100 + i as i64;
        let reading = json!({"v": 1, "seq": seq, "ts": rfc3339(at + sec(i as i64 + 1)), "patientId": patient,
                             "systemStatus": "normal", "bloodPressure": bp, "flowRate": 300});
        dev.publish_acked(&telemetry, &reading).await;
    }
    let end = at + sec(bps.len() as i64 + 1);
    dev.publish_acked(&session, &json!({"v": 1, "event": "end", "ts": rfc3339(end)})).await;
    let r = w.as_("doc").get(&format!("/api/devices/{}/sessions?limit=1", w.device)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"][0]["id"].as_str().expect("the session").replace('-', "")
}

async fn records(emr: &EmrPeer, n: usize) -> Vec<Value> {
    eventually(&format!("{n} records at the EMR"), LONG_WAIT, || async move {
        let got = emr.received();
        (got.iter().filter(|r| r["ack"] == "AA").count() >= n).then_some(got)
    })
    .await
}

async fn delivered(w: &World) -> i64 {
    let mut c = w.app.db.sql().await;
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE channel = 'emr' AND state = 'sent'")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_treatment_that_ends_reaches_the_emr_once_with_its_patient_and_figures() {
    let w = World::new().await;
    let emr = EmrPeer::start(0, "aa").await;
    // Only admins, and only their own hospital's.
    assert_eq!(w.as_("doc").get("/api/records/emr").await.status, 403);
    let r = w.as_("doc").put("/api/records/emr", json!({"address": "127.0.0.1:1"})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_("admin").put("/api/records/emr", json!({"address": "no-port"})).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some("address")), "{}", r.text);
    point_at(&w, emr.port).await;
    assert_eq!(w.as_("admin_b").get("/api/records/emr").await.status, 404, "hospital B has none");

    let mut dev = w.device().await;
    let session = treat(&w, &mut dev, w.patient, now_s() - chrono::Duration::minutes(10), &[120, 95, 130]).await;
    let got = records(&emr, 1).await;
    let record = &got[0];
    assert_eq!(record["problems"], json!([]), "{record}");
    assert_eq!(record["control"], session.as_str(), "MSH-10 is the session: {record}");
    assert_eq!((record["patient"].as_str(), record["id_type"].as_str()), (Some("p1"), Some("MR")), "{record}");
    assert_eq!(record["authority"], "alarm-a", "the hospital's code: {record}");
    assert!(record["hl7apy_observations"].as_u64().unwrap() >= 8, "{record}");
    let fig = &record["figures"];
    assert_eq!(fig["treatment-status"]["value"], "completed", "{record}");
    assert_eq!(fig["systolic-pressure-min"]["value"], "95", "{record}");
    assert_eq!(fig["systolic-pressure-max"]["value"], "130", "{record}");
    assert_eq!(fig["nadir-systolic-pressure"]["value"], "95", "{record}");
    assert_eq!(fig["blood-flow-rate-mean"]["units"], "mL/min", "{record}");
    assert_eq!(fig["readings-received"]["value"], "3", "{record}");
    eventually("the outbox records the delivery", LONG_WAIT, || async { (delivered(&w).await == 1).then_some(()) })
        .await;
    assert_eq!(emr.received().len(), 1, "sent once");
    w.app.stop().await;
}

#[tokio::test]
async fn an_emr_down_for_a_while_gets_every_record_once_in_order() {
    let w = World::with(|c| {
        c.outbox.retry_min_secs = 0.2;
        c.outbox.retry_max_secs = 0.5;
        c.outbox.max_attempts = 100;
    })
    .await;
    let port = free_port();
    point_at(&w, port).await;
    let mut dev = w.device().await;
    let t0 = now_s() - chrono::Duration::minutes(30);
    let first = treat(&w, &mut dev, w.patient, t0, &[110, 112]).await;
    let second = treat(&w, &mut dev, w.patient, t0 + chrono::Duration::minutes(5), &[111]).await;
    let third = treat(&w, &mut dev, w.patient2, t0 + chrono::Duration::minutes(10), &[113]).await;
    // The EMR is down: attempts fail and are retried.
    eventually("failed attempts", LONG_WAIT, || async {
        let mut c = w.app.db.sql().await;
        let n: i64 = sqlx::query_scalar("SELECT coalesce(max(attempts), 0)::int8 FROM outbox WHERE channel = 'emr'")
            .fetch_one(&mut c)
            .await
            .unwrap_or(0);
        (n >= 2).then_some(())
    })
    .await;
    let emr = EmrPeer::start(port, "aa").await;
    let got = records(&emr, 3).await;
    eventually("every delivery recorded", LONG_WAIT, || async { (delivered(&w).await == 3).then_some(()) }).await;
    let received = emr.received();
    let controls: Vec<&str> = received.iter().map(|r| r["control"].as_str().unwrap_or("")).collect();
    assert_eq!(controls.len(), 3, "each once: {got:?}");
    let p1: Vec<&str> = controls.iter().copied().filter(|c| *c != third).collect();
    assert_eq!(p1, vec![first.as_str(), second.as_str()], "a patient's records in order");
    assert!(controls.contains(&third.as_str()));
    w.app.stop().await;
}
