//! Access that holds for state that outlives a connection, and on shared machines, with
//! real clients over real sockets (rumqttc, WebSocket, HTTP) against the in-process service:
//!
//! - persistent MQTT sessions (`clean_session = false`): for every revocation trigger, a
//!   client that reconnects without SUBSCRIBE receives nothing it may no longer receive,
//!   including what was published while it was away; a client still allowed resumes with
//!   its queued QoS 1 messages;
//! - a shared machine: two patients treated on one device, each sees only their own
//!   treatment over MQTT, the WebSocket and REST;
//! - the live WebSocket closes when its token expires;
//! - per-identity limits, audit of MQTT subscriptions, stamped typing indicators.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    self, alerts_published, assert_cut, assert_cut_by, body, eventually, exec, grant, now, options, reading,
    reading_for, Client, EventClient, TestApp, TestDb, World, CUT, GRANTED, PASSWORD, QUIET, REFUSED, WAIT,
};

/// `who`'s persistent session under client id suffix `-app`, with `token`.
pub(crate) fn persistent(w: &World, who: &str, token: &str) -> MqttOptions {
    let (client_id, user, _) = w.credentials(who, "-app");
    let mut o = options(w.mqtt(), &client_id, &user, token);
    o.set_clean_session(false);
    o
}

/// A fresh login of `who`: (access token, refresh token).
async fn login(w: &World, who: &str) -> (String, String) {
    let r =
        w.app.client.post("/api/auth/login", json!({"email": format!("{who}@mqtt.test"), "password": PASSWORD})).await;
    assert_eq!(r.status, 200, "login {who}: {}", r.text);
    (r.body["accessToken"].as_str().unwrap().to_owned(), r.body["refreshToken"].as_str().unwrap().to_owned())
}

/// Leaves (DISCONNECT, the session kept) and waits until the service has closed the
/// connection.
pub(crate) async fn away(c: EventClient) {
    c.leave().await;
}

fn notifications(w: &World, who: &str) -> String {
    w.fill(&format!("nc/v1/h/{{ha}}/u/{{{who}}}/notifications"))
}

/// A fresh access token of the same login session, from `refresh` (which is rotated).
pub(crate) async fn refreshed(w: &World, refresh: &mut String) -> String {
    let r = w.app.client.post("/api/auth/refresh", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status, 200, "refresh: {}", r.text);
    *refresh = r.body["refreshToken"].as_str().unwrap().to_owned();
    r.body["accessToken"].as_str().unwrap().to_owned()
}

