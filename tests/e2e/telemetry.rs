//! Telemetry end to end: devices publishing over MQTT (and posting over HTTP) into
//! TimescaleDB, read back through the REST API and the live WebSocket stream, with alerts,
//! sessions and retention. Real database, real clients; timestamps are chosen by the tests
//! (the alert engine and sessions follow reading time), and every wait is for an event:
//! a PUBACK, a published message, a WebSocket message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use nc_domain::Role;
use nephrocare::{App, RunningApp};
use rumqttc::{QoS, SubscribeReasonCode};
use serde_json::{json, Value};
use sqlx::Executor;
use uuid::Uuid;

use crate::support::{
    test_config, ws_next, ws_open, ws_until_reading, Client, JsonClient, Live, PatientLinks, TestApp, TestDb, Ws,
    LONG_WAIT,
};

const PASSWORD: &str = "Telemetry-pass-2026";

// ---------------------------------------------------------------------------------------
// The world: two hospitals, staff, a device and patients, built through the capability crates.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Ids {
    hospital: Uuid,
    /// The dialysis machine, hospital A (secret = PASSWORD).
    device: Uuid,
    /// Patient on `device`, cared for by `doctor`, with a login (`patient@telemetry.test`) and a dry weight of 70 kg.
    patient: Uuid,
    /// A patient of hospital B.
    patient_b: Uuid,
    /// Assigned to `device` and the assigned doctor of `patient`.
    doctor: Uuid,
    /// A doctor of hospital A with no assignment.
    doctor2: Uuid,
}

