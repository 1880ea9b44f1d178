//! Chat end to end, with real clients on every transport: REST (reqwest), the chat
//! WebSocket (tokio-tungstenite) and MQTT (rumqttc), against the in-process service:
//!
//! - a message sent on any transport arrives on the other two, once, in the same order;
//!   retries with the same `clientMessageId` and MQTT redeliveries store one message;
//! - read receipts as a watermark, unread counts, `isRead`/`readAt`, receipts on every
//!   transport; typing relayed, stamped, rate-limited, never retained or stored;
//! - who may open and read which conversation, and losing it when the relationship ends;
//! - bad input and floods: clear errors, nothing stored.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{assert_cut_by, body, TestApp, World, GRANTED, QUIET, WAIT};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn chat_ws(w: &World, who: &str, room: &str) -> Result<Ws, u16> {
    let url = format!("ws://{}/ws/chat/{room}?token={}", w.app.running().http_addr, w.access[who]);
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

/// The next JSON frame of `kind` ("message", "typing", "read", "ack", "error"), skipping others.
async fn frame(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no {kind} frame within {WAIT:?}"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => panic!("closed ({f:?}) while waiting for {kind}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("stream ended while waiting for {kind}: {other:?}"),
        }
    }
}

/// Every frame of `kind` (every frame for "") within `within`.
async fn frames(ws: &mut Ws, kind: &str, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if kind.is_empty() || v["type"] == kind {
                out.push(v);
            }
        }
    }
    out
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Opens the doctor-patient conversation of `doc` and `pat` (as `who`); returns its id.
async fn open_dp(w: &World, who: &str, counterpart: &str) -> (u16, Value) {
    let r = w
        .as_user(who)
        .post("/api/chat/rooms", json!({"kind": "doctor-patient", "counterpartId": w.id(counterpart)}))
        .await;
    (r.status, r.body)
}

/// The doctor-patient room of `doc` and `pat`, opened by `doc`: its id.
async fn dp_room(w: &World) -> String {
    open_dp(w, "doc", "pat").await.1["id"].as_str().unwrap().to_owned()
}

/// How many chat messages are stored.
async fn stored_messages(w: &World) -> i64 {
    let mut c = w.app.db.sql().await;
    sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&mut c).await.unwrap()
}