/// Connects `who` persistently, subscribes `filter` and the notifications, leaves, runs
/// `trigger` (which revokes the right `filter` rests on), lets d1 publish while `who` is
/// away, and returns the session again (reconnected with a refreshed token of the same
/// login session, without SUBSCRIBE), or the CONNACK refusal.
async fn revoke_while_away(
    w: &World,
    who: &str,
    refresh: &mut String,
    filter: &str,
    trigger: impl std::future::Future<Output = ()>,
) -> Result<EventClient, ConnectionError> {
    let token = refreshed(w, refresh).await;
    let mut c = EventClient::connect(persistent(w, who, &token), false).await.expect("connects");
    let notes = notifications(w, who);
    assert_eq!(c.subscribe(&[(filter, QoS::AtLeastOnce), (&notes, QoS::AtLeastOnce)]).await, vec![GRANTED; 2]);
    away(c).await;
    trigger.await;
    // A witness on d1's telemetry (doc2, assigned for it; no trigger touches doc2): the
    // service publishes d1's status and then its reading on one link to the core, which
    // routes them in that order to every session, the away one included. So once the witness
    // has the reading, the away session has everything queued.
    let assign = json!({"userId": w.id("doc2"), "deviceId": w.id("d1")});
    let r = w.as_user("adm").post("/api/users/assign-device", assign).await;
    assert!(matches!(r.status, 200 | 201 | 409), "doc2 assigned to d1 (or already): {}", r.text);
    let mut witness = w.connect("doc2", "-witness").await;
    let t1 = w.topic("d1", "telemetry");
    assert_eq!(witness.subscribe(&[(&t1, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    // While the client is away: d1 comes online (status) and sends a reading.
    let mut d1 = w.connect("d1", "").await;
    // A seq of its own each time (a seq taken by another reading is refused, not relayed).
    d1.publish_acked(&t1, reading(chrono::Utc::now().timestamp_millis())).await;
    witness.message(&t1, WAIT).await;
    let token = refreshed(w, refresh).await;
    let again = EventClient::connect(persistent(w, who, &token), false).await;
    if again.is_ok() {
        // After the reconnect the machine keeps publishing.
        d1.publish_acked(&w.topic("d1", "telemetry"), reading(2)).await;
    }
    again
}

/// Whether the grant's row says it ended (`revoked_at` set).
async fn grant_ended(w: &World, id: &str) -> bool {
    let mut sql = w.app.db.sql().await;
    let revoked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM temporary_access_grants WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&mut sql)
            .await
            .unwrap();
    revoked.is_some()
}

/// Nothing on any of d1's topics arrives; the session is told which subscriptions ended.
async fn assert_nothing_of_d1(w: &World, c: &mut EventClient, who: &str, what: &str) {
    let d1 = w.fill("nc/v1/h/{ha}/d/{d1}/");
    let got = c.collect(QUIET * 2).await;
    for p in &got {
        assert!(!p.topic.starts_with(&d1), "{what}: {who} received {} after the right ended: {:?}", p.topic, body(p));
    }
    if c.connack.session_present {
        let notes = notifications(w, who);
        let ended = got.iter().find(|p| p.topic == notes && body(p)["type"] == "subscription_ended");
        assert!(ended.is_some(), "{what}: {who} is told which subscriptions ended: {got:?}");
    }
}

#[tokio::test]
async fn a_persistent_session_still_allowed_resumes_with_what_was_queued() {
    let w = World::new(TestApp::spawn().await).await;
    let t1 = w.topic("d1", "telemetry");
    let mut doc = EventClient::connect(persistent(&w, "doc", &w.access["doc"]), false).await.unwrap();
    assert!(!doc.connack.session_present);
    assert_eq!(doc.subscribe(&[(&t1, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    away(doc).await;
    let mut d1 = w.connect("d1", "").await;
    for seq in 1..=3 {
        d1.publish_acked(&t1, reading(seq)).await;
    }
    // A refreshed access token belongs to the same login session: the session resumes.
    let r = w.app.client.post("/api/auth/refresh", json!({"refreshToken": w.refresh["doc"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["accessToken"].as_str().unwrap();
    let mut doc = EventClient::connect(persistent(&w, "doc", token), false).await.unwrap();
    assert!(doc.connack.session_present, "the session is resumed");
    for seq in 1..=3 {
        assert_eq!(body(&doc.message(&t1, WAIT).await)["seq"], seq, "queued reading {seq} is delivered");
    }
    d1.publish_acked(&t1, reading(4)).await;
    assert_eq!(body(&doc.message(&t1, WAIT).await)["seq"], 4, "and the subscription goes on");
    w.app.stop().await;
}

#[tokio::test]
async fn persistent_sessions_bring_back_nothing_whose_right_ended() {
    let w = World::new(TestApp::spawn().await).await;
    let t1 = w.topic("d1", "telemetry");
    let adm = w.as_user("adm");
    let mut refresh = w.refresh.clone();

    // 1. The assignment ended.
    let ended = adm.delete("/api/users/assign-device", Some(json!({"userId": w.id("doc"), "deviceId": w.id("d1")})));
    let mut c = revoke_while_away(&w, "doc", refresh.get_mut("doc").unwrap(), &t1, async {
        assert_eq!(ended.await.status, 204);
    })
    .await
    .unwrap();
    assert!(c.connack.session_present, "the session itself resumes (its notifications are still allowed)");
    assert_nothing_of_d1(&w, &mut c, "doc", "assignment ended").await;
    // A fresh SUBSCRIBE is refused too: edge and core agree.
    assert_eq!(c.subscribe(&[(&t1, QoS::AtLeastOnce)]).await, vec![REFUSED]);
    drop(c);

    // 2. A hand-over revoked by its grantor.
    let id = grant(&w).await;
    let tec = w.as_user("tec");
    let mut c = revoke_while_away(&w, "tec2", refresh.get_mut("tec2").unwrap(), &t1, async {
        assert_eq!(tec.delete(&format!("/api/devices/temporary-access/{id}"), None).await.status, 204);
    })
    .await
    .unwrap();
    assert_nothing_of_d1(&w, &mut c, "tec2", "hand-over revoked").await;
    drop(c);

    // 3. A hand-over that expired while the technician was away.
    let mut sql = w.app.db.sql().await;
    exec(
        &mut sql,
        &format!(
            "INSERT INTO temporary_access_grants (id, hospital_id, device_id, granted_to, granted_by, expires_at)
             VALUES (gen_random_uuid(), '{}', '{}', '{}', '{}', now() + interval '1 second')",
            w.id("ha"),
            w.id("d1"),
            w.id("tec2"),
            w.id("tec")
        ),
    )
    .await;
    let mut c = revoke_while_away(
        &w,
        "tec2",
        refresh.get_mut("tec2").unwrap(),
        &t1,
        // The hand-over's time running out is what is tested, not a wait for an event.
        tokio::time::sleep(Duration::from_millis(1200)),
    )
    .await
    .unwrap();
    assert_nothing_of_d1(&w, &mut c, "tec2", "hand-over expired").await;
    drop(c);

    // 4. The grantor lost their own right: the hand-over ends with it.
    let id = grant(&w).await;
    let unassign = adm.delete("/api/users/assign-device", Some(json!({"userId": w.id("tec"), "deviceId": w.id("d1")})));
    let mut c = revoke_while_away(&w, "tec2", refresh.get_mut("tec2").unwrap(), &t1, async {
        assert_eq!(unassign.await.status, 204);
    })
    .await
    .unwrap();
    assert_nothing_of_d1(&w, &mut c, "tec2", "grantor unassigned").await;
    assert!(grant_ended(&w, &id).await, "the grant is ended in the database too");
    drop(c);

    // 5. The patient was moved to another device (d1 → d2): d1's status is no longer theirs.
    let status = w.topic("d1", "status");
    let p1 = format!("/api/patients/{}", w.id("p1"));
    let mut c = revoke_while_away(&w, "pat", refresh.get_mut("pat").unwrap(), &status, async {
        let r = adm.put(&p1, json!({"assignedDeviceId": w.id("d2")})).await;
        assert_eq!(r.status, 200, "{}", r.text);
    })
    .await
    .unwrap();
    assert_nothing_of_d1(&w, &mut c, "pat", "patient moved").await;
    drop(c);

    // 6. Logout: the session belonged to that login; a new login starts afresh.
    let (token, refresh) = login(&w, "tec").await;
    let mut c = EventClient::connect(persistent(&w, "tec", &token), false).await.unwrap();
    let status2 = w.topic("d2", "status");
    assert_eq!(c.subscribe(&[(&status2, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    away(c).await;
    let r = w.app.client.post("/api/auth/logout", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    w.connect("d2", "").await.publish_acked(&w.topic("d2", "telemetry"), reading(7)).await;
    let (token, _) = login(&w, "tec").await;
    let mut c = EventClient::connect(persistent(&w, "tec", &token), false).await.unwrap();
    assert!(!c.connack.session_present, "a new login starts a fresh session");
    let got = c.collect(QUIET * 2).await;
    assert!(got.is_empty(), "nothing queued for the ended login reaches the new one: {got:?}");
    drop(c);

    // 7. The account was deactivated: it cannot come back at all.
    let deactivate = format!("/api/users/{}/deactivate", w.id("doc2"));
    let mut c = EventClient::connect(persistent(&w, "doc2", &w.access["doc2"]), false).await.unwrap();
    assert_eq!(c.subscribe(&[(&status, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    away(c).await;
    assert_eq!(adm.post(&deactivate, json!({})).await.status, 200);
    let refused = EventClient::connect(persistent(&w, "doc2", &w.access["doc2"]), false).await.err();
    assert!(
        matches!(refused, Some(ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized))),
        "{refused:?}"
    );
    w.app.stop().await;
}

#[tokio::test]
async fn an_identity_has_a_bounded_number_of_sessions_and_connections() {
    let w = World::new(TestApp::spawn().await).await;
    let mut held = Vec::new();
    for i in 0..8 {
        held.push(w.connect("doc", &format!("-s{i}")).await);
    }
    let (client_id, user, pass) = w.credentials("doc", "-s8");
    let refused = EventClient::connect(options(w.mqtt(), &client_id, &user, &pass), false).await.err();
    assert!(
        matches!(refused, Some(ConnectionError::ConnectionRefused(ConnectReturnCode::ServiceUnavailable))),
        "a ninth concurrent client id is refused with code 3: {refused:?}"
    );
    // Machines are not affected by people's limits.
    w.connect("d1", "").await.publish_acked(&w.topic("d1", "telemetry"), reading(1)).await;
    // Once one leaves, a new client id takes the least recently used idle slot.
    away(held.remove(0)).await;
    let mut ninth = w.connect("doc", "-s8").await;
    assert_eq!(ninth.subscribe(&[(&w.topic("d1", "status"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    w.app.stop().await;
}

#[tokio::test]
async fn granted_mqtt_subscriptions_to_clinical_data_are_audited_once_each() {
    let w = World::new(TestApp::spawn().await).await;
    let mut doc = w.connect("doc", "").await;
    let t1 = w.topic("d1", "telemetry");
    let own = w.fill("nc/v1/h/{ha}/p/{p1}/#");
    let subs = [(t1.as_str(), QoS::AtLeastOnce), (own.as_str(), QoS::AtLeastOnce)];
    assert_eq!(doc.subscribe(&subs).await, vec![GRANTED; 2]);
    assert_eq!(doc.subscribe(&[(&w.topic("d1", "status"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    assert_eq!(doc.subscribe(&[(&w.topic("d2", "telemetry"), QoS::AtLeastOnce)]).await, vec![REFUSED]);
    let mut d1 = w.connect("d1", "").await;
    for seq in 1..=5 {
        d1.publish_acked(&t1, reading_for(seq, w.id("p1"))).await;
    }
    for _ in 1..=5 {
        doc.message(&t1, WAIT).await;
    }
    let mut sql = w.app.db.sql().await;
    let rows: Vec<(String, Option<uuid::Uuid>, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT resource, device_id, patient_id FROM access_audit_log
          WHERE actor_id = $1::uuid AND interface = 'mqtt' AND action = 'subscribe' ORDER BY at",
    )
    .bind(w.id("doc"))
    .fetch_all(&mut sql)
    .await
    .unwrap();
    let device = w.id("d1").parse().ok();
    let patient = w.id("p1").parse().ok();
    assert_eq!(
        rows,
        vec![("mqtt.subscription".into(), device, None), ("mqtt.subscription".into(), None, patient)],
        "one row per granted clinical subscription (not per message; status is not clinical)"
    );
    w.app.stop().await;
}

/// A WebSocket on d1's live stream.
type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(w: &World, token: &str) -> Result<Ws, u16> {
    let url = format!("ws://{}/ws/health-metrics/{}?token={token}", w.app.running().http_addr, w.id("d1"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

/// The readings' seqs a stream received within `within`, and how it closed, if it did.
async fn ws_seqs(ws: &mut Ws, within: Duration) -> (Vec<i64>, Option<u16>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seqs = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return (seqs, None),
            Ok(Some(Ok(Message::Text(t)))) => {
                let m: Value = serde_json::from_str(t.as_str()).unwrap();
                if m["type"] == "reading" {
                    seqs.push(m["seq"].as_i64().unwrap());
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => return (seqs, frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return (seqs, Some(0)),
        }
    }
}

#[tokio::test]
async fn on_a_shared_machine_each_patient_sees_only_their_own_treatment() {
    let w = World::new(TestApp::spawn().await).await;
    let (t1, s1) = (w.topic("d1", "telemetry"), w.topic("d1", "session"));
    let mut pat = w.connect("pat", "").await;
    let mut pat2 = w.connect("pat2", "").await;
    let mut doc = w.connect("doc", "").await;
    let (own1, own2) = (w.fill("nc/v1/h/{ha}/p/{p1}/#"), w.fill("nc/v1/h/{ha}/p/{p2}/#"));
    assert_eq!(pat.subscribe(&[(&own1, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    assert_eq!(pat.subscribe(&[(&t1, QoS::AtLeastOnce), (&own2, QoS::AtLeastOnce)]).await, vec![REFUSED; 2]);
    assert_eq!(pat2.subscribe(&[(&own2, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    assert_eq!(doc.subscribe(&[(&t1, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut pat_ws = ws(&w, &w.access["pat"]).await.expect("pat's device");
    let mut doc_ws = ws(&w, &w.access["doc"]).await.expect("doc's device");
    assert_eq!(ws(&w, &w.access["pat2"]).await.err(), Some(403), "not pat2's machine (yet)");

    // d1 treats p1 (readings 1, 2), then p2 (readings 3, 4, the last one a danger).
    let mut d1 = w.connect("d1", "").await;
    let start = |p: &str| json!({"v": 1, "event": "start", "ts": now(), "patientId": w.id(p)}).to_string();
    d1.publish_acked(&s1, start("p1")).await;
    d1.publish_acked(&t1, reading(1)).await;
    d1.publish_acked(&t1, reading(2)).await;
    d1.publish_acked(&s1, start("p2")).await;
    let mut pat2_ws = ws(&w, &w.access["pat2"]).await.expect("pat2 is on d1 now");
    d1.publish_acked(&t1, reading(3)).await;
    let danger = json!({"v": 1, "seq": 4, "ts": now(), "systemStatus": "danger", "heartRate": 72}).to_string();
    d1.publish_acked(&t1, danger).await;

    let seqs = |got: &[rumqttc::Publish], topic: &str| -> Vec<i64> {
        got.iter().filter(|p| p.topic == topic).filter_map(|p| body(p)["seq"].as_i64()).collect()
    };
    let got = pat.collect(QUIET * 2).await;
    let p1_telemetry = w.fill("nc/v1/h/{ha}/p/{p1}/telemetry");
    assert_eq!(seqs(&got, &p1_telemetry), vec![1, 2], "pat: own readings only");
    assert!(got.iter().all(|p| p.topic.starts_with(&own1[..own1.len() - 1])), "pat: {got:?}");
    let sessions: Vec<Value> = got.iter().filter(|p| p.topic.ends_with("/session")).map(body).collect();
    assert_eq!(sessions.len(), 1, "pat: own session start only: {sessions:?}");
    let got = pat2.collect(QUIET).await;
    assert_eq!(seqs(&got, &w.fill("nc/v1/h/{ha}/p/{p2}/telemetry")), vec![3, 4], "pat2: own readings only");
    let alert = got.iter().find(|p| p.topic.ends_with("/alerts")).map(body).expect("pat2 gets the alert about them");
    let alert_id = alert["alert"]["id"].as_str().unwrap().to_owned();
    let got = doc.collect(QUIET).await;
    assert_eq!(seqs(&got, &t1), vec![1, 2, 3, 4], "the device's doctor sees the whole machine");

    // The live WebSocket.
    assert_eq!(ws_seqs(&mut pat_ws, QUIET).await.0, vec![1, 2], "pat's stream");
    assert_eq!(ws_seqs(&mut pat2_ws, QUIET).await.0, vec![3, 4], "pat2's stream");
    assert_eq!(ws_seqs(&mut doc_ws, QUIET).await.0, vec![1, 2, 3, 4], "doc's stream");

    // REST: alerts and the machine's sessions.
    let path = format!("/api/alerts/{alert_id}");
    assert_eq!(w.as_user("pat").get(&path).await.status, 404, "another patient's alert does not exist for pat");
    assert_eq!(w.as_user("pat2").get(&path).await.status, 200);
    assert_eq!(w.as_user("doc").get(&path).await.status, 200);
    let listed = w.as_user("pat").get("/api/alerts").await;
    assert_eq!(listed.body["total"], 0, "{}", listed.text);
    let sessions = w.as_user("pat").get(&format!("/api/devices/{}/sessions", w.id("d1"))).await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    let items = sessions.body["items"].as_array().unwrap();
    assert!(items.len() == 1 && items[0]["patientId"] == w.id("p1"), "pat sees only their session: {items:?}");
    let patients = w.as_user("pat").get(&format!("/api/devices/{}/patients", w.id("d1"))).await;
    assert_eq!(patients.body.as_array().map(Vec::len), Some(1), "{}", patients.text);
    w.app.stop().await;
}

#[tokio::test]
async fn the_live_stream_closes_when_its_token_expires_and_streams_per_person_are_bounded() {
    let db = TestDb::migrated().await;
    let mut config = support::test_config(&db.url);
    config.auth.access_token_ttl_secs = 3;
    let app = nephrocare::App::new(config).start().await.expect("starts");
    let client = Client::new(format!("http://{}", app.http_addr));
    let w = World::new(TestApp { app: Some(app), client, db }).await;
    let (token, _) = login(&w, "doc").await;
    let mut stream = ws(&w, &token).await.expect("opens");
    let opened = Instant::now();
    let (_, code) = ws_seqs(&mut stream, Duration::from_secs(6)).await;
    let lasted = opened.elapsed();
    assert_eq!(code, Some(4401), "closed with 4401 at expiry");
    assert!(lasted < Duration::from_secs(3) + CUT, "closed {lasted:?} after opening with a 3 s token");

    let (token, _) = login(&w, "doc").await;
    let mut open = Vec::new();
    for _ in 0..nc_api::http::streams::STREAMS_PER_USER {
        open.push(ws(&w, &token).await.expect("within the limit"));
    }
    assert_eq!(ws(&w, &token).await.err(), Some(429), "beyond the limit");
    open.pop();
    eventually("a closed stream frees its place", WAIT, || async { ws(&w, &token).await.ok() }).await;
    w.app.stop().await;
}

#[tokio::test]
async fn a_hand_over_ends_when_its_grantor_is_unassigned_or_deactivated() {
    for how in ["unassigned", "deactivated"] {
        let w = World::new(TestApp::spawn().await).await;
        let id = grant(&w).await;
        let mut tec2 = w.connect("tec2", "").await;
        assert_eq!(tec2.subscribe(&[(&w.topic("d1", "telemetry"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
        let adm = w.as_user("adm");
        let r = match how {
            "unassigned" => {
                adm.delete("/api/users/assign-device", Some(json!({"userId": w.id("tec"), "deviceId": w.id("d1")})))
                    .await
            }
            _ => adm.post(&format!("/api/users/{}/deactivate", w.id("tec")), json!({})).await,
        };
        let returned = Instant::now();
        assert!(r.status == 204 || r.status == 200, "{how}: {}", r.text);
        assert_cut(&mut tec2, returned, &format!("grantor {how}")).await;
        let sessions = w.as_user("tec2").get(&format!("/api/devices/{}/sessions", w.id("d1"))).await;
        assert_eq!(sessions.status, 403, "{how}: REST agrees: {}", sessions.text);
        assert!(grant_ended(&w, &id).await, "{how}: the grant row is ended");
        w.app.stop().await;
    }
}

#[tokio::test]
async fn re_pointing_a_patient_is_a_staff_action_decided_by_the_policy() {
    let w = World::new(TestApp::spawn().await).await;
    let path = format!("/api/patients/{}", w.id("p1"));
    let (doc, doc2) = (w.as_user("doc"), w.as_user("doc2"));
    let to_d2 = json!({"assignedDeviceId": w.id("d2")});
    let r = doc.put(&path, to_d2.clone()).await;
    assert_eq!(r.status, 403, "doc may not move a patient to a device not assigned to them: {}", r.text);
    let r = doc.put(&path, json!({"assignedDoctorId": w.id("doc2")})).await;
    assert_eq!(r.status, 403, "doc may not hand the patient to another doctor: {}", r.text);
    let r = doc2.put(&path, json!({"assignedDoctorId": w.id("doc2")})).await;
    assert_eq!(r.status, 403, "doc2 may not make themself doctor of a patient on a device not theirs: {}", r.text);
    for who in ["tec", "pat"] {
        assert_eq!(w.as_user(who).put(&path, to_d2.clone()).await.status, 403, "{who}");
    }
    let r = doc.put(&path, json!({"assignedDoctorId": w.id("doc")})).await;
    assert_eq!(r.status, 200, "doc takes the patient on: {}", r.text);
    assert_eq!(w.as_user("admB").put(&path, to_d2.clone()).await.status, 404, "another hospital");

    // The admin moves the patient: audited field by field, and live access follows.
    let mut pat = w.connect("pat", "").await;
    assert_eq!(pat.subscribe(&[(&w.topic("d1", "status"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    assert_cut_by(&mut pat, w.as_user("adm").put(&path, to_d2), 200, "patient moved off d1").await;
    let mut sql = w.app.db.sql().await;
    let fields: Vec<String> =
        sqlx::query_scalar("SELECT field FROM medical_updates WHERE patient_id = $1::uuid ORDER BY updated_at")
            .bind(w.id("p1"))
            .fetch_all(&mut sql)
            .await
            .unwrap();
    assert_eq!(fields, vec!["assignedDoctorId", "assignedDeviceId"]);
    w.app.stop().await;
}

#[tokio::test]
async fn alert_threshold_changes_are_audited_with_the_old_and_new_rule() {
    let w = World::new(TestApp::spawn().await).await;
    let rule = json!({"metric": "heart_rate", "low": 40, "high": 150, "priority": "high", "enabled": false});
    let r = w.as_user("doc").put(&format!("/api/patients/{}/alert-thresholds", w.id("p1")), rule).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let audit = "SELECT detail FROM access_audit_log WHERE resource = 'alert_threshold' AND patient_id = $1::uuid";
    let detail: Value = w.scalar(audit, &["p1"]).await;
    assert_eq!(detail["after"]["enabled"], false, "{detail}");
    assert_eq!(detail["before"], Value::Null, "{detail}");
    w.app.stop().await;
}

#[tokio::test]
async fn typing_indicators_are_stamped_by_the_server() {
    let w = World::new(TestApp::spawn().await).await;
    let typing = w.fill("nc/v1/h/{ha}/chat/{r1}/typing");
    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&typing, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let pat = w.connect("pat", "").await;
    // A spoofing attempt: another user id, a retained flag, QoS 1.
    let forged = json!({"v": 1, "typing": true, "userId": w.id("doc"), "role": "doctor"}).to_string();
    pat.client.publish(&typing, QoS::AtLeastOnce, true, forged.into_bytes()).await.unwrap();
    let got = doc.message(&typing, WAIT).await;
    let b = body(&got);
    assert_eq!(
        (b["userId"].as_str(), b["role"].as_str(), b["typing"].as_bool()),
        (Some(w.id("pat")), Some("patient"), Some(true))
    );
    assert!(!got.retain && got.qos == QoS::AtMostOnce, "normalized: {got:?}");
    // Not a typing indicator: dropped, never relayed.
    pat.client.publish(&typing, QoS::AtMostOnce, false, b"{\"v\":1,\"text\":\"hi\"}".to_vec()).await.unwrap();
    doc.quiet(QUIET, "an invalid typing payload", |e| matches!(e, Event::Incoming(Packet::Publish(_)))).await;
    // Nothing retained: a new subscriber gets nothing.
    let mut late = w.connect("doc", "-late").await;
    assert_eq!(late.subscribe(&[(&typing, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    late.quiet(QUIET, "a retained typing indicator", |e| matches!(e, Event::Incoming(Packet::Publish(_)))).await;
    w.app.stop().await;
}

#[tokio::test]
async fn connack_answers_within_a_second_when_the_database_is_down() {
    let w = World::new(TestApp::spawn().await).await;
    let mut admin = sqlx::PgConnection::connect(&support::admin_url()).await.unwrap();
    let name = w.app.db.name.clone();
    exec(&mut admin, &format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false"#)).await;
    exec(&mut admin, &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND usename = current_user")).await;
    let started = Instant::now();
    let refused = EventClient::connect(w.options("doc", "-down"), false).await.err();
    let took = started.elapsed();
    assert!(
        matches!(refused, Some(ConnectionError::ConnectionRefused(ConnectReturnCode::ServiceUnavailable))),
        "{refused:?}"
    );
    assert!(took < Duration::from_millis(1500), "CONNACK took {took:?}");
    exec(&mut admin, &format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS true"#)).await;
    w.app.stop().await;
}

#[tokio::test]
async fn people_never_take_a_machines_connection() {
    let db = TestDb::migrated().await;
    let settings = nc_broker::BrokerSettings { max_people_connections: 2, max_connections: 3, ..Default::default() };
    let app = nephrocare::App::new(support::test_config(&db.url)).with_broker_settings(settings).start().await.unwrap();
    let client = Client::new(format!("http://{}", app.http_addr));
    let w = World::new(TestApp { app: Some(app), client, db }).await;
    let _a = w.connect("doc", "-a").await;
    let _b = w.connect("pat", "-b").await;
    let refused = EventClient::connect(w.options("tec", "-c"), false).await.err();
    assert!(
        matches!(refused, Some(ConnectionError::ConnectionRefused(ConnectReturnCode::ServiceUnavailable))),
        "the people's pool is full: {refused:?}"
    );
    // Every machine still gets in.
    let mut machines = Vec::new();
    for d in ["d1", "d2", "d3"] {
        let mut m = w.connect(d, "").await;
        m.publish_acked(&w.topic(d, "telemetry"), reading(1)).await;
        machines.push(m);
    }
    w.app.stop().await;
}

#[tokio::test]
async fn alert_notifications_queued_for_a_session_are_withheld_once_the_right_ended() {
    let w = World::new(TestApp::spawn().await).await;
    let id = grant(&w).await;
    let mut refresh = w.refresh.clone();
    let token = refreshed(&w, refresh.get_mut("tec2").unwrap()).await;
    let mut c = EventClient::connect(persistent(&w, "tec2", &token), false).await.unwrap();
    let notes = notifications(&w, "tec2");
    assert_eq!(c.subscribe(&[(&notes, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    away(c).await;
    // While tec2 is away (and still holds the hand-over), d1 raises an alert: its
    // notification is queued for tec2's session. Then the hand-over is revoked.
    let mut doc = w.connect("doc", "").await;
    let doc_notes = notifications(&w, "doc");
    assert_eq!(doc.subscribe(&[(&doc_notes, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut d1 = w.connect("d1", "").await;
    let danger = json!({"v": 1, "seq": 1, "ts": now(), "systemStatus": "danger", "heartRate": 70}).to_string();
    d1.publish_acked(&w.topic("d1", "telemetry"), danger).await;
    assert_eq!(body(&doc.message(&doc_notes, WAIT).await)["type"], "alert", "the control: the alert is notified");
    // Every notification of the alert (tec2's too) has been handed to the broker.
    eventually("the alert's notifications sent", WAIT, || async { alerts_published(&w, "d1").await.then_some(()) })
        .await;
    let r = w.as_user("tec").delete(&format!("/api/devices/temporary-access/{id}"), None).await;
    assert_eq!(r.status, 204);
    let token = refreshed(&w, refresh.get_mut("tec2").unwrap()).await;
    let mut c = EventClient::connect(persistent(&w, "tec2", &token), false).await.unwrap();
    assert!(c.connack.session_present);
    let got = c.collect(QUIET * 2).await;
    assert!(got.iter().all(|p| body(p)["type"] != "alert"), "a queued alert notification leaked: {got:?}");
    w.app.stop().await;
}