async fn exec(c: &mut sqlx::PgConnection, sql: &str) {
    c.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn seed(db: &TestDb) -> Ids {
    let (hospital, hospital_b) = (db.hospital("A", "tele-a").await, db.hospital("B", "tele-b").await);
    // One argon2 hash serves every password; the device's secret is the same text.
    let hash = nc_access::password::hash(PASSWORD.to_owned()).await.expect("hash");
    db.person(hospital, "admin@telemetry.test", Role::Admin, "admin", None, &hash).await;
    let doctor = db.person(hospital, "doctor@telemetry.test", Role::Doctor, "doctor", None, &hash).await;
    let doctor2 = db.person(hospital, "doctor2@telemetry.test", Role::Doctor, "doctor2", None, &hash).await;
    let patient_user = db.person(hospital, "patient@telemetry.test", Role::Patient, "patient", None, &hash).await;
    let device = db.machine(hospital, "hd-1", "Machine 1", None, PASSWORD).await;
    db.assign(device, doctor).await;
    let links = PatientLinks { account: Some(patient_user), doctor: Some(doctor), device: Some(device) };
    let patient = db.patient_with(hospital, "p1", "Patient One", links, |p| p.dry_weight_kg = Some(70.0)).await;
    let patient_b = db.patient(hospital_b, "pb", "Patient B", PatientLinks::default()).await;
    Ids { hospital, device, patient, patient_b, doctor, doctor2 }
}

/// The service on a seeded database, with a logged-in client per person.
struct World {
    app: TestApp,
    ids: Ids,
    admin: Client,
    doctor: Client,
    doctor2: Client,
    patient: Client,
    tokens: HashMap<&'static str, String>,
}

impl World {
    async fn new() -> World {
        World::with_settings(nc_ingest::IngestSettings::default()).await
    }

    async fn with_settings(settings: nc_ingest::IngestSettings) -> World {
        let db = TestDb::migrated().await;
        let ids = seed(&db).await;
        let running =
            App::new(test_config(&db.url)).with_ingest_settings(settings).start().await.expect("the service starts");
        let client = Client::new(format!("http://{}", running.http_addr));
        let app = TestApp { app: Some(running), client, db };
        let mut tokens = HashMap::new();
        for who in ["admin", "doctor", "doctor2", "patient"] {
            let r = app
                .client
                .post("/api/auth/login", json!({"email": format!("{who}@telemetry.test"), "password": PASSWORD}))
                .await;
            assert_eq!(r.status, 200, "login {who}: {}", r.text);
            tokens.insert(who, r.body["accessToken"].as_str().expect("accessToken").to_owned());
        }
        let as_ = |who: &str| app.client.with_token(&tokens[who]);
        World {
            admin: as_("admin"),
            doctor: as_("doctor"),
            doctor2: as_("doctor2"),
            patient: as_("patient"),
            app,
            ids,
            tokens,
        }
    }

    fn running(&self) -> &RunningApp {
        self.app.running()
    }

    fn device_topic(&self, channel: &str) -> String {
        format!("nc/v1/h/{}/d/{}/{channel}", self.ids.hospital, self.ids.device)
    }

    fn notifications(&self, user: Uuid) -> String {
        format!("nc/v1/h/{}/u/{user}/notifications", self.ids.hospital)
    }

    /// `POST /api/health-metrics` as the device (HTTP Basic: device id and secret).
    async fn post_reading(&self, secret: &str, body: &Value) -> (u16, Value) {
        post_reading(&self.app.client, self.ids.device, secret, body).await
    }

    async fn device_mqtt(&self) -> JsonClient {
        let d = self.ids.device.to_string();
        JsonClient::connect(self.running().mqtt_addr, &d, &d, PASSWORD, true).await
    }

    async fn person_mqtt(&self, who: &'static str, user: Uuid) -> JsonClient {
        JsonClient::connect(
            self.running().mqtt_addr,
            &format!("{user}-e2e"),
            &user.to_string(),
            &self.tokens[who],
            true,
        )
        .await
    }

    async fn ws(&self, token: Option<&str>) -> Result<Ws, u16> {
        ws_open(self.running().http_addr, self.ids.device, token).await
    }

    /// The device's alerts, as `who` sees them.
    async fn alerts(&self, who: &Client) -> Vec<Value> {
        let r = who.get(&format!("/api/alerts?deviceId={}&limit=200", self.ids.device)).await;
        assert_eq!(r.status, 200, "GET /api/alerts: {}", r.text);
        r.body["items"].as_array().expect("items").clone()
    }

    async fn sessions(&self) -> Vec<Value> {
        let r = self.doctor.get(&format!("/api/patients/{}/sessions", self.ids.patient)).await;
        assert_eq!(r.status, 200, "GET sessions: {}", r.text);
        r.body["items"].as_array().expect("items").clone()
    }
}

async fn post_reading(client: &Client, device: Uuid, secret: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .http
        .post(format!("{}/api/health-metrics", client.base))
        .basic_auth(device, Some(secret))
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------
// Payloads and time.
// ---------------------------------------------------------------------------------------

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a timestamp, got {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .with_timezone(&Utc)
}

/// Now, to the whole second (readings in these tests sit on whole seconds).
fn now_s() -> DateTime<Utc> {
    Utc::now().duration_trunc(chrono::Duration::seconds(1)).expect("trunc")
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// A valid reading; `extra` overrides fields (a null removes the field).
fn reading(seq: i64, at: DateTime<Utc>, patient: Option<Uuid>, extra: Value) -> Value {
    let mut r = json!({
        "v": 1, "seq": seq, "ts": rfc3339(at),
        "heartRate": 72, "temperature": 98.5, "bloodPressure": 120, "diastolicPressure": 80,
        "oxygenSaturation": 97, "flowRate": 300, "totalVolume": 12, "systemStatus": "normal",
    });
    if let Some(p) = patient {
        r["patientId"] = json!(p);
    }
    let fields = r.as_object_mut().expect("object");
    for (k, v) in extra.as_object().expect("extra is an object") {
        if v.is_null() {
            fields.remove(k);
        } else {
            fields.insert(k.clone(), v.clone());
        }
    }
    r
}

// ---------------------------------------------------------------------------------------
// 1. Exactly once across a restart.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn readings_are_stored_exactly_once_across_a_service_restart() {
    const N: i64 = 300;
    let db = TestDb::migrated().await;
    let ids = seed(&db).await;
    let device = ids.device.to_string();
    let topic = format!("nc/v1/h/{}/d/{device}/telemetry", ids.hospital);
    let base = now_s() - secs(3600);
    let payload = move |seq: i64| {
        reading(seq, base + secs(seq), Some(ids.patient), json!({"heartRate": 60 + seq % 40})).to_string()
    };

    // Stream seq 1..=N with up to 20 in flight; stop the service after the first third is acknowledged.
    let first = App::new(test_config(&db.url)).start().await.expect("the service starts");
    let mut dev = JsonClient::connect(first.mqtt_addr, &device, &device, PASSWORD, false).await;
    let producer = {
        let (client, topic, payload) = (dev.client.clone(), topic.clone(), payload);
        tokio::spawn(async move {
            for seq in 1..=N {
                if client.publish(topic.clone(), QoS::AtLeastOnce, false, payload(seq)).await.is_err() {
                    return;
                }
            }
        })
    };
    dev.until("a third of the readings acknowledged", |m| (m.acked.len() as i64 >= N / 3).then_some(())).await;
    let stopping = tokio::spawn(first.stop());
    // Keep reading while the service drains: acknowledgements for what it had in hand arrive.
    dev.until_closed().await;
    stopping.await.expect("join").expect("clean shutdown");
    producer.abort();
    let acked: BTreeSet<i64> = dev.acked.iter().map(|i| *i as i64 + 1).collect();
    let sent = dev.sent;
    assert!((acked.len() as i64) < N, "the restart must come mid-stream ({} of {N} acknowledged)", acked.len());

    // Acknowledged means stored.
    let mut c = db.sql().await;
    let stored: BTreeSet<i64> = sqlx::query_scalar("SELECT seq FROM health_metrics WHERE device_id = $1")
        .bind(ids.device)
        .fetch_all(&mut c)
        .await
        .expect("query")
        .into_iter()
        .collect();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");

    // A new instance on the same database; the device reconnects (same client id, persistent
    // session) and resends everything unacknowledged, plus some acknowledged ones.
    let second = App::new(test_config(&db.url)).start().await.expect("the service restarts");
    let mut dev = JsonClient::connect(second.mqtt_addr, &device, &device, PASSWORD, false).await;
    let resend: Vec<i64> = (1..=N).filter(|s| !acked.contains(s) || s % 10 == 0).collect();
    for seq in &resend {
        dev.client.publish(topic.clone(), QoS::AtLeastOnce, false, payload(*seq)).await.expect("queued");
    }
    dev.until("every resent reading acknowledged", |m| (m.acked.len() == resend.len()).then_some(())).await;

    let counts: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, count(*) FROM health_metrics WHERE device_id = $1 GROUP BY seq ORDER BY seq")
            .bind(ids.device)
            .fetch_all(&mut c)
            .await
            .expect("query");
    let expected: Vec<(i64, i64)> = (1..=N).map(|s| (s, 1)).collect();
    assert_eq!(counts.len(), expected.len(), "every seq 1..={N} stored");
    assert_eq!(counts, expected, "every seq stored exactly once");
    // What is derived from new rows only also counts each reading once (after the deriver).
    db.derived().await;
    let rolled: i64 =
        sqlx::query_scalar("SELECT sum(heart_rate_n)::bigint FROM health_metric_rollups_hourly WHERE patient_id = $1")
            .bind(ids.patient)
            .fetch_one(&mut c)
            .await
            .expect("query");
    assert_eq!(rolled, N, "hourly rollups count each reading once");
    let (latest,): (i64,) = sqlx::query_as("SELECT seq FROM device_latest_metrics WHERE device_id = $1")
        .bind(ids.device)
        .fetch_one(&mut c)
        .await
        .expect("query");
    assert_eq!(latest, N, "the latest reading is the newest one");
    let received: i64 =
        sqlx::query_scalar("SELECT sum(readings_received)::bigint FROM device_sessions WHERE device_id = $1")
            .bind(ids.device)
            .fetch_one(&mut c)
            .await
            .expect("query");
    assert_eq!(received, N, "session counters count each reading once");
    eprintln!(
        "restart: {} of {N} acknowledged before the stop ({sent} sent), {} stored, {} resent",
        acked.len(),
        stored.len(),
        resend.len()
    );
    drop(dev);
    second.stop().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------
// 2. Rejections.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_readings_are_refused_naming_the_field_over_mqtt_and_http() {
    let w = World::new().await;
    let (p, now) = (w.ids.patient, now_s());
    // (what, payload, the field named)
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unknown field", reading(11, now, Some(p), json!({"bogus": 1})), "bogus"),
        ("wrong type", reading(12, now, Some(p), json!({"heartRate": "fast"})), "heartRate"),
        ("out of range", reading(13, now, Some(p), json!({"oxygenSaturation": 140})), "oxygenSaturation"),
        ("future timestamp", reading(14, now + secs(300), Some(p), json!({})), "ts"),
        ("too old", reading(15, now - chrono::Duration::days(40), Some(p), json!({})), "ts"),
        ("missing seq", reading(0, now, Some(p), json!({"seq": null})), "seq"),
        ("negative seq", reading(-1, now, Some(p), json!({})), "seq"),
        ("unknown patient", reading(16, now, Some(Uuid::now_v7()), json!({})), "patientId"),
        ("another hospital's patient", reading(17, now, Some(w.ids.patient_b), json!({})), "patientId"),
        ("malformed patient id", reading(18, now, None, json!({"patientId": "p1"})), "patientId"),
        ("payload version", reading(19, now, Some(p), json!({"v": 2})), "v"),
        ("bad system status", reading(20, now, Some(p), json!({"systemStatus": "ok"})), "systemStatus"),
        (
            "no measurement",
            json!({"v": 1, "seq": 21, "ts": rfc3339(now), "systemStatus": "normal", "patientId": p}),
            "payload",
        ),
    ];

    // MQTT: PUBACK (resending cannot help) and the reason on the device's errors topic.
    let mut dev = w.device_mqtt().await;
    let errors = w.device_topic("errors");
    assert!(matches!(dev.subscribe(&errors).await, SubscribeReasonCode::Success(_)), "a device reads its own errors");
    let telemetry = w.device_topic("telemetry");
    for (what, body, field) in &cases {
        dev.publish_acked(&telemetry, body).await;
        let e = dev.expect(&errors, what, |_| true).await;
        assert_eq!(e["field"], *field, "{what}: {e}");
        assert_eq!(e["code"], "validation_failed", "{what}: {e}");
        assert_eq!(e["seq"], body.get("seq").cloned().unwrap_or(Value::Null), "{what}: the error names the seq: {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {e}");
    }
    // Not JSON at all, and session messages that break a rule.
    dev.client.publish(telemetry.clone(), QoS::AtLeastOnce, false, "not json").await.expect("queued");
    let e = dev.expect(&errors, "garbage", |_| true).await;
    assert_eq!(e["field"], "payload", "{e}");
    let session = w.device_topic("session");
    for (what, body, field) in [
        ("start without a patient", json!({"v": 1, "event": "start", "ts": rfc3339(now)}), "patientId"),
        ("end without a session", json!({"v": 1, "event": "end", "ts": rfc3339(now)}), "event"),
        (
            "start for another hospital's patient",
            json!({"v": 1, "event": "start", "ts": rfc3339(now), "patientId": w.ids.patient_b}),
            "patientId",
        ),
        ("unknown event", json!({"v": 1, "event": "pause", "ts": rfc3339(now)}), "event"),
    ] {
        dev.publish_acked(&session, &body).await;
        let e = dev.expect(&errors, what, |_| true).await;
        assert_eq!(e["field"], field, "{what}: {e}");
    }
    // A valid reading is acknowledged and stored; no error follows.
    dev.publish_acked(&telemetry, &reading(1, now, Some(p), json!({}))).await;

    // HTTP: 422 naming the field, 401 for wrong credentials, 201 when valid (and on redelivery).
    for (what, body, field) in &cases {
        let (status, e) = w.post_reading(PASSWORD, body).await;
        assert_eq!(status, 422, "{what}: {e}");
        assert_eq!(e["code"], "validation_failed", "{what}: {e}");
        assert_eq!(e["fields"][0]["field"], *field, "{what}: {e}");
    }
    let valid = reading(2, now + secs(1), Some(p), json!({}));
    let (status, e) = w.post_reading("wrong-secret", &valid).await;
    assert_eq!((status, e["code"].as_str()), (401, Some("unauthorized")), "{e}");
    let (status, e) = post_reading(&w.app.client, Uuid::now_v7(), PASSWORD, &valid).await;
    assert_eq!(status, 401, "unknown device: {e}");
    for _ in 0..2 {
        let (status, body) = w.post_reading(PASSWORD, &valid).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body, json!({"status": "stored", "seq": 2}));
    }

    // Nothing rejected was stored: only the two valid readings, once each.
    dev.expect_silence(&errors, Duration::from_millis(200)).await;
    let mut c = w.app.db.sql().await;
    let stored: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seq, count(*) FROM health_metrics WHERE device_id = $1 GROUP BY seq ORDER BY seq")
            .bind(w.ids.device)
            .fetch_all(&mut c)
            .await
            .expect("query");
    assert_eq!(stored, vec![(1, 1), (2, 1)]);
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM device_sessions WHERE patient_id = $1")
        .bind(w.ids.patient_b)
        .fetch_one(&mut c)
        .await
        .expect("query");
    assert_eq!(sessions, 0, "no session for another hospital's patient");
}

