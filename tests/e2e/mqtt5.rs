//! MQTT 5 at the edge, checked with clients nobody here wrote: Eclipse Paho (paho-mqtt, MQTT
//! 5) and the mosquitto command-line clients (`-V 5`). Refusals come with their precise
//! reason codes and reason strings and leave the connection up; a revoked right ends a
//! subscriber with DISCONNECT 0x87; sessions expire; a notification past its relevance is
//! not delivered.

use std::time::Duration;

use serde_json::{json, Value};

use crate::alarms::escalate_every;
use crate::mqtt::mosquitto;
use crate::support::*;

/// MQTT 5 reason codes, as paho reports them.
const NOT_AUTHORIZED: u64 = 0x87;
const TOPIC_FILTER_INVALID: u64 = 0x8F;
const TOPIC_NAME_INVALID: u64 = 0x90;
const PAYLOAD_FORMAT_INVALID: u64 = 0x99;
const SHARED_NOT_SUPPORTED: u64 = 0x9E;
const IMPLEMENTATION_SPECIFIC: u64 = 0x83;

fn notifications(w: &World, who: &str) -> String {
    format!("nc/v1/h/{}/u/{}/notifications", w.id(hospital_of(who)), w.id(who))
}

fn user_property<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event["props"]["UserProperty"].as_array()?.iter().find(|kv| kv[0] == key).and_then(|kv| kv[1].as_str())
}

#[tokio::test]
async fn a_machine_is_told_why_a_reading_is_refused_and_stays_connected() {
    let w = World::new(TestApp::spawn().await).await;
    let (mut d1, connack) = Paho::connect(&w, "d1", "", json!({})).await;
    assert_eq!(connack["rc"], 0, "{connack}");
    let props = &connack["props"];
    assert_eq!(props["MaximumQoS"], 1, "{connack}");
    assert_eq!(props["ReceiveMaximum"], 64, "{connack}");
    assert_eq!(props["TopicAliasMaximum"], 32, "{connack}");
    assert_eq!(props["MaximumPacketSize"], 65536, "{connack}");
    assert_eq!(props["SharedSubscriptionAvailable"], 0, "{connack}");
    assert_eq!(props["SubscriptionIdentifierAvailable"], 0, "{connack}");
    let telemetry = w.topic("d1", "telemetry");

    let ack = d1.publish(&telemetry, &reading(1)).await;
    assert_eq!(ack["rc"], 0, "{ack}");
    assert_eq!(w.health_metrics("d1").await, 1, "acknowledged means stored");

    // A reading that breaks the contract: 0x99, why, and which field; nothing stored.
    let bad = json!({"v": 1, "seq": 2, "ts": now(), "systemStatus": "normal", "heartRate": 900}).to_string();
    let ack = d1.publish(&telemetry, &bad).await;
    assert_eq!(ack["rc"], PAYLOAD_FORMAT_INVALID, "{ack}");
    assert!(ack["props"]["ReasonString"].as_str().is_some_and(|s| s.contains("plausible range")), "{ack}");
    assert_eq!(user_property(&ack, "code"), Some("validation_failed"), "{ack}");
    assert_eq!(user_property(&ack, "field"), Some("heartRate"), "{ack}");

    // Its seq taken by another reading: 0x83, the conflict said.
    let other = json!({"v": 1, "seq": 1, "ts": now(), "systemStatus": "normal", "heartRate": 99}).to_string();
    let ack = d1.publish(&telemetry, &other).await;
    assert_eq!(ack["rc"], IMPLEMENTATION_SPECIFIC, "{ack}");
    assert_eq!(user_property(&ack, "code"), Some("seq_conflict"), "{ack}");

    // Another machine's topic: 0x87; not a topic of the contract: 0x90.
    let ack = d1.publish(&w.topic("d2", "telemetry"), &reading(3)).await;
    assert_eq!(ack["rc"], NOT_AUTHORIZED, "{ack}");
    assert!(ack["props"]["ReasonString"].is_string(), "{ack}");
    let ack = d1.publish("not/a/contract/topic", &reading(3)).await;
    assert_eq!(ack["rc"], TOPIC_NAME_INVALID, "{ack}");

    // Still connected: the next reading is stored.
    let ack = d1.publish(&telemetry, &reading(3)).await;
    assert_eq!(ack["rc"], 0, "{ack}");
    assert_eq!(w.health_metrics("d1").await, 2);
    d1.quiet(QUIET, "the machine stays connected", |e| e["event"] == "disconnect").await;
    assert_eq!(w.health_metrics("d2").await, 0);
    w.app.stop().await;
}

