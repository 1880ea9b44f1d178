//! The hospital's alert manager (IHE PCD ACM), played by python-hl7 over real MLLP: every
//! phase of an alarm arrives as a PCD-04 that passes its TF-2 checks, in the alarm's order,
//! acknowledged; an `AE` answer is retried until the manager accepts; each attempt is in the
//! alarm's history; no patient data unless the hospital allows it. Also with nobody's app
//! open: the alarm reaches the manager. A report the manager keeps refusing is parked after
//! the last attempt, in the history and in the metrics.

use serde_json::{json, Value};

use crate::alarms::{now_s, World};
use crate::support::{eventually, AlertManagerPeer, LONG_WAIT};

async fn point_at(w: &World, peer: &AlertManagerPeer, include_patient: bool) {
    let r = w
        .as_("admin")
        .put(
            "/api/alerts/alert-manager",
            json!({"address": format!("127.0.0.1:{}", peer.port), "receivingFacility": "WARD-N", "includePatient": include_patient}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Waits until the manager has accepted (AA) `n` messages about `alert`; returns all it got.
async fn accepted(peer: &AlertManagerPeer, alert: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} accepted reports"), LONG_WAIT, || async move {
        let got: Vec<Value> = peer.received().into_iter().filter(|m| m["alert_id"] == alert).collect();
        (got.iter().filter(|m| m["ack"] == "AA").count() >= n).then_some(got)
    })
    .await
}

fn simple(id: &str) -> String {
    id.replace('-', "")
}