// ---------------------------------------------------------------------------------------
// 3. Alerts.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn alerts_follow_delay_and_hysteresis_and_reach_only_the_care_team() {
    let w = World::new().await;
    let (ids, p) = (w.ids, Some(w.ids.patient));
    let r = w
        .doctor
        .put(
            &format!("/api/patients/{}/alert-thresholds", ids.patient),
            json!({"metric": "systolic_bp", "low": 90, "priority": "high", "delaySeconds": 30, "hysteresis": 5}),
        )
        .await;
    assert_eq!(r.status, 200, "the patient's doctor sets their limit: {}", r.text);

    // Who listens: the assigned doctor on MQTT (device alerts and own notifications) and the
    // live stream; an unassigned doctor is refused the device topic and hears nothing.
    let (alerts_topic, doctor_notes, doctor2_notes) =
        (w.device_topic("alerts"), w.notifications(ids.doctor), w.notifications(ids.doctor2));
    let mut doc = w.person_mqtt("doctor", ids.doctor).await;
    assert!(matches!(doc.subscribe(&alerts_topic).await, SubscribeReasonCode::Success(_)));
    assert!(matches!(doc.subscribe(&doctor_notes).await, SubscribeReasonCode::Success(_)));
    let mut doc2 = w.person_mqtt("doctor2", ids.doctor2).await;
    assert_eq!(doc2.subscribe(&alerts_topic).await, SubscribeReasonCode::Failure, "0x80 for an unassigned doctor");
    assert!(matches!(doc2.subscribe(&doctor2_notes).await, SubscribeReasonCode::Success(_)));
    assert_eq!(doc2.subscribe(&doctor_notes).await, SubscribeReasonCode::Failure, "another person's notifications");
    let mut live = w.ws(Some(&w.tokens["doctor"])).await.expect("the doctor's live stream");

    // Posts a reading and waits until the alert engine has evaluated it.
    let t0 = now_s() - secs(600);
    let mut seq = 0;
    let mut send = |at: DateTime<Utc>, extra: Value| {
        seq += 1;
        let (body, seq) = (reading(seq, at, p, extra), seq);
        let w = &w;
        async move {
            let (status, e) = w.post_reading(PASSWORD, &body).await;
            assert_eq!(status, 201, "{e}");
            seq
        }
    };
    let open_low = |alerts: &[Value]| -> Vec<Value> {
        alerts.iter().filter(|a| a["code"] == "systolic_bp_low").cloned().collect()
    };

    let s = send(t0 - secs(60), json!({})).await;
    ws_until_reading(&mut live, s).await;
    // Below the limit, but for less than the delay: no alert.
    for (dt, bp) in [(0, 85), (10, 84), (20, 86)] {
        let s = send(t0 + secs(dt), json!({"bloodPressure": bp})).await;
        ws_until_reading(&mut live, s).await;
        assert!(w.alerts(&w.doctor).await.is_empty(), "no alert {dt} s into the breach");
    }
    // 30 s into the breach: one alert.
    let s = send(t0 + secs(30), json!({"bloodPressure": 83})).await;
    ws_until_reading(&mut live, s).await;
    let alerts = open_low(&w.alerts(&w.doctor).await);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    let id = alert["id"].as_str().expect("id").to_owned();
    assert_eq!(alert["state"], "active");
    assert_eq!(alert["priority"], "high");
    assert_eq!(alert["kind"], "physiological");
    assert_eq!(alert["patientId"], json!(ids.patient));
    assert_eq!((alert["value"].as_f64(), alert["threshold"].as_f64()), (Some(83.0), Some(90.0)));
    let raised = parse_time(&alert["raisedAt"]);
    assert_eq!(raised, t0 + secs(30), "raised at the reading whose time completes the delay");
    // Delivered to the assigned doctor: device topic and notifications; not to the other doctor.
    let m = doc.expect(&alerts_topic, "raised", |m| m["event"] == "raised").await;
    assert_eq!((m["alert"]["id"].as_str(), m["alert"]["code"].as_str()), (Some(id.as_str()), Some("systolic_bp_low")));
    let n = doc.expect(&doctor_notes, "notification", |m| m["event"] == "raised").await;
    assert_eq!((n["type"].as_str(), n["alert"]["id"].as_str()), (Some("alert"), Some(id.as_str())));
    doc2.expect_silence(&doctor2_notes, Duration::from_millis(500)).await;

    // The breach goes on: no duplicate.
    for (dt, bp) in [(40, 80), (50, 82)] {
        let s = send(t0 + secs(dt), json!({"bloodPressure": bp})).await;
        ws_until_reading(&mut live, s).await;
    }
    assert_eq!(open_low(&w.alerts(&w.doctor).await).len(), 1, "one alert per condition");

    // Acknowledge: not by the patient, not listed for the admin; the doctor's is recorded.
    let ack = format!("/api/alerts/{id}/acknowledge");
    let r = w.patient.post(&ack, json!({})).await;
    assert_eq!(r.status, 403, "a patient cannot acknowledge: {}", r.text);
    let r = w.admin.get("/api/alerts").await;
    assert_eq!(
        (r.status, r.body["total"].as_u64()),
        (200, Some(0)),
        "admins see only alerts escalated to them: {}",
        r.text
    );
    let before = Utc::now();
    let r = w.doctor.post(&ack, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["state"], "acknowledged");
    assert_eq!(r.body["acknowledgedBy"], json!(ids.doctor));
    let acked_at = parse_time(&r.body["acknowledgedAt"]);
    assert!(acked_at >= before - secs(1) && acked_at <= Utc::now() + secs(1), "{acked_at}");
    let m = doc.expect(&alerts_topic, "acknowledged", |m| m["event"] == "acknowledged").await;
    assert_eq!(m["alert"]["acknowledgedBy"], json!(ids.doctor));

    // Back above the limit but inside the hysteresis band: still open. Past it: cleared.
    let s = send(t0 + secs(60), json!({"bloodPressure": 92})).await;
    ws_until_reading(&mut live, s).await;
    let a = open_low(&w.alerts(&w.doctor).await);
    assert_eq!((a.len(), a[0]["state"].as_str()), (1, Some("acknowledged")), "{a:?}");
    let s = send(t0 + secs(70), json!({"bloodPressure": 96})).await;
    ws_until_reading(&mut live, s).await;
    let a = open_low(&w.alerts(&w.doctor).await);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["state"], "cleared");
    assert_eq!(a[0].get("clearedBy").cloned().unwrap_or(Value::Null), Value::Null, "cleared automatically");
    assert_eq!(parse_time(&a[0]["clearedAt"]), t0 + secs(70), "cleared at the reading's time");
    assert_eq!(a[0]["acknowledgedBy"], json!(ids.doctor), "the acknowledgement stays on record");
    doc.expect(&alerts_topic, "cleared", |m| m["event"] == "cleared" && m["alert"]["id"] == id.as_str()).await;
    let r = w.doctor.post(&ack, json!({})).await;
    assert_eq!(r.status, 409, "a cleared alert cannot be acknowledged: {}", r.text);

    // The machine reports danger: a technical high-priority alert at once; normal clears it.
    let s = send(t0 + secs(80), json!({"systemStatus": "danger"})).await;
    ws_until_reading(&mut live, s).await;
    let danger: Vec<Value> =
        w.alerts(&w.doctor).await.into_iter().filter(|a| a["code"] == "system_status_danger").collect();
    assert_eq!(danger.len(), 1, "{danger:?}");
    assert_eq!(
        (danger[0]["kind"].as_str(), danger[0]["priority"].as_str(), danger[0]["state"].as_str()),
        (Some("technical"), Some("high"), Some("active"))
    );
    doc.expect(&doctor_notes, "danger notification", |m| m["alert"]["code"] == "system_status_danger").await;
    let s = send(t0 + secs(90), json!({"systemStatus": "normal"})).await;
    ws_until_reading(&mut live, s).await;
    let danger: Vec<Value> =
        w.alerts(&w.doctor).await.into_iter().filter(|a| a["code"] == "system_status_danger").collect();
    assert_eq!(danger[0]["state"], "cleared");

    // The device's MQTT connection is lost abruptly: device_offline; reconnecting clears it.
    let dev = w.device_mqtt().await;
    dev.drop_abruptly().await;
    let m = doc.expect(&alerts_topic, "device_offline", |m| m["alert"]["code"] == "device_offline").await;
    assert_eq!(m["event"], "raised");
    let offline = m["alert"]["id"].as_str().expect("id").to_owned();
    let _dev = w.device_mqtt().await;
    doc.expect(&alerts_topic, "device_offline cleared", |m| {
        m["event"] == "cleared" && m["alert"]["id"] == offline.as_str()
    })
    .await;
    let a: Vec<Value> = w.alerts(&w.doctor).await.into_iter().filter(|a| a["code"] == "device_offline").collect();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0]["state"].as_str(), a[0]["kind"].as_str()), (Some("cleared"), Some("technical")), "{a:?}");
    assert_eq!(a[0].get("clearedBy").cloned().unwrap_or(Value::Null), Value::Null);

    // Nothing at all reached the unassigned doctor.
    doc2.expect_silence(&doctor2_notes, Duration::from_millis(100)).await;
    let mut c = w.app.db.sql().await;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM alerts WHERE device_id = $1 AND code = 'systolic_bp_low'")
            .bind(ids.device)
            .fetch_one(&mut c)
            .await
            .expect("query");
    assert_eq!(total, 1, "one stored alert for the whole breach");
}