#[tokio::test]
async fn subscriptions_are_answered_filter_by_filter_with_their_reason_codes() {
    let w = World::new(TestApp::spawn().await).await;
    // Keep-alive none and no client id: the server assigns both. (MQTT 5 over WebSocket is
    // the dashboard's: MQTT.js in Chromium, scripts/browser-test.sh.)
    let extra = json!({"keepalive": 0, "client_id": ""});
    let (mut doc, connack) = Paho::connect(&w, "doc", "", extra).await;
    assert_eq!(connack["rc"], 0, "{connack}");
    assert_eq!(connack["props"]["ServerKeepAlive"], 1200, "{connack}");
    let assigned = connack["props"]["AssignedClientIdentifier"].as_str().unwrap_or_default();
    assert!(assigned.starts_with(&format!("{}-", w.id("doc"))), "{connack}");

    let ack = doc
        .subscribe(&[
            (&w.topic("d1", "telemetry"), 1),
            (&w.topic("d3", "telemetry"), 1),
            ("not/a/filter/#", 1),
            (&format!("$share/team/{}", w.topic("d1", "alerts")), 1),
            (&format!("$share/team/{}", w.topic("d3", "alerts")), 1),
        ])
        .await;
    let codes: Vec<u64> = ack["codes"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    let expected = vec![1, NOT_AUTHORIZED, TOPIC_FILTER_INVALID, 1, NOT_AUTHORIZED];
    assert_eq!(codes, expected, "{ack}");
    assert_eq!(connack["props"]["SharedSubscriptionAvailable"], 1, "{connack}");
    assert!(ack["props"]["ReasonString"].is_string(), "the refusals are explained: {ack}");
    w.app.stop().await;
}

#[tokio::test]
async fn a_shared_subscription_group_of_two_receives_each_message_once() {
    let w = World::new(TestApp::spawn().await).await;
    let telemetry = w.topic("d1", "telemetry");
    let group = format!("$share/ward/{telemetry}");
    let (mut a, _) = Paho::connect(&w, "doc", "-a", json!({})).await;
    let (mut b, _) = Paho::connect(&w, "tec", "-b", json!({})).await;
    assert_eq!(a.subscribe(&[(&group, 1)]).await["codes"], json!([1]));
    assert_eq!(b.subscribe(&[(&group, 1)]).await["codes"], json!([1]));
    // A machine cannot join: its session is kept by the edge, not the core.
    let (mut d1, connack) = Paho::connect(&w, "d1", "", json!({})).await;
    assert_eq!(connack["props"]["SharedSubscriptionAvailable"], 0, "{connack}");
    assert_eq!(
        d1.subscribe(&[(&format!("$share/g/{}", w.topic("d1", "errors")), 1)]).await["codes"],
        json!([SHARED_NOT_SUPPORTED])
    );

    for seq in 1..=6 {
        assert_eq!(d1.publish(&telemetry, &reading(seq)).await["rc"], 0);
    }
    let seq =
        |m: Value| serde_json::from_str::<Value>(m["payload"].as_str().unwrap()).unwrap()["seq"].as_i64().unwrap();
    let mut got = Vec::new();
    let mut per_member = [0, 0];
    while got.len() < 6 {
        tokio::select! {
            m = a.message() => { got.push(seq(m)); per_member[0] += 1; }
            m = b.message() => { got.push(seq(m)); per_member[1] += 1; }
        }
    }
    got.sort();
    assert_eq!(got, (1..=6).collect::<Vec<_>>(), "each message once to the group");
    assert!(per_member.iter().all(|n| *n > 0), "both members get a share: {per_member:?}");
    a.quiet(QUIET, "nothing twice", |e| e["event"] == "message").await;
    b.quiet(QUIET, "nothing twice", |e| e["event"] == "message").await;
    w.app.stop().await;
}

#[tokio::test]
async fn a_request_is_answered_on_its_response_topic_with_its_correlation_data() {
    let w = World::new(TestApp::spawn().await).await;
    let (mut d1, _) = Paho::connect(&w, "d1", "", json!({})).await;
    let (telemetry, errors) = (w.topic("d1", "telemetry"), w.topic("d1", "errors"));
    assert_eq!(d1.subscribe(&[(&errors, 1)]).await["codes"], json!([1]));
    let response = |m: &Value| serde_json::from_str::<Value>(m["payload"].as_str().unwrap_or("")).unwrap_or_default();
    let request = |payload: String, correlation: &str, to: &str| json!({"topic": telemetry, "payload": payload, "qos": 1, "response_topic": to, "correlation_data": correlation});

    // Stored: accepted, with the request's correlation data.
    assert_eq!(d1.publish_with(request(reading(1), "req-1", &errors)).await["rc"], 0);
    let m = d1.expect("the response", |e| e["event"] == "message" && e["props"]["CorrelationData"] == "req-1").await;
    assert_eq!((m["topic"].as_str(), m["qos"].as_u64()), (Some(errors.as_str()), Some(0)), "{m}");
    assert_eq!(response(&m)["type"], "response", "{m}");
    assert_eq!(response(&m)["outcome"], "accepted", "{m}");

    // Refused by the service: rejected, saying why.
    let bad = json!({"v": 1, "seq": 2, "ts": now(), "systemStatus": "normal", "heartRate": 900}).to_string();
    assert_eq!(d1.publish_with(request(bad, "req-2", &errors)).await["rc"], PAYLOAD_FORMAT_INVALID);
    let m = d1.expect("the response", |e| e["event"] == "message" && e["props"]["CorrelationData"] == "req-2").await;
    let body = response(&m);
    assert_eq!(
        (body["outcome"].as_str(), body["code"].as_str(), body["field"].as_str()),
        (Some("rejected"), Some("validation_failed"), Some("heartRate")),
        "{m}"
    );

    // A response topic this connection does not hold (another machine's): no response.
    assert_eq!(d1.publish_with(request(reading(3), "req-3", &w.topic("d2", "errors"))).await["rc"], 0);
    d1.quiet(QUIET, "no response elsewhere", |e| e["event"] == "message" && e["props"]["CorrelationData"] == "req-3")
        .await;
    w.app.stop().await;
}

#[tokio::test]
async fn a_revoked_right_ends_the_subscriber_with_disconnect_0x87() {
    let w = World::new(TestApp::spawn().await).await;
    let (mut doc, _) = Paho::connect(&w, "doc", "-v5", json!({})).await;
    assert_eq!(doc.subscribe(&[(&w.topic("d1", "telemetry"), 1)]).await["codes"], json!([1]));
    let unassign = Some(json!({"userId": w.id("doc"), "deviceId": w.id("d1")}));
    assert_eq!(w.as_user("adm").delete("/api/users/assign-device", unassign).await.status, 204);
    let gone = doc.expect("DISCONNECT", |e| e["event"] == "disconnect").await;
    assert_eq!(gone["rc"], NOT_AUTHORIZED, "{gone}");
    assert!(gone["props"]["ReasonString"].as_str().is_some_and(|s| s.contains("revoked")), "{gone}");
    w.app.stop().await;
}

#[tokio::test]
async fn a_session_is_kept_for_its_expiry_and_gone_after_it() {
    let w = World::new(TestApp::spawn().await).await;
    let (mut d1, _) = Paho::connect(&w, "d1", "", json!({})).await;
    let telemetry = w.topic("d1", "telemetry");
    let session = json!({"clean_start": false, "session_expiry": 3});
    let (mut doc, connack) = Paho::connect(&w, "doc", "-s", json!({"clean_start": true, "session_expiry": 3})).await;
    assert_eq!(connack["session_present"], false);
    assert_eq!(doc.subscribe(&[(&telemetry, 1)]).await["codes"], json!([1]));
    doc.disconnect();
    doc.expect("the goodbye", |e| e["event"] == "disconnect").await;

    // Away less than the expiry: the session resumes with what was queued meanwhile.
    assert_eq!(d1.publish(&telemetry, &reading(1)).await["rc"], 0);
    let (mut doc, connack) = Paho::connect(&w, "doc", "-s", session.clone()).await;
    assert_eq!(connack["session_present"], true, "{connack}");
    let m = doc.message().await;
    assert_eq!(serde_json::from_str::<Value>(m["payload"].as_str().unwrap()).unwrap()["seq"], 1, "{m}");
    doc.disconnect();
    doc.expect("the goodbye", |e| e["event"] == "disconnect").await;

    // Away longer: the time passing is what is tested.
    assert_eq!(d1.publish(&telemetry, &reading(2)).await["rc"], 0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (mut doc, connack) = Paho::connect(&w, "doc", "-s", session).await;
    assert_eq!(connack["session_present"], false, "expired: {connack}");
    doc.quiet(Duration::from_secs(1), "nothing of the expired session", |e| e["event"] == "message").await;
    w.app.stop().await;
}

#[tokio::test]
async fn a_session_expiry_beyond_the_servers_maximum_is_reduced_and_said() {
    let app = TestApp::spawn_with(|c| c.mqtt.max_session_expiry_secs = 60).await;
    let w = World::new(app).await;
    let (_doc, connack) = Paho::connect(&w, "doc", "", json!({"session_expiry": 3600})).await;
    assert_eq!(connack["rc"], 0);
    assert_eq!(connack["props"]["SessionExpiryInterval"], 60, "{connack}");
    w.app.stop().await;
}

#[tokio::test]
async fn a_phone_coming_back_is_not_told_a_stale_alarm_as_news() {
    let w = World::new(TestApp::spawn().await).await;
    escalate_every(&w.as_user("adm"), 2, &[2]).await;
    let notes = notifications(&w, "doc");
    let session = json!({"clean_start": false, "session_expiry": 600});
    let (mut doc, _) = Paho::connect(&w, "doc", "-phone", json!({"clean_start": true, "session_expiry": 600})).await;
    assert_eq!(doc.subscribe(&[(&notes, 1)]).await["codes"], json!([1]));
    doc.disconnect();
    doc.expect("the goodbye", |e| e["event"] == "disconnect").await;

    // While the phone is away, the machine reports danger: raised (news until it escalates,
    // 2 s later), then escalated to the ward's doctors, which the phone's owner hears too.
    let (mut d1, _) = Paho::connect(&w, "d1", "", json!({})).await;
    let danger = json!({"v": 1, "seq": 1, "ts": now(), "systemStatus": "danger", "heartRate": 70}).to_string();
    assert_eq!(d1.publish(&w.topic("d1", "telemetry"), &danger).await["rc"], 0);
    let raised_at: chrono::DateTime<chrono::Utc> =
        eventually("the alarm escalated and published", WAIT * 3, || async {
            let found: Vec<(i16, chrono::DateTime<chrono::Utc>)> =
                w.rows("SELECT escalation_level, raised_at FROM alerts WHERE device_id = $1::uuid", &["d1"]).await;
            let (level, raised) = found.first().copied()?;
            (level == 2 && alerts_published(&w, "d1").await).then_some(raised)
        })
        .await;
    // Nobody of tier 1 was reachable, so it escalated at once: the raise was news for the
    // least time a change is (5 s, topics.md "Message expiry"). The phone comes back after.
    let stale = raised_at + chrono::Duration::seconds(6) - chrono::Utc::now();
    tokio::time::sleep(stale.to_std().unwrap_or_default()).await;

    let (mut doc, connack) = Paho::connect(&w, "doc", "-phone", session).await;
    assert_eq!(connack["session_present"], true, "{connack}");
    let escalated = loop {
        let m = doc.message().await;
        let note: Value = serde_json::from_str(m["payload"].as_str().unwrap()).unwrap();
        assert_ne!(note["event"], "raised", "a raise past its relevance is not news: {m}");
        if note["event"] == "escalated" {
            break m;
        }
    };
    let left = escalated["props"]["MessageExpiryInterval"].as_u64().expect("the escalation says how long it is news");
    assert!((1..=900).contains(&left), "{escalated}");
    w.app.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_speak_mqtt_5_and_read_the_reason_codes() {
    let w = World::new(TestApp::spawn().await).await;
    let port = w.mqtt().port().to_string();
    let telemetry = w.topic("d1", "telemetry");
    let d1 = w.id("d1").to_owned();
    let publish = |payload: String| {
        let args = ["-h", "127.0.0.1", "-p", &port, "-V", "5", "-i", &d1, "-u", &d1, "-P", SECRET, "-t", &telemetry]
            .iter()
            .map(|s| s.to_string())
            .chain(["-q", "1", "-d", "-m"].map(String::from))
            .chain([payload])
            .collect();
        mosquitto("mosquitto_pub", args)
    };
    let out = publish(reading(1)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mosquitto_pub: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("received PUBACK (Mid: 1, RC:0)"), "{stdout}");
    assert_eq!(w.health_metrics("d1").await, 1);

    let bad = json!({"v": 1, "seq": 2, "ts": now(), "systemStatus": "normal", "heartRate": 900}).to_string();
    let out = publish(bad).await;
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("received PUBACK (Mid: 1, RC:153)"), "{printed}");
    assert_eq!(w.health_metrics("d1").await, 1);
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The access matrices of tests/e2e/mqtt.rs, at MQTT 5: the same decisions, said precisely.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_subscribe_matrix_holds_at_mqtt_5_with_its_reason_codes() {
    use crate::mqtt::{ACTORS, SUBSCRIBE_ROWS};
    let w = World::new(TestApp::spawn().await).await;
    for actor in ACTORS {
        let (mut c, connack) = Paho::connect(&w, actor, "-acl5", json!({})).await;
        assert_eq!(connack["rc"], 0, "{actor}: {connack}");
        let grants = |template: &str| {
            SUBSCRIBE_ROWS.iter().any(|(t, who)| *t == template && who.split_whitespace().any(|a| a == actor))
        };
        for (template, _) in SUBSCRIBE_ROWS {
            let filter = w.fill_for(template, actor);
            // Malformed filters paho will not send are the 3.1.1 matrix's (a raw client).
            let Some(ack) = c.try_subscribe(&[(&filter, 1)]).await else { continue };
            let code = ack["codes"][0].as_u64().unwrap();
            // MQTT 5 offers shared subscriptions: a person joins a group on what they may
            // subscribe to themselves.
            let granted = match template.strip_prefix("$share/g/") {
                Some(under) => !is_device(actor) && grants(under),
                None => grants(template),
            };
            if granted {
                assert_eq!(code, 1, "{actor} subscribing to {template} ({filter}): {ack}");
            } else {
                // Refused by the policy, not a filter of the contract (an id in capitals), or
                // a shared subscription from a machine.
                let refusals = [NOT_AUTHORIZED, TOPIC_FILTER_INVALID, SHARED_NOT_SUPPORTED];
                assert!(refusals.contains(&code), "{actor} on {template}: {ack}");
                assert!(ack["props"]["ReasonString"].is_string(), "{actor} on {template}: {ack}");
            }
        }
        c.disconnect();
    }
    w.app.stop().await;
}

#[tokio::test]
async fn the_publish_matrix_holds_at_mqtt_5_refusals_in_the_puback() {
    use crate::mqtt::PUBLISH_ROWS;
    let w = World::new(TestApp::spawn().await).await;
    // Watchers (MQTT 3.1.1) on every topic a refused publish aims at, as in the 3.1.1 matrix.
    let mut watchers = crate::mqtt::publish_watchers(&w).await;

    // One MQTT 5 connection per actor: a refusal does not end it.
    let mut clients = std::collections::HashMap::new();
    let mut qos2 = Vec::new();
    for (i, (actor, template, qos, acked)) in PUBLISH_ROWS.iter().enumerate() {
        let topic = w.fill(template);
        let payload = crate::mqtt::row_payload(i, template, *acked);
        if *qos == 2 {
            qos2.push((*actor, topic, payload));
            continue;
        }
        if !clients.contains_key(actor) {
            clients.insert(*actor, Paho::connect(&w, actor, "-pub5", json!({})).await.0);
        }
        let c = clients.get_mut(actor).unwrap();
        let cmd = json!({"topic": topic, "payload": payload, "qos": qos});
        // Topics paho will not publish on (wildcards) are the 3.1.1 matrix's (a raw client).
        let Some(ack) = c.try_publish(cmd).await else { continue };
        if *qos == 0 {
            continue;
        }
        let rc = ack["rc"].as_u64().unwrap();
        if *acked {
            // Permitted: stored, or (a session end with no session running) answered as a
            // payload the service refuses, as 3.1.1 acknowledges it with an error.
            assert!([0, PAYLOAD_FORMAT_INVALID].contains(&rc), "{actor} on {template}: {ack}");
        } else {
            assert!([NOT_AUTHORIZED, TOPIC_NAME_INVALID].contains(&rc), "{actor} on {template} ({topic}): {ack}");
        }
    }
    for (actor, c) in &mut clients {
        c.quiet(QUIET, &format!("{actor} stays connected"), |e| e["event"] == "disconnect").await;
    }
    // Maximum QoS is 1: a QoS 2 publish is a protocol error (DISCONNECT 0x9B).
    drop(clients);
    for (actor, topic, payload) in qos2 {
        let (mut c, _) = Paho::connect(&w, actor, "-q2", json!({})).await;
        c.send(json!({"op": "publish", "topic": topic, "payload": payload, "qos": 2}));
        let gone = c.expect("DISCONNECT", |e| e["event"] == "disconnect").await;
        assert_eq!(gone["rc"], 0x9B, "{actor} at QoS 2 on {topic}: {gone}");
    }

    // Nothing refused reached anyone; what was permitted did.
    for (who, c) in &mut watchers {
        for p in c.collect(QUIET).await {
            assert!(!String::from_utf8_lossy(&p.payload).contains("forged"), "{who} received a refused publish: {p:?}");
        }
    }
    w.app.stop().await;
}

/// The revocation triggers of tests/e2e/mqtt.rs and sessions.rs, at MQTT 5: each ends the
/// connection it concerns with DISCONNECT 0x87 and a reason string; a persistent session
/// resumed after its right ended brings back nothing of it.
#[tokio::test]
async fn every_revocation_trigger_ends_an_mqtt_5_connection_with_0x87() {
    let w = World::new(TestApp::spawn().await).await;
    let t1 = w.topic("d1", "telemetry");
    let adm = w.as_user("adm");
    let cut =
        |e: &Value| e["event"] == "disconnect" && e["rc"] == NOT_AUTHORIZED && e["props"]["ReasonString"].is_string();

    // A hand-over revoked.
    let id = grant(&w).await;
    let (mut tec2, _) = Paho::connect(&w, "tec2", "", json!({})).await;
    assert_eq!(tec2.subscribe(&[(&t1, 1)]).await["codes"], json!([1]));
    assert_eq!(w.as_user("tec").delete(&format!("/api/devices/temporary-access/{id}"), None).await.status, 204);
    tec2.expect("DISCONNECT 0x87 (hand-over revoked)", cut).await;

    // A persistent session left while its right ends: resumed, it brings back nothing of it
    // and is told which subscription ended.
    let notes = notifications(&w, "tec");
    let keep = json!({"clean_start": true, "session_expiry": 600});
    let (mut tec, _) = Paho::connect(&w, "tec", "-phone", keep).await;
    assert_eq!(tec.subscribe(&[(&t1, 1), (&notes, 1)]).await["codes"], json!([1, 1]));
    tec.disconnect();
    tec.expect("the goodbye", |e| e["event"] == "disconnect").await;
    let unassign = Some(json!({"userId": w.id("tec"), "deviceId": w.id("d1")}));
    assert_eq!(adm.delete("/api/users/assign-device", unassign).await.status, 204);
    let (mut d1, _) = Paho::connect(&w, "d1", "", json!({})).await;
    assert_eq!(d1.publish(&t1, &reading(1)).await["rc"], 0);
    let (mut tec, connack) =
        Paho::connect(&w, "tec", "-phone", json!({"clean_start": false, "session_expiry": 600})).await;
    assert_eq!(connack["session_present"], true, "{connack}");
    let ended = tec.expect("subscription_ended", |e| e["event"] == "message" && e["topic"] == notes.as_str()).await;
    assert!(ended["payload"].as_str().is_some_and(|p| p.contains("subscription_ended")), "{ended}");
    tec.quiet(QUIET, "nothing of d1 after the right ended", |e| e["event"] == "message" && e["topic"] == t1.as_str())
        .await;

    // An account deactivated; a logout; a machine's secret rotated; a machine retired.
    let (mut pat2, _) = Paho::connect(&w, "pat2", "", json!({})).await;
    assert_eq!(adm.post(&format!("/api/users/{}/deactivate", w.id("pat2")), json!({})).await.status, 200);
    pat2.expect("DISCONNECT 0x87 (deactivated)", cut).await;
    let (mut doc, _) = Paho::connect(&w, "doc", "", json!({})).await;
    assert_eq!(w.app.client.post("/api/auth/logout", json!({"refreshToken": w.refresh["doc"]})).await.status, 204);
    doc.expect("DISCONNECT 0x87 (logout)", cut).await;
    assert_eq!(adm.post(&format!("/api/devices/{}/rotate-secret", w.id("d1")), json!({})).await.status, 200);
    d1.expect("DISCONNECT 0x87 (secret rotated)", cut).await;
    let (mut d2, _) = Paho::connect(&w, "d2", "", json!({})).await;
    assert_eq!(
        adm.put(&format!("/api/devices/{}/status", w.id("d2")), json!({"status": "inactive"})).await.status,
        200
    );
    d2.expect("DISCONNECT 0x87 (retired)", cut).await;
    w.app.stop().await;
}