#[tokio::test]
async fn every_phase_reaches_the_alert_manager_in_order_even_through_errors() {
    let w = World::new().await;
    let mut peer = AlertManagerPeer::start(0).await;
    // Only admins set it; others are refused.
    let r = w.as_("doc").put("/api/alerts/alert-manager", json!({"address": "127.0.0.1:1"})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_("admin").put("/api/alerts/alert-manager", json!({"address": "no-port"})).await;
    assert_eq!(r.status, 422, "{}", r.text);
    point_at(&w, &peer, false).await;

    // Nobody's app is open: the alarm still reaches the manager.
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let got = accepted(&peer, &simple(&id), 1).await;
    let start = &got[0];
    assert_eq!((start["phase"].as_str(), start["ack"].as_str()), (Some("start"), Some("AA")), "{start}");
    assert_eq!(start["problems"], json!([]), "TF-2 checks: {start}");
    let raw = start["raw"].as_str().unwrap();
    assert!(!raw.contains("\rPID|") || raw.contains("PID|||||||||||||||||||||||||||||||Y"), "no patient data: {raw}");
    assert!(!raw.contains("Patient One"), "no patient name: {raw}");

    // The manager answers AE for a while: the next phase is retried, then delivered once it
    // accepts, and the phase after it waits its turn.
    peer.command("mode ae");
    let r = w.as_("doc").post(&format!("/api/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("an AE answer", LONG_WAIT, || {
        let (peer, id) = (&peer, simple(&id));
        async move { peer.received().iter().any(|m| m["alert_id"] == id.as_str() && m["ack"] == "AE").then_some(()) }
    })
    .await;
    w.reading(2, now_s(), w.patient, json!({"bloodPressure": 120})).await;
    peer.command("mode aa");
    let got = accepted(&peer, &simple(&id), 3).await;
    let phases: Vec<&str> =
        got.iter().filter(|m| m["ack"] == "AA").map(|m| m["phase"].as_str().unwrap_or("?")).collect();
    assert_eq!(phases, ["start", "acknowledged", "end"], "in the alarm's order, each accepted once: {got:?}");
    for m in &got {
        assert_eq!(m["problems"], json!([]), "TF-2 checks: {m}");
    }
    // The history has every attempt: the outbox records the last one once it has read the
    // manager's ACK, a moment after the manager has logged what it accepted.
    let history = eventually("three deliveries in the alarm's history", LONG_WAIT, || async {
        let history = w.history(&id).await;
        (history.iter().filter(|e| e["event"] == "delivered").count() >= 3).then_some(history)
    })
    .await;
    let events: Vec<&str> = history.iter().map(|e| e["event"].as_str().unwrap_or("?")).collect();
    assert!(events.contains(&"delivery_failed"), "{events:?}");
    assert_eq!(events.iter().filter(|e| **e == "delivered").count(), 3, "{events:?}");
    assert!(
        history
            .iter()
            .any(|e| e["event"] == "delivery_failed" && e["reason"].as_str().is_some_and(|r| r.starts_with("acm: AE"))),
        "{history:?}"
    );
    w.app.stop().await;
}

/// The manager answers `AE` to every attempt: the report is tried `max_attempts` times, then
/// parked; each attempt is in the alarm's history and in the metrics, and the alarm's next
/// phase is not held up behind the parked one.
#[tokio::test]
async fn a_report_the_manager_keeps_refusing_is_retried_then_parked() {
    let w = World::with(|c| {
        c.outbox.max_attempts = 3;
        c.outbox.retry_min_secs = 0.2;
        c.outbox.retry_max_secs = 0.4;
    })
    .await;
    let mut peer = AlertManagerPeer::start_in(0, "ae").await;
    point_at(&w, &peer, false).await;
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let history = eventually("the report parked", LONG_WAIT, || {
        let (w, id) = (&w, &id);
        async move {
            let h = w.history(id).await;
            h.iter().any(|e| e["event"] == "delivery_parked").then_some(h)
        }
    })
    .await;
    let failed = history.iter().filter(|e| e["event"] == "delivery_failed").count();
    let parked: Vec<&Value> = history.iter().filter(|e| e["event"] == "delivery_parked").collect();
    assert_eq!((failed, parked.len()), (2, 1), "two retries, then parked: {history:?}");
    assert!(parked[0]["reason"].as_str().is_some_and(|r| r.starts_with("acm: AE")), "{history:?}");
    let attempts: Vec<Value> = peer.received().into_iter().filter(|m| m["alert_id"] == simple(&id).as_str()).collect();
    assert_eq!(attempts.len(), 3, "three attempts at the start: {attempts:?}");
    assert!(attempts.iter().all(|m| m["phase"] == "start" && m["ack"] == "AE"), "{attempts:?}");
    let metrics = reqwest::get(format!("{}/metrics", w.app.client.base)).await.unwrap().text().await.unwrap();
    let count = |outcome: &str| -> f64 {
        crate::metrics::samples(&metrics)
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("nephrocare_outbox_deliveries_total{")
                    && k.contains("channel=\"acm\"")
                    && k.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|(_, v)| v)
            .sum()
    };
    // At least (the registry is the process's, shared with other tests).
    assert!(count("parked") >= 1.0 && count("failed") >= 2.0, "{metrics}");
    // The next phase goes out once the manager accepts again: not stuck behind the parked one.
    peer.command("mode aa");
    let r = w.as_("doc").post(&format!("/api/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = accepted(&peer, &simple(&id), 1).await;
    let ok: Vec<&Value> = got.iter().filter(|m| m["ack"] == "AA").collect();
    assert_eq!(ok[0]["phase"], "acknowledged", "{got:?}");
    w.app.stop().await;
}

/// The alert manager reports (PCD-05) that the doctor's pager accepted the alarm: it is
/// acknowledged here as the doctor (audited over `hl7`); a status of an unmapped recipient is
/// only history; a status from an address that is not the hospital's alert manager is
/// rejected.
#[tokio::test]
async fn accepted_on_a_pager_acknowledges_the_alarm_as_its_mapped_user() {
    let w = World::with(|c| c.alarms.acm_listen_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let acm = w.app.running().acm_addr.expect("the status listener");
    let mut peer = AlertManagerPeer::start(0).await;
    point_at(&w, &peer, false).await;
    let r = w.as_("admin").put("/api/alerts/alert-manager/recipients/PAGER-7", json!({"userId": w.users["doc"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Another hospital's person cannot be mapped.
    let r =
        w.as_("admin").put("/api/alerts/alert-manager/recipients/PAGER-9", json!({"userId": w.users["doc_b"]})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = w.as_("doc").get("/api/alerts/alert-manager/recipients").await;
    assert_eq!(r.status, 403, "{}", r.text);

    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    accepted(&peer, &simple(&id), 1).await;

    // Read on someone's phone who is not mapped: history only.
    peer.command(&format!("status {} PAGER-UNKNOWN read 127.0.0.1:{}", simple(&id), acm.port()));
    let said = peer.said().await;
    assert!(said.starts_with("ack AA"), "{said}");
    eventually("the read status in the history", LONG_WAIT, || {
        let (w, id) = (&w, &id);
        async move {
            w.history(id)
                .await
                .iter()
                .any(|e| e["event"] == "dissemination" && e["reason"].as_str().is_some_and(|r| r.contains("read")))
                .then_some(())
        }
    })
    .await;
    let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.body["state"], "active", "{}", r.text);

    // Accepted on the doctor's pager: acknowledged as the doctor.
    peer.command(&format!("status {} PAGER-7 accepted 127.0.0.1:{}", simple(&id), acm.port()));
    let said = peer.said().await;
    assert!(said.starts_with("ack AA"), "{said}");
    let acked = eventually("acknowledged through the alert manager", LONG_WAIT, || {
        let (w, id) = (&w, &id);
        async move {
            let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
            (r.body["state"] == "acknowledged").then_some(r.body)
        }
    })
    .await;
    assert_eq!(acked["acknowledgedBy"], json!(w.users["doc"].to_string()), "{acked}");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_audit_log WHERE interface = 'hl7' AND actor_id = $1 AND resource = 'alert'",
    )
    .bind(w.users["doc"])
    .fetch_one(&mut w.app.db.sql().await)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    // The acknowledgement is itself reported to the manager, in order.
    let got = accepted(&peer, &simple(&id), 2).await;
    assert_eq!(
        got.iter().filter(|m| m["ack"] == "AA").map(|m| m["phase"].as_str().unwrap()).collect::<Vec<_>>(),
        ["start", "acknowledged"]
    );
    w.app.stop().await;
}

/// With every app closed but an alert manager that accepts the reports, the care team counts
/// as reached on their pagers: the alarm waits for its timer instead of escalating at once.
#[tokio::test]
async fn an_alert_manager_that_accepts_the_report_reaches_the_tier() {
    let w = World::with(|c| c.alarms.channel_wait_secs = 1.0).await;
    let peer = AlertManagerPeer::start(0).await;
    point_at(&w, &peer, false).await;
    w.escalate(60, &[2, 3]).await;
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    accepted(&peer, &simple(&id), 1).await;
    // Decided after the wait: reached (no `unreachable`), still at tier 1 with its timer.
    eventually("the wait and the delivery in the history", LONG_WAIT, || {
        let (w, id) = (&w, &id);
        async move {
            let h = w.history(id).await;
            let waited = h.iter().any(|e| e["event"] == "reach_unknown");
            let delivered = h.iter().any(|e| e["event"] == "delivered");
            (waited && delivered).then_some(())
        }
    })
    .await;
    // Past the wait (1 s) and then some: the decision has been taken by now.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.body["escalationLevel"], 1, "{}", r.text);
    let history: Vec<Value> = w.history(&id).await;
    assert!(!history.iter().any(|e| e["event"] == "unreachable"), "reached through the alert manager: {history:?}");
    w.app.stop().await;
}

/// An alert manager reached over TLS (MLLP in TLS, its certificate checked against the
/// configured CA): the report arrives and is accepted.
#[tokio::test]
async fn an_alert_manager_over_tls_gets_the_reports() {
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/core-ca.pem");
    let w = World::with(|c| c.alarms.acm_ca = Some(ca)).await;
    let peer = AlertManagerPeer::start_tls().await;
    let r = w
        .as_("admin")
        .put("/api/alerts/alert-manager", json!({"address": format!("localhost:{}", peer.port), "tls": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tls"], true, "{}", r.text);
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let got = accepted(&peer, &simple(alert["id"].as_str().unwrap()), 1).await;
    assert_eq!(got[0]["problems"], json!([]), "{:?}", got[0]);
    w.app.stop().await;
}