/// The alert engine keeps the limits in memory; a limit set or changed after readings were
/// evaluated applies from the next reading on (every node hears of the change at its commit).
#[tokio::test]
async fn a_limit_set_or_changed_applies_from_the_next_reading() {
    let w = World::new().await;
    let (ids, p) = (w.ids, Some(w.ids.patient));
    let mut live = w.ws(Some(&w.tokens["doctor"])).await.expect("the doctor's live stream");
    let t0 = now_s() - secs(600);
    let send = |seq: i64, at: DateTime<Utc>, bp: i64| {
        let body = reading(seq, at, p, json!({"bloodPressure": bp}));
        let w = &w;
        async move {
            let (status, e) = w.post_reading(PASSWORD, &body).await;
            assert_eq!(status, 201, "{e}");
        }
    };
    let low =
        |alerts: Vec<Value>| -> Vec<Value> { alerts.into_iter().filter(|a| a["code"] == "systolic_bp_low").collect() };
    let limit = |low: i64| {
        let w = &w;
        async move {
            let r = w
                .doctor
                .put(
                    &format!("/api/patients/{}/alert-thresholds", ids.patient),
                    json!({"metric": "systolic_bp", "low": low, "priority": "high", "delaySeconds": 0, "hysteresis": 5}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };

    // No limit yet: 85 is evaluated (and the engine keeps that there is none) and raises nothing.
    send(1, t0, 85).await;
    ws_until_reading(&mut live, 1).await;
    assert!(low(w.alerts(&w.doctor).await).is_empty());
    // A limit of 90: the next reading of 85 raises at once.
    limit(90).await;
    send(2, t0 + secs(10), 85).await;
    ws_until_reading(&mut live, 2).await;
    let a = low(w.alerts(&w.doctor).await);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0]["state"].as_str(), a[0]["threshold"].as_f64()), (Some("active"), Some(90.0)), "{a:?}");
    // Lowered to 80: 86 is past its hysteresis band, the condition ends.
    limit(80).await;
    send(3, t0 + secs(20), 86).await;
    ws_until_reading(&mut live, 3).await;
    let a = low(w.alerts(&w.doctor).await);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["state"], "cleared", "{a:?}");
}

