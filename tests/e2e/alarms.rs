//! The alarm system end to end: escalation tier by tier until someone answers (and across a
//! `kill -9`), nobody reachable, snooze and re-alert, clearing rules, latching, duplicate
//! suppression across a session restart, connection alarms (delay, flapping), the history
//! and the audit log, alarm-burden analytics, and who may see, act on and be notified of an
//! alarm. Real database, real MQTT clients and WebSocket streams.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use nephrocare::config::Config;
use serde_json::{json, Value};
use sqlx::Executor;
use uuid::Uuid;

use crate::support::{
    eventually, test_config, ws_open, ws_until_reading, Client, JsonClient, PatientLinks, Service, TestApp, TestDb,
    LONG_WAIT,
};

pub(crate) const PASSWORD: &str = "Alarms-pass-2026";

/// The people of the world, by name: (role, ward, hospital B?).
const PEOPLE: &[(&str, &str, Option<&str>, bool)] = &[
    ("admin", "admin", None, false),
    // The care team of machine d1 (tier 1).
    ("doc", "doctor", Some("North"), false),
    ("tec", "technician", Some("North"), false),
    // Tier 2 of d1: the other doctor of its ward.
    ("ward_doc", "doctor", Some("North"), false),
    // A doctor of another ward: not tier 2 of d1 (its ward has doctors).
    ("south_doc", "doctor", Some("South"), false),
    ("pat", "patient", None, false),
    ("doc_b", "doctor", Some("North"), true),
    ("admin_b", "admin", None, true),
];

pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) hospital: Uuid,
    pub(crate) hospital_b: Uuid,
    pub(crate) device: Uuid,
    pub(crate) patient: Uuid,
    pub(crate) patient2: Uuid,
    pub(crate) users: HashMap<&'static str, Uuid>,
    pub(crate) tokens: HashMap<&'static str, String>,
}

