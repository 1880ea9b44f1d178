//! Alarms that reach a person whose app was not open at the instant (issue 31): a
//! subscriber gets their open, unanswered alarms when they subscribe, and a restart past a
//! tier's due time waits for apps to reconnect instead of recording everyone unreachable,
//! and still reaches the hospital's alert manager.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::alarms::{escalate_every, events, login_all, low_pressure, notes_topic, now_s, seed, World};
use crate::support::{
    eventually, free_port, AlertManagerPeer, Client, JsonClient, Service, SmtpServer, TestDb, LONG_WAIT,
};

fn of(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |m: &Value| m["alert"]["id"] == id
}

/// An SMTP server, and the alarms' world mailing through it, each channel given
/// `channel_wait_secs` to reach its person.
async fn mailing_world(channel_wait_secs: f64) -> (SmtpServer, World) {
    let port = free_port();
    let smtp = SmtpServer::start(port).await;
    let w = World::with(|c| {
        c.email.smtp_url = Some(nephrocare::config::Secret::new(format!("smtp://127.0.0.1:{port}")));
        c.alarms.channel_wait_secs = channel_wait_secs;
    })
    .await;
    (smtp, w)
}

#[tokio::test]
async fn a_subscriber_gets_their_open_unanswered_alarms_and_nobody_else_does() {
    let w = World::new().await;
    // Nobody is connected when the alarm is raised.
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let id = alert["id"].as_str().unwrap().to_owned();

    // Not concerned (tier 2 not reached, a patient, another hospital): nothing.
    let mut ward_doc = w.subscriber("ward_doc", "a").await;
    let mut pat = w.subscriber("pat", "a").await;
    let mut doc_b = w.subscriber("doc_b", "a").await;
    // The care team: the alarm, as `present`, at its tier, with everything they may see.
    let mut doc = w.subscriber("doc", "a").await;
    let note = doc.expect(&w.notes("doc"), "the open alarm", of(&id)).await;
    assert_eq!(
        (note["type"].as_str(), note["event"].as_str(), note["tier"].as_i64()),
        (Some("alert"), Some("present"), Some(1))
    );
    assert_eq!(note["alert"]["patientId"], json!(w.patient.to_string()), "{note}");
    let mut tec = w.subscriber("tec", "a").await;
    tec.expect(&w.notes("tec"), "the open alarm", of(&id)).await;
    // Negative checks: nothing comes within a second (the catch-up of each is one task).
    for (who, m) in [("ward_doc", &mut ward_doc), ("pat", &mut pat), ("doc_b", &mut doc_b)] {
        m.expect_silence(&w.notes(who), Duration::from_secs(1)).await;
    }
    // Answered: no longer sent.
    let r = w.as_("doc").post(&format!("/api/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut tec_again = w.subscriber("tec", "b").await;
    tec_again.expect_silence(&w.notes("tec"), Duration::from_secs(1)).await;

    // Escalated to the admins (nobody reachable: at once): an admin gets it in the
    // administrative view, at tier 3.
    w.escalate(1, &[2, 3]).await;
    w.reading(2, now_s(), w.patient, json!({"venousPressure": 450})).await;
    let venous = w.alert_where("venous_pressure_high", |a| a["escalationLevel"] == 3).await;
    let vid = venous["id"].as_str().unwrap().to_owned();
    let mut admin = w.subscriber("admin", "a").await;
    let note = admin.expect(&w.notes("admin"), "the escalated alarm", of(&vid)).await;
    assert_eq!((note["event"].as_str(), note["tier"].as_i64()), (Some("present"), Some(3)));
    assert!(note["alert"].get("patientId").is_none_or(Value::is_null), "administrative view: {note}");
    let mut ward_doc = w.subscriber("ward_doc", "b").await;
    ward_doc.expect(&w.notes("ward_doc"), "the escalated alarm", of(&vid)).await;
    w.app.stop().await;
}

/// The service is killed right after tier 1 and kept down past tier 2's due time. On the
/// restart, tier 2's people (persistent sessions, lost with the embedded core) reconnect
/// and get the alarm; nobody is recorded unreachable while the apps reconnect; tier 3 follows
/// on its timer and reaches the admin.
#[tokio::test]
async fn a_restart_past_a_tiers_due_time_reaches_its_people() {
    let db = TestDb::migrated().await;
    let (hospital, _, device, patient, _, users) = seed(&db).await;
    let grace = [("NEPHROCARE_ALARM_REACH_GRACE_SECS", "8")];
    let service = Service::start(&db, &grace);
    let client = Client::new(service.http.clone());
    let tokens = login_all(&client).await;
    escalate_every(&client.with_token(&tokens["admin"]), 3, &[2, 3]).await;
    let listen = |addr, who: &'static str| {
        let (user, token) = (users[who], tokens[who].clone());
        async move {
            let mut m = JsonClient::connect(addr, &format!("{user}-phone"), &user.to_string(), &token, false).await;
            assert!(matches!(
                m.subscribe(&notes_topic(hospital, user)).await,
                rumqttc::SubscribeReasonCode::Success(_)
            ));
            m
        }
    };
    // The care team is connected: tier 1 is reached and the timer runs.
    let mut doc = listen(service.mqtt, "doc").await;
    low_pressure(&client, &service, device, patient).await;
    let raised = doc.expect(&notes_topic(hospital, users["doc"]), "tier 1", |m| m["event"] == "raised").await;
    let id = raised["alert"]["id"].as_str().unwrap().to_owned();
    service.kill9();
    let killed = Instant::now();
    // Down past tier 2's due time (3 s after the raise): the point of the test, not a wait
    // for something to happen.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let service = Service::start(&db, &grace);
    assert!(killed.elapsed() > Duration::from_secs(3));
    // The apps reconnect 2 s later, as a phone's back-off would (part of the scenario, not
    // a wait for the service: it has already escalated to tier 2 by then, with nobody of
    // tier 2 connected). Their sessions went with the embedded core: they subscribe again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ward_doc = listen(service.mqtt, "ward_doc").await;
    let mut admin = listen(service.mqtt, "admin").await;
    let t2 = ward_doc.expect(&notes_topic(hospital, users["ward_doc"]), "tier 2", of(&id)).await;
    assert_eq!(t2["tier"], 2, "{t2}");
    let t3 = admin.expect(&notes_topic(hospital, users["admin"]), "tier 3", |m| of(&id)(m) && m["tier"] == 3).await;
    assert!(["escalated", "present"].contains(&t3["event"].as_str().unwrap()), "{t3}");

    let client = Client::new(service.http.clone());
    let tokens = login_all(&client).await;
    let doc_client = client.with_token(&tokens["doc"]);
    let history = eventually("tier 3 in the history", LONG_WAIT, || {
        let (c, id) = (&doc_client, &id);
        async move {
            let r = c.get(&format!("/api/alerts/{id}/history")).await;
            let h = r.body.as_array().cloned().unwrap_or_default();
            events(&h).contains(&("escalated".to_owned(), Some(3))).then_some(h)
        }
    })
    .await;
    let steps = events(&history);
    let escalations: Vec<_> = steps.iter().filter(|(e, _)| e == "escalated").collect();
    assert_eq!(escalations.len(), 2, "each tier once: {steps:?}");
    assert!(
        !steps.iter().any(|(e, _)| e == "unreachable"),
        "nobody recorded unreachable while their apps reconnected: {steps:?}"
    );
    let _: Uuid = users["doc"];
    drop(service);
}

/// Also at the hospital's alert manager, with every app closed: the service is killed once
/// the raise was reported and kept down past tier 2's due time. After the restart the
/// manager gets the escalation, once, after the start (the outbox is in the database).
#[tokio::test]
async fn a_restart_past_a_tiers_due_time_reaches_the_alert_manager_once() {
    let db = TestDb::migrated().await;
    let (_, _, device, patient, _, _) = seed(&db).await;
    let peer = AlertManagerPeer::start(0).await;
    let env = [("NEPHROCARE_ALARM_REACH_GRACE_SECS", "2")];
    let service = Service::start(&db, &env);
    let client = Client::new(service.http.clone());
    let tokens = login_all(&client).await;
    let admin = client.with_token(&tokens["admin"]);
    // One escalation only (tier 2), so "once" is a count.
    escalate_every(&admin, 3, &[2]).await;
    let r = admin.put("/api/alerts/alert-manager", json!({"address": format!("127.0.0.1:{}", peer.port)})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    low_pressure(&client, &service, device, patient).await;
    let doc = client.with_token(&tokens["doc"]);
    // The start is reported and its delivery stored (a kill before that would only resend
    // it after the lease).
    let id = eventually("the start delivered", LONG_WAIT, || {
        let doc = &doc;
        async move {
            let r = doc.get("/api/alerts?openOnly=true").await;
            let id =
                r.body["items"].as_array()?.iter().find(|a| a["code"] == "systolic_bp_low")?["id"].as_str()?.to_owned();
            let h = doc.get(&format!("/api/alerts/{id}/history")).await.body.as_array().cloned()?;
            h.iter().any(|e| e["event"] == "delivered").then_some(id)
        }
    })
    .await;
    service.kill9();
    let killed = Instant::now();
    // Down past tier 2's due time (3 s after the raise): the scenario, not a wait.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let service = Service::start(&db, &env);
    assert!(killed.elapsed() > Duration::from_secs(3));
    let simple = id.replace('-', "");
    let got = eventually("the escalation at the manager", LONG_WAIT, || {
        let (peer, simple) = (&peer, &simple);
        async move {
            let got: Vec<Value> = peer.received().into_iter().filter(|m| m["alert_id"] == simple.as_str()).collect();
            got.iter().any(|m| m["phase"] == "escalate" && m["ack"] == "AA").then_some(got)
        }
    })
    .await;
    let phases: Vec<&str> = got.iter().map(|m| m["phase"].as_str().unwrap_or("?")).collect();
    assert_eq!(phases, ["start", "escalate"], "in order, each once: {got:?}");
    for m in &got {
        assert_eq!(m["problems"], json!([]), "TF-2 checks: {m}");
    }
    // Its delivery is in the history after the restart, and nothing more is sent.
    let client = Client::new(service.http.clone());
    let tokens = login_all(&client).await;
    let doc = client.with_token(&tokens["doc"]);
    eventually("the escalation's delivery in the history", LONG_WAIT, || {
        let (doc, id) = (&doc, &id);
        async move {
            let h = doc.get(&format!("/api/alerts/{id}/history")).await.body.as_array().cloned()?;
            (h.iter().filter(|e| e["event"] == "delivered").count() == 2).then_some(())
        }
    })
    .await;
    assert_eq!(peer.received().into_iter().filter(|m| m["alert_id"] == simple.as_str()).count(), 2);
    drop(service);
}

/// Nobody reachable at any tier (every app closed): the alarm climbs at once and, with
/// nobody further, goes to the unit fallback — an e-mail without patient data and a report
/// for the charge nurse at the alert manager; the history says so.
#[tokio::test]
async fn an_alarm_that_reaches_nobody_goes_to_the_unit_fallback() {
    let (mut smtp, w) = mailing_world(0.5).await;
    // The alert manager rejects the reports (AR, parked at once, so each next report is
    // sent): its pagers reach nobody either.
    let peer = crate::support::AlertManagerPeer::start_in(0, "ar").await;
    let admin = w.as_("admin");
    let r = admin.put("/api/alerts/alert-manager", json!({"address": format!("127.0.0.1:{}", peer.port)})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = admin.put("/api/alerts/fallback", json!({"email": "not-an-address"})).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = w.as_("doc").put("/api/alerts/fallback", json!({"email": "charge@unit.example.org"})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = admin
        .put("/api/alerts/fallback", json!({"email": "charge@unit.example.org", "acmRecipient": "CHARGE-N"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    w.escalate(60, &[2, 3]).await;

    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |a| a["escalationLevel"] == 3).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let mail = smtp.next(Duration::from_secs(20)).await;
    assert_eq!(mail["to"], json!(["charge@unit.example.org"]), "{mail}");
    let (subject, body) = (mail["subject"].as_str().unwrap(), mail["body"].as_str().unwrap());
    assert!(subject.contains("[HIGH]") && subject.contains("Machine 1"), "{subject}");
    assert!(body.contains(&format!("/#/alarms/{id}")), "{body}");
    // The value as the alarm's message writes it, and the clinical message itself (a bare
    // "80" may occur in the alert's id or the link's port).
    for phi in ["Patient One", "p1", "80 mmHg", "Systolic blood pressure"] {
        assert!(!subject.contains(phi) && !body.contains(phi), "no patient data ({phi}): {subject} {body}");
    }
    let for_charge = eventually("the report for the charge nurse", LONG_WAIT, || {
        let (peer, id) = (&peer, id.replace('-', ""));
        async move {
            peer.received()
                .into_iter()
                .find(|m| m["alert_id"] == id.as_str() && m["raw"].as_str().is_some_and(|r| r.contains("CHARGE-N")))
        }
    })
    .await;
    assert_eq!(for_charge["problems"], json!([]), "TF-2 checks: {for_charge}");
    let history = w.history(&id).await;
    let fallback = history.iter().find(|e| e["event"] == "fallback").expect("a fallback step");
    assert_eq!(fallback["tier"], 3, "{fallback}");
    assert!(fallback["reason"]
        .as_str()
        .is_some_and(|r| r.contains("charge@unit.example.org") && r.contains("CHARGE-N")));
    w.app.stop().await;
}

/// A doctor who chose e-mail gets the alarm by mail with their app closed (no patient data),
/// and the SMTP server's acceptance counts as reaching them: the alarm waits for its timer.
/// A patient cannot choose it.
#[tokio::test]
async fn a_person_who_chose_email_is_reached_by_mail() {
    let (mut smtp, w) = mailing_world(1.0).await;
    let r = w.as_("pat").put("/api/alerts/email-preference", json!({"enabled": true})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_("doc").put("/api/alerts/email-preference", json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w.as_("doc").get("/api/alerts/email-preference").await;
    assert_eq!(r.body["enabled"], true, "{}", r.text);
    w.escalate(60, &[2, 3]).await;

    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let alert = w.alert_where("systolic_bp_low", |_| true).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let mail = smtp.next(Duration::from_secs(20)).await;
    assert_eq!(mail["to"], json!(["doc@alarms.test"]), "{mail}");
    let (subject, body) = (mail["subject"].as_str().unwrap(), mail["body"].as_str().unwrap());
    assert!(subject.contains("[HIGH]") && body.contains(&format!("/#/alarms/{id}")), "{subject} {body}");
    assert!(!body.contains("Patient One") && !body.contains("80 mmHg"), "no patient data: {body}");
    // Decided after the wait: reached by mail, so still at tier 1 on its timer.
    eventually("the e-mail's delivery in the history", LONG_WAIT, || {
        let (w, id) = (&w, &id);
        async move {
            let h = w.history(id).await;
            h.iter()
                .any(|e| e["event"] == "delivered" && e["reason"].as_str().is_some_and(|r| r.starts_with("email:")))
                .then_some(())
        }
    })
    .await;
    // Past the wait (1 s): the decision has been taken by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.body["escalationLevel"], 1, "{}", r.text);
    let history = w.history(&id).await;
    assert!(!history.iter().any(|e| e["event"] == "unreachable"), "reached by mail: {history:?}");
    w.app.stop().await;
}
