//! FHIR Subscriptions (R4, Backport IG, rest-hook), the subscriber played by Python's own HTTP
//! server validating every notification with fhir.resources (`tests/peers/rest_hook.py`): a
//! handshake on creation; a treatment that ends arrives once, full-resource, with the
//! subscriber's header; a receiver down for a while gets every notification once, in order,
//! numbered without gaps; heartbeats; and the authorization matrix: a notification carries
//! only what its owner may read when it is sent (also after a right ended), a subscription
//! is its owner's (and its hospital's admins'), and another hospital never hears of it.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::alarms::{now_s, World};
use crate::records::treat;
use crate::support::{eventually, free_port, Client, RestHookPeer, LONG_WAIT};

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
const TREATMENT_ENDED: &str = "urn:nephrocare:fhir:SubscriptionTopic:treatment-ended";
const ALARM: &str = "urn:nephrocare:fhir:SubscriptionTopic:alarm";

async fn world() -> World {
    World::with(|c| {
        c.fhir.rest_hook_allow_internal = true;
        c.outbox.retry_min_secs = 0.2;
        c.outbox.retry_max_secs = 0.5;
        c.outbox.max_attempts = 100;
    })
    .await
}

fn subscription(topic: &str, endpoint: &str, content: &str, filter: Option<String>) -> Value {
    let mut s = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "chart the treatment",
        "criteria": topic,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"), "valueCode": content}]},
            "header": ["Authorization: Bearer hook-secret"],
        },
    });
    if let Some(f) = filter {
        s["_criteria"] =
            json!({"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": f}]});
    }
    s
}

/// Creates a subscription as `c`; returns its id.
async fn subscribe(c: &Client, body: Value) -> String {
    let r = c.post("/fhir/r4/Subscription", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "requested", "{}", r.text);
    let id = r.body["id"].as_str().expect("an id").to_owned();
    let location = r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(location.ends_with(&format!("/fhir/r4/Subscription/{id}")), "{location}");
    id
}

/// The notifications the hook received for subscription `id` (of `kind`, if given), once
/// there are at least `n`; none of them with a problem.
async fn notified(hook: &RestHookPeer, id: &str, kind: Option<&str>, n: usize) -> Vec<Value> {
    let got = eventually(&format!("{n} {kind:?} notifications of {id}"), LONG_WAIT, || async move {
        let got: Vec<Value> = hook
            .received()
            .into_iter()
            .filter(|r| r["subscription"].as_str().is_some_and(|s| s.ends_with(id)))
            .filter(|r| kind.is_none_or(|k| r["type"] == k))
            .collect();
        (got.len() >= n).then_some(got)
    })
    .await;
    for r in &got {
        assert_eq!(r["problems"], json!([]), "{r}");
    }
    got
}

