//! The AsyncAPI document of the MQTT contract: served at `/api/asyncapi.json` exactly as
//! `nephrocare asyncapi` prints it, AsyncAPI 3.0, one channel per topic kind, and what the
//! service really publishes on each channel validates against the payload schemas the
//! document gives that channel's `send` operation.

use std::collections::BTreeSet;
use std::time::Duration;

use nc_messaging::topic::{Topic, TopicKind};
use rumqttc::QoS;
use serde_json::{json, Value};

use crate::support::{binary, body, now, reading_for, TestApp, World, GRANTED, WAIT};

#[tokio::test]
async fn the_asyncapi_document_is_served_as_printed_with_a_channel_per_topic_kind() {
    let app = TestApp::spawn().await;
    let served = app.client.get("/api/asyncapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "application/json");
    let out = binary().arg("asyncapi").output().expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(served.text.trim_end(), printed.trim_end(), "served and printed documents are the same");

    let doc = &served.body;
    assert!(doc["asyncapi"].as_str().unwrap_or("").starts_with("3.0."), "AsyncAPI 3.0: {}", doc["asyncapi"]);
    let addresses: BTreeSet<&str> =
        doc["channels"].as_object().unwrap().values().map(|c| c["address"].as_str().unwrap()).collect();
    let templates: Vec<String> = TopicKind::all().iter().map(TopicKind::template).collect();
    assert_eq!(addresses, templates.iter().map(String::as_str).collect(), "one channel per topic kind");
    for (id, op) in doc["operations"].as_object().unwrap() {
        assert!(matches!(op["action"].as_str(), Some("send" | "receive")), "{id}");
        assert!(op["bindings"]["mqtt"]["qos"].as_u64().is_some_and(|q| q <= 1), "{id}: QoS 0 or 1");
    }
    assert_eq!(doc["servers"]["ws"]["pathname"], "/mqtt");
    app.stop().await;
}

#[tokio::test]
async fn what_the_service_publishes_validates_against_the_documented_schemas() {
    let w = World::new(TestApp::spawn().await).await;
    let doc = w.app.client.get("/api/asyncapi.json").await.body;
    let (ha, d1, r1) = (w.id("ha").to_owned(), w.id("d1").to_owned(), w.id("r1").to_owned());
    let p1 = w.id("p1").to_owned();
    let room = |c: &str| format!("nc/v1/h/{ha}/chat/{r1}/{c}");
    let notes = |who: &str| format!("nc/v1/h/{ha}/u/{}/notifications", w.id(who));

    let mut staff = w.connect("doc", "-contract").await;
    let filters = [format!("nc/v1/h/{ha}/d/{d1}/#"), room("#"), notes("doc")];
    let filters: Vec<(&str, QoS)> = filters.iter().map(|f| (f.as_str(), QoS::AtLeastOnce)).collect();
    assert_eq!(staff.subscribe(&filters).await, vec![GRANTED; 3]);
    let mut patient = w.connect("pat", "-contract").await;
    let own = [format!("nc/v1/h/{ha}/p/{p1}/#"), notes("pat")];
    let own: Vec<(&str, QoS)> = own.iter().map(|f| (f.as_str(), QoS::AtLeastOnce)).collect();
    assert_eq!(patient.subscribe(&own).await, vec![GRANTED; 2]);

    // The machine: online, a treatment, a reading, danger (an alert), a refused reading.
    let mut machine = w.connect("d1", "").await;
    let start = json!({"v": 1, "event": "start", "ts": now(), "patientId": p1, "expectedIntervalMs": 1000});
    machine.publish_acked(&w.topic("d1", "session"), start.to_string()).await;
    machine.publish_acked(&w.topic("d1", "telemetry"), reading_for(1, &p1)).await;
    let danger = json!({"v": 1, "seq": 2, "ts": now(), "systemStatus": "danger", "heartRate": 70});
    machine.publish_acked(&w.topic("d1", "telemetry"), danger.to_string()).await;
    let bad = json!({"v": 1, "seq": 3, "ts": now(), "systemStatus": "normal", "heartRate": 900});
    machine.publish_acked(&w.topic("d1", "telemetry"), bad.to_string()).await;
    // Chat: a post (the patient is not in the room: a notification), a receipt, typing, one
    // after the other (the test service's database pool is small).
    let post = json!({"v": 1, "clientMessageId": "contract-1", "message": "How do you feel?"});
    staff.publish_acked(&room("post"), post.to_string()).await;
    let stored = staff.message(&room("messages"), WAIT).await;
    let id = body(&stored)["message"]["id"].as_str().unwrap().to_owned();
    let read = w.as_user("pat").put(&format!("/api/chat/messages/{id}/read"), json!({})).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let typing = json!({"v": 1, "typing": true}).to_string();
    staff.client.publish(room("typing"), QoS::AtMostOnce, false, typing).await.unwrap();

    let mut seen = BTreeSet::new();
    let mut received = vec![stored];
    received.extend(staff.collect(Duration::from_secs(2)).await);
    received.extend(patient.collect(Duration::from_millis(200)).await);
    for p in received {
        let kind = Topic::parse(&p.topic).unwrap_or_else(|e| panic!("{}: {e}", p.topic)).kind();
        let payload = body(&p);
        let schemas = sent_payloads(&doc, &kind.template());
        assert!(!schemas.is_empty(), "the document has the service send nothing on {}", p.topic);
        let errors: Vec<String> = schemas.iter().filter_map(|s| check(&doc, s, &payload, "").err()).collect();
        assert!(errors.len() < schemas.len(), "{}: {payload}\nmatches no documented payload: {errors:?}", p.topic);
        seen.insert(format!("{} {}", kind.template(), payload["type"].as_str().unwrap_or("")));
    }
    for expected in [
        "d/{device}/status ",
        "d/{device}/session ",
        "d/{device}/telemetry ",
        "d/{device}/alerts ",
        "d/{device}/errors ",
        "p/{patient}/session ",
        "p/{patient}/telemetry ",
        "p/{patient}/alerts ",
        "chat/{room}/messages ",
        "chat/{room}/typing ",
        "chat/{room}/read ",
        "u/{user}/notifications alert",
        "u/{user}/notifications chat_message",
    ] {
        assert!(seen.iter().any(|s| s.contains(expected)), "nothing seen on {expected}: {seen:?}");
    }
    w.app.stop().await;
}

/// The payload schemas of the messages the service sends on the channel at `address`.
fn sent_payloads(doc: &Value, address: &str) -> Vec<Value> {
    let (id, _) = doc["channels"].as_object().unwrap().iter().find(|(_, c)| c["address"] == address).expect("channel");
    let channel_ref = format!("#/channels/{id}");
    let mut out = Vec::new();
    for op in doc["operations"].as_object().unwrap().values() {
        if op["action"] == "send" && op["channel"]["$ref"] == channel_ref.as_str() {
            for m in op["messages"].as_array().unwrap() {
                let message = resolve(doc, resolve(doc, m));
                out.push(message["payload"].clone());
            }
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("{r}"))),
        None => v,
    }
}