// ---------------------------------------------------------------------------------------
// 4. Trends, history and current values against SQL.
// ---------------------------------------------------------------------------------------

/// (bucket, metric) → (min, avg, max, count)
type Stats = BTreeMap<(DateTime<Utc>, String), (f64, f64, f64, i64)>;

async fn sql_stats(
    c: &mut sqlx::PgConnection,
    patient: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: &str,
    metrics: &[(&str, &str)],
) -> Stats {
    let mut out = Stats::new();
    for (json_name, column) in metrics {
        let rows: Vec<(DateTime<Utc>, f64, f64, f64, i64)> = sqlx::query_as(&format!(
            "SELECT time_bucket($4::interval, time) AS b, min({column})::float8, avg({column})::float8,
                    max({column})::float8, count({column})
               FROM health_metrics WHERE patient_id = $1 AND time >= $2 AND time < $3 AND {column} IS NOT NULL
              GROUP BY b ORDER BY b"
        ))
        .bind(patient)
        .bind(from)
        .bind(to)
        .bind(bucket)
        .fetch_all(&mut *c)
        .await
        .expect("query");
        for (b, min, avg, max, n) in rows {
            out.insert((b, json_name.to_string()), (min, avg, max, n));
        }
    }
    out
}

fn api_stats(body: &Value) -> Stats {
    let mut out = Stats::new();
    for b in body["buckets"].as_array().expect("buckets") {
        let at = parse_time(&b["bucket"]);
        for s in b["stats"].as_array().expect("stats") {
            let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s}"));
            out.insert(
                (at, s["metric"].as_str().expect("metric").to_owned()),
                (f("min"), f("avg"), f("max"), s["count"].as_i64().expect("count")),
            );
        }
    }
    out
}

fn assert_same_stats(what: &str, api: &Stats, sql: &Stats) {
    assert_eq!(api.keys().collect::<Vec<_>>(), sql.keys().collect::<Vec<_>>(), "{what}: the same buckets and metrics");
    for (k, (min, avg, max, n)) in sql {
        let a = api[k];
        assert_eq!((a.0, a.2, a.3), (*min, *max, *n), "{what} {k:?}: min/max/count");
        assert!((a.1 - avg).abs() < 6e-4, "{what} {k:?}: avg {} vs SQL {avg}", a.1);
    }
}

#[tokio::test]
async fn trends_history_and_current_values_agree_with_sql() {
    let w = World::new().await;
    let (ids, p) = (w.ids, w.ids.patient);
    // 60 readings, one every 5 minutes across 5 hours, with known values.
    let base = now_s().duration_trunc(chrono::Duration::hours(1)).expect("trunc") - chrono::Duration::hours(6);
    let at = |i: i64| base + chrono::Duration::minutes(5 * i) + secs(7);
    let mut dev = w.device_mqtt().await;
    let telemetry = w.device_topic("telemetry");
    const N: i64 = 60;
    for i in 0..N {
        let body = reading(
            i + 1,
            at(i),
            Some(p),
            json!({
                "heartRate": 60 + (i * 7) % 40,
                "bloodPressure": 100 + (i * 13) % 50,
                "temperature": 97.5 + (i % 4) as f64 * 0.5,
                "oxygenSaturation": 90 + i % 10,
            }),
        );
        dev.publish(&telemetry, &body).await;
    }
    dev.until("every reading acknowledged", |m| (m.acked.len() as i64 == N).then_some(())).await;
    // Current values and trends follow the readings after the acknowledgement.
    w.app.db.derived().await;

    let mut c = w.app.db.sql().await;
    let (from, to) = (base, base + chrono::Duration::hours(6));
    let q = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let metrics = [
        ("bloodPressure", "systolic_bp"),
        ("heartRate", "heart_rate"),
        ("oxygenSaturation", "spo2"),
        ("temperature", "temperature_f"),
    ];
    let names = metrics.iter().map(|m| m.0).collect::<Vec<_>>().join(",");
    for (resolution, interval, source) in [
        ("1m", "1 minute", "rollup"),
        ("15m", "15 minutes", "rollup"),
        ("1h", "1 hour", "rollup"),
        ("6h", "6 hours", "rollup"),
    ] {
        let r = w
            .doctor
            .get(&format!(
                "/api/patients/{p}/health-trends?from={}&to={}&resolution={resolution}&metrics={names}",
                q(from),
                q(to)
            ))
            .await;
        assert_eq!(r.status, 200, "{resolution}: {}", r.text);
        assert_eq!(r.body["source"], source, "{resolution}");
        let api = api_stats(&r.body);
        let sql = sql_stats(&mut c, p, from, to, interval, &metrics).await;
        assert_eq!(sql.values().map(|s| s.3).sum::<i64>(), N * metrics.len() as i64, "SQL sees every reading");
        assert_same_stats(resolution, &api, &sql);
    }

    // History: pages of 7, newest first, walk the range with no gap and no repeat.
    let expected: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT time, seq FROM health_metrics WHERE patient_id = $1 AND time >= $2 AND time < $3
          ORDER BY time DESC, device_id DESC, seq DESC",
    )
    .bind(p)
    .bind(from)
    .bind(to)
    .fetch_all(&mut c)
    .await
    .expect("query");
    assert_eq!(expected.len() as i64, N);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/health-metrics/history/{p}?from={}&to={}&limit=7", q(from), q(to));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = w.doctor.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let items = r.body["items"].as_array().expect("items");
        pages += 1;
        assert!(items.len() <= 7);
        for it in items {
            assert_eq!(it["deviceId"], json!(ids.device));
            let seq = it["seq"].as_i64().expect("seq");
            // Values as sent (seq = i + 1).
            assert_eq!(it["values"]["heartRate"].as_f64(), Some((60 + ((seq - 1) * 7) % 40) as f64), "{it}");
            walked.push((parse_time(&it["time"]), seq));
        }
        match r.body.get("nextCursor").and_then(Value::as_str) {
            Some(next) => {
                assert_eq!(items.len(), 7, "only the last page is short");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
        assert!(pages < 100, "the walk ends");
    }
    assert_eq!(walked, expected, "history pages = SQL order, no gaps, no repeats");
    assert_eq!(pages, (N + 6) / 7);
    let r = w.doctor.get(&format!("/api/patients/{p}/health-metrics?from={}&to={}&limit=7", q(from), q(to))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["items"][0]["seq"], json!(N), "the patient route pages the same readings");

    // Current values: the newest reading; an older one arriving late does not replace it.
    let current = |w: &World| {
        let path = format!("/api/health-metrics/current/{p}");
        let doctor = w.doctor.clone();
        async move { doctor.get(&path).await }
    };
    let r = current(&w).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["seq"].as_i64(), parse_time(&r.body["time"])), (Some(N), at(N - 1)));
    assert_eq!(r.body["reading"]["heartRate"].as_f64(), Some((60 + ((N - 1) * 7) % 40) as f64));
    dev.publish_acked(&telemetry, &reading(N + 1, at(0) - secs(60), Some(p), json!({}))).await;
    let r = current(&w).await;
    assert_eq!(r.body["seq"].as_i64(), Some(N), "the latest only moves forward in time: {}", r.body);
    // Access: the unassigned doctor and the admin read nothing.
    assert_eq!(w.doctor2.get(&format!("/api/health-metrics/current/{p}")).await.status, 403);
    assert_eq!(w.admin.get(&format!("/api/patients/{p}/health-trends")).await.status, 403);
    assert_eq!(w.patient.get(&format!("/api/health-metrics/current/{p}")).await.status, 200, "patients read their own");
}