async fn subscription_status(c: &Client, id: &str) -> Value {
    let r = c.get(&format!("/fhir/r4/Subscription/{id}/$status")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let params = &r.body["entry"][0]["resource"]["parameter"];
    let get =
        |name: &str| params.as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or(Value::Null);
    json!({"status": get("status")["valueCode"], "since": get("events-since-subscription-start")["valueString"],
           "type": get("type")["valueCode"]})
}

#[tokio::test]
async fn a_treatment_that_ends_is_notified_once_with_its_resources_and_heartbeats_follow() {
    let w = world().await;
    let hook = RestHookPeer::start(0, 200).await;
    let doc = w.as_("doc");
    let mut body = subscription(TREATMENT_ENDED, &hook.url("/hook"), "full-resource", None);
    body["channel"]["extension"] =
        json!([{"url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": 10}]);
    let id = subscribe(&doc, body).await;

    let handshake = notified(&hook, &id, Some("handshake"), 1).await;
    assert_eq!((handshake[0]["status"].as_str(), handshake[0]["since_start"].as_str()), (Some("requested"), Some("0")));
    assert_eq!(handshake[0]["authorization"], "Bearer hook-secret", "the subscriber's header");
    assert_eq!(handshake[0]["topic"], TREATMENT_ENDED);
    eventually("active after its handshake", LONG_WAIT, || async {
        (doc.get(&format!("/fhir/r4/Subscription/{id}")).await.body["status"] == "active").then_some(())
    })
    .await;
    let read = doc.get(&format!("/fhir/r4/Subscription/{id}")).await;
    assert_eq!(read.body["channel"]["header"], json!(["Authorization: (set, not shown)"]), "{}", read.text);

    let mut dev = w.device().await;
    let session = treat(&w, &mut dev, w.patient, now_s() - chrono::Duration::minutes(10), &[120, 95, 130]).await;
    let events = notified(&hook, &id, Some("event-notification"), 1).await;
    let e = &events[0];
    assert_eq!(
        (e["number"].as_str(), e["since_start"].as_str(), e["status"].as_str()),
        (Some("1"), Some("1"), Some("active")),
        "{e}"
    );
    let session = Uuid::parse_str(&session).unwrap();
    assert!(e["focus"].as_str().unwrap().ends_with(&format!("/fhir/r4/Procedure/{session}")), "{e}");
    let entries = e["entries"].as_array().unwrap();
    assert_eq!(entries[0]["type"], "Procedure", "{e}");
    assert_eq!(entries[0]["resource"]["status"], "completed", "{e}");
    assert_eq!(entries[0]["resource"]["subject"]["reference"], format!("Patient/{}", w.patient), "{e}");
    assert!(entries.iter().skip(1).all(|x| x["type"] == "Observation") && entries.len() >= 3, "its summaries: {e}");
    assert_eq!(subscription_status(&doc, &id).await, json!({"status": "active", "since": "1", "type": "query-status"}));

    // A heartbeat once nothing was sent for its period (10 s).
    notified(&hook, &id, Some("heartbeat"), 1).await;
    assert_eq!(notified(&hook, &id, Some("event-notification"), 1).await.len(), 1, "the event was sent once");

    // Deleted: gone, and nothing more is sent.
    assert_eq!(doc.delete(&format!("/fhir/r4/Subscription/{id}"), None).await.status, 204);
    assert_eq!(doc.get(&format!("/fhir/r4/Subscription/{id}")).await.status, 404);
    let before = hook.received().len();
    treat(&w, &mut dev, w.patient2, now_s() - chrono::Duration::minutes(5), &[121]).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(hook.received().len(), before, "nothing after the delete");
    w.app.stop().await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_notification_once_in_order() {
    let w = world().await;
    let port = free_port();
    let doc = w.as_("doc");
    let url = format!("http://127.0.0.1:{port}/hook");
    let id = subscribe(&doc, subscription(TREATMENT_ENDED, &url, "id-only", None)).await;
    let mut dev = w.device().await;
    let t0 = now_s() - chrono::Duration::minutes(30);
    let mut sessions = Vec::new();
    for (i, p) in [w.patient, w.patient2, w.patient].into_iter().enumerate() {
        let s = treat(&w, &mut dev, p, t0 + chrono::Duration::minutes(5 * i as i64), &[110 + i as i64]).await;
        sessions.push(Uuid::parse_str(&s).unwrap());
    }
    // Down: the handshake is tried again and again, and the error shows in $status.
    eventually("a failed attempt recorded", LONG_WAIT, || async {
        let s = doc.get(&format!("/fhir/r4/Subscription/{id}")).await;
        s.body["error"].as_str().is_some_and(|e| e.contains("connect")).then_some(())
    })
    .await;
    let hook = RestHookPeer::start(port, 200).await;
    let got = notified(&hook, &id, None, 4).await;
    let kinds: Vec<&str> = got.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["handshake", "event-notification", "event-notification", "event-notification"]);
    let numbers: Vec<&str> = got[1..].iter().map(|r| r["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["1", "2", "3"], "numbered in order, no gap");
    for (r, s) in got[1..].iter().zip(&sessions) {
        assert!(r["focus"].as_str().unwrap().ends_with(&format!("/Procedure/{s}")), "in the order they ended: {r}");
        let entries = r["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "id-only: the focus's URL: {r}");
        assert_eq!(entries[0]["resource"], Value::Null, "id-only carries no resource: {r}");
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(hook.received().len(), 4, "each once");
    // An endpoint that refuses (4xx) is given up: the subscription is in error.
    let mut hook = hook;
    hook.answer(410).await;
    treat(&w, &mut dev, w.patient2, t0 + chrono::Duration::minutes(20), &[115]).await;
    eventually("the subscription in error", LONG_WAIT, || async {
        let s = doc.get(&format!("/fhir/r4/Subscription/{id}")).await;
        (s.body["status"] == "error" && s.body["error"] == "HTTP 410").then_some(())
    })
    .await;
    w.app.stop().await;
}

/// Whether `who`'s subscription got a DetectedIssue of `alert`, and the event numbers it got.
fn alarm_events(hook: &RestHookPeer, sub: &str) -> Vec<Value> {
    hook.received()
        .into_iter()
        .filter(|r| r["subscription"].as_str().is_some_and(|s| s.ends_with(sub)) && r["type"] == "event-notification")
        .collect()
}

#[tokio::test]
async fn notifications_carry_only_what_the_owner_may_read_when_sent() {
    let w = world().await;
    let hook = RestHookPeer::start(0, 200).await;
    let url = hook.url("/alarms");
    let full = |filter: Option<String>| subscription(ALARM, &url, "full-resource", filter);

    // Filters name only what the subscriber may read; another hospital's does not exist.
    let other = w
        .as_("doc_b")
        .post("/fhir/r4/Subscription", full(Some(format!("DetectedIssue?patient=Patient/{}", w.patient))))
        .await;
    assert_eq!((other.status, other.body["resourceType"].as_str()), (404, Some("OperationOutcome")), "{}", other.text);
    let pat = w
        .as_("pat")
        .post("/fhir/r4/Subscription", full(Some(format!("DetectedIssue?patient=Patient/{}", w.patient2))))
        .await;
    assert!([403, 404].contains(&pat.status), "{}", pat.text);
    let bad = w.as_("doc").post("/fhir/r4/Subscription", subscription("Patient?name=x", &url, "id-only", None)).await;
    assert_eq!((bad.status, bad.body["issue"][0]["code"].as_str()), (400, Some("invalid")), "{}", bad.text);
    assert!(bad.text.contains("criteria"), "{}", bad.text);
    let not_one = w.as_("doc").post("/fhir/r4/Subscription", json!([])).await;
    assert_eq!((not_one.status, not_one.body["issue"][0]["code"].as_str()), (400, Some("invalid")), "{}", not_one.text);
    let mut no_https = full(None);
    no_https["channel"]["endpoint"] = json!("ftp://emr.example/hook");
    let r = w.as_("doc").post("/fhir/r4/Subscription", no_https).await;
    assert!(r.status == 400 && r.text.contains("channel.endpoint"), "{}", r.text);
    let no_token = Client::new(w.app.client.base.clone()).post("/fhir/r4/Subscription", full(None)).await;
    assert_eq!(no_token.status, 401);

    let mut subs = std::collections::HashMap::new();
    for who in ["doc", "tec", "pat", "admin", "doc_b"] {
        let filter = (who == "pat").then(|| format!("DetectedIssue?patient=Patient/{}", w.patient));
        let id = subscribe(&w.as_(who), full(filter)).await;
        notified(&hook, &id, Some("handshake"), 1).await;
        subs.insert(who, id);
    }
    // A subscription is its owner's and its hospital's admins'; nobody else knows of it.
    let doc_sub = format!("/fhir/r4/Subscription/{}", subs["doc"]);
    for (who, status) in [("doc", 200), ("admin", 200), ("tec", 404), ("pat", 404), ("admin_b", 404), ("doc_b", 404)] {
        assert_eq!(w.as_(who).get(&doc_sub).await.status, status, "{who} reads doc's subscription");
        assert_eq!(w.as_(who).get(&format!("{doc_sub}/$status")).await.status, status, "{who} reads its $status");
    }
    assert_eq!(w.as_("tec").delete(&doc_sub, None).await.status, 404);
    let listed = w.as_("tec").get("/fhir/r4/Subscription").await;
    assert_eq!(listed.body["entry"].as_array().map(Vec::len), Some(1), "tec lists its own: {}", listed.text);
    let listed = w.as_("admin").get("/fhir/r4/Subscription").await;
    assert_eq!(
        listed.body["entry"].as_array().map(Vec::len),
        Some(4),
        "the admin lists the hospital's: {}",
        listed.text
    );

    // An alarm of patient 1 on the machine (tier 1, not escalated), raised while the
    // technician is assigned.
    let t = now_s();
    w.reading(t.timestamp() * 10, t, w.patient, json!({"bloodPressure": 80})).await;
    let first = notified(&hook, &subs["doc"], Some("event-notification"), 1).await;
    let issue = &first[0]["entries"][0]["resource"];
    assert_eq!(
        (issue["resourceType"].as_str(), issue["severity"].as_str()),
        (Some("DetectedIssue"), Some("high")),
        "{issue}"
    );
    assert_eq!(issue["patient"]["reference"], format!("Patient/{}", w.patient), "{issue}");
    for who in ["tec", "pat"] {
        let got = notified(&hook, &subs[who], Some("event-notification"), 1).await;
        assert_eq!(got[0]["number"], "1", "{who}: {}", got[0]);
        assert_eq!(got[0]["entries"][0]["resource"]["id"], issue["id"], "{who}");
    }

    // The technician's assignment ends: the next alarm is not theirs to read, and is not sent.
    let r = w
        .as_("admin")
        .delete("/api/users/assign-device", Some(json!({"userId": w.users["tec"], "deviceId": w.device})))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let t2 = t + chrono::Duration::seconds(2);
    w.reading(t2.timestamp() * 10 + 1, t2, w.patient, json!({"venousPressure": 450})).await;
    let second = notified(&hook, &subs["doc"], Some("event-notification"), 2).await;
    assert_eq!(second[1]["number"], "2", "{}", second[1]);
    let pat_got = notified(&hook, &subs["pat"], Some("event-notification"), 2).await;
    assert_eq!(pat_got[1]["number"], "2");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(alarm_events(&hook, &subs["tec"]).len(), 1, "nothing after the assignment ended");
    // Not escalated to the admins: withheld; another hospital never hears of it.
    assert!(alarm_events(&hook, &subs["admin"]).is_empty(), "the admin got an alarm not escalated to it");
    assert!(alarm_events(&hook, &subs["doc_b"]).is_empty(), "another hospital got an alarm");
    let (tec, admin) = (Uuid::parse_str(&subs["tec"]).unwrap(), Uuid::parse_str(&subs["admin"]).unwrap());
    eventually("what they may not read decided (withheld), not left pending", LONG_WAIT, || async {
        let mut c = w.app.db.sql().await;
        let (pending, withheld): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'pending'),
                    count(*) FILTER (WHERE state = 'sent' AND payload LIKE '%event-notification%')
               FROM outbox WHERE channel = 'fhir' AND ordering_key = ANY($1)",
        )
        .bind(vec![tec, admin])
        .fetch_one(&mut c)
        .await
        .unwrap();
        (pending == 0 && withheld >= 3).then_some(())
    })
    .await;
    assert_eq!(subscription_status(&w.as_("tec"), &subs["tec"]).await["since"], "1", "withheld is not numbered");
    w.app.stop().await;
}
