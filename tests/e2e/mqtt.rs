//! MQTT end to end: real clients (rumqttc over TCP and WebSocket, raw MQTT 3.1.1 packets
//! over a TcpStream, and the mosquitto command-line clients) against the broker embedded in
//! the service.
//!
//! - the topic ACL as a matrix (roles × topics × wildcard tricks) for SUBSCRIBE (exact SUBACK
//!   code per filter, alone and mixed in one packet) and PUBLISH (PUBACK, or disconnected),
//!   and that no message of another device (or a refused publish) ever reaches anyone;
//! - CONNACK codes for bad credentials, retired identities and client ids not bound to the
//!   identity, and that nobody can take over another identity's client id;
//! - live revocation within a second, one test per trigger;
//! - presence: the retained status, the last will on abrupt loss, devices.online/last_seen;
//! - interoperability with mosquitto_pub/mosquitto_sub and MQTT over WebSocket;
//! - "acknowledged means stored", with a test sink: no PUBACK while storage holds the
//!   message, PUBACKs in publish order, none on failure, and the resend after reconnecting;
//! - invalid telemetry through the real ingest: PUBACK, an error on the device's errors
//!   topic naming the field, nothing stored.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nc_messaging::{DeviceMessage, SinkFuture, SinkOutcome, SinkUnavailable, TelemetrySink};
use rumqttc::{
    Connect, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
    Transport,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::support::{
    self, assert_cut, assert_cut_by, body, end_assignments_in_sql, exec, grant, hospital_of, now, options, reading,
    reading_for, EventClient, Outcome, RawClient, TestApp, World, CUT, GRANTED, PASSWORD, QUIET, REFUSED, SECRET, WAIT,
};

// ---------------------------------------------------------------------------------------
// 1. The ACL matrix.
// ---------------------------------------------------------------------------------------

/// Who subscribes and publishes in the matrices.
pub(crate) const ACTORS: [&str; 10] = ["d1", "d2", "d3", "doc", "doc2", "tec", "pat", "pat2", "adm", "docB"];

/// (filter template, the actors granted it; every other actor is refused). `{self}` and
/// `{selfh}` are the actor's own id and hospital.
pub(crate) const SUBSCRIBE_ROWS: &[(&str, &str)] = &[
    // The channels of device d1 (hospital A): its doctors and technicians; status also to
    // staff who may view it and to the patient on it. A patient never subscribes to a
    // machine's clinical channels (a machine treats several patients over time).
    ("nc/v1/h/{ha}/d/{d1}/telemetry", "doc tec"),
    ("nc/v1/h/{ha}/d/{d1}/status", "doc doc2 tec pat adm"),
    ("nc/v1/h/{ha}/d/{d1}/session", "doc tec"),
    ("nc/v1/h/{ha}/d/{d1}/alerts", "doc tec"),
    ("nc/v1/h/{ha}/d/{d1}/errors", "d1 doc tec"),
    ("nc/v1/h/{ha}/d/{d1}/#", "doc tec"),
    ("nc/v1/h/{ha}/d/{d1}/+", "doc tec"),
    // Another device of hospital A.
    ("nc/v1/h/{ha}/d/{d2}/telemetry", ""),
    ("nc/v1/h/{ha}/d/{d2}/status", "doc doc2 tec pat2 adm"),
    ("nc/v1/h/{ha}/d/{d2}/errors", "d2"),
    ("nc/v1/h/{ha}/d/{d2}/#", ""),
    // A patient's own treatment: the patient and the doctors who may read them.
    ("nc/v1/h/{ha}/p/{p1}/telemetry", "doc pat"),
    ("nc/v1/h/{ha}/p/{p1}/session", "doc pat"),
    ("nc/v1/h/{ha}/p/{p1}/alerts", "doc pat"),
    ("nc/v1/h/{ha}/p/{p1}/#", "doc pat"),
    ("nc/v1/h/{ha}/p/{p1}/+", "doc pat"),
    ("nc/v1/h/{ha}/p/{p2}/telemetry", "pat2"),
    ("nc/v1/h/{ha}/p/{p2}/#", "pat2"),
    ("nc/v1/h/{hb}/p/{p1}/telemetry", ""),
    ("nc/v1/h/{ha}/p/+/telemetry", ""),
    ("nc/v1/h/{ha}/p/#", ""),
    ("nc/v1/h/{ha}/p/{p1}/errors", ""),
    // The device of hospital B, under its own hospital and under the other one.
    ("nc/v1/h/{hb}/d/{d3}/telemetry", "docB"),
    ("nc/v1/h/{hb}/d/{d3}/status", "docB"),
    ("nc/v1/h/{hb}/d/{d3}/errors", "d3 docB"),
    ("nc/v1/h/{ha}/d/{d3}/telemetry", ""),
    ("nc/v1/h/{ha}/d/{d3}/status", ""),
    ("nc/v1/h/{hb}/d/{d1}/telemetry", ""),
    // Notifications: one's own only.
    ("nc/v1/h/{selfh}/u/{self}/notifications", "doc doc2 tec pat pat2 adm docB"),
    ("nc/v1/h/{ha}/u/{doc}/notifications", "doc"),
    ("nc/v1/h/{hb}/u/{doc}/notifications", ""),
    // Chat room r1 (doc and pat take part).
    ("nc/v1/h/{ha}/chat/{r1}/messages", "doc pat"),
    ("nc/v1/h/{ha}/chat/{r1}/typing", "doc pat"),
    ("nc/v1/h/{ha}/chat/{r1}/read", "doc pat"),
    ("nc/v1/h/{ha}/chat/{r1}/#", "doc pat"),
    // Nothing is delivered on a room's post topic (topics.md: "may subscribe: nobody").
    ("nc/v1/h/{ha}/chat/{r1}/post", ""),
    ("nc/v1/h/{hb}/chat/{r1}/messages", ""),
    // Wildcards above a device, room or user, and everything else that is not a contract topic.
    ("#", ""),
    ("+", ""),
    ("+/#", ""),
    ("nc/#", ""),
    ("nc/v1/#", ""),
    ("nc/v1/h/{ha}/#", ""),
    ("nc/v1/h/+/#", ""),
    ("nc/v1/h/+/d/{d1}/telemetry", ""),
    ("nc/v1/h/{ha}/d/#", ""),
    ("nc/v1/h/{ha}/d/+/telemetry", ""),
    ("nc/v1/h/{ha}/d/+/#", ""),
    ("nc/v1/h/{ha}/d/+/+", ""),
    ("nc/v1/h/{ha}/u/+/notifications", ""),
    ("nc/v1/h/{ha}/u/{doc}/#", ""),
    ("nc/v1/h/{ha}/chat/+/messages", ""),
    ("nc/v1/h/{ha}/chat/#", ""),
    ("nc/v1/h/{ha}/d/{d1}/telemetry/#", ""),
    ("nc/v1/h/{ha}/d/{d1}/telemetry/+", ""),
    ("$SYS/#", ""),
    ("$SYS/broker/clients/connected", ""),
    ("$share/g/nc/v1/h/{ha}/d/{d1}/telemetry", ""),
    ("$share/g/#", ""),
    ("$queue/nc/v1/h/{ha}/d/{d1}/telemetry", ""),
    // Ids with wildcard characters in them, malformed ids and levels.
    ("nc/v1/h/{ha}/d/{d1}+/telemetry", ""),
    ("nc/v1/h/{ha}/d/+{d1}/telemetry", ""),
    ("nc/v1/h/{ha}/d/{d1}#", ""),
    ("nc/v1/h/{ha}#/d/{d1}/telemetry", ""),
    ("nc/v1/h/{ha}/d/{d1}/tele+", ""),
    ("nc/v1/h/{ha}/d/{d1}/telemetry#", ""),
    ("nc/v1/h/{ha}/d/not-a-uuid/telemetry", ""),
    ("nc/v1/h/{ha}/d/{d1}//telemetry", ""),
    ("nc/v1/h/{ha}/d/{d1}/telemetry/extra", ""),
    ("nc/v1/h/{ha}/d/{d1}/firmware", ""),
    ("nc/v2/h/{ha}/d/{d1}/telemetry", ""),
    ("/nc/v1/h/{ha}/d/{d1}/telemetry", ""),
    // Ids not in their canonical (lower-case) form: the core routes on strings, so these
    // would match nothing the device or the service publishes.
    ("nc/v1/h/{ha}/d/{^d1}/telemetry", ""),
    ("nc/v1/h/{^ha}/d/{d1}/status", ""),
    ("nc/v1/h/{ha}/d/{^d1}/#", ""),
    ("nc/v1/h/{ha}/chat/{^r1}/messages", ""),
    ("nc/v1/h/{selfh}/u/{^self}/notifications", ""),
];

impl World {
    pub(crate) fn fill_for(&self, template: &str, actor: &str) -> String {
        self.fill(&template.replace("{selfh}", self.id(hospital_of(actor))).replace("{self}", self.id(actor)))
    }
}

#[tokio::test]
async fn subscribe_acl_matrix_answers_the_exact_suback_code_per_filter() {
    let w = World::new(TestApp::spawn().await).await;
    for actor in ACTORS {
        let mut c = w.raw(actor, "-acl").await;
        let mut expected = Vec::new();
        for (template, granted) in SUBSCRIBE_ROWS {
            let filter = w.fill_for(template, actor);
            let want = if granted.split_whitespace().any(|a| a == actor) { GRANTED } else { REFUSED };
            let got = c.subscribe(&[(filter.clone(), QoS::AtLeastOnce)]).await;
            assert_eq!(got, vec![want], "{actor} subscribing to {template} ({filter})");
            expected.push(want);
        }
        // All of them again in one packet, at QoS 0, 1 and 2 in turn: every filter gets its
        // own answer, in order; the granted QoS is at most 1.
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        let filters: Vec<(String, QoS)> =
            SUBSCRIBE_ROWS.iter().enumerate().map(|(i, (t, _))| (w.fill_for(t, actor), qos[i % 3])).collect();
        let expected: Vec<SubscribeReasonCode> = expected
            .iter()
            .enumerate()
            .map(|(i, code)| match code {
                SubscribeReasonCode::Success(_) if i % 3 == 0 => SubscribeReasonCode::Success(QoS::AtMostOnce),
                other => *other,
            })
            .collect();
        assert_eq!(c.subscribe(&filters).await, expected, "{actor}: one SUBSCRIBE with every filter");
        c.disconnect().await;
    }

    // A mixed packet from the assigned doctor: denied filters first, between and last.
    let mut doc = w.raw("doc", "-mixed").await;
    let mixed = [
        ("#", QoS::AtLeastOnce),
        ("nc/v1/h/{ha}/d/{d1}/telemetry", QoS::AtLeastOnce),
        ("nc/v1/h/{ha}/d/{d2}/telemetry", QoS::AtLeastOnce),
        ("nc/v1/h/{ha}/d/{d1}/status", QoS::AtMostOnce),
        ("$SYS/#", QoS::AtMostOnce),
        ("nc/v1/h/{ha}/d/{d1}/#", QoS::ExactlyOnce),
        ("$share/g/nc/v1/h/{ha}/d/{d1}/telemetry", QoS::AtLeastOnce),
    ];
    let filters: Vec<(String, QoS)> = mixed.iter().map(|(t, q)| (w.fill(t), *q)).collect();
    assert_eq!(
        doc.subscribe(&filters).await,
        vec![REFUSED, GRANTED, REFUSED, SubscribeReasonCode::Success(QoS::AtMostOnce), REFUSED, GRANTED, REFUSED]
    );
    // A packet where everything is refused is answered too (never forwarded to the core).
    let all_bad = vec![("#".to_owned(), QoS::AtLeastOnce), (w.fill("nc/v1/h/{hb}/d/{d3}/telemetry"), QoS::AtMostOnce)];
    assert_eq!(doc.subscribe(&all_bad).await, vec![REFUSED, REFUSED]);
    doc.disconnect().await;
    w.app.stop().await;
}

/// (actor, topic template, QoS, whether the publish is acknowledged; otherwise the
/// connection ends). Payloads of refused publishes say "forged".
pub(crate) const PUBLISH_ROWS: &[(&str, &str, u8, bool)] = &[
    // A device publishes its own telemetry and session messages, nothing else.
    ("d1", "nc/v1/h/{ha}/d/{d1}/telemetry", 1, true),
    ("d1", "nc/v1/h/{ha}/d/{d1}/telemetry", 0, true),
    ("d1", "nc/v1/h/{ha}/d/{d1}/session", 1, true),
    ("d1", "nc/v1/h/{ha}/d/{d1}/telemetry", 2, false),
    ("d1", "nc/v1/h/{ha}/d/{d1}/status", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{d1}/alerts", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{d1}/errors", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{d2}/telemetry", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{d2}/session", 1, false),
    ("d1", "nc/v1/h/{hb}/d/{d3}/telemetry", 1, false),
    ("d1", "nc/v1/h/{hb}/d/{d1}/telemetry", 1, false),
    ("d1", "nc/v1/h/{ha}/u/{doc}/notifications", 1, false),
    ("d1", "nc/v1/h/{ha}/chat/{r1}/typing", 1, false),
    ("d1", "nc/v1/h/{ha}/d/+/telemetry", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{d1}/#", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{d1}/telemetry/extra", 1, false),
    ("d1", "$SYS/broker/uptime", 1, false),
    ("d1", "nc/v1/h/{ha}/d/{^d1}/telemetry", 1, false),
    ("d1", "nc/v1/h/{^ha}/d/{d1}/session", 1, false),
    ("d2", "nc/v1/h/{ha}/d/{d1}/telemetry", 1, false),
    ("d3", "nc/v1/h/{hb}/d/{d3}/telemetry", 1, true),
    ("d3", "nc/v1/h/{ha}/d/{d1}/telemetry", 1, false),
    // People publish typing indicators in their rooms, nothing else.
    ("doc", "nc/v1/h/{ha}/chat/{r1}/typing", 1, true),
    ("pat", "nc/v1/h/{ha}/chat/{r1}/typing", 1, true),
    ("doc", "nc/v1/h/{ha}/chat/{r1}/messages", 1, false),
    ("doc", "nc/v1/h/{ha}/chat/{r1}/read", 1, false),
    ("doc", "nc/v1/h/{ha}/d/{d1}/telemetry", 1, false),
    ("doc", "nc/v1/h/{ha}/d/{d1}/status", 1, false),
    ("doc", "nc/v1/h/{ha}/d/{d1}/alerts", 1, false),
    ("doc", "nc/v1/h/{ha}/u/{doc}/notifications", 1, false),
    ("doc", "nc/v1/h/{ha}/u/{pat}/notifications", 1, false),
    ("doc2", "nc/v1/h/{ha}/chat/{r1}/typing", 1, false),
    ("tec", "nc/v1/h/{ha}/d/{d1}/session", 1, false),
    ("pat", "nc/v1/h/{ha}/d/{d1}/telemetry", 1, false),
    ("pat", "nc/v1/h/{ha}/p/{p1}/telemetry", 1, false),
    ("d1", "nc/v1/h/{ha}/p/{p1}/telemetry", 1, false),
    ("doc", "nc/v1/h/{ha}/p/{p1}/alerts", 1, false),
    ("pat2", "nc/v1/h/{ha}/d/{d2}/telemetry", 1, false),
    ("adm", "nc/v1/h/{ha}/d/{d1}/status", 1, false),
    ("docB", "nc/v1/h/{ha}/chat/{r1}/typing", 1, false),
    ("docB", "nc/v1/h/{hb}/d/{d3}/alerts", 1, false),
];

/// What row `i` of [`PUBLISH_ROWS`] publishes: a valid message where it is permitted, a
/// payload saying "forged" where it is not.
pub(crate) fn row_payload(i: usize, template: &str, acked: bool) -> String {
    if !acked {
        json!({"forged": true, "seq": 900 + i}).to_string()
    } else if template.ends_with("/telemetry") {
        reading(i as i64)
    } else if template.ends_with("/session") {
        json!({"v": 1, "event": "end", "ts": now()}).to_string()
    } else {
        json!({"v": 1, "typing": true}).to_string()
    }
}

/// Watchers on every topic a refused publish of [`PUBLISH_ROWS`] aims at (as far as anyone
/// may watch it).
pub(crate) async fn publish_watchers(w: &World) -> Vec<(&'static str, EventClient)> {
    let mut watchers = Vec::new();
    for (who, filters) in [
        ("doc", vec!["nc/v1/h/{ha}/d/{d1}/#", "nc/v1/h/{ha}/chat/{r1}/#", "nc/v1/h/{ha}/u/{doc}/notifications"]),
        ("pat", vec!["nc/v1/h/{ha}/u/{pat}/notifications", "nc/v1/h/{ha}/p/{p1}/#"]),
        ("pat2", vec!["nc/v1/h/{ha}/p/{p2}/#"]),
        ("docB", vec!["nc/v1/h/{hb}/d/{d3}/#"]),
    ] {
        let mut c = w.connect(who, "-watch").await;
        let filters: Vec<String> = filters.iter().map(|f| w.fill(f)).collect();
        let subs: Vec<(&str, QoS)> = filters.iter().map(|f| (f.as_str(), QoS::AtLeastOnce)).collect();
        assert_eq!(c.subscribe(&subs).await, vec![GRANTED; subs.len()], "{who} watches {filters:?}");
        watchers.push((who, c));
    }
    watchers
}

#[tokio::test]
async fn publish_acl_matrix_acknowledges_permitted_publishes_and_disconnects_the_rest() {
    let w = World::new(TestApp::spawn().await).await;
    let mut watchers = publish_watchers(&w).await;

    for (i, (actor, template, qos, acked)) in PUBLISH_ROWS.iter().enumerate() {
        let topic = w.fill(template);
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let payload = row_payload(i, template, *acked);
        let mut c = w.raw(actor, &format!("-pub{i}")).await;
        if qos == QoS::AtMostOnce {
            // Nothing to acknowledge: the connection stays up (a PINGREQ is answered).
            c.send(Packet::Publish(Publish::new(topic.as_str(), qos, payload.into_bytes()))).await.unwrap();
            c.send(Packet::PingReq).await.unwrap();
            let pong = c.expect("PINGRESP", |p| matches!(p, Packet::PingResp).then_some(())).await;
            assert!(pong.is_ok(), "{actor} QoS 0 on {template}: {pong:?}");
            c.disconnect().await;
            continue;
        }
        let outcome = c.publish(&topic, payload.as_bytes(), qos).await;
        let expected = if *acked { Outcome::Acked } else { Outcome::Disconnected };
        assert_eq!(outcome, expected, "{actor} publishing at {qos:?} on {template} ({topic})");
        if *acked {
            c.disconnect().await;
        }
    }

    // Nothing refused reached anyone; what was permitted did (so the watchers work).
    let mut seen = HashMap::new();
    for (who, c) in &mut watchers {
        let got = c.collect(QUIET).await;
        for p in &got {
            assert!(!String::from_utf8_lossy(&p.payload).contains("forged"), "{who} received a refused publish: {p:?}");
        }
        seen.insert(*who, got);
    }
    let topics = |who: &str| seen[who].iter().map(|p| p.topic.clone()).collect::<Vec<_>>();
    assert!(topics("doc").contains(&w.topic("d1", "telemetry")), "{:?}", topics("doc"));
    assert!(topics("doc").contains(&w.fill("nc/v1/h/{ha}/chat/{r1}/typing")), "{:?}", topics("doc"));
    assert!(topics("docB").contains(&w.topic("d3", "telemetry")), "{:?}", topics("docB"));
    w.app.stop().await;
}

#[tokio::test]
async fn no_subscriber_ever_receives_another_devices_messages() {
    let w = World::new(TestApp::spawn().await).await;
    let mut doc = w.connect("doc", "").await;
    let (t1, all1) = (w.topic("d1", "telemetry"), w.fill("nc/v1/h/{ha}/d/{d1}/#"));
    assert_eq!(doc.subscribe(&[(&t1, QoS::AtLeastOnce), (&all1, QoS::AtLeastOnce)]).await, vec![GRANTED, GRANTED]);
    let mut pat2 = w.connect("pat2", "").await;
    let t2 = w.topic("d2", "telemetry");
    let own2 = w.fill("nc/v1/h/{ha}/p/{p2}/telemetry");
    assert_eq!(pat2.subscribe(&[(&own2, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut doc_b = w.connect("docB", "").await;
    let all3 = w.fill("nc/v1/h/{hb}/d/{d3}/#");
    assert_eq!(doc_b.subscribe(&[(&all3, QoS::AtLeastOnce)]).await, vec![GRANTED]);

    let mut d2 = w.connect("d2", "").await;
    let mut d3 = w.connect("d3", "").await;
    let mut d1 = w.connect("d1", "").await;
    d2.publish_acked(&t2, reading_for(22, w.id("p2"))).await;
    d3.publish_acked(&w.topic("d3", "telemetry"), reading(33)).await;
    assert_eq!(body(&pat2.message(&own2, WAIT).await)["seq"], 22, "the control: d2's reading reaches its patient");
    assert_eq!(body(&doc_b.message(&w.topic("d3", "telemetry"), WAIT).await)["seq"], 33);
    d1.publish_acked(&t1, reading(11)).await;
    assert_eq!(body(&doc.message(&t1, WAIT).await)["seq"], 11);

    let prefix = |d: &str| format!("nc/v1/h/{}/d/{}/", w.id(hospital_of(d)), w.id(d));
    for (who, c, device) in [("doc", &mut doc, "d1"), ("docB", &mut doc_b, "d3")] {
        for p in c.collect(QUIET).await {
            assert!(p.topic.starts_with(&prefix(device)), "{who} received {}: {:?}", p.topic, body(&p));
        }
    }
    for p in pat2.collect(QUIET).await {
        assert!(p.topic.starts_with(&w.fill("nc/v1/h/{ha}/p/{p2}/")), "pat2 received {}: {:?}", p.topic, body(&p));
    }
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Credentials and client ids.
// ---------------------------------------------------------------------------------------

/// A login session (refresh-token family): one of `user`'s if `own`, else somebody else's.
async fn login_session(w: &World, user: &str, own: bool) -> String {
    let op = if own { "=" } else { "<>" };
    let sql = format!("SELECT family_id::text FROM refresh_tokens WHERE user_id {op} $1::uuid LIMIT 1");
    let mut c = w.app.db.sql().await;
    sqlx::query_scalar(&sql).bind(user).fetch_one(&mut c).await.unwrap()
}

#[tokio::test]
async fn bad_credentials_retired_identities_and_foreign_client_ids_are_refused_with_their_connack_code() {
    let w = World::new(TestApp::spawn().await).await;
    let addr = w.mqtt();
    let (d1, d2, doc, doc2) = (w.id("d1"), w.id("d2"), w.id("doc"), w.id("doc2"));
    let refused = |r: Result<RawClient, ConnectReturnCode>| r.err();
    use ConnectReturnCode::*;

    // Control: the right credentials connect.
    w.raw("d1", "").await.disconnect().await;
    w.raw("doc", "-phone1").await.disconnect().await;

    // Wrong secrets and tokens: 4.
    assert_eq!(refused(RawClient::connect(addr, d1, Some((d1, "wrong-secret"))).await), Some(BadUserNamePassword));
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(refused(RawClient::connect(addr, &unknown, Some((&unknown, SECRET))).await), Some(BadUserNamePassword));
    assert_eq!(refused(RawClient::connect(addr, d1, Some(("not-a-uuid", SECRET))).await), Some(BadUserNamePassword));
    assert_eq!(refused(RawClient::connect(addr, doc, Some((doc, "garbage"))).await), Some(BadUserNamePassword));
    assert_eq!(
        refused(RawClient::connect(addr, doc, Some((doc, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"))).await),
        Some(BadUserNamePassword)
    );
    // Another person's valid token under one's own user name.
    assert_eq!(refused(RawClient::connect(addr, doc, Some((doc, &w.access["doc2"]))).await), Some(BadUserNamePassword));
    // A correctly signed token that has expired.
    let keys = nc_access::token::TokenKeys::new(
        support::test_config("postgres://unused/x").auth.jwt_secret.expose().as_bytes(),
        900,
    );
    let t = Utc::now().timestamp();
    let expired = keys.sign_raw(
        &Default::default(),
        &json!({
            "sub": doc, "role": "doctor", "hid": w.id("ha"), "sid": uuid::Uuid::new_v4().to_string(),
            "jti": uuid::Uuid::new_v4().to_string(), "iss": "nephrocare", "aud": "nephrocare", "iat": t - 1200, "exp": t - 300,
        }),
    );
    assert_eq!(refused(RawClient::connect(addr, doc, Some((doc, &expired))).await), Some(BadUserNamePassword));
    // The same claims, not expired, naming doc's login session: the control that only the
    // expiry made the difference.
    let session = login_session(&w, doc, true).await;
    let signed = |sid: &str| {
        keys.sign_raw(
            &Default::default(),
            &json!({
                "sub": doc, "role": "doctor", "hid": w.id("ha"), "sid": sid,
                "jti": uuid::Uuid::new_v4().to_string(), "iss": "nephrocare", "aud": "nephrocare", "iat": t, "exp": t + 300,
            }),
        )
    };
    RawClient::connect(addr, doc, Some((doc, &signed(&session))))
        .await
        .expect("the unexpired twin connects")
        .disconnect()
        .await;
    // Correctly signed, but naming a login session that does not exist, or another person's.
    let made_up = signed(&uuid::Uuid::new_v4().to_string());
    assert_eq!(refused(RawClient::connect(addr, doc, Some((doc, &made_up))).await), Some(NotAuthorized));
    let theirs = login_session(&w, doc, false).await;
    assert_eq!(refused(RawClient::connect(addr, doc, Some((doc, &signed(&theirs)))).await), Some(NotAuthorized));
    // rumqttc sees the same code.
    match EventClient::connect(options(addr, d1, d1, "wrong-secret"), false).await {
        Err(ConnectionError::ConnectionRefused(code)) => assert_eq!(code, BadUserNamePassword),
        Err(e) => panic!("expected CONNACK 4, got {e}"),
        Ok(_) => panic!("a wrong secret connected"),
    }

    // MQTT allows keep-alive 0 (none): such a client is served like any other.
    let mut connect = Connect::new(d1);
    connect.keep_alive = 0;
    connect.set_login(d1, SECRET);
    let mut no_keepalive = RawClient::open(addr, connect).await.expect("keep-alive 0 is accepted");
    assert_eq!(
        no_keepalive.publish(&w.topic("d1", "telemetry"), reading(0).as_bytes(), QoS::AtLeastOnce).await,
        Outcome::Acked
    );
    no_keepalive.disconnect().await;

    // No credentials: 5.
    assert_eq!(refused(RawClient::connect(addr, d1, None).await), Some(NotAuthorized));

    // Client ids not bound to the identity: 2.
    for (client_id, user, pass) in [
        (format!("{d1}-x"), d1, SECRET),
        (d2.to_owned(), d1, SECRET),
        (String::new(), d1, SECRET),
        (doc2.to_owned(), doc, w.access["doc"].as_str()),
        (format!("{doc}-"), doc, w.access["doc"].as_str()),
        (format!("{doc}-a_b"), doc, w.access["doc"].as_str()),
        (format!("{doc}-{}", "a".repeat(24)), doc, w.access["doc"].as_str()),
        (format!("{doc}phone"), doc, w.access["doc"].as_str()),
        (format!("x{doc}"), doc, w.access["doc"].as_str()),
    ] {
        assert_eq!(
            refused(RawClient::connect(addr, &client_id, Some((user, pass))).await),
            Some(BadClientId),
            "client id {client_id:?}"
        );
    }
    let longest = format!("{doc}-{}", "a1".repeat(11) + "z");
    RawClient::connect(addr, &longest, Some((doc, &w.access["doc"])))
        .await
        .expect("23 characters are allowed")
        .disconnect()
        .await;

    // Takeover: while d1 is connected, neither a person nor another device can use its client id.
    let mut device = w.connect("d1", "").await;
    assert_eq!(refused(RawClient::connect(addr, d1, Some((doc, &w.access["doc"]))).await), Some(BadClientId));
    assert_eq!(refused(RawClient::connect(addr, d1, Some((d2, SECRET))).await), Some(BadClientId));
    match EventClient::connect(options(addr, d1, doc, &w.access["doc"]), false).await {
        Err(ConnectionError::ConnectionRefused(code)) => assert_eq!(code, BadClientId),
        Err(e) => panic!("expected CONNACK 2, got {e}"),
        Ok(_) => panic!("a person took over a device's client id"),
    }
    // ...and d1 is still connected, its session intact.
    device.publish_acked(&w.topic("d1", "telemetry"), reading(1)).await;
    device.quiet(QUIET, "d1 after the takeover attempts", |_| false).await;

    // Deactivated person, retired device: 5, with the right credentials; a wrong secret stays 4.
    let mut c = w.app.db.sql().await;
    exec(&mut c, &format!("UPDATE users SET is_active = false, deactivated_at = now() WHERE id = '{doc2}'")).await;
    assert_eq!(refused(RawClient::connect(addr, doc2, Some((doc2, &w.access["doc2"]))).await), Some(NotAuthorized));
    exec(&mut c, &format!("UPDATE devices SET status = 'inactive' WHERE id = '{d2}'")).await;
    assert_eq!(refused(RawClient::connect(addr, d2, Some((d2, SECRET))).await), Some(NotAuthorized));
    assert_eq!(refused(RawClient::connect(addr, d2, Some((d2, "wrong-secret"))).await), Some(BadUserNamePassword));
    // A device in maintenance may still connect.
    exec(&mut c, &format!("UPDATE devices SET status = 'maintenance' WHERE id = '{d2}'")).await;
    w.raw("d2", "").await.disconnect().await;
    drop(device);
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. Revocation within a second.
// ---------------------------------------------------------------------------------------

/// `who` connected (a person's client id gets `suffix`) and asking for d1's telemetry: the
/// client, and the broker's answer.
async fn d1_telemetry(w: &World, who: &str, suffix: &str) -> (EventClient, SubscribeReasonCode) {
    let mut c = w.connect(who, suffix).await;
    let codes = c.subscribe(&[(&w.topic("d1", "telemetry"), QoS::AtLeastOnce)]).await;
    assert_eq!(codes.len(), 1, "{who}: one SUBACK code");
    (c, codes[0])
}

/// `who` connected and subscribed to d1's telemetry.
pub(crate) async fn reader(w: &World, who: &str) -> EventClient {
    let (c, code) = d1_telemetry(w, who, "").await;
    assert_eq!(code, GRANTED, "{who}");
    c
}

#[tokio::test]
async fn revocation_an_ended_assignment_disconnects_within_a_second() {
    let w = World::new(TestApp::spawn().await).await;
    let mut doc = reader(&w, "doc").await;
    let mut tec = reader(&w, "tec").await;
    let unassign = Some(json!({"userId": w.id("doc"), "deviceId": w.id("d1")}));
    let adm = w.as_user("adm");
    assert_cut_by(&mut doc, adm.delete("/api/users/assign-device", unassign), 204, "assignment ended").await;
    // The technician still assigned is untouched.
    tec.quiet(QUIET, "the technician still assigned", |_| false).await;
    assert_eq!(tec.subscribe(&[(&w.topic("d1", "alerts"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    // The doctor may reconnect, but no longer read d1.
    let (_doc, code) = d1_telemetry(&w, "doc", "").await;
    assert_eq!(code, REFUSED);

    // The same through SQL (another instance, a script): the trigger is in the database.
    let mut c = w.app.db.sql().await;
    let started = Instant::now();
    end_assignments_in_sql(&mut c, w.id("tec")).await;
    assert_cut(&mut tec, started, "assignment ended in SQL").await;
    w.app.stop().await;
}

#[tokio::test]
async fn revocation_a_revoked_temporary_grant_disconnects_within_a_second() {
    let w = World::new(TestApp::spawn().await).await;
    let (mut before, code) = d1_telemetry(&w, "tec2", "-before").await;
    assert_eq!(code, REFUSED);
    let id = grant(&w).await;
    let mut tec2 = reader(&w, "tec2").await;
    let revoke = format!("/api/devices/temporary-access/{id}");
    assert_cut_by(&mut tec2, w.as_user("tec").delete(&revoke, None), 204, "grant revoked").await;
    // A connection that rests on no grant stays.
    before.quiet(QUIET, "tec2's connection without the grant", |_| false).await;
    w.app.stop().await;
}

#[tokio::test]
async fn revocation_an_expiring_temporary_grant_disconnects_within_a_second_of_its_expiry() {
    let w = World::new(TestApp::spawn().await).await;
    let mut tec2 = w.connect("tec2", "").await;
    let mut c = w.app.db.sql().await;
    let expires: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO temporary_access_grants (id, hospital_id, device_id, granted_to, granted_by, expires_at)
         VALUES (gen_random_uuid(), $1::uuid, $2::uuid, $3::uuid, $4::uuid, now() + interval '2 seconds') RETURNING expires_at",
    )
    .bind(w.id("ha"))
    .bind(w.id("d1"))
    .bind(w.id("tec2"))
    .bind(w.id("tec"))
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(tec2.subscribe(&[(&w.topic("d1", "telemetry"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let (_, wall) = tec2.closed(WAIT, "grant expiry").await;
    let lag = (wall - expires).to_std();
    println!("grant expiry: disconnected {} ms after expires_at", (wall - expires).num_milliseconds());
    let lag = lag.unwrap_or_else(|_| panic!("disconnected {} before the grant expired", expires - wall));
    assert!(lag < CUT, "disconnected only {lag:?} after the grant expired");
    assert_eq!(d1_telemetry(&w, "tec2", "").await.1, REFUSED, "reconnecting does not bring the access back");
    w.app.stop().await;
}

#[tokio::test]
async fn revocation_a_deactivated_user_is_disconnected_within_a_second() {
    let w = World::new(TestApp::spawn().await).await;
    let mut doc = w.connect("doc", "").await;
    let deactivate = format!("/api/users/{}/deactivate", w.id("doc"));
    assert_cut_by(&mut doc, w.as_user("adm").post(&deactivate, json!({})), 200, "user deactivated").await;
    let code = RawClient::connect(w.mqtt(), w.id("doc"), Some((w.id("doc"), &w.access["doc"]))).await.err();
    assert_eq!(code, Some(ConnectReturnCode::NotAuthorized));
    w.app.stop().await;
}

#[tokio::test]
async fn revocation_logout_disconnects_that_login_session_within_a_second() {
    let w = World::new(TestApp::spawn().await).await;
    let mut doc = reader(&w, "doc").await;
    // Another login session of the same person is not ended by this logout.
    let other = w.app.client.post("/api/auth/login", json!({"email": "doc@mqtt.test", "password": PASSWORD})).await;
    assert_eq!(other.status, 200);
    let other_token = other.body["accessToken"].as_str().unwrap();
    let mut other =
        EventClient::connect(options(w.mqtt(), &format!("{}-tablet", w.id("doc")), w.id("doc"), other_token), false)
            .await
            .expect("the second session connects");
    let logout = w.app.client.post("/api/auth/logout", json!({"refreshToken": w.refresh["doc"]}));
    assert_cut_by(&mut doc, logout, 204, "logout").await;
    other.quiet(QUIET, "the other login session", |_| false).await;
    let code = RawClient::connect(w.mqtt(), w.id("doc"), Some((w.id("doc"), &w.access["doc"]))).await.err();
    assert_eq!(code, Some(ConnectReturnCode::NotAuthorized), "the logged-out token no longer connects");
    w.app.stop().await;
}

#[tokio::test]
async fn revocation_a_retired_device_is_disconnected_within_a_second() {
    let w = World::new(TestApp::spawn().await).await;
    let status = w.topic("d1", "status");
    let mut d1 = w.connect("d1", "").await;
    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    assert_eq!(body(&doc.message(&status, WAIT).await)["state"], "online");
    let retire = format!("/api/devices/{}/status", w.id("d1"));
    assert_cut_by(&mut d1, w.as_user("adm").put(&retire, json!({"status": "inactive"})), 200, "device retired").await;
    // The connection's own "online" may arrive live after the retained one: skip it.
    let mut offline = body(&doc.message(&status, WAIT).await);
    if offline["state"] == "online" {
        offline = body(&doc.message(&status, WAIT).await);
    }
    assert_eq!(
        (offline["state"].as_str(), offline["reason"].as_str()),
        (Some("offline"), Some("revoked")),
        "{offline}"
    );
    // The retained status says so too (the last will must not overwrite it).
    let mut late = w.connect("doc", "-late").await;
    assert_eq!(late.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let retained = body(&late.message(&status, WAIT).await);
    assert_eq!(retained["reason"], "revoked", "{retained}");
    assert!(!w.presence("d1").await.0, "devices.online after retirement");
    let code = RawClient::connect(w.mqtt(), w.id("d1"), Some((w.id("d1"), SECRET))).await.err();
    assert_eq!(code, Some(ConnectReturnCode::NotAuthorized));
    w.app.stop().await;
}

#[tokio::test]
async fn revocation_a_rotated_device_secret_disconnects_within_a_second() {
    let w = World::new(TestApp::spawn().await).await;
    let (addr, id) = (w.mqtt(), w.id("d1"));
    let mut d1 = w.connect("d1", "").await;
    let rotate = format!("/api/devices/{id}/rotate-secret");
    let (r, _) = assert_cut_by(&mut d1, w.as_user("adm").post(&rotate, json!({})), 200, "secret rotated").await;
    assert_eq!(
        RawClient::connect(addr, id, Some((id, SECRET))).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    let secret = r.body["secret"].as_str().expect("the new secret");
    let mut d1 = EventClient::connect(options(addr, id, id, secret), false).await.expect("the new secret connects");
    d1.publish_acked(&w.topic("d1", "telemetry"), reading(1)).await;
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. Presence: retained status, last will, devices.online / last_seen.
// ---------------------------------------------------------------------------------------

/// The next status message on `status`, asserted to be `state` for `reason`.
pub(crate) async fn expect_status(c: &mut EventClient, status: &str, state: &str, reason: &str) -> Value {
    let b = body(&c.message(status, WAIT).await);
    assert_eq!((b["state"].as_str(), b["reason"].as_str()), (Some(state), Some(reason)), "{b}");
    b
}

#[tokio::test]
async fn device_status_is_retained_and_an_abrupt_loss_is_announced() {
    let w = World::new(TestApp::spawn().await).await;
    let status = w.topic("d1", "status");
    assert_eq!(w.presence("d1").await, (false, None));

    // A subscriber arriving after the device connected gets the retained "online".
    let d1 = w.connect("d1", "").await;
    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    expect_status(&mut doc, &status, "online", "connected").await;
    let (online, seen_online) = w.presence("d1").await;
    assert!(online && seen_online.is_some(), "devices.online and last_seen after connecting");

    // Abrupt loss: the event loop (and its socket) dropped without DISCONNECT. With one
    // node the edge keeps a machine's session and announces the loss itself, with its time.
    d1.kill();
    let lost = body(&doc.message(&status, WAIT).await);
    assert_eq!(
        (&lost["v"], &lost["state"], &lost["reason"]),
        (&json!(1), &json!("offline"), &json!("connection_lost"))
    );
    assert!(lost["at"].as_str().is_some_and(|t| t.parse::<DateTime<Utc>>().is_ok()), "{lost}");
    let (online, seen_offline) = w.presence("d1").await;
    assert!(!online, "devices.online after the loss");
    assert!(seen_offline >= seen_online, "last_seen moves forward: {seen_online:?} -> {seen_offline:?}");
    // ...and it is retained.
    let mut late = w.connect("doc", "-late1").await;
    assert_eq!(late.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    expect_status(&mut late, &status, "offline", "connection_lost").await;

    // The same when a raw TCP connection is closed without DISCONNECT.
    let raw = w.raw("d1", "").await;
    expect_status(&mut doc, &status, "online", "connected").await;
    drop(raw);
    expect_status(&mut doc, &status, "offline", "connection_lost").await;

    // A graceful DISCONNECT: "disconnected", retained, and no will afterwards.
    let mut d1 = w.connect("d1", "").await;
    expect_status(&mut doc, &status, "online", "connected").await;
    d1.client.disconnect().await.unwrap();
    d1.closed(WAIT, "after DISCONNECT").await;
    expect_status(&mut doc, &status, "offline", "disconnected").await;
    assert!(!w.presence("d1").await.0, "devices.online after DISCONNECT");
    let mut late = w.connect("doc", "-late2").await;
    assert_eq!(late.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    expect_status(&mut late, &status, "offline", "disconnected").await;
    let more = doc.collect(QUIET).await;
    assert!(more.is_empty(), "nothing after the graceful offline: {:?}", more.iter().map(body).collect::<Vec<_>>());
    w.app.stop().await;
}

/// A machine's session is kept by the edge (one node): connecting again takes it over — the
/// older connection is closed, the machine never shows offline in between — and a persistent
/// session resumes with its `errors` subscription, answered on the new connection.
#[tokio::test]
async fn a_machine_connecting_again_takes_over_its_session_and_keeps_its_errors_subscription() {
    let w = World::new(TestApp::spawn().await).await;
    let (status, telemetry, errors) = (w.topic("d1", "status"), w.topic("d1", "telemetry"), w.topic("d1", "errors"));
    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let persistent = || {
        let mut o = w.options("d1", "");
        o.set_clean_session(false);
        o
    };
    let mut first = EventClient::connect(persistent(), false).await.expect("d1 connects");
    assert!(!first.connack.session_present, "a fresh session");
    assert_eq!(first.subscribe(&[(&errors, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    expect_status(&mut doc, &status, "online", "connected").await;

    let mut second = EventClient::connect(persistent(), false).await.expect("d1 connects again");
    assert!(second.connack.session_present, "the session resumes on the new connection");
    first.closed(WAIT, "the connection taken over").await;
    expect_status(&mut doc, &status, "online", "connected").await;
    let between = doc.collect(QUIET).await;
    assert!(between.is_empty(), "no offline status for a takeover: {:?}", between.iter().map(body).collect::<Vec<_>>());
    assert!(w.presence("d1").await.0, "still online");

    // The carried subscription answers on the new connection, which was never subscribed itself.
    let invalid = json!({"v": 1, "seq": 3, "ts": now(), "systemStatus": "normal", "heartRate": 500}).to_string();
    second.publish_acked(&telemetry, invalid).await;
    let e = body(&second.message(&errors, WAIT).await);
    assert_eq!((e["code"].as_str(), e["seq"].as_i64()), (Some("validation_failed"), Some(3)), "{e}");
    // Unsubscribed: nothing more on it.
    second.client.unsubscribe(&errors).await.unwrap();
    second.until(WAIT, "the UNSUBACK", |e| matches!(e, Event::Incoming(Packet::UnsubAck(_))).then_some(())).await;
    let invalid = json!({"v": 1, "seq": 4, "ts": now(), "systemStatus": "normal", "heartRate": 500}).to_string();
    second.publish_acked(&telemetry, invalid).await;
    let more = second.collect(QUIET).await;
    assert!(more.is_empty(), "no errors after UNSUBSCRIBE: {:?}", more.iter().map(body).collect::<Vec<_>>());
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Interoperability.
// ---------------------------------------------------------------------------------------

/// Runs a mosquitto client to completion (the test fails if it is not installed).
pub(crate) async fn mosquitto(program: &'static str, args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(program).args(&args).output().unwrap_or_else(|e| {
            panic!("{program} must be installed (Debian mosquitto-clients; scripts/provision-db.sh): {e}")
        })
    })
    .await
    .unwrap()
}

pub(crate) async fn next_line(lines: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(WAIT, lines.recv()).await.ok().flatten()
}

#[tokio::test]
async fn mosquitto_clients_publish_and_subscribe_over_tcp() {
    let w = World::new(TestApp::spawn().await).await;
    let port = w.mqtt().port().to_string();
    let (telemetry, status) = (w.topic("d1", "telemetry"), w.topic("d1", "status"));
    let (d1, doc) = (w.id("d1").to_owned(), w.id("doc").to_owned());
    let publish = |seq: i64| {
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            port.as_str(),
            "-V",
            "mqttv311",
            "-i",
            d1.as_str(),
            "-u",
            d1.as_str(),
            "-P",
            SECRET,
            "-t",
            telemetry.as_str(),
            "-q",
            "1",
            "-d",
            "-m",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(reading(seq));
        mosquitto("mosquitto_pub", args)
    };

    // The device publishes once before anyone listens (and leaves a retained status).
    let out = publish(1).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mosquitto_pub: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("received PUBACK"), "mosquitto_pub is acknowledged: {stdout}");
    assert_eq!(w.health_metrics("d1").await, 1, "acknowledged means stored");

    // The doctor subscribes with mosquitto_sub; the retained status tells us it is subscribed.
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", port.as_str(), "-V", "mqttv311", "-i", doc.as_str(), "-u", doc.as_str()])
        .args(["-P", w.access["doc"].as_str(), "-t", status.as_str(), "-t", telemetry.as_str()])
        .args(["-q", "1", "-v", "-W", "15"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub must be installed (Debian mosquitto-clients; scripts/provision-db.sh)");
    let (tx, mut lines) = mpsc::unbounded_channel();
    let stdout = sub.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = next_line(&mut lines).await.expect("mosquitto_sub prints the retained status");
    assert!(first.starts_with(&format!("{status} ")), "{first}");

    let out = publish(2).await;
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    let reading_line = loop {
        let line = next_line(&mut lines).await.expect("mosquitto_sub prints the reading");
        if line.starts_with(&format!("{telemetry} ")) {
            break line;
        }
    };
    let got: Value = serde_json::from_str(&reading_line[telemetry.len() + 1..]).unwrap();
    assert_eq!(got["seq"], 2);
    let _ = sub.kill();
    let _ = sub.wait();
    w.app.stop().await;
}

#[tokio::test]
async fn rumqttc_publishes_and_subscribes_over_websocket() {
    let w = World::new(TestApp::spawn().await).await;
    let ws = w.ws();
    let ws_options = |who: &str| {
        let (client_id, user, pass) = w.credentials(who, "-ws");
        let mut o = MqttOptions::new(client_id, format!("ws://{ws}/mqtt"), ws.port());
        o.set_transport(Transport::Ws);
        o.set_credentials(user, pass);
        o.set_keep_alive(Duration::from_secs(30));
        o
    };
    let telemetry = w.topic("d1", "telemetry");
    let mut doc = EventClient::connect(ws_options("doc"), false).await.expect("doc over WebSocket");
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut d1 = EventClient::connect(ws_options("d1"), false).await.expect("d1 over WebSocket");
    d1.publish_acked(&telemetry, reading(7)).await;
    assert_eq!(body(&doc.message(&telemetry, WAIT).await)["seq"], 7);
    assert_eq!(w.health_metrics("d1").await, 1);
    // The ACL is the same over WebSocket.
    assert_eq!(doc.subscribe(&[(&w.topic("d2", "telemetry"), QoS::AtLeastOnce)]).await, vec![REFUSED]);
    // A room's post topic: nobody subscribes, not even a participant; its wildcard is granted.
    assert_eq!(doc.subscribe(&[(&w.fill("nc/v1/h/{ha}/chat/{r1}/post"), QoS::AtLeastOnce)]).await, vec![REFUSED]);
    assert_eq!(doc.subscribe(&[(&w.fill("nc/v1/h/{ha}/chat/{r1}/#"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Acknowledge after commit.
// ---------------------------------------------------------------------------------------

pub(crate) fn seq_of(message: &DeviceMessage) -> i64 {
    serde_json::from_slice::<Value>(&message.payload).ok().and_then(|v| v["seq"].as_i64()).unwrap_or(-1)
}

/// Holds every message until the test releases it.
pub(crate) struct GateSink {
    submitted: mpsc::UnboundedSender<(i64, oneshot::Sender<()>)>,
}

impl TelemetrySink for GateSink {
    fn submit(&self, message: DeviceMessage) -> SinkFuture {
        let (release, released) = oneshot::channel();
        let _ = self.submitted.send((seq_of(&message), release));
        Box::pin(async move {
            released.await.map_err(|_| SinkUnavailable("the test dropped the gate".into()))?;
            Ok(SinkOutcome::Committed { patient: None })
        })
    }
}

#[tokio::test]
async fn the_puback_waits_for_the_commit_and_follows_publish_order() {
    let (tx, mut submitted) = mpsc::unbounded_channel();
    let w = World::new(TestApp::spawn_with_sink(Arc::new(GateSink { submitted: tx })).await).await;
    let telemetry = w.topic("d1", "telemetry");
    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut d1 = w.connect("d1", "").await;
    let mut pkids = Vec::new();
    for seq in 1..=3 {
        pkids.push(d1.publish(&telemetry, reading(seq)).await);
    }
    let mut gates = Vec::new();
    for expected in 1..=3 {
        let (seq, gate) = tokio::time::timeout(WAIT, submitted.recv()).await.unwrap().unwrap();
        assert_eq!(seq, expected, "submitted in publish order");
        gates.push(Some(gate));
    }
    let is_ack = |e: &Event| matches!(e, Event::Incoming(Packet::PubAck(_)));
    let is_delivery = |e: &Event| matches!(e, Event::Incoming(Packet::Publish(_)));
    d1.quiet(QUIET, "a PUBACK while storage holds the messages", is_ack).await;
    doc.quiet(Duration::ZERO, "a delivery before the commit", is_delivery).await;
    assert!(doc.inbox.is_empty(), "nothing is forwarded before the commit: {:?}", doc.inbox);

    // Storage commits the second first: its PUBACK still waits for the first.
    gates[1].take().unwrap().send(()).unwrap();
    d1.quiet(QUIET, "a PUBACK out of order", is_ack).await;
    doc.quiet(Duration::ZERO, "a delivery before its predecessor's commit", is_delivery).await;
    assert!(doc.inbox.is_empty(), "{:?}", doc.inbox);

    gates[0].take().unwrap().send(()).unwrap();
    let mut acked = Vec::new();
    while acked.len() < 2 {
        acked.push(
            d1.until(WAIT, "PUBACKs 1 and 2", |e| match e {
                Event::Incoming(Packet::PubAck(a)) => Some(a.pkid),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(acked, pkids[..2], "PUBACKs in publish order");
    d1.quiet(QUIET, "the third PUBACK before its commit", is_ack).await;
    gates[2].take().unwrap().send(()).unwrap();
    d1.puback(pkids[2], WAIT).await;

    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(body(&doc.message(&telemetry, WAIT).await)["seq"].as_i64().unwrap());
    }
    assert_eq!(delivered, vec![1, 2, 3], "forwarded after the commit, in order");
    w.app.stop().await;
}

/// Fails the first `failures` messages (storage unavailable), then commits.
pub(crate) struct FlakySink {
    failures: AtomicUsize,
    seen: Mutex<Vec<i64>>,
}

impl TelemetrySink for FlakySink {
    fn submit(&self, message: DeviceMessage) -> SinkFuture {
        self.seen.lock().unwrap().push(seq_of(&message));
        let fail = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        Box::pin(async move {
            if fail {
                Err(SinkUnavailable("test: the database is down".into()))
            } else {
                Ok(SinkOutcome::Committed { patient: None })
            }
        })
    }
}

#[tokio::test]
async fn storage_failure_closes_without_puback_and_the_resend_is_acknowledged() {
    let sink = Arc::new(FlakySink { failures: AtomicUsize::new(1), seen: Mutex::new(Vec::new()) });
    let w = World::new(TestApp::spawn_with_sink(sink.clone()).await).await;
    let telemetry = w.topic("d1", "telemetry");
    let mut o = w.options("d1", "");
    o.set_clean_session(false);
    let mut d1 = EventClient::connect(o, true).await.expect("d1 connects");
    assert!(!d1.connack.session_present, "a fresh session");
    let pkid = d1.publish(&telemetry, reading(7)).await;

    // Storage fails: the edge closes the connection without acknowledging.
    let mut acked_early = false;
    loop {
        let s = tokio::time::timeout(WAIT, d1.events.recv()).await.expect("the edge closes").unwrap();
        match s.event {
            Err(_) => break,
            Ok(Event::Incoming(Packet::PubAck(_))) => acked_early = true,
            Ok(_) => {}
        }
    }
    assert!(!acked_early, "no PUBACK for a message storage did not take");

    // rumqttc reconnects into its session and resends; now storage commits.
    let connack = d1
        .until(WAIT, "the reconnection", |e| match e {
            Event::Incoming(Packet::ConnAck(a)) => Some(a.clone()),
            _ => None,
        })
        .await;
    assert!(connack.session_present, "the session survives (clean_session = false)");
    d1.puback(pkid, WAIT).await;
    assert_eq!(*sink.seen.lock().unwrap(), vec![7, 7], "the same reading, submitted twice");
    drop(d1);
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. Invalid telemetry through the real ingest.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_telemetry_is_acknowledged_explained_on_the_errors_topic_and_not_stored() {
    let w = World::new(TestApp::spawn().await).await;
    let (telemetry, errors) = (w.topic("d1", "telemetry"), w.topic("d1", "errors"));
    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut d1 = w.connect("d1", "").await;
    assert_eq!(d1.subscribe(&[(&errors, QoS::AtLeastOnce)]).await, vec![GRANTED]);

    let invalid = json!({"v": 1, "seq": 5, "ts": now(), "systemStatus": "normal", "heartRate": 500}).to_string();
    d1.publish_acked(&telemetry, invalid).await;
    let e = body(&d1.message(&errors, WAIT).await);
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str(), e["seq"].as_i64()),
        (Some("validation_failed"), Some("heartRate"), Some(5)),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap_or("").contains("500"), "{e}");
    assert_eq!(w.health_metrics("d1").await, 0, "an invalid reading is not stored");

    // A payload that is not a reading at all names the field too.
    d1.publish_acked(
        &telemetry,
        json!({"v": 1, "seq": 6, "ts": now(), "systemStatus": "normal", "pulse": 70}).to_string(),
    )
    .await;
    assert_eq!(body(&d1.message(&errors, WAIT).await)["field"], "pulse");

    // The control: a valid reading is stored by the time it is acknowledged.
    d1.publish_acked(&telemetry, reading(8)).await;
    assert_eq!(w.health_metrics("d1").await, 1, "acknowledged means stored");
    assert_eq!(body(&doc.message(&telemetry, WAIT).await)["seq"], 8);
    let leaked = doc.collect(QUIET).await;
    assert!(leaked.is_empty(), "invalid readings are not forwarded: {:?}", leaked.iter().map(body).collect::<Vec<_>>());
    w.app.stop().await;
}