#[tokio::test]
async fn a_message_sent_on_any_transport_arrives_on_the_other_two_once_and_in_order() {
    let w = World::new(TestApp::spawn().await).await;
    let (status, room) = open_dp(&w, "doc", "pat").await;
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    let (again, same) = open_dp(&w, "pat", "doc").await;
    assert_eq!((again, same["id"].as_str()), (200, Some(id.as_str())), "opening again gives the same room");
    let topic = |c: &str| format!("nc/v1/h/{}/chat/{id}/{c}", w.id("ha"));

    let mut doc = w.connect("doc", "").await;
    assert_eq!(doc.subscribe(&[(&topic("messages"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut pat = chat_ws(&w, "pat", &id).await.expect("pat opens the stream");

    // 1. REST (doc), retried with the same client id.
    let path = format!("/api/chat/rooms/{id}/messages");
    let r = w.as_user("doc").post(&path, json!({"message": "How are you feeling?", "clientMessageId": "m1"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["senderRole"], "doctor");
    let retry = w.as_user("doc").post(&path, json!({"message": "How are you feeling?", "clientMessageId": "m1"})).await;
    assert_eq!((retry.status, &retry.body["id"]), (200, &r.body["id"]), "a retry returns the stored message");
    // 2. WebSocket (pat).
    send(&mut pat, json!({"type": "message", "clientMessageId": "m2", "message": "A bit dizzy.\nBut fine.", "ref": 7}))
        .await;
    // Stored once acknowledged: wait for that (keeping every frame) before the next sender.
    let mut all = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !all.iter().any(|f: &Value| f["type"] == "ack") {
        assert!(Instant::now() < deadline, "no ack: {all:?}");
        all.extend(frames(&mut pat, "", Duration::from_millis(50)).await);
    }
    // 3. MQTT (doc), sent twice (a redelivery after a lost PUBACK).
    let post = json!({"v": 1, "clientMessageId": "m3", "message": "Lie down, I'll come by."}).to_string();
    doc.publish_acked(&topic("post"), post.clone()).await;
    doc.publish_acked(&topic("post"), post).await;

    // REST: three messages, in order.
    let page = w.as_user("pat").get(&path).await;
    let bodies: Vec<&str> =
        page.body["items"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["How are you feeling?", "A bit dizzy.\nBut fine.", "Lie down, I'll come by."]);
    let ids: Vec<String> =
        page.body["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    // MQTT: the same three, once each, in the same order.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(body(&doc.message(&topic("messages"), WAIT).await)["message"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ids, "MQTT order");
    assert!(doc.collect(QUIET).await.iter().all(|p| p.topic != topic("messages")), "no duplicates on MQTT");
    // WebSocket: the ack of its own frame, and the same three (its own included), once
    // each, in order.
    all.extend(frames(&mut pat, "", QUIET * 2).await);
    let ack = all.iter().find(|f| f["type"] == "ack").expect("an ack");
    assert_eq!((ack["ref"].as_i64(), ack["message"]["senderRole"].as_str()), (Some(7), Some("patient")));
    let on_ws: Vec<String> = all
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["message"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(on_ws, ids, "WebSocket order");
    // Catching up after a reconnect: `after` the first id gives the other two.
    let after = w.as_user("pat").get(&format!("{path}?after={}", ids[0])).await;
    assert_eq!(after.body["items"].as_array().unwrap().len(), 2, "{}", after.text);
    let before = w.as_user("pat").get(&format!("{path}?before={}&limit=1", ids[2])).await;
    assert_eq!(
        (before.body["items"][0]["id"].as_str(), before.body["hasMore"].as_bool()),
        (Some(ids[1].as_str()), Some(true))
    );
    assert_eq!(stored_messages(&w).await, 3, "retries and redeliveries are stored once");
    w.app.stop().await;
}

#[tokio::test]
async fn read_receipts_are_a_watermark_seen_on_every_transport_and_typing_is_stamped() {
    let w = World::new(TestApp::spawn().await).await;
    let id = dp_room(&w).await;
    let topic = |c: &str| format!("nc/v1/h/{}/chat/{id}/{c}", w.id("ha"));
    let path = format!("/api/chat/rooms/{id}/messages");
    let mut ids = Vec::new();
    for (who, n) in [("doc", 1), ("pat", 2), ("doc", 3)] {
        let r =
            w.as_user(who).post(&path, json!({"message": format!("m{n}"), "clientMessageId": format!("c{n}")})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let unread = |r: &crate::support::Reply| r.body["items"][0]["unreadCount"].as_i64();
    assert_eq!(unread(&w.as_user("pat").get("/api/chat/rooms").await), Some(2), "m1 and m3 are unread for pat");
    assert_eq!(unread(&w.as_user("doc").get("/api/chat/rooms").await), Some(1), "m2 is unread for doc");

    let mut doc = w.connect("doc", "").await;
    let subs = [(topic("read"), QoS::AtLeastOnce), (topic("typing"), QoS::AtMostOnce)];
    let subs: Vec<(&str, QoS)> = subs.iter().map(|(t, q)| (t.as_str(), *q)).collect();
    assert_eq!(doc.subscribe(&subs).await.len(), 2);
    let mut doc_ws = chat_ws(&w, "doc", &id).await.unwrap();

    // pat reads up to m3; then "reads" m1: the watermark does not move back.
    let r = w.as_user("pat").put(&format!("/api/chat/messages/{}/read", ids[2]), json!({})).await;
    assert_eq!((r.status, r.body["lastReadMessageId"].as_str()), (200, Some(ids[2].as_str())), "{}", r.text);
    let r = w.as_user("pat").put(&format!("/api/chat/messages/{}/read", ids[0]), json!({})).await;
    assert_eq!(r.body["lastReadMessageId"].as_str(), Some(ids[2].as_str()), "never backwards");
    assert_eq!(unread(&w.as_user("pat").get("/api/chat/rooms").await), Some(0));
    let receipt = body(&doc.message(&topic("read"), WAIT).await);
    assert_eq!(
        (receipt["userId"].as_str(), receipt["lastReadMessageId"].as_str()),
        (Some(w.id("pat")), Some(ids[2].as_str()))
    );
    assert_eq!(frame(&mut doc_ws, "read").await["receipt"]["lastReadMessageId"].as_str(), Some(ids[2].as_str()));
    assert!(
        doc.collect(QUIET).await.iter().all(|p| p.topic != topic("read")),
        "one receipt: the second read moved nothing"
    );
    let page = w.as_user("doc").get(&path).await;
    let items = page.body["items"].as_array().unwrap();
    assert_eq!((items[0]["isRead"].as_bool(), items[2]["isRead"].as_bool()), (Some(true), Some(true)), "read by pat");
    assert!(items[0]["readAt"].is_string() && items[0]["readBy"][0]["userId"] == w.id("pat"));
    assert_eq!(items[1]["isRead"].as_bool(), Some(false), "doc has not read pat's m2");

    // Typing from the WebSocket: stamped on MQTT; a second one within 2 s is dropped.
    let mut pat_ws = chat_ws(&w, "pat", &id).await.unwrap();
    send(&mut pat_ws, json!({"type": "typing", "typing": true, "userId": w.id("doc")})).await;
    assert_eq!(frame(&mut pat_ws, "error").await["code"], "bad_frame", "unknown fields are refused");
    send(&mut pat_ws, json!({"type": "typing", "typing": true})).await;
    send(&mut pat_ws, json!({"type": "typing", "typing": true})).await;
    let t = doc.message(&topic("typing"), WAIT).await;
    let b = body(&t);
    assert_eq!(
        (b["userId"].as_str(), b["role"].as_str(), b["typing"].as_bool()),
        (Some(w.id("pat")), Some("patient"), Some(true))
    );
    assert!(b["expiresAt"].is_string() && !t.retain);
    assert!(doc.collect(QUIET).await.iter().all(|p| p.topic != topic("typing")), "rate-limited: one per 2 s");
    // Typing from MQTT reaches the WebSocket, stamped.
    doc.client
        .publish(topic("typing"), QoS::AtMostOnce, true, json!({"v": 1, "typing": true}).to_string())
        .await
        .unwrap();
    // (pat's stream also carries pat's own indicator, from before.)
    let mut t = frame(&mut pat_ws, "typing").await;
    if t["typing"]["userId"] == w.id("pat") {
        t = frame(&mut pat_ws, "typing").await;
    }
    assert_eq!((t["typing"]["userId"].as_str(), t["typing"]["role"].as_str()), (Some(w.id("doc")), Some("doctor")));
    assert_eq!(stored_messages(&w).await, 3, "typing is not stored");
    w.app.stop().await;
}

#[tokio::test]
async fn who_may_chat_with_whom_and_losing_the_room_when_the_relationship_ends() {
    let w = World::new(TestApp::spawn().await).await;
    assert_eq!(open_dp(&w, "doc2", "pat").await.0, 403, "doc2 is not responsible for pat");
    assert_eq!(open_dp(&w, "pat2", "doc").await.0, 403, "doc is not responsible for pat2");
    assert_eq!(open_dp(&w, "tec", "pat").await.0, 403, "technicians do not open doctor-patient rooms");
    assert_eq!(open_dp(&w, "docB", "pat").await.0, 404, "another hospital's patient does not exist");
    assert_eq!(open_dp(&w, "adm", "pat").await.0, 403, "admins do not chat");
    let device_room = |who: &str, d: &str| {
        let body = json!({"kind": "doctor-technician", "deviceId": w.id(d), "counterpartId": w.id("tec")});
        let c = w.as_user(who);
        async move { c.post("/api/chat/rooms", body).await }
    };
    let r = device_room("doc", "d1").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["participants"].as_array().unwrap().len(), 2);
    assert_eq!(device_room("doc", "d2").await.status, 403, "not doc's device");
    let id = dp_room(&w).await;
    let path = format!("/api/chat/rooms/{id}/messages");
    let first = w.as_user("doc").post(&path, json!({"message": "hello", "clientMessageId": "h1"})).await;
    let read = format!("/api/chat/messages/{}/read", first.body["id"].as_str().unwrap());
    for (who, status) in [("doc2", 403), ("tec", 403), ("adm", 403), ("admB", 404), ("docB", 404)] {
        assert_eq!(w.as_user(who).get(&path).await.status, status, "{who} reads");
        assert_eq!(w.as_user(who).get(&format!("/api/chat/rooms/{id}")).await.status, status, "{who} sees the room");
        let r = w.as_user(who).put(&read, json!({})).await.status;
        assert_eq!(r, if status == 404 { 404 } else { 403 }, "{who} marks read");
        let listed = w.as_user(who).get("/api/chat/rooms").await;
        assert!(
            listed.body["items"].as_array().is_none_or(|rooms| rooms.iter().all(|r| r["id"] != id.as_str())),
            "{who} lists it"
        );
        let p = w.as_user(who).post(&path, json!({"message": "hi", "clientMessageId": "x"})).await;
        assert_eq!(p.status, status, "{who} posts");
        assert_eq!(chat_ws(&w, who, &id).await.err(), Some(status), "{who} streams");
    }
    let mut outsider = w.connect("doc2", "").await;
    let messages = format!("nc/v1/h/{}/chat/{id}/messages", w.id("ha"));
    assert_eq!(outsider.subscribe(&[(&messages, QoS::AtLeastOnce)]).await, vec![rumqttc::SubscribeReasonCode::Failure]);
    // An unauthorized MQTT post: acknowledged, refused on the sender's notifications.
    let notes = format!("nc/v1/h/{}/u/{}/notifications", w.id("ha"), w.id("doc2"));
    assert_eq!(outsider.subscribe(&[(&notes, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let post = format!("nc/v1/h/{}/chat/{id}/post", w.id("ha"));
    outsider.publish_acked(&post, json!({"v": 1, "clientMessageId": "x1", "message": "let me in"}).to_string()).await;
    let refusal = body(&outsider.message(&notes, WAIT).await);
    assert_eq!(
        (refusal["type"].as_str(), refusal["code"].as_str(), refusal["clientMessageId"].as_str()),
        (Some("error"), Some("forbidden"), Some("x1"))
    );

    // The relationship ends: doc is unassigned from pat's device.
    let mut doc_mqtt = w.connect("doc", "").await;
    assert_eq!(doc_mqtt.subscribe(&[(&messages, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut doc_ws = chat_ws(&w, "doc", &id).await.unwrap();
    let adm = w.as_user("adm");
    let unassign = adm.delete("/api/users/assign-device", Some(json!({"userId": w.id("doc"), "deviceId": w.id("d1")})));
    let (_, returned) = assert_cut_by(&mut doc_mqtt, unassign, 204, "doctor unassigned: MQTT").await;
    let closed = frames_until_close(&mut doc_ws).await;
    assert!(returned.elapsed() < Duration::from_secs(2), "WebSocket closed within a second or so");
    assert_eq!(closed, Some(4403));
    assert_eq!(w.as_user("doc").get(&path).await.status, 403, "REST agrees");
    assert_eq!(w.as_user("doc").get("/api/chat/rooms").await.body["total"], 0, "both rooms rested on d1: gone");
    // With no doctor responsible any more, the patient's room closes too (nobody would read
    // it); the history stays stored for audit.
    assert_eq!(w.as_user("pat").get(&path).await.status, 403);
    let p = w.as_user("pat").post(&path, json!({"message": "hello?", "clientMessageId": "late"})).await;
    assert_eq!(p.status, 403, "{}", p.text);
    let reads = "SELECT interface, resource FROM access_audit_log WHERE actor_id = $1::uuid AND patient_id = $2::uuid AND action IN ('read', 'subscribe') ORDER BY at";
    let audited: Vec<(String, String)> = w.rows(reads, &["doc", "p1"]).await;
    assert!(audited.contains(&("mqtt".into(), "mqtt.subscription".into())), "MQTT follow audited: {audited:?}");
    assert!(audited.contains(&("websocket".into(), "chat.messages".into())), "WebSocket read audited: {audited:?}");
    w.app.stop().await;
}

async fn frames_until_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("closes in time") {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            _ => return None,
        }
    }
}

#[tokio::test]
async fn bad_messages_and_floods_get_clear_errors_and_nothing_is_stored() {
    let w = World::new(TestApp::spawn().await).await;
    let id = dp_room(&w).await;
    let path = format!("/api/chat/rooms/{id}/messages");
    let doc = w.as_user("doc");
    for (body, field) in [
        (json!({"message": "", "clientMessageId": "a"}), "message"),
        (json!({"message": "   \n ", "clientMessageId": "b"}), "message"),
        (json!({"message": "x".repeat(4001), "clientMessageId": "c"}), "message"),
        (json!({"message": "bell\u{7}", "clientMessageId": "d"}), "message"),
        (json!({"message": "\u{200B}\u{200B}", "clientMessageId": "e"}), "message"),
        (json!({"message": "evil\u{202E}txt.exe", "clientMessageId": "g"}), "message"),
        (json!({"message": "ok", "clientMessageId": "has space"}), "clientMessageId"),
    ] {
        let r = doc.post(&path, body.clone()).await;
        assert!(r.status == 422 || r.status == 400, "{body}: {} {}", r.status, r.text);
        assert!(r.text.contains(field), "{body}: names {field}: {}", r.text);
    }
    let unknown = format!("/api/chat/rooms/{}/messages", uuid::Uuid::now_v7());
    assert_eq!(doc.get(&unknown).await.status, 404);
    assert_eq!(doc.get(&format!("{path}?limit=101")).await.status, 422);
    assert_eq!(doc.put(&format!("/api/chat/messages/{}/read", uuid::Uuid::now_v7()), json!({})).await.status, 404);
    // A flood: 30 a minute (one more every 2 s), then 429 with Retry-After.
    let mut statuses = Vec::new();
    let flood = Instant::now();
    for i in 0..32 {
        let r = doc.post(&path, json!({"message": format!("n{i}"), "clientMessageId": format!("f{i}")})).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.get("retry-after").is_some());
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    let replenished = (flood.elapsed().as_secs() / 2) as usize;
    assert!((30..=30 + replenished).contains(&accepted), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429));
    // Over MQTT: an invalid post is acknowledged and explained on the sender's notifications.
    let mut mqtt = w.connect("pat", "").await;
    let notes = format!("nc/v1/h/{}/u/{}/notifications", w.id("ha"), w.id("pat"));
    assert_eq!(mqtt.subscribe(&[(&notes, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let post = format!("nc/v1/h/{}/chat/{id}/post", w.id("ha"));
    mqtt.publish_acked(&post, json!({"v": 1, "clientMessageId": "p1", "message": ""}).to_string()).await;
    let e = body(&mqtt.message(&notes, WAIT).await);
    assert_eq!((e["code"].as_str(), e["field"].as_str()), (Some("validation_failed"), Some("message")));
    mqtt.publish_acked(&post, b"not json".to_vec()).await;
    assert_eq!(body(&mqtt.message(&notes, WAIT).await)["field"], "payload");
    mqtt.quiet(QUIET, "the connection stays up", |e| matches!(e, Event::Incoming(Packet::Disconnect))).await;
    assert_eq!(stored_messages(&w).await, accepted as i64, "nothing invalid is stored");
    w.app.stop().await;
}

#[tokio::test]
async fn participants_away_from_the_room_get_a_notification() {
    let w = World::new(TestApp::spawn().await).await;
    let id = dp_room(&w).await;
    let mut pat = w.connect("pat", "").await;
    let notes = format!("nc/v1/h/{}/u/{}/notifications", w.id("ha"), w.id("pat"));
    assert_eq!(pat.subscribe(&[(&notes, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let path = format!("/api/chat/rooms/{id}/messages");
    w.as_user("doc").post(&path, json!({"message": "Reminder: session at 7", "clientMessageId": "n1"})).await;
    let note = body(&pat.message(&notes, WAIT).await);
    assert_eq!((note["type"].as_str(), note["roomId"].as_str()), (Some("chat_message"), Some(id.as_str())));
    assert!(note.get("message").is_none(), "no text in a push: lock screens");
    // Once pat follows the room, no more notifications.
    let messages = format!("nc/v1/h/{}/chat/{id}/messages", w.id("ha"));
    assert_eq!(pat.subscribe(&[(&messages, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    w.as_user("doc").post(&path, json!({"message": "See you", "clientMessageId": "n2"})).await;
    let got = pat.collect(QUIET).await;
    assert!(got.iter().any(|p| p.topic == messages) && got.iter().all(|p| p.topic != notes), "{got:?}");
    w.app.stop().await;
}

#[tokio::test]
async fn a_persistent_session_gets_no_chat_of_a_conversation_it_lost_while_away() {
    use crate::sessions::{away, persistent, refreshed};
    let w = World::new(TestApp::spawn().await).await;
    let id = dp_room(&w).await;
    let messages = format!("nc/v1/h/{}/chat/{id}/messages", w.id("ha"));
    let mut refresh = w.refresh.clone();
    let token = refreshed(&w, refresh.get_mut("doc").unwrap()).await;
    let mut c = crate::support::EventClient::connect(persistent(&w, "doc", &token), false).await.unwrap();
    assert_eq!(c.subscribe(&[(&messages, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    away(c).await;
    // While doc is away: the patient writes, then doc stops being responsible for them.
    let path = format!("/api/chat/rooms/{id}/messages");
    let r = w.as_user("pat").post(&path, json!({"message": "Are you there?", "clientMessageId": "q1"})).await;
    assert_eq!(r.status, 201);
    let r = w
        .as_user("adm")
        .delete("/api/users/assign-device", Some(json!({"userId": w.id("doc"), "deviceId": w.id("d1")})))
        .await;
    assert_eq!(r.status, 204);
    let token = refreshed(&w, refresh.get_mut("doc").unwrap()).await;
    let mut c = crate::support::EventClient::connect(persistent(&w, "doc", &token), false).await.unwrap();
    let got = c.collect(QUIET * 2).await;
    assert!(got.iter().all(|p| p.topic != messages), "a queued chat message leaked: {got:?}");
    w.app.stop().await;
}

/// Room decisions are kept between posts (the policy is not asked per message), so this
/// proves what ends a kept decision: an access event — here a change made in SQL, which no
/// API call announces — and a hand-over's end, which fires no event at all. Both end it on
/// REST, MQTT and the chat WebSocket.
#[tokio::test]
async fn a_kept_room_decision_ends_with_the_access_event_or_with_the_hand_over() {
    let w = World::new(TestApp::spawn().await).await;
    crate::support::grant(&w).await;
    let r = w
        .as_user("doc")
        .post(
            "/api/chat/rooms",
            json!({"kind": "doctor-technician", "deviceId": w.id("d1"), "counterpartId": w.id("tec2")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/chat/rooms/{id}/messages");
    let post = |who: &'static str, n: usize| {
        let c = w.as_user(who);
        let path = path.clone();
        async move { c.post(&path, json!({"message": "status?", "clientMessageId": format!("{who}-{n}")})).await.status }
    };
    assert_eq!(post("tec2", 0).await, 201);
    assert_eq!(post("doc", 0).await, 201);

    // The hand-over now ends in 1.5 s (the update is an access event: decided again, and
    // kept until then).
    let mut c = w.app.db.sql().await;
    let expiring = "UPDATE temporary_access_grants SET expires_at = now() + interval '1500 milliseconds'";
    crate::support::exec(&mut c, &w.fill(&format!("{expiring} WHERE granted_to = '{{tec2}}'"))).await;
    // A negative check, not synchronisation: the grant's change, seen, does not end it early.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(post("tec2", 1).await, 201, "still handed over");
    let mut tec2_ws = chat_ws(&w, "tec2", &id).await.expect("tec2 streams the room while handed over");
    let mut tec2_mqtt = w.connect("tec2", "").await;
    let notes = format!("nc/v1/h/{}/u/{}/notifications", w.id("ha"), w.id("tec2"));
    assert_eq!(tec2_mqtt.subscribe(&[(&notes, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    // Under test, not synchronisation: the grant's time runs out.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    // No event announced the end: the kept decision ends with the grant.
    assert_eq!(post("tec2", 2).await, 403, "the hand-over ended");
    let mqtt_post = format!("nc/v1/h/{}/chat/{id}/post", w.id("ha"));
    tec2_mqtt
        .publish_acked(&mqtt_post, json!({"v": 1, "clientMessageId": "m1", "message": "still here"}).to_string())
        .await;
    let refusal = body(&tec2_mqtt.message(&notes, WAIT).await);
    assert_eq!((refusal["code"].as_str(), refusal["clientMessageId"].as_str()), (Some("forbidden"), Some("m1")));
    assert_eq!(frames_until_close(&mut tec2_ws).await, Some(4403), "the stream closes when the hand-over ends");

    // The doctor's assignment ends in SQL (no API call): the access event ends the kept
    // decision within the revocation budget (a second), on every transport.
    let mut doc_ws = chat_ws(&w, "doc", &id).await.expect("doc streams the room");
    assert_eq!(post("doc", 1).await, 201);
    let started = Instant::now();
    crate::support::end_assignments_in_sql(&mut c, w.id("doc")).await;
    let mut n = 2;
    while post("doc", n).await != 403 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a post was still accepted {:?} after the revocation",
            started.elapsed()
        );
        n += 1;
        // A poll interval, tighter than `eventually`'s: the revocation budget is measured.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(frames_until_close(&mut doc_ws).await, Some(4403));
    assert!(started.elapsed() < Duration::from_secs(2), "the stream closed within a second or so");
    w.app.stop().await;
}
