//! One ingest contract over both transports (the MQTT world's device d1): MQTT telemetry
//! and `POST /api/health-metrics` go through the same parser, so they accept and refuse
//! exactly the same payloads with the same explanation; and a reading is identified by
//! (device, seq) on both: the same reading again is stored once, the same seq with another
//! timestamp or other values is a conflict (HTTP 409 `seq_conflict`; MQTT: acknowledged and
//! answered on the device's errors topic), never a second row.

use chrono::{Duration, SecondsFormat, Utc};
use rumqttc::QoS;
use serde_json::{json, Value};

use crate::support::{body, EventClient, TestApp, World, GRANTED, QUIET, SECRET, WAIT};

fn ts(offset_ms: i64) -> String {
    (Utc::now() - Duration::seconds(60) + Duration::milliseconds(offset_ms))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `POST /api/health-metrics` as d1 with a raw body: (status, body).
async fn post(w: &World, payload: &str) -> (u16, Value) {
    let resp = w
        .app
        .client
        .http
        .post(format!("{}/api/health-metrics", w.app.client.base))
        .basic_auth(w.id("d1"), Some(SECRET))
        .header("content-type", "application/json")
        .body(payload.to_owned())
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// d1 publishes `payload` (QoS 1): the PUBACK comes, and then either an error on its
/// errors topic or nothing.
async fn publish(w: &World, d1: &mut EventClient, payload: &str) -> Option<Value> {
    d1.publish_acked(&w.topic("d1", "telemetry"), payload.as_bytes().to_vec()).await;
    let errors = w.topic("d1", "errors");
    let got = d1.collect(QUIET).await;
    let mut errs = got.iter().filter(|p| p.topic == errors).map(body);
    errs.next()
}

async fn rows(w: &World, seq: i64) -> Vec<String> {
    let mut c = w.app.db.sql().await;
    sqlx::query_scalar("SELECT time::text FROM health_metrics WHERE device_id = $1::uuid AND seq = $2 ORDER BY time")
        .bind(w.id("d1"))
        .bind(seq)
        .fetch_all(&mut c)
        .await
        .unwrap()
}

fn reading(seq: i64, ts: &str, heart_rate: i64) -> String {
    json!({"v": 1, "seq": seq, "ts": ts, "systemStatus": "normal", "heartRate": heart_rate}).to_string()
}

#[tokio::test]
async fn both_transports_accept_and_refuse_the_same_payloads() {
    let w = World::new(TestApp::spawn().await).await;
    let mut d1 = w.connect("d1", "").await;
    assert_eq!(d1.subscribe(&[(&w.topic("d1", "errors"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let t = ts(0);
    // (payload, the field the refusal names). Each is tried on both transports.
    let array = format!(
        r#"[1, 7, "{t}", null, 72, null, null, null, null, null, null, "normal", null, null, null, null, null, null, null, null, null]"#
    );
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{"v":1,"seq":7,"seq":8,"ts":"{t}","systemStatus":"normal","heartRate":72}}"#), "seq"),
        (format!(r#"{{"v":1,"seq":7,"ts":"{t}","systemStatus":"normal","heartRate":72,"heartRate":73}}"#), "heartRate"),
        (array, "payload"),
        (format!(r#"{{"v":1,"seq":7,"ts":"{t}","systemStatus":"normal","heartRate":72}} {{}}"#), "payload"),
        (r#""a reading""#.to_owned(), "payload"),
        ("{not json".to_owned(), "payload"),
        (format!(r#"{{"v":1,"seq":7,"ts":"{t}","systemStatus":"normal","pulse":72}}"#), "pulse"),
        (format!(r#"{{"v":1,"seq":7,"ts":"{t}","systemStatus":"normal","heartRate":720}}"#), "heartRate"),
    ];
    for (payload, field) in &cases {
        let (status, http) = post(&w, payload).await;
        assert_eq!((status, http["code"].as_str()), (422, Some("validation_failed")), "HTTP {payload}: {http}");
        assert_eq!(http["fields"][0]["field"], *field, "HTTP {payload}: {http}");
        let mqtt = publish(&w, &mut d1, payload).await.unwrap_or_else(|| panic!("MQTT refuses {payload}"));
        assert_eq!(
            (mqtt["code"].as_str(), mqtt["field"].as_str()),
            (Some("validation_failed"), Some(*field)),
            "MQTT {payload}: {mqtt}"
        );
        assert_eq!(http["fields"][0]["message"], mqtt["message"], "the same explanation on both: {payload}");
    }
    assert!(rows(&w, 7).await.is_empty(), "nothing refused is stored");

    // The same valid payload, with insignificant whitespace, is taken on both.
    let (status, http) = post(&w, &format!(" \n{}\n", reading(7, &t, 72))).await;
    assert_eq!((status, http["seq"].as_i64()), (201, Some(7)), "{http}");
    assert_eq!(publish(&w, &mut d1, &reading(8, &t, 72)).await, None);
    assert_eq!((rows(&w, 7).await.len(), rows(&w, 8).await.len()), (1, 1));

    // The OpenAPI document declares the reading's schema (the payload, as in topics.md).
    let doc = w.app.client.get("/api/openapi.json").await.body;
    let schema = &doc["paths"]["/api/health-metrics"]["post"]["requestBody"]["content"]
        ["application/json; charset=utf-8"]["schema"];
    assert_eq!(schema["$ref"], "#/components/schemas/Reading", "{schema}");
    let reading = &doc["components"]["schemas"]["Reading"];
    let mut required: Vec<&str> = reading["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    required.sort();
    assert_eq!(required, ["seq", "systemStatus", "ts", "v"], "{reading}");
    assert!(reading["properties"]["ufGoal"].is_object(), "{reading}");
    assert!(doc["paths"]["/api/health-metrics"]["post"]["description"].as_str().unwrap_or("").contains("seq_conflict"));
    w.app.stop().await;
}

#[tokio::test]
async fn a_reading_is_identified_by_device_and_seq_on_both_transports() {
    let w = World::new(TestApp::spawn().await).await;
    let mut d1 = w.connect("d1", "").await;
    assert_eq!(d1.subscribe(&[(&w.topic("d1", "errors"), QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let (t1, t2, t3) = (ts(0), ts(1000), ts(2000));

    // HTTP first, then the same reading again on both: stored once, accepted each time.
    assert_eq!(post(&w, &reading(1, &t1, 70)).await.0, 201);
    assert_eq!(post(&w, &reading(1, &t1, 70)).await.0, 201);
    assert_eq!(publish(&w, &mut d1, &reading(1, &t1, 70)).await, None, "a resend is no error");
    assert_eq!(rows(&w, 1).await.len(), 1);

    // The same seq with another timestamp, or the same timestamp and other values: refused
    // on both, with a code the device can act on; still one row.
    for payload in [reading(1, &t2, 70), reading(1, &t1, 71)] {
        let (status, http) = post(&w, &payload).await;
        assert_eq!((status, http["code"].as_str()), (409, Some("seq_conflict")), "{payload}: {http}");
        let mqtt = publish(&w, &mut d1, &payload).await.unwrap_or_else(|| panic!("MQTT refuses {payload}"));
        assert_eq!(
            (mqtt["code"].as_str(), mqtt["field"].as_str(), mqtt["seq"].as_i64()),
            (Some("seq_conflict"), Some("seq"), Some(1)),
            "{mqtt}"
        );
        assert_eq!(http["message"], mqtt["message"], "the same explanation on both");
    }
    assert_eq!(rows(&w, 1).await.len(), 1);

    // MQTT first: the same in the other direction.
    assert_eq!(publish(&w, &mut d1, &reading(2, &t1, 70)).await, None);
    assert_eq!(post(&w, &reading(2, &t1, 70)).await.0, 201);
    assert_eq!(post(&w, &reading(2, &t3, 70)).await.0, 409);
    assert_eq!(
        publish(&w, &mut d1, &reading(2, &t3, 70)).await.map(|e| e["code"].clone()),
        Some(json!("seq_conflict"))
    );
    assert_eq!(rows(&w, 2).await.len(), 1);

    // A seq below the highest stored (out of order) is new if nobody used it.
    assert_eq!(post(&w, &reading(0, &t3, 70)).await.0, 201);
    assert_eq!(post(&w, &reading(0, &t2, 70)).await.0, 409);

    // Several readings with one seq at once (writers in parallel, batches racing): exactly
    // one is stored, every other one is a conflict.
    let attempts: Vec<_> = (0..24).map(|i| reading(3, &ts(3000 + i), 70)).collect();
    let answers = futures_util::future::join_all(attempts.iter().map(|p| post(&w, p))).await;
    let stored = answers.iter().filter(|(s, _)| *s == 201).count();
    let conflicts = answers.iter().filter(|(s, b)| *s == 409 && b["code"] == "seq_conflict").count();
    assert_eq!((stored, conflicts), (1, 23), "{answers:?}");
    assert_eq!(rows(&w, 3).await.len(), 1);
    // ...and within one MQTT burst (one connection, pipelined).
    let topic = w.topic("d1", "telemetry");
    for i in 0..10 {
        d1.client.publish(&topic, QoS::AtLeastOnce, false, reading(4, &ts(5000 + i), 70).into_bytes()).await.unwrap();
    }
    let errors = w.topic("d1", "errors");
    let mut refused = 0;
    while refused < 9 {
        let e = body(&d1.message(&errors, WAIT).await);
        assert_eq!(e["code"], "seq_conflict", "{e}");
        refused += 1;
    }
    assert_eq!(rows(&w, 4).await.len(), 1);

    // Conflicts are counted with the rejected readings.
    let metrics = w.app.client.get("/metrics").await.text;
    assert!(
        metrics.lines().any(|l| l.starts_with("nephrocare_readings_rejected_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    w.app.stop().await;
}

/// The writer's own guarantee, under real concurrency: batches of one device's seq written
/// at the same moment on several connections (as the 3 writers do) store exactly one.
#[tokio::test]
async fn concurrent_batches_with_one_seq_store_one_reading() {
    use nc_ingest::writer::{write_batch, Row, Written};
    let db = crate::support::TestDb::migrated().await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&db.url).await.unwrap();
    let hospital = db.hospital("H", "h-writers").await;
    let device = db.machine(hospital, "w-1", "W", None, "not-used-by-this-test").await;
    // Nanoseconds: the writer keeps what timestamptz keeps (microseconds) itself.
    let start = Utc::now() - Duration::minutes(10);
    for seq in 0..20_i64 {
        let writers = (0..8_i64).map(|i| {
            let mut values = [None; 16];
            values[0] = Some(70.0);
            let time = start + Duration::seconds(seq) + Duration::milliseconds(i);
            let row = Row {
                time,
                device_id: device,
                seq,
                hospital_id: hospital,
                patient_id: None,
                session_id: None,
                system_status: "normal",
                reading: nc_ingest::reading::ReadingIn::from_values(seq, time, nc_domain::SystemStatus::Normal, values),
            };
            let pool = pool.clone();
            tokio::spawn(async move {
                // A batch may fail (a deadlock between writers); ingest retries it, so do we.
                for _ in 0..20 {
                    match write_batch(&pool, std::slice::from_ref(&row)).await {
                        Ok(batch) => return batch.written[0].clone(),
                        Err(e) => eprintln!("retrying a batch: {e}"),
                    }
                }
                panic!("a batch kept failing")
            })
        });
        let written = futures_util::future::join_all(writers).await;
        let stored = written.iter().filter(|w| matches!(w, Ok(Written::Stored))).count();
        assert_eq!(stored, 1, "seq {seq}: {written:?}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 20);
    pool.close().await;
}

/// One pipeline, whatever the transport: a reading posted over HTTP reaches the machine's
/// MQTT subscribers, the patient's own topic and the live WebSocket as the same reading sent
/// over MQTT does.
#[tokio::test]
async fn a_reading_posted_over_http_reaches_live_subscribers_like_one_over_mqtt() {
    let w = World::new(TestApp::spawn().await).await;
    let telemetry = w.topic("d1", "telemetry");
    let own = format!("nc/v1/h/{}/p/{}/telemetry", w.id("ha"), w.id("p1"));
    let mut doc = w.connect("doc", "-http").await;
    assert_eq!(doc.subscribe(&[(&telemetry, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut pat = w.connect("pat", "-http").await;
    assert_eq!(pat.subscribe(&[(&own, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let device: uuid::Uuid = w.id("d1").parse().unwrap();
    let mut live = crate::support::ws_open(w.app.running().http_addr, device, Some(&w.access["doc"]))
        .await
        .expect("the live stream opens");

    let mut r: Value = serde_json::from_str(&reading(41, &ts(0), 77)).unwrap();
    r["patientId"] = json!(w.id("p1"));
    let (status, answer) = post(&w, &r.to_string()).await;
    assert_eq!(status, 201, "{answer}");
    let got = body(&doc.message(&telemetry, WAIT).await);
    assert_eq!((got["seq"].clone(), got["heartRate"].clone()), (json!(41), json!(77)), "the machine's topic");
    assert_eq!(body(&pat.message(&own, WAIT).await)["seq"], 41, "the patient's own topic");
    let (m, _) = crate::support::ws_until_reading(&mut live, 41).await;
    assert_eq!(m["reading"]["heartRate"].as_f64(), Some(77.0), "the live stream");
    w.app.stop().await;
}