async fn exec(c: &mut sqlx::PgConnection, sql: &str) {
    c.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Two hospitals; machine d1 in ward North with its care team; a patient (with a login)
/// and a second patient; systolic BP low limit 90 (high priority, no delay, hysteresis 5).
pub(crate) async fn seed(db: &TestDb) -> (Uuid, Uuid, Uuid, Uuid, Uuid, HashMap<&'static str, Uuid>) {
    let (h, hb) = (db.hospital("A", "alarm-a").await, db.hospital("B", "alarm-b").await);
    let hash = nc_access::password::hash(PASSWORD.to_owned()).await.expect("hash");
    let mut users = HashMap::new();
    for (name, role, ward, in_b) in PEOPLE {
        let role: nc_domain::Role = role.parse().expect("a role");
        let hospital = if *in_b { hb } else { h };
        let id = db.person(hospital, &format!("{name}@alarms.test"), role, name, *ward, &hash).await;
        users.insert(*name, id);
    }
    let device = db.machine(h, "d1", "Machine 1", Some("North"), PASSWORD).await;
    for who in ["doc", "tec"] {
        db.assign(device, users[who]).await;
    }
    let links = |account| PatientLinks { account, doctor: Some(users["doc"]), device: Some(device) };
    let patient = db.patient(h, "p1", "Patient One", links(Some(users["pat"]))).await;
    let patient2 = db.patient(h, "p2", "Patient Two", links(None)).await;
    let mut c = db.sql().await;
    exec(
        &mut c,
        &format!(
            "INSERT INTO alert_thresholds (id, hospital_id, metric, low, high, priority, delay_seconds, hysteresis)
             VALUES (gen_random_uuid(), '{h}', 'systolic_bp', 90, 200, 'high', 0, 5),
                    (gen_random_uuid(), '{h}', 'venous_pressure', NULL, 400, 'medium', 0, 10)"
        ),
    )
    .await;
    (h, hb, device, patient, patient2, users)
}

impl World {
    pub(crate) async fn new() -> World {
        World::with(|_| {}).await
    }

    pub(crate) async fn with(tweak: impl FnOnce(&mut Config)) -> World {
        let db = TestDb::migrated().await;
        let (hospital, hospital_b, device, patient, patient2, users) = seed(&db).await;
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let app = TestApp::spawn_configured(db, config).await;
        let tokens = login_all(&app.client).await;
        World { app, hospital, hospital_b, device, patient, patient2, users, tokens }
    }

    pub(crate) fn as_(&self, who: &str) -> Client {
        self.app.client.with_token(&self.tokens[who])
    }

    pub(crate) fn notes(&self, who: &str) -> String {
        let in_b = PEOPLE.iter().any(|(name, _, _, b)| *name == who && *b);
        notes_topic(if in_b { self.hospital_b } else { self.hospital }, self.users[who])
    }

    /// `who` on MQTT, subscribed to their own notifications.
    pub(crate) async fn listener(&self, who: &'static str) -> JsonClient {
        self.subscriber(who, "alarms").await
    }

    /// `who` on MQTT with a new client (clean session) named `name`, subscribed to their own
    /// notifications.
    pub(crate) async fn subscriber(&self, who: &'static str, name: &str) -> JsonClient {
        let user = self.users[who];
        let mut m = JsonClient::connect(
            self.app.running().mqtt_addr,
            &format!("{user}-{name}"),
            &user.to_string(),
            &self.tokens[who],
            true,
        )
        .await;
        assert!(matches!(m.subscribe(&self.notes(who)).await, rumqttc::SubscribeReasonCode::Success(_)));
        m
    }

    pub(crate) async fn device(&self) -> JsonClient {
        let d = self.device.to_string();
        JsonClient::connect(self.app.running().mqtt_addr, &d, &d, PASSWORD, false).await
    }

    /// The hospital's escalation policy for every priority: `after` seconds, `tiers`.
    pub(crate) async fn escalate(&self, after: u32, tiers: &[u8]) {
        let rule = json!({"afterSeconds": after, "tiers": tiers});
        let r = self
            .as_("admin")
            .put(
                "/api/alerts/escalation-policy",
                json!({"high": rule, "medium": rule, "low": {"afterSeconds": null, "tiers": []}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// Posts a reading of the patient over HTTP (committed when answered).
    pub(crate) async fn reading(&self, seq: i64, at: DateTime<Utc>, patient: Uuid, extra: Value) {
        let mut body = json!({"v": 1, "seq": seq, "ts": rfc3339(at), "patientId": patient, "systemStatus": "normal",
            "heartRate": 72, "bloodPressure": 120, "venousPressure": 150});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let resp = self
            .app
            .client
            .http
            .post(format!("{}/api/health-metrics", self.app.client.base))
            .basic_auth(self.device, Some(PASSWORD))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap_or_default());
    }

    /// The device's alerts with `code`, as the assigned doctor sees them, newest first.
    async fn alerts(&self, code: &str) -> Vec<Value> {
        let r = self.as_("doc").get(&format!("/api/alerts?deviceId={}&limit=200", self.device)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["items"].as_array().expect("items").iter().filter(|a| a["code"] == code).cloned().collect()
    }

    /// Waits until the doctor sees an alert with `code` satisfying `pred`.
    pub(crate) async fn alert_where(&self, code: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let pred = &pred;
        eventually(
            &format!("a {code} alert"),
            LONG_WAIT,
            || async move { self.alerts(code).await.into_iter().find(pred) },
        )
        .await
    }

    pub(crate) async fn history(&self, id: &str) -> Vec<Value> {
        let r = self.as_("doc").get(&format!("/api/alerts/{id}/history")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().expect("entries").clone()
    }
}

pub(crate) fn notes_topic(hospital: Uuid, user: Uuid) -> String {
    format!("nc/v1/h/{hospital}/u/{user}/notifications")
}

pub(crate) async fn login_all(client: &Client) -> HashMap<&'static str, String> {
    let mut tokens = HashMap::new();
    for (who, ..) in PEOPLE {
        let r =
            client.post("/api/auth/login", json!({"email": format!("{who}@alarms.test"), "password": PASSWORD})).await;
        assert_eq!(r.status, 200, "login {who}: {}", r.text);
        tokens.insert(*who, r.body["accessToken"].as_str().expect("token").to_owned());
    }
    tokens
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The next whole second: after the world's assignments (made a moment ago, within the
/// current second), so the technician, who reads and acts on what was recorded during their
/// assignment only, sees the readings of "now".
pub(crate) fn now_s() -> DateTime<Utc> {
    Utc::now().duration_trunc(chrono::Duration::seconds(1)).expect("trunc") + chrono::Duration::seconds(1)
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

pub(crate) fn events(history: &[Value]) -> Vec<(String, Option<i64>)> {
    history.iter().map(|e| (e["event"].as_str().unwrap_or("").to_owned(), e["tier"].as_i64())).collect()
}

// ---------------------------------------------------------------------------------------
// Escalation.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unanswered_alarm_climbs_the_tiers_and_never_leaves_the_hospital() {
    let w = World::new().await;
    w.escalate(2, &[2, 3]).await;
    let mut doc = w.listener("doc").await;
    let mut ward_doc = w.listener("ward_doc").await;
    let mut admin = w.listener("admin").await;
    let mut outsiders = Vec::new();
    for who in ["south_doc", "pat", "doc_b", "admin_b"] {
        outsiders.push((who, w.listener(who).await));
    }

    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let raised = doc.expect(&w.notes("doc"), "raised", |m| m["event"] == "raised").await;
    let id = raised["alert"]["id"].as_str().expect("id").to_owned();
    assert_eq!(raised["alert"]["escalationLevel"], 1);
    assert!(raised["alert"]["nextEscalationAt"].is_string(), "{raised}");
    // Not before its time: the ward's doctor hears nothing for a moment.
    ward_doc.expect_silence(&w.notes("ward_doc"), Duration::from_millis(800)).await;

    let t2 = ward_doc.expect(&w.notes("ward_doc"), "tier 2", |m| m["event"] == "escalated").await;
    assert_eq!((t2["tier"].as_i64(), t2["alert"]["id"].as_str()), (Some(2), Some(id.as_str())));
    assert_eq!(t2["alert"]["patientId"], json!(w.patient), "a tier-2 doctor gets the full alert");
    let again = doc.expect(&w.notes("doc"), "tier 2 for the care team", |m| m["event"] == "escalated").await;
    assert_eq!(again["tier"], 2, "the care team is told it escalated");

    let t3 = admin.expect(&w.notes("admin"), "tier 3", |m| m["event"] == "escalated" && m["tier"] == 3).await;
    assert_eq!(t3["alert"]["id"], json!(id));
    assert!(
        t3["alert"]["patientId"].is_null() && t3["alert"]["value"].is_null(),
        "admins get the administrative view: {t3}"
    );
    assert!(!t3["alert"]["message"].as_str().unwrap().contains("80"), "{t3}");

    // REST: the level, when, and everyone notified.
    let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["escalationLevel"], 3);
    assert!(r.body["escalatedAt"].is_string() && r.body["nextEscalationAt"].is_null(), "{}", r.text);
    let notified: HashMap<String, i64> = r.body["notified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["userId"].as_str().unwrap().to_owned(), n["tier"].as_i64().unwrap()))
        .collect();
    let tier_of = |who: &str| notified.get(&w.users[who].to_string()).copied();
    assert_eq!(
        (tier_of("doc"), tier_of("tec"), tier_of("ward_doc"), tier_of("admin")),
        (Some(1), Some(1), Some(2), Some(3))
    );
    for who in ["south_doc", "pat", "doc_b", "admin_b"] {
        assert_eq!(tier_of(who), None, "{who} is never notified");
    }
    let history = events(&w.history(&id).await);
    assert_eq!(
        history.iter().filter(|(e, _)| e == "escalated").cloned().collect::<Vec<_>>(),
        vec![("escalated".to_owned(), Some(2)), ("escalated".to_owned(), Some(3))],
        "{history:?}"
    );
    assert_eq!(history[0].0, "raised");

    // Who may see and act: the tier-2 doctor may, once escalated; the admin reads the
    // administrative view and may acknowledge; others may not.
    let r = w.as_("ward_doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!((r.status, r.body["value"].as_f64()), (200, Some(80.0)), "{}", r.text);
    let r = w.as_("admin").get(&format!("/api/alerts/{id}")).await;
    assert_eq!((r.status, r.body["value"].is_null(), r.body["patientId"].is_null()), (200, true, true), "{}", r.text);
    let r = w.as_("admin").get("/api/alerts?openOnly=true").await;
    assert_eq!(r.body["total"], 1, "the admin lists what reached tier 3: {}", r.text);
    let r = w.as_("admin").post(&format!("/api/alerts/{id}/snooze"), json!({"minutes": 5, "reason": "busy"})).await;
    assert_eq!(r.status, 403, "snoozing is a clinical decision: {}", r.text);
    let r = w.as_("south_doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_("doc_b").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.status, 404, "another hospital: {}", r.text);
    let r = w.as_("pat").post(&format!("/api/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_("ward_doc").post(&format!("/api/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("acknowledged")), "{}", r.text);
    admin.expect(&w.notes("admin"), "acknowledged", |m| m["event"] == "acknowledged").await;

    for (who, mut m) in outsiders {
        m.expect_silence(&w.notes(who), Duration::from_millis(300)).await;
    }
    w.app.stop().await;
}

#[tokio::test]
async fn acknowledging_at_tier_1_stops_the_escalation() {
    let w = World::new().await;
    w.escalate(2, &[2, 3]).await;
    let mut doc = w.listener("doc").await;
    let mut ward_doc = w.listener("ward_doc").await;
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let raised = doc.expect(&w.notes("doc"), "raised", |m| m["event"] == "raised").await;
    let id = raised["alert"]["id"].as_str().unwrap().to_owned();
    let r = w.as_("tec").post(&format!("/api/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["nextEscalationAt"].is_null(), "{}", r.text);
    ward_doc.expect_silence(&w.notes("ward_doc"), Duration::from_secs(4)).await;
    let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!((r.body["escalationLevel"].as_i64(), r.body["state"].as_str()), (Some(1), Some("acknowledged")));
    // Acknowledged, the condition is still tracked: it clears when the value recovers.
    w.reading(2, now_s() + secs(1), w.patient, json!({"bloodPressure": 120})).await;
    w.alert_where("systolic_bp_low", |a| a["id"] == json!(id) && a["state"] == "cleared").await;
    let history = events(&w.history(&id).await);
    let kinds: Vec<&str> = history.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["raised", "notified", "acknowledged", "cleared"], "{history:?}");
    w.app.stop().await;
}

#[tokio::test]
async fn nobody_reachable_at_a_tier_escalates_at_once() {
    let w = World::new().await;
    // The timer alone would wait a minute.
    w.escalate(60, &[2, 3]).await;
    // Only the ward's doctor is connected: the care team is not.
    let mut ward_doc = w.listener("ward_doc").await;
    let started = Instant::now();
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let t2 = ward_doc.expect(&w.notes("ward_doc"), "tier 2 at once", |m| m["event"] == "escalated").await;
    assert_eq!(t2["tier"], 2);
    assert!(started.elapsed() < Duration::from_secs(10), "escalated without waiting the minute");
    let id = t2["alert"]["id"].as_str().unwrap().to_owned();
    // Tier 2 is reachable: the alert waits there for its timer.
    let r = w.as_("doc").get(&format!("/api/alerts/{id}")).await;
    assert_eq!(r.body["escalationLevel"], 2, "{}", r.text);
    let next = DateTime::parse_from_rfc3339(r.body["nextEscalationAt"].as_str().unwrap()).unwrap();
    assert!(next > Utc::now() + secs(30), "the next step waits for the timer: {next}");
    let history = events(&w.history(&id).await);
    assert!(history.contains(&("unreachable".to_owned(), Some(1))), "{history:?}");
    assert!(!history.contains(&("unreachable".to_owned(), Some(2))), "{history:?}");
    // A live stream of the device makes its watcher reachable too.
    let _live = ws_open(w.app.running().http_addr, w.device, Some(&w.tokens["doc"])).await.expect("stream");
    w.reading(2, now_s(), w.patient, json!({"venousPressure": 450})).await;
    let venous = w.alert_where("venous_pressure_high", |_| true).await;
    let history = events(&w.history(venous["id"].as_str().unwrap()).await);
    assert!(!history.iter().any(|(e, _)| e == "unreachable"), "the doctor watches the stream: {history:?}");
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Escalation survives kill -9: driven by stored state, each tier exactly once.
// ---------------------------------------------------------------------------------------

/// Sets high and medium alarms to escalate every `after` seconds through `tiers` (low: none).
pub(crate) async fn escalate_every(admin: &Client, after: u64, tiers: &[u8]) {
    let rule = json!({"afterSeconds": after, "tiers": tiers});
    let r = admin
        .put(
            "/api/alerts/escalation-policy",
            json!({"high": rule, "medium": rule, "low": {"afterSeconds": null, "tiers": []}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The machine sends a reading (over HTTP) with a systolic pressure of 80: a high alarm at once.
pub(crate) async fn low_pressure(client: &Client, service: &Service, device: Uuid, patient: Uuid) {
    let r = client
        .http
        .post(format!("{}/api/health-metrics", service.http))
        .basic_auth(device, Some(PASSWORD))
        .json(&json!({"v": 1, "seq": 1, "ts": rfc3339(now_s()), "patientId": patient, "systemStatus": "normal", "bloodPressure": 80}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn a_kill_9_between_tiers_neither_loses_nor_repeats_a_tier() {
    let db = TestDb::migrated().await;
    let (hospital, _, device, patient, _, users) = seed(&db).await;
    let service = Service::start(&db, &[]);
    let client = Client::new(service.http.clone());
    let tokens = login_all(&client).await;
    let admin = client.with_token(&tokens["admin"]);
    escalate_every(&admin, 3, &[2, 3]).await;
    low_pressure(&client, &service, device, patient).await;

    let mut c = db.sql().await;
    async fn level(c: &mut sqlx::PgConnection, device: Uuid) -> Option<(Uuid, i16)> {
        sqlx::query_as("SELECT id, escalation_level FROM alerts WHERE device_id = $1")
            .bind(device)
            .fetch_optional(c)
            .await
            .unwrap()
    }
    // Nobody is connected, so each tier follows the last at once: wait for tier 2 and kill
    // the service the moment it is stored (tier 3 may or may not be stored by then).
    let deadline = Instant::now() + LONG_WAIT;
    let id = loop {
        if let Some((id, l)) = level(&mut c, device).await {
            if l >= 2 {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "tier 2 in time");
        // A poll interval, tighter than `eventually`'s: the kill must follow the step closely.
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    service.kill9();
    let service = Service::start(&db, &[]);
    eventually("tier 3 after the restart", LONG_WAIT, || async {
        let mut c = db.sql().await;
        (level(&mut c, device).await.map(|(_, l)| l) == Some(3)).then_some(())
    })
    .await;
    // A negative check, not synchronisation: a repeated step, if there were one, has the
    // time to happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steps: Vec<(String, Option<i16>)> = sqlx::query_as(
        "SELECT event, tier FROM alert_events WHERE alert_id = $1 AND event IN ('raised', 'escalated') ORDER BY at",
    )
    .bind(id)
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        steps,
        vec![("raised".to_owned(), Some(1)), ("escalated".to_owned(), Some(2)), ("escalated".to_owned(), Some(3))],
        "each tier exactly once across the restart"
    );
    // Every step's notifications went out (the outbox is empty once they are sent).
    eventually("every event published", LONG_WAIT, || async {
        let mut c = db.sql().await;
        let unpublished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM alert_events WHERE alert_id = $1 AND published_at IS NULL")
                .bind(id)
                .fetch_one(&mut c)
                .await
                .unwrap();
        (unpublished == 0).then_some(())
    })
    .await;
    let notified: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT unnest(recipients) FROM alert_events WHERE alert_id = $1 AND event IN ('notified', 'escalated')",
    )
    .bind(id)
    .fetch_all(&mut c)
    .await
    .unwrap();
    for who in ["doc", "tec", "ward_doc", "admin"] {
        assert!(notified.contains(&users[who]), "{who} was notified");
    }
    for who in ["south_doc", "pat", "doc_b", "admin_b"] {
        assert!(!notified.contains(&users[who]), "{who} was not");
    }
    let _ = hospital;
    drop(service);
}

// ---------------------------------------------------------------------------------------
// Life cycle: snooze, clearing rules, latching, history and audit.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_snoozed_alarm_realerts_while_its_condition_persists() {
    let w = World::new().await;
    w.escalate(60, &[2, 3]).await;
    let mut doc = w.listener("doc").await;
    w.reading(1, now_s(), w.patient, json!({"bloodPressure": 80})).await;
    let raised = doc.expect(&w.notes("doc"), "raised", |m| m["event"] == "raised").await;
    let id = raised["alert"]["id"].as_str().unwrap().to_owned();
    let snooze = format!("/api/alerts/{id}/snooze");
    for (body, field) in [
        (json!({"minutes": 0, "reason": "x"}), "minutes"),
        (json!({"minutes": 31, "reason": "x"}), "minutes"),
        (json!({"minutes": 5, "reason": "   "}), "reason"),
    ] {
        let r = w.as_("doc").post(&snooze, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert!(r.text.contains(field), "{body}: {}", r.text);
    }
    let r = w.as_("doc").post(&snooze, json!({"minutes": 5})).await;
    assert_eq!(r.status, 400, "a reason is required: {}", r.text);
    let r = w.as_("doc").post(&snooze, json!({"minutes": 5, "reason": "patient repositioned, re-measuring"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["snoozedUntil"].is_string() && r.body["nextEscalationAt"].is_null(), "{}", r.text);
    assert_eq!(r.body["snoozedBy"], json!(w.users["doc"]));
    doc.expect(&w.notes("doc"), "snoozed", |m| m["event"] == "snoozed").await;
    // Five minutes pass (the scheduler reads only the stored snooze end).
    let mut c = w.app.db.sql().await;
    exec(&mut c, &format!("UPDATE alerts SET snoozed_until = now() WHERE id = '{id}'")).await;
    let re = doc.expect(&w.notes("doc"), "realerted", |m| m["event"] == "realerted").await;
    assert_eq!((re["tier"].as_i64(), re["alert"]["state"].as_str()), (Some(1), Some("active")));
    assert!(re["alert"]["snoozedUntil"].is_null() && re["alert"]["nextEscalationAt"].is_string(), "{re}");
    let history = w.history(&id).await;
    let snoozed = history.iter().find(|e| e["event"] == "snoozed").expect("snoozed in the history");
    assert_eq!(snoozed["reason"], "patient repositioned, re-measuring");
    assert_eq!((snoozed["actorId"].clone(), snoozed["actorRole"].as_str()), (json!(w.users["doc"]), Some("doctor")));
    assert!(snoozed["snoozeUntil"].is_string());
    assert!(history.iter().any(|e| e["event"] == "realerted"), "{history:?}");
    // Audited.
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_audit_log WHERE resource = 'alert' AND detail->>'action' = 'snooze' AND detail->>'alertId' = $1",
    )
    .bind(&id)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    w.app.stop().await;
}

#[tokio::test]
async fn a_persisting_physiological_alarm_cannot_be_cleared_by_hand_but_a_technical_one_can() {
    let w = World::new().await;
    let mut live = ws_open(w.app.running().http_addr, w.device, Some(&w.tokens["doc"])).await.expect("stream");
    let t0 = now_s();
    w.reading(1, t0, w.patient, json!({"bloodPressure": 80, "systemStatus": "danger"})).await;
    ws_until_reading(&mut live, 1).await;
    let low = w.alert_where("systolic_bp_low", |_| true).await;
    let danger = w.alert_where("system_status_danger", |_| true).await;
    let id = low["id"].as_str().unwrap().to_owned();
    let r = w.as_("doc").post(&format!("/api/alerts/{id}/clear"), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "condition_persists"), "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("acknowledge"), "{}", r.text);
    // A technical alarm clears by hand even while the machine still reports danger.
    let r = w.as_("tec").post(&format!("/api/alerts/{}/clear", danger["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("cleared")), "{}", r.text);
    assert_eq!(r.body["clearedBy"], json!(w.users["tec"]));
    // Back inside the limit (92 ≥ 90) but within the hysteresis band (< 95): still open, and
    // now a person may clear it.
    w.reading(2, t0 + secs(1), w.patient, json!({"bloodPressure": 92})).await;
    ws_until_reading(&mut live, 2).await;
    let a = w.alert_where("systolic_bp_low", |a| a["id"] == json!(id)).await;
    assert_eq!(a["state"], "active");
    assert!(a["inRangeSince"].is_string(), "{a}");
    let r = w.as_("doc").post(&format!("/api/alerts/{id}/clear"), json!({})).await;
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("cleared")), "{}", r.text);
    let r = w.as_("doc").post(&format!("/api/alerts/{id}/clear"), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "already_cleared"), "{}", r.text);
    // A new breach after a clearing by hand is a new alarm.
    w.reading(3, t0 + secs(2), w.patient, json!({"bloodPressure": 81})).await;
    ws_until_reading(&mut live, 3).await;
    let open: Vec<Value> = w.alerts("systolic_bp_low").await.into_iter().filter(|a| a["state"] == "active").collect();
    assert_eq!(open.len(), 1);
    assert_ne!(open[0]["id"], json!(id), "a new alarm");
    // Every action is in the history and the audit log.
    let kinds: Vec<String> = w.history(&id).await.iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["raised", "notified", "cleared"]);
    let h = w.history(&id).await;
    assert_eq!((h[2]["reason"].as_str(), h[2]["actorId"].clone()), (Some("by_hand"), json!(w.users["doc"])));
    let mut c = w.app.db.sql().await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'action' FROM access_audit_log WHERE resource = 'alert' AND actor_id IN ($1, $2) ORDER BY at",
    )
    .bind(w.users["doc"])
    .bind(w.users["tec"])
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(actions, ["clear", "clear"], "the two successful clearings (refusals change nothing)");
    w.app.stop().await;
}

#[tokio::test]
async fn a_high_priority_alarm_that_clears_unseen_stays_latched_until_acknowledged() {
    let w = World::new().await;
    let mut live = ws_open(w.app.running().http_addr, w.device, Some(&w.tokens["doc"])).await.expect("stream");
    let t0 = now_s() - secs(60);
    w.reading(1, t0, w.patient, json!({"bloodPressure": 80, "venousPressure": 450})).await;
    w.reading(2, t0 + secs(5), w.patient, json!({"bloodPressure": 120, "venousPressure": 150})).await;
    ws_until_reading(&mut live, 2).await;
    let low = w.alert_where("systolic_bp_low", |_| true).await;
    assert_eq!((low["state"].as_str(), low["latched"].as_bool()), (Some("cleared"), Some(true)), "{low}");
    let venous = w.alert_where("venous_pressure_high", |_| true).await;
    assert_eq!(venous["latched"], false, "medium priority does not latch");
    let r = w.as_("doc").get("/api/alerts?openOnly=true").await;
    let ids: Vec<&Value> = r.body["items"].as_array().unwrap().iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, vec![&low["id"]], "latched alarms are listed as open: {}", r.text);
    let r = w.as_("doc").post(&format!("/api/alerts/{}/acknowledge", low["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["state"].as_str(), r.body["latched"].as_bool()), (Some("cleared"), Some(false)));
    assert_eq!(r.body["acknowledgedBy"], json!(w.users["doc"]));
    let r = w.as_("doc").get("/api/alerts?openOnly=true").await;
    assert_eq!(r.body["total"], 0, "{}", r.text);
    let r = w.as_("doc").post(&format!("/api/alerts/{}/acknowledge", venous["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "already_cleared"), "{}", r.text);
    w.app.stop().await;
}

#[tokio::test]
async fn a_restarted_session_of_the_same_patient_raises_no_duplicate_and_the_next_patient_ends_it() {
    let w = World::new().await;
    let mut dev = w.device().await;
    let (telemetry, session) = (
        format!("nc/v1/h/{}/d/{}/telemetry", w.hospital, w.device),
        format!("nc/v1/h/{}/d/{}/session", w.hospital, w.device),
    );
    let t0 = now_s() - secs(120);
    let reading = |seq: i64, at: DateTime<Utc>, patient: Uuid, bp: i64| json!({"v": 1, "seq": seq, "ts": rfc3339(at), "patientId": patient, "systemStatus": "normal", "bloodPressure": bp});
    dev.publish_acked(&session, &json!({"v": 1, "event": "start", "ts": rfc3339(t0), "patientId": w.patient})).await;
    dev.publish_acked(&telemetry, &reading(1, t0 + secs(1), w.patient, 80)).await;
    let first = w.alert_where("systolic_bp_low", |a| a["state"] == "active").await;
    // The machine restarts the treatment: end, then start for the same patient.
    dev.publish_acked(&session, &json!({"v": 1, "event": "end", "ts": rfc3339(t0 + secs(2))})).await;
    dev.publish_acked(
        &session,
        &json!({"v": 1, "event": "start", "ts": rfc3339(t0 + secs(3)), "patientId": w.patient}),
    )
    .await;
    dev.publish_acked(&telemetry, &reading(2, t0 + secs(4), w.patient, 79)).await;
    dev.publish_acked(&telemetry, &reading(3, t0 + secs(5), w.patient, 78)).await;
    // A negative check, not synchronisation: time for a duplicate alarm, were there one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = w.alerts("systolic_bp_low").await;
    assert_eq!(all.len(), 1, "no duplicate alarm across the session restart: {all:?}");
    assert_eq!((all[0]["id"].clone(), all[0]["state"].as_str()), (first["id"].clone(), Some("active")));
    // The next patient on the machine: the previous patient's alarm ends with their treatment.
    dev.publish_acked(&telemetry, &reading(4, t0 + secs(6), w.patient2, 120)).await;
    let ended = w.alert_where("systolic_bp_low", |a| a["id"] == first["id"] && a["state"] == "cleared").await;
    assert!(ended["clearedBy"].is_null());
    let h = w.history(first["id"].as_str().unwrap()).await;
    assert_eq!(h.last().unwrap()["reason"], "treatment_ended", "{h:?}");
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Connection alarms: a delay, and one alarm for a flapping link.
// ---------------------------------------------------------------------------------------

async fn offline_alerts(w: &World) -> i64 {
    let mut c = w.app.db.sql().await;
    sqlx::query_scalar("SELECT count(*) FROM alerts WHERE device_id = $1 AND code = 'device_offline'")
        .bind(w.device)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reconnect_within_the_offline_delay_raises_nothing() {
    // The default delay: 15 s.
    let w = World::new().await;
    let dev = w.device().await;
    dev.drop_abruptly().await;
    // Under test, not synchronisation: offline for 5 s (less than the delay), then past the
    // delay to prove that no alarm comes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _dev = w.device().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(offline_alerts(&w).await, 0, "a 5 s reconnect raises no offline alarm");
    w.app.stop().await;
}

#[tokio::test]
async fn a_device_still_offline_after_the_delay_raises_one_alarm_cleared_on_reconnect() {
    let w = World::with(|c| c.alarms.offline_delay_secs = 2.0).await;
    let dev = w.device().await;
    dev.drop_abruptly().await;
    let a = w.alert_where("device_offline", |a| a["state"] == "active").await;
    assert!(a["message"].as_str().unwrap().contains("2 s"), "{a}");
    let _dev = w.device().await;
    w.alert_where("device_offline", |x| x["id"] == a["id"] && x["state"] == "cleared").await;
    assert_eq!(offline_alerts(&w).await, 1);
    w.app.stop().await;
}

#[tokio::test]
async fn a_flapping_link_raises_one_alarm_not_one_per_drop() {
    let w = World::new().await;
    // Ten drops in well under two minutes, each back within a second.
    for _ in 0..10 {
        let dev = w.device().await;
        dev.drop_abruptly().await;
        // Under test: how long the link stays down.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _dev = w.device().await;
    let a = w.alert_where("device_offline", |_| true).await;
    assert!(a["message"].as_str().unwrap().contains("unstable"), "{a}");
    // A negative check, not synchronisation: time for a second alarm, were there one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(offline_alerts(&w).await, 1, "one alarm for the flapping link");
    let a = w.alert_where("device_offline", |_| true).await;
    assert_eq!(a["state"], "active", "kept open while the link is unstable, though connected now");
    w.app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Escalation policy and burden analytics.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_escalation_policy_is_the_admins_validated_and_audited() {
    let w = World::new().await;
    let r = w.as_("doc").get("/api/alerts/escalation-policy").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["isDefault"], true);
    // The test configuration turns escalation off by default.
    let r = w.as_("pat").get("/api/alerts/escalation-policy").await;
    assert_eq!(r.status, 403);
    let good = json!({"high": {"afterSeconds": 60, "tiers": [2, 3]}, "medium": {"afterSeconds": 180, "tiers": [3]},
                      "low": {"afterSeconds": null, "tiers": []}});
    let r = w.as_("doc").put("/api/alerts/escalation-policy", good.clone()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    for (bad, field) in [
        (json!({"high": {"afterSeconds": 60, "tiers": [3, 2]}}), "high"),
        (json!({"high": {"afterSeconds": 60, "tiers": []}}), "high"),
        (json!({"medium": {"afterSeconds": null, "tiers": [2]}}), "medium"),
        (json!({"low": {"afterSeconds": 0, "tiers": [2]}}), "afterSeconds"),
        // Tier 1 is the care team, never an escalation: the schema's bound (2..3) names `tiers`.
        (json!({"low": {"afterSeconds": 60, "tiers": [1]}}), "tiers"),
    ] {
        let mut body = good.clone();
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = w.as_("admin").put("/api/alerts/escalation-policy", body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert!(r.text.contains(field), "{body}: {}", r.text);
    }
    let r = w.as_("admin").put("/api/alerts/escalation-policy", good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["isDefault"].as_bool(), r.body["medium"]["tiers"].clone()), (Some(false), json!([3])));
    assert_eq!(r.body["updatedBy"], json!(w.users["admin"]));
    let r = w.as_("admin_b").get("/api/alerts/escalation-policy").await;
    assert_eq!(r.body["isDefault"], true, "each hospital its own");
    let mut c = w.app.db.sql().await;
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM access_audit_log WHERE resource = 'alert_escalation_policy'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(audited, 1);
    w.app.stop().await;
}

#[tokio::test]
async fn alarm_burden_agrees_with_sql_over_the_stored_alerts() {
    let w = World::new().await;
    let mut live = ws_open(w.app.running().http_addr, w.device, Some(&w.tokens["doc"])).await.expect("stream");
    let t0 = now_s() - secs(3600);
    // An hour of treatment with: a hypotension that lasts (acknowledged), a venous spike that
    // clears within 30 s (nuisance), and a second one that lasts a minute.
    let mut seq = 0;
    let mut send = |at: DateTime<Utc>, extra: Value| {
        seq += 1;
        let seq = seq;
        let w = &w;
        async move {
            w.reading(seq, at, w.patient, extra).await;
            seq
        }
    };
    send(t0, json!({})).await;
    send(t0 + secs(600), json!({"venousPressure": 450})).await;
    send(t0 + secs(610), json!({"venousPressure": 150})).await;
    send(t0 + secs(1200), json!({"venousPressure": 460})).await;
    send(t0 + secs(1260), json!({"venousPressure": 150})).await;
    send(t0 + secs(1800), json!({"bloodPressure": 80})).await;
    let last = send(t0 + secs(3599), json!({"bloodPressure": 82})).await;
    ws_until_reading(&mut live, last).await;
    let low = w.alert_where("systolic_bp_low", |_| true).await;
    let r = w.as_("doc").post(&format!("/api/alerts/{}/acknowledge", low["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(r.status, 200);

    let from = rfc3339(t0 - secs(60));
    let to = rfc3339(Utc::now() + secs(60));
    let r = w.as_("doc").get(&format!("/api/alerts/burden?from={from}&to={to}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    let mut c = w.app.db.sql().await;
    let (alarms, acked, hours): (i64, i64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM alerts WHERE device_id = $1),
                (SELECT count(*) FROM alerts WHERE device_id = $1 AND acknowledged_at IS NOT NULL),
                (SELECT sum(extract(epoch FROM coalesce(ended_at, now()) - started_at))::float8 / 3600 FROM device_sessions WHERE device_id = $1)",
    )
    .bind(w.device)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!((b["alarms"].as_i64(), alarms), (Some(3), 3), "{b}");
    let close = |a: f64, e: f64| (a - e).abs() < 0.01 * e.max(1.0);
    assert!(close(b["treatmentHours"].as_f64().unwrap(), hours), "{} vs {hours}", b["treatmentHours"]);
    assert!(close(b["alarmsPerTreatmentHour"].as_f64().unwrap(), alarms as f64 / hours), "{b}");
    assert!(close(b["acknowledgedShare"].as_f64().unwrap(), acked as f64 / alarms as f64), "{b}");
    assert!(close(b["selfClearedWithin30sShare"].as_f64().unwrap(), 1.0 / 3.0), "one venous spike of 10 s: {b}");
    assert!(b["medianSecondsToAcknowledge"].as_f64().unwrap() >= 0.0);
    let by_condition: HashMap<&str, i64> = b["byCondition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap(), s["alarms"].as_i64().unwrap()))
        .collect();
    assert_eq!(by_condition, HashMap::from([("venous_pressure_high", 2), ("systolic_bp_low", 1)]));
    assert_eq!(b["byCondition"][0]["key"], "venous_pressure_high", "most frequent first");
    let by_priority: HashMap<&str, i64> = b["byPriority"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap(), s["alarms"].as_i64().unwrap()))
        .collect();
    assert_eq!(by_priority, HashMap::from([("medium", 2), ("high", 1)]));
    assert_eq!(b["topDevices"][0]["deviceId"], json!(w.device));
    assert_eq!(b["escalations"], json!([]));
    // Filters: another ward has nothing; the patient filter needs the right to read them.
    let r = w.as_("doc").get(&format!("/api/alerts/burden?from={from}&to={to}&ward=South")).await;
    assert_eq!((r.status, r.body["alarms"].as_i64()), (200, Some(0)), "{}", r.text);
    let r = w.as_("doc").get(&format!("/api/alerts/burden?from={from}&to={to}&patientId={}", w.patient)).await;
    assert_eq!(r.body["alarms"], 3, "{}", r.text);
    let r = w.as_("admin").get(&format!("/api/alerts/burden?from={from}&to={to}&patientId={}", w.patient)).await;
    assert_eq!(r.status, 403, "admins read no patient's clinical data: {}", r.text);
    let r = w.as_("admin").get(&format!("/api/alerts/burden?from={from}&to={to}")).await;
    assert_eq!(r.body["alarms"], 3, "{}", r.text);
    for (who, status) in [("pat", 403), ("tec", 403)] {
        let r = w.as_(who).get("/api/alerts/burden").await;
        assert_eq!(r.status, status, "{who}: {}", r.text);
    }
    let r = w.as_("doc_b").get(&format!("/api/alerts/burden?from={from}&to={to}")).await;
    assert_eq!(r.body["alarms"], 0, "hospital-scoped: {}", r.text);
    let r = w.as_("doc").get(&format!("/api/alerts/burden?from={to}&to={from}")).await;
    assert_eq!(r.status, 422);
    w.app.stop().await;
}