/// A small JSON Schema (draft 7) check: the keywords the generated schemas use.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let fail = |why: String| Err(format!("{at}: {why}"));
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            t => vec![t.as_str().unwrap()],
        };
        let is = |t: &str| match t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            other => panic!("type {other}"),
        };
        if !types.iter().any(|t| is(t)) {
            return fail(format!("{v} is not {types:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v && c.as_f64().zip(v.as_f64()).is_none_or(|(a, b)| a != b) {
            return fail(format!("{v} is not {c}"));
        }
    }
    if let Some(Value::Array(e)) = schema.get("enum") {
        if !e.contains(v) {
            return fail(format!("{v} is not one of {e:?}"));
        }
    }
    if let (Some(s), Some("uuid")) = (v.as_str(), schema["format"].as_str()) {
        if uuid::Uuid::parse_str(s).is_err() {
            return fail(format!("{s} is not a UUID"));
        }
    }
    if let (Some(s), Some("date-time")) = (v.as_str(), schema["format"].as_str()) {
        if chrono::DateTime::parse_from_rfc3339(s).is_err() {
            return fail(format!("{s} is not an RFC 3339 time"));
        }
    }
    if let (Some(n), Some(min)) = (v.as_f64(), schema["minimum"].as_f64()) {
        if n < min {
            return fail(format!("{n} < {min}"));
        }
    }
    if let (Some(n), Some(max)) = (v.as_f64(), schema["maximum"].as_f64()) {
        if n > max {
            return fail(format!("{n} > {max}"));
        }
    }
    if let Value::Object(o) = v {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !o.contains_key(r.as_str().unwrap()) {
                return fail(format!("{r} is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (k, value) in o {
            match properties.and_then(|p| p.get(k)) {
                Some(p) => check(doc, p, value, &format!("{at}/{k}"))?,
                None if schema["additionalProperties"] == false => return fail(format!("{k} is not documented")),
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(each)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, each, item, &format!("{at}/{i}"))?;
        }
    }
    for s in schema["allOf"].as_array().into_iter().flatten() {
        check(doc, s, v, at)?;
    }
    if let Some(any) = schema["anyOf"].as_array() {
        if !any.iter().any(|s| check(doc, s, v, at).is_ok()) {
            return fail(format!("{v} matches none of {any:?}"));
        }
    }
    Ok(())
}