// ---------------------------------------------------------------------------------------
// 5. Sessions.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sessions_complete_with_a_summary_or_are_interrupted_by_inactivity() {
    let mut w = World::new().await;
    let p = w.ids.patient;
    // A four-hour treatment, sent the way a machine pipelines it: start, readings every
    // 30 minutes (one of the nine expected is missing), end.
    let start = now_s() - chrono::Duration::hours(4);
    let half_hour = chrono::Duration::minutes(30);
    let systolic = [120, 110, 100, 95, 105, 115, 118, 121];
    let mut dev = w.device_mqtt().await;
    let errors = w.device_topic("errors");
    assert!(matches!(dev.subscribe(&errors).await, SubscribeReasonCode::Success(_)));
    let (session_topic, telemetry) = (w.device_topic("session"), w.device_topic("telemetry"));
    dev.publish(
        &session_topic,
        &json!({"v": 1, "event": "start", "ts": rfc3339(start), "patientId": p, "expectedIntervalMs": 1_800_000}),
    )
    .await;
    for (k, bp) in systolic.iter().enumerate() {
        let k = k as i64;
        let body = reading(
            k + 1,
            start + half_hour * k as i32,
            None,
            json!({"bloodPressure": bp, "ufVolume": 400 * k, "ufGoal": 3000, "ufRate": 700}),
        );
        dev.publish(&telemetry, &body).await;
    }
    dev.publish(&session_topic, &json!({"v": 1, "event": "end", "ts": rfc3339(start + chrono::Duration::hours(4))}))
        .await;
    dev.until("start, readings and end acknowledged", |m| (m.acked.len() == systolic.len() + 2).then_some(())).await;
    dev.expect_silence(&errors, Duration::from_millis(200)).await;

    let sessions = w.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(parse_time(&s["startedAt"]), start);
    assert_eq!(parse_time(&s["endedAt"]), start + chrono::Duration::hours(4));
    assert_eq!(s["readingsReceived"], 8, "{s}");
    assert_eq!(s["readingsExpected"], 9, "{s}");
    assert_eq!(s["completenessPct"].as_f64(), Some(88.89), "8 of 9: {s}");
    assert_eq!(s["nadirSystolic"].as_f64(), Some(95.0), "{s}");
    // 2800 mL removed from a 70 kg patient in 4 h.
    assert_eq!(s["ufRateMlKgH"].as_f64(), Some(10.0), "{s}");
    let summary = &s["summary"];
    assert_eq!(summary["durationSeconds"], 4 * 3600, "{summary}");
    assert_eq!(summary["ultrafiltrationMl"].as_f64(), Some(2800.0), "{summary}");
    let bp = &summary["metrics"]["bloodPressure"];
    assert!(summary["metrics"].get("conductivity").is_none(), "metrics without data are left out: {summary}");
    let avg = systolic.iter().sum::<i32>() as f64 / systolic.len() as f64;
    assert_eq!((bp["min"].as_f64(), bp["max"].as_f64()), (Some(95.0), Some(121.0)), "{summary}");
    assert!((bp["avg"].as_f64().expect("avg") - avg).abs() < 0.006, "{summary}");
    let mut c = w.app.db.sql().await;
    let bound: i64 =
        sqlx::query_scalar("SELECT count(*) FROM health_metrics WHERE session_id = $1::uuid AND patient_id = $2")
            .bind(s["id"].as_str().expect("id"))
            .bind(p)
            .fetch_one(&mut c)
            .await
            .expect("query");
    assert_eq!(bound, 8, "every reading bound to the session and its patient");
    let last: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT last_dialysis_at FROM patients WHERE id = $1")
        .bind(p)
        .fetch_one(&mut c)
        .await
        .expect("query");
    assert_eq!(last, Some(start + chrono::Duration::hours(4)), "the patient's last dialysis");
    drop(dev);

    // The same database served with a 2 s inactivity timeout: a session the machine stops
    // feeding ends as interrupted, at its last reading.
    let first = w.app.app.take().expect("running");
    first.stop().await.expect("clean shutdown");
    let settings = nc_ingest::IngestSettings { session_timeout: Duration::from_secs(2), ..Default::default() };
    let running = App::new(test_config(&w.app.db.url)).with_ingest_settings(settings).start().await.expect("restarts");
    w.app.client = Client::new(format!("http://{}", running.http_addr));
    w.doctor = w.app.client.with_token(&w.tokens["doctor"]);
    w.app.app = Some(running);
    let last = now_s() - secs(1);
    let (status, e) = w.post_reading(PASSWORD, &reading(100, last, Some(p), json!({}))).await;
    assert_eq!(status, 201, "{e}");
    let started = Instant::now();
    let interrupted = loop {
        // Waiting on the service's own timer: poll the API.
        let sessions = w.sessions().await;
        let newest = sessions[0].clone();
        assert_eq!(sessions.len(), 2, "a new session started with the reading: {sessions:?}");
        if newest["status"] != "active" {
            break newest;
        }
        assert!(started.elapsed() < LONG_WAIT, "the session was not interrupted: {newest}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(interrupted["status"], "interrupted", "{interrupted}");
    assert_eq!(parse_time(&interrupted["endedAt"]), last, "ends at its last reading");
    assert_eq!(interrupted["readingsReceived"], 1);
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
}

/// Inactivity is judged by when the service last heard from the machine, not by reading
/// timestamps: a session started (or fed) with past timestamps is not interrupted at once.
#[tokio::test]
async fn session_inactivity_is_measured_on_the_server_clock() {
    use nc_domain::{DeviceId, HospitalId, PatientId};
    let db = TestDb::migrated().await;
    let ids = seed(&db).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let sessions = nc_ingest::sessions::Sessions::default();
    let began = now_s() - chrono::Duration::hours(1);
    let session = sessions
        .start_explicit(&pool, DeviceId(ids.device), HospitalId(ids.hospital), PatientId(ids.patient), began, None)
        .await
        .expect("db")
        .expect("started");
    let swept = sessions.sweep(&pool, Duration::from_secs(300)).await.expect("sweep");
    assert!(swept.is_empty(), "a session started a moment ago (with a past timestamp) is not inactive: {swept:?}");
    // Nothing heard since: with no grace at all it is interrupted, at its start.
    let swept = sessions.sweep(&pool, Duration::ZERO).await.expect("sweep");
    assert_eq!(swept, vec![session]);
    let (status, ended): (String, DateTime<Utc>) =
        sqlx::query_as("SELECT status, ended_at FROM device_sessions WHERE id = $1")
            .bind(session.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("query");
    assert_eq!((status.as_str(), ended), ("interrupted", began));
    pool.close().await;
}

/// A machine streaming readings that nobody subscribes to keeps its connection past its
/// keep-alive. MQTT lets a client that keeps publishing skip PINGREQs; the edge forwards
/// nothing upstream then (nobody wants those readings), so it keeps its own link to the core
/// alive with PINGREQs of its own (before, the core ended that link after 1.5 × the
/// keep-alive and the machine was cut off, and reconnected, every few minutes). The core's
/// answers to the edge's pings never reach the machine.
#[tokio::test]
async fn a_machine_nobody_watches_keeps_its_connection_past_its_keep_alive() {
    use crate::support::{Got, RawClient};
    use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
    let w = World::new().await;
    let d = w.ids.device.to_string();
    let mut connect = Connect::new(d.clone());
    connect.keep_alive = 2;
    connect.set_login(d.clone(), PASSWORD);
    let mut raw = RawClient::open(w.running().mqtt_addr, connect).await.expect("connects");
    let topic = w.device_topic("telemetry");
    let start = now_s() - secs(30);
    // 6 s of readings, one every 200 ms, and no PINGREQ: the upstream link would have
    // died at 3 s.
    let mut acked = 0;
    for seq in 1..=30i64 {
        let body = reading(seq, start + chrono::Duration::milliseconds(200 * seq), None, json!({}));
        let mut publish = Publish::new(topic.clone(), QoS::AtLeastOnce, body.to_string());
        publish.pkid = raw.next_pkid();
        raw.send(Packet::Publish(publish)).await.expect("sent");
        loop {
            match raw.recv(Duration::from_millis(200)).await {
                Got::Packet(Packet::PubAck(_)) => acked += 1,
                Got::Packet(Packet::PingResp) => panic!("a PINGRESP the machine never asked for"),
                Got::Packet(other) => panic!("unexpected {other:?}"),
                Got::Closed => panic!("the connection was closed after {acked} acknowledgements"),
                Got::Timeout => break,
            }
        }
    }
    while acked < 30 {
        match raw.recv(LONG_WAIT).await {
            Got::Packet(Packet::PubAck(_)) => acked += 1,
            other => panic!("after {acked} acknowledgements: {other:?}"),
        }
    }
}

/// A machine's session change (its summary, over the whole treatment) holds up that machine
/// only: while one machine's turnover is stuck behind a lock, another machine starts its
/// treatment and its reading is acknowledged. (A shift change starts and ends hundreds of
/// sessions in a minute; before, one lock for every device made them all wait in turn.)
#[tokio::test]
async fn a_session_change_that_cannot_finish_holds_up_only_its_own_machine() {
    let w = World::new().await;
    let (db, h) = (&w.app.db, w.ids.hospital);
    let other = db.machine(h, "hd-2", "Machine 2", None, PASSWORD).await;
    let next_patient = db.patient(h, "p2", "Patient Two", PatientLinks::default()).await;
    let other_patient = db.patient(h, "p3", "Patient Three", PatientLinks::default()).await;
    let mut c = w.app.db.sql().await;
    let t0 = now_s();
    let mut a = w.device_mqtt().await;
    let telemetry = w.device_topic("telemetry");
    a.publish_acked(&telemetry, &reading(1, t0, Some(w.ids.patient), json!({}))).await;

    // Machine A's session row is locked, so its turnover (end with summary, then start)
    // cannot finish.
    let mut blocker = w.app.db.sql().await;
    exec(&mut blocker, "BEGIN").await;
    exec(&mut blocker, &format!("SELECT 1 FROM device_sessions WHERE device_id = '{}' FOR UPDATE", w.ids.device)).await;
    a.publish(&telemetry, &reading(2, t0 + secs(1), Some(next_patient), json!({}))).await;
    let waiting =
        tokio::time::timeout(Duration::from_millis(500), a.until("A's PUBACK", |m| (m.acked.len() > 1).then_some(())))
            .await;
    assert!(waiting.is_err(), "A's turnover is stuck behind the lock");

    // Machine B starts its treatment meanwhile: stored and acknowledged.
    let b_id = other.to_string();
    let mut b = JsonClient::connect(w.running().mqtt_addr, &b_id, &b_id, PASSWORD, true).await;
    let b_topic = format!("nc/v1/h/{}/d/{other}/telemetry", w.ids.hospital);
    b.publish_acked(&b_topic, &reading(1, t0 + secs(1), Some(other_patient), json!({}))).await;
    let (b_sessions,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM device_sessions WHERE device_id = '{other}' AND status = 'active'"
    ))
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(b_sessions, 1, "B's session started while A's change waited");

    // Released: A's turnover completes and its reading is acknowledged.
    exec(&mut blocker, "ROLLBACK").await;
    a.until("A's PUBACK after the lock", |m| (m.acked.len() > 1).then_some(())).await;
    let a_sessions: Vec<(Option<Uuid>, String)> = sqlx::query_as(&format!(
        "SELECT patient_id, status FROM device_sessions WHERE device_id = '{}' ORDER BY started_at, created_at",
        w.ids.device
    ))
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        a_sessions,
        vec![(Some(w.ids.patient), "completed".to_owned()), (Some(next_patient), "active".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------
// 6. The live stream.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn live_stream_is_authorized_and_closes_when_access_is_revoked() {
    let w = World::new().await;
    let ids = w.ids;
    assert_eq!(w.ws(None).await.err(), Some(401), "no token");
    assert_eq!(w.ws(Some("not-a-token")).await.err(), Some(401), "invalid token");
    assert_eq!(w.ws(Some(&w.tokens["doctor2"])).await.err(), Some(403), "an unassigned doctor");
    assert_eq!(w.ws(Some(&w.tokens["admin"])).await.err(), Some(403), "admins do not read clinical data");
    assert_eq!(
        ws_open(w.running().http_addr, Uuid::now_v7(), Some(&w.tokens["doctor"])).await.err(),
        Some(404),
        "an unknown device"
    );

    let mut live = w.ws(Some(&w.tokens["doctor"])).await.expect("the assigned doctor's stream");
    let at = now_s();
    let (status, e) = w.post_reading(PASSWORD, &reading(1, at, Some(ids.patient), json!({"heartRate": 77}))).await;
    assert_eq!(status, 201, "{e}");
    let (m, _) = ws_until_reading(&mut live, 1).await;
    assert_eq!(m["deviceId"], json!(ids.device));
    assert_eq!(m["patientId"], json!(ids.patient));
    assert_eq!(parse_time(&m["time"]), at);
    assert_eq!(m["reading"]["heartRate"].as_f64(), Some(77.0), "{m}");

    // The admin ends the doctor's assignment: the stream closes with 4403 within ~1.5 s.
    let revoked = Instant::now();
    let r =
        w.admin.delete("/api/users/assign-device", Some(json!({"userId": ids.doctor, "deviceId": ids.device}))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let closed = loop {
        match ws_next(&mut live).await {
            Live::Closed(code) => break code,
            Live::Json(_) => {}
        }
    };
    let took = revoked.elapsed();
    assert_eq!(closed, Some(4403), "closed as revoked");
    assert!(took < Duration::from_millis(2000), "closed {took:?} after the revocation");
    eprintln!("live stream closed {took:?} after the revocation");
    assert_eq!(w.ws(Some(&w.tokens["doctor"])).await.err(), Some(403), "and cannot reopen");
}

// ---------------------------------------------------------------------------------------
// 7. Retention.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn retention_drops_old_raw_chunks_and_keeps_rollups_and_sessions() {
    let db = TestDb::migrated().await;
    let ids = seed(&db).await;
    let mut c = db.sql().await;
    let old = now_s() - chrono::Duration::days(400);
    let old_hour = old.duration_trunc(chrono::Duration::hours(1)).expect("trunc");
    let recent = now_s() - chrono::Duration::hours(1);
    for (seq, at, hr) in [(1_i64, old, 70.0_f32), (2, old + secs(60), 80.0), (3, recent, 75.0)] {
        sqlx::query(
            "INSERT INTO health_metrics (time, device_id, seq, hospital_id, patient_id, system_status, heart_rate)
             VALUES ($1, $2, $3, $4, $5, 'normal', $6)",
        )
        .bind(at)
        .bind(ids.device)
        .bind(seq)
        .bind(ids.hospital)
        .bind(ids.patient)
        .bind(hr)
        .execute(&mut c)
        .await
        .expect("insert");
    }
    sqlx::query(
        "INSERT INTO health_metric_rollups_hourly (patient_id, bucket, heart_rate_n, heart_rate_sum, heart_rate_min, heart_rate_max)
         VALUES ($1, $2, 2, 150, 70, 80)",
    )
    .bind(ids.patient)
    .bind(old_hour)
    .execute(&mut c)
    .await
    .expect("insert");
    let session = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, ended_at, status, readings_received, summary)
         VALUES ($1, $2, $3, $4, $5, $6, 'completed', 2, '{\"durationSeconds\": 60}')",
    )
    .bind(session)
    .bind(ids.hospital)
    .bind(ids.device)
    .bind(ids.patient)
    .bind(old)
    .bind(old + secs(60))
    .execute(&mut c)
    .await
    .expect("insert");

    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let dropped = nc_ingest::query::drop_old_chunks(&pool, 365).await.expect("drop_chunks");
    assert!(dropped >= 1, "the old chunk is dropped");
    assert_eq!(nc_ingest::query::drop_old_chunks(&pool, 365).await.expect("drop_chunks"), 0, "and only once");

    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM health_metrics WHERE device_id = $1 ORDER BY seq")
        .bind(ids.device)
        .fetch_all(&mut c)
        .await
        .expect("query");
    assert_eq!(seqs, vec![3], "old raw readings gone, recent ones kept");
    let rollups: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metric_rollups_hourly WHERE patient_id = $1")
        .bind(ids.patient)
        .fetch_one(&mut c)
        .await
        .expect("query");
    assert_eq!(rollups, 1, "rollups stay");
    let (status, summary): (String, Value) =
        sqlx::query_as("SELECT status, summary FROM device_sessions WHERE id = $1")
            .bind(session)
            .fetch_one(&mut c)
            .await
            .expect("the session stays");
    assert_eq!((status.as_str(), summary), ("completed", json!({"durationSeconds": 60})));
    // Long-range trends still answer from the rollups.
    let (source, buckets) = nc_ingest::query::trends(
        &pool,
        ids.patient,
        old_hour - chrono::Duration::days(1),
        old_hour + chrono::Duration::days(1),
        chrono::Duration::hours(1),
        &["heartRate"],
        None,
    )
    .await
    .expect("trends");
    assert_eq!(source, nc_ingest::query::TrendSource::Rollup);
    assert_eq!(buckets.len(), 1);
    let s = &buckets[0].stats[0];
    assert_eq!((buckets[0].bucket, s.min, s.avg, s.max, s.count), (old_hour, 70.0, 75.0, 80.0, 2));
    pool.close().await;
}

/// A machine's readings reach the live stream (and so the alarm conditions, which see the
/// same committed batches) in the order it sent them, even when binding the first ones waits
/// on the database (the patient check and the session start) while later ones would not.
#[tokio::test]
async fn a_machines_readings_reach_the_live_stream_in_the_order_it_sent_them() {
    let w = World::new().await;
    let mut ws = w.ws(Some(&w.tokens["doctor"])).await.expect("stream");
    let m = w.device_mqtt().await;
    let telemetry = w.device_topic("telemetry");
    let start = Utc::now() - chrono::Duration::seconds(20);
    // Fewer than the client queues while the first ones wait (20 in flight, 64 queued).
    let n = 60;
    // The patient check waits for the database: held up by a lock, then all at once.
    let mut sql = w.app.db.sql().await;
    sqlx::query("BEGIN").execute(&mut sql).await.unwrap();
    sqlx::query("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE").execute(&mut sql).await.unwrap();
    for seq in 1..=n {
        let at = start + chrono::Duration::milliseconds(100 * seq);
        m.publish(&telemetry, &reading(seq, at, Some(w.ids.patient), json!({}))).await;
    }
    // Under test: the lock is held a while, the readings pile up behind it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("COMMIT").execute(&mut sql).await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < n as usize {
        match ws_next(&mut ws).await {
            Live::Json(v) if v["type"] == "reading" => seqs.push(v["seq"].as_i64().expect("seq")),
            Live::Json(_) => {}
            Live::Closed(code) => panic!("the stream closed ({code:?})"),
        }
    }
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "in the machine's order");
}
