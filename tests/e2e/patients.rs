//! The patient endpoints of the spec, end to end on the MQTT world (two hospitals, their
//! staff, machines and patients; see `support::World`):
//!
//! - `GET /api/patients`: what each role lists, in each hospital, agreeing with the
//!   one-patient decision; the admins' administrative view; filters; pages; audit;
//! - `PUT /api/patients/{id}/medical-info`: field rights per role, the trail;
//! - linking a (self-registered) account to its record: the refusals, the patient sees
//!   their data afterwards on REST and MQTT, the account linked before loses it at once
//!   (MQTT and the live WebSocket within a second).

use std::collections::BTreeSet;
use std::time::Instant;

use futures_util::StreamExt;
use rumqttc::QoS;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    assert_cut, assert_cut_by, exec, Client, EventClient, PatientLinks, Reply, TestApp, World, GRANTED, PASSWORD,
    REFUSED, WAIT,
};

/// p3: hospital A, assigned doctor `doc2`, no device, a diagnosis. p4: hospital A, treated
/// on d1 before `tec` was assigned to it (two days ago). p5: hospital B, on d3.
async fn more_patients(w: &mut World) {
    let uuid = |k: &str| uuid::Uuid::parse_str(w.id(k)).unwrap();
    let (ha, hb, db) = (uuid("ha"), uuid("hb"), &w.app.db);
    let links = PatientLinks { doctor: Some(uuid("doc2")), ..Default::default() };
    let p3 = db.patient_with(ha, "p3", "Zora Okafor", links, |p| p.diagnosis = Some("IgA nephropathy".into())).await;
    let p4 = db.patient(ha, "p4", "Patient p4", PatientLinks::default()).await;
    let p5 = db.patient(hb, "p5", "Patient p5", PatientLinks { device: Some(uuid("d3")), ..Default::default() }).await;
    for (k, id) in [("p3", p3), ("p4", p4), ("p5", p5)] {
        w.ids.insert(k, id.to_string());
    }
    let mut c = w.app.db.sql().await;
    exec(
        &mut c,
        &w.fill(
            "UPDATE patients SET diagnosis = 'ESRD', dry_weight_kg = 70 WHERE id = '{p1}';
             UPDATE device_assignments SET assigned_at = now() - interval '1 day' WHERE user_id = '{tec}';
             INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, ended_at, status)
                  VALUES (gen_random_uuid(), '{ha}', '{d1}', '{p4}', now() - interval '2 days', now() - interval '47 hours', 'completed')",
        ),
    )
    .await;
}

/// The ids (as world keys) of a page of patients.
fn keys(w: &World, r: &Reply) -> BTreeSet<String> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap();
            w.ids.iter().find(|(_, v)| v.as_str() == id).map(|(k, _)| k.to_string()).unwrap_or(id.to_owned())
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn each_role_lists_exactly_the_patients_it_may_see() {
    let mut w = World::new(TestApp::spawn().await).await;
    more_patients(&mut w).await;
    let list = |who: &str| {
        let c = w.as_user(who);
        async move { c.get("/api/patients").await }
    };
    let expected: &[(&str, &[&str])] = &[
        ("adm", &["p1", "p2", "p3", "p4"]),
        // On d1 now (p1) or treated on it (p4).
        ("doc", &["p1", "p4"]),
        // Assigned to them as their doctor.
        ("doc2", &["p3"]),
        // On d1, but not p4, treated there before the technician's assignment.
        ("tec", &["p1"]),
        ("tec2", &[]),
        ("pat", &["p1"]),
        ("pat2", &["p2"]),
        ("admB", &["p5"]),
        // docB is assigned to d3, which p5 is on.
        ("docB", &["p5"]),
    ];
    for (who, patients) in expected {
        let r = list(who).await;
        assert_eq!(keys(&w, &r), set(patients), "{who}: {}", r.text);
        assert_eq!(r.body["total"], patients.len(), "{who}");
        // The list agrees with the one-patient decision (admins administer, not read).
        for p in ["p1", "p2", "p3", "p4", "p5"] {
            let one = w.as_user(who).get(&format!("/api/patients/{}", w.id(p))).await.status;
            let listed = patients.contains(&p);
            match (*who, listed) {
                ("adm" | "admB", true) => assert_eq!(one, 403, "{who} {p}"),
                (_, true) => assert_eq!(one, 200, "{who} {p}"),
                (_, false) => assert!(one == 403 || one == 404, "{who} {p}: {one}"),
            }
        }
    }
    assert_eq!(w.app.client.get("/api/patients").await.status, 401);

    // Admins get the administrative view; the patient's doctor the medical information.
    let r = list("adm").await;
    let p1 = r.body["items"].as_array().unwrap().iter().find(|p| p["id"] == w.id("p1")).unwrap().clone();
    assert_eq!((p1["diagnosis"].clone(), p1["dryWeightKg"].clone()), (Value::Null, Value::Null), "{p1}");
    assert_eq!((p1["name"].as_str(), p1["assignedDeviceId"].as_str()), (Some("Patient p1"), Some(w.id("d1"))));
    let r = list("doc").await;
    let p1 = r.body["items"].as_array().unwrap().iter().find(|p| p["id"] == w.id("p1")).unwrap().clone();
    assert_eq!((p1["diagnosis"].as_str(), p1["dryWeightKg"].as_f64()), (Some("ESRD"), Some(70.0)), "{p1}");

    // A hand-over lets tec2 list the patients on d1 while it lasts.
    crate::support::grant(&w).await;
    assert_eq!(keys(&w, &list("tec2").await), set(&["p1"]));

    // Every listed patient is audited.
    let listings = "SELECT count(*) FROM access_audit_log WHERE resource = 'patients.list' AND actor_id = $1::uuid";
    let audited: i64 = w.scalar(listings, &["doc"]).await;
    assert_eq!(audited, 4, "two listings of two patients");
    w.app.stop().await;
}

#[tokio::test]
async fn the_patient_list_filters_and_pages() {
    let mut w = World::new(TestApp::spawn().await).await;
    more_patients(&mut w).await;
    let adm = w.as_user("adm");
    let get = |q: String| {
        let adm = adm.clone();
        async move { adm.get(&format!("/api/patients?{q}")).await }
    };
    assert_eq!(keys(&w, &get(format!("deviceId={}", w.id("d1"))).await), set(&["p1"]));
    assert_eq!(keys(&w, &get(format!("doctorId={}", w.id("doc2"))).await), set(&["p3"]));
    assert_eq!(keys(&w, &get("name=zORA".into()).await), set(&["p3"]), "case-insensitive");
    assert_eq!(keys(&w, &get("name=patient%20p".into()).await), set(&["p1", "p2", "p4"]));
    assert_eq!(keys(&w, &get("name=%25".into()).await), set(&[]), "% is a character, not a wildcard");
    assert_eq!(keys(&w, &get("name=_".into()).await), set(&[]), "_ too");
    assert_eq!(keys(&w, &get(format!("deviceId={}&name=p2", w.id("d1"))).await), set(&[]), "filters combine");
    // Filters narrow what the caller may see, never widen it.
    let doc = w.as_user("doc").get(&format!("/api/patients?doctorId={}", w.id("doc2"))).await;
    assert_eq!(keys(&w, &doc), set(&[]));
    assert_eq!(keys(&w, &get(format!("deviceId={}", w.id("d3"))).await), set(&[]), "another hospital's device");

    // Pages: by name then id, neither overlapping nor skipping.
    let mut seen = Vec::new();
    for offset in 0..5 {
        let r = get(format!("limit=1&offset={offset}")).await;
        assert_eq!(
            (r.body["total"].as_u64(), r.body["limit"].as_u64(), r.body["offset"].as_u64()),
            (Some(4), Some(1), Some(offset))
        );
        seen.extend(keys(&w, &r));
    }
    assert_eq!(seen, ["p1", "p2", "p4", "p3"], "by name: Patient p1, p2, p4, Zora Okafor");
    assert_eq!(get(String::new()).await.body["limit"], 50, "default page");

    // Bounds: 422 naming the parameter; not a number (or negative): 400.
    for (q, status, field) in [
        ("limit=0", 422, "limit"),
        ("limit=201", 422, "limit"),
        ("offset=1000000001", 422, "offset"),
        ("offset=-1", 400, "offset"),
        ("deviceId=not-a-uuid", 400, "deviceId"),
    ] {
        let r = get(q.into()).await;
        assert_eq!(r.status, status, "{q}: {}", r.text);
        assert_eq!(r.body["fields"][0]["field"], field, "{q}: {}", r.text);
    }
    let long = get(format!("name={}", "a".repeat(201))).await;
    assert_eq!((long.status, long.body["fields"][0]["field"].as_str()), (422, Some("name")), "{}", long.text);
    let nul = get("name=a%00b".into()).await;
    assert_eq!(nul.status, 422, "{}", nul.text);
    w.app.stop().await;
}

/// When p1's running treatment (its active session) started, as stored.
async fn running_start_of_p1(c: &mut sqlx::PgConnection, w: &World) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT started_at FROM device_sessions WHERE patient_id = $1::uuid AND status = 'active'")
        .bind(w.id("p1"))
        .fetch_one(c)
        .await
        .unwrap()
}

/// `treatmentStartedAt` of p1 in each answer `who` gets for it: the list, and the record.
async fn running_of_p1(w: &World, who: &str) -> (Value, Value) {
    let c = w.as_user(who);
    let r = c.get("/api/patients").await;
    assert_eq!(r.status, 200, "{who}: {}", r.text);
    let listed = r.body["items"].as_array().unwrap().iter().find(|p| p["id"] == w.id("p1")).unwrap().clone();
    let r = c.get(&format!("/api/patients/{}", w.id("p1"))).await;
    let record = if r.status == 200 { r.body["treatmentStartedAt"].clone() } else { Value::Null };
    (listed["treatmentStartedAt"].clone(), record)
}

fn at(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.as_str().map(|s| s.parse().unwrap())
}

#[tokio::test]
async fn a_running_treatment_is_listed_with_its_start_apart_from_the_last_dialysis() {
    // p1 was treated on d1 until yesterday (their last dialysis) and is being treated on
    // d2 now (tec is not responsible for d2).
    let w = World::new(TestApp::spawn().await).await;
    let mut c = w.app.db.sql().await;
    exec(
        &mut c,
        &w.fill(
            "INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, ended_at, status)
                  VALUES (gen_random_uuid(), '{ha}', '{d1}', '{p1}', now() - interval '28 hours', now() - interval '24 hours', 'completed');
             UPDATE patients SET last_dialysis_at = now() - interval '24 hours' WHERE id = '{p1}';
             UPDATE device_assignments SET assigned_at = now() - interval '2 days' WHERE user_id = '{tec}';
             INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, status)
                  VALUES (gen_random_uuid(), '{ha}', '{d2}', '{p1}', now() - interval '30 minutes', 'active')",
        ),
    )
    .await;
    let started = running_start_of_p1(&mut c, &w).await;
    // Those who may read all of p1's treatments: the running one, in the list and the record.
    for who in ["doc", "pat"] {
        let (listed, record) = running_of_p1(&w, who).await;
        assert_eq!((at(&listed), at(&record)), (Some(started), Some(started)), "{who}");
    }
    let r = w.as_user("doc").get(&format!("/api/patients/{}", w.id("p1"))).await;
    assert!(
        at(&r.body["lastDialysisAt"]).is_some_and(|l| l < started),
        "the last dialysis is the one before: {}",
        r.text
    );
    // tec reads p1's treatments on d1 only: not the one on d2. Admins: no clinical data.
    assert_eq!(running_of_p1(&w, "tec").await, (Value::Null, Value::Null));
    assert_eq!(running_of_p1(&w, "adm").await, (Value::Null, Value::Null));

    // The treatment on d2 ends; one starts on d1: tec sees it too.
    exec(
        &mut c,
        &w.fill(
            "UPDATE device_sessions SET status = 'completed', ended_at = now() WHERE patient_id = '{p1}' AND status = 'active';
             INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, status)
                  VALUES (gen_random_uuid(), '{ha}', '{d1}', '{p1}', now(), 'active')",
        ),
    )
    .await;
    let started = running_start_of_p1(&mut c, &w).await;
    for who in ["doc", "tec"] {
        let (listed, record) = running_of_p1(&w, who).await;
        assert_eq!((at(&listed), at(&record)), (Some(started), Some(started)), "{who}");
    }
    // A medical-information change answers with it as well.
    let r =
        w.as_user("doc").put(&format!("/api/patients/{}/medical-info", w.id("p1")), json!({"notes": "on d1"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(at(&r.body["treatmentStartedAt"]), Some(started), "{}", r.text);
    // Ended: none.
    exec(&mut c, &w.fill("UPDATE device_sessions SET status = 'completed', ended_at = now() WHERE patient_id = '{p1}' AND status = 'active'")).await;
    assert_eq!(running_of_p1(&w, "doc").await, (Value::Null, Value::Null));
    w.app.stop().await;
}

async fn trail(w: &World, patient: &str) -> Vec<(String, Value, Value, String)> {
    let r = w.as_user("doc").get(&format!("/api/patients/{}/medical-updates", w.id(patient))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut rows: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["field"].as_str().unwrap().to_owned(),
                u["oldValue"].clone(),
                u["newValue"].clone(),
                u["updatedBy"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[tokio::test]
async fn medical_information_fields_follow_each_roles_rights() {
    let mut w = World::new(TestApp::spawn().await).await;
    more_patients(&mut w).await;
    let path = format!("/api/patients/{}/medical-info", w.id("p1"));
    let last = "2026-11-30T08:00:00Z";

    // The technician of d1: the treatment data it records at the machine.
    let r = w
        .as_user("tec")
        .put(
            &path,
            json!({"dryWeightKg": 71.5, "vascularAccess": "av_fistula", "lastDialysisAt": last, "notes": "cannulation ok"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["dryWeightKg"].as_f64(), r.body["notes"].as_str()), (Some(71.5), Some("cannulation ok")));
    let tec = w.id("tec").to_owned();
    assert_eq!(
        trail(&w, "p1").await,
        vec![
            ("dryWeightKg".into(), json!(70.0), json!(71.5), tec.clone()),
            ("lastDialysisAt".into(), Value::Null, json!("2026-11-30T08:00:00Z"), tec.clone()),
            ("notes".into(), Value::Null, json!("cannulation ok"), tec.clone()),
            ("vascularAccess".into(), Value::Null, json!("av_fistula"), tec.clone()),
        ]
    );
    // Not the diagnosis, allergies or prescription: 403 naming every refused field, and
    // nothing changes (not even the allowed field sent with them).
    let r = w.as_user("tec").put(&path, json!({"notes": "changed", "diagnosis": "CKD 4", "medications": "EPO"})).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
    let refused: BTreeSet<&str> =
        r.body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(refused, BTreeSet::from(["diagnosis", "medications"]), "{}", r.text);
    assert_eq!(trail(&w, "p1").await.len(), 4, "nothing changed");
    // Identity and who treats the patient are not medical information.
    for field in ["name", "assignedDeviceId", "userId"] {
        let r = w.as_user("doc").put(&path, json!({ field: w.id("d2") })).await;
        assert_eq!(r.status, 400, "{field} is not a field of medical-info: {}", r.text);
    }
    // ...and through the whole-record update, the technician may not change them either.
    let r = w.as_user("tec").put(&format!("/api/patients/{}", w.id("p1")), json!({"name": "Someone else"})).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (403, Some("name")), "{}", r.text);

    // Only the patients on its devices, within its responsibility: not p4 (treated on d1
    // before its assignment), not another hospital's.
    let notes = json!({"notes": "x"});
    for (who, patient, status) in [
        ("tec", "p4", 403),
        ("tec", "p2", 403),
        ("tec2", "p1", 403),
        ("docB", "p1", 404),
        ("tec", "p5", 404),
        ("pat", "p1", 403),
        ("pat2", "p1", 403),
        ("adm", "p1", 403),
        ("doc2", "p1", 403),
    ] {
        let r = w.as_user(who).put(&format!("/api/patients/{}/medical-info", w.id(patient)), notes.clone()).await;
        assert_eq!(r.status, status, "{who} on {patient}: {}", r.text);
    }
    // The admin is told which fields: it administers the record but reads no clinical data.
    let r = w.as_user("adm").put(&path, json!({"notes": "x"})).await;
    assert_eq!(r.body["fields"][0]["field"], "notes", "{}", r.text);

    // The patient's doctor: every medical field.
    let r = w
        .as_user("doc")
        .put(
            &path,
            json!({"diagnosis": "ESRD, diabetic", "allergies": "heparin", "bloodGroup": "O+", "dryWeightKg": 71.5}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = trail(&w, "p1").await;
    assert_eq!(rows.len(), 7, "dryWeightKg did not change, so it is not in the trail: {rows:?}");
    assert!(rows.contains(&("diagnosis".into(), json!("ESRD"), json!("ESRD, diabetic"), w.id("doc").to_owned())));

    // Values are validated like everywhere else.
    for (body, field) in [
        (json!({"dryWeightKg": 1}), "dryWeightKg"),
        (json!({"notes": "n".repeat(4001)}), "notes"),
        (json!({"lastDialysisAt": "0001-01-01T00:00:00Z"}), "lastDialysisAt"),
        (json!({"notes": "a\u{0}b"}), "notes"),
    ] {
        let r = w.as_user("doc").put(&path, body.clone()).await;
        assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some(field)), "{body}: {}", r.text);
    }
    let r = w.as_user("doc").put(&path, json!({"vascularAccess": "vein"})).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Changes are audited.
    let by_tec = "SELECT count(*) FROM access_audit_log WHERE patient_id = $1::uuid AND action = 'update' AND actor_id = $2::uuid";
    let updates: i64 = w.scalar(by_tec, &["p1", "tec"]).await;
    assert_eq!(updates, 1);
    w.app.stop().await;
}

/// Registers a patient account in hospital A (inactive until verified); returns its id.
async fn register(w: &World, email: &str) -> String {
    let r = w
        .app
        .client
        .post(
            "/api/auth/register",
            json!({"email": email, "password": PASSWORD, "name": "New Patient", "hospitalCode": "mqtt-a"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["userId"].as_str().unwrap().to_owned()
}

async fn verify(w: &World, email: &str) -> Client {
    let mut c = w.app.db.sql().await;
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbound_messages WHERE recipient = $1 ORDER BY created_at DESC LIMIT 1")
            .bind(email)
            .fetch_one(&mut c)
            .await
            .unwrap();
    let code = body.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 6).unwrap().to_owned();
    let r = w.app.client.post("/api/auth/verify-otp", json!({"email": email, "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w.app.client.post("/api/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    w.app.client.with_token(r.body["accessToken"].as_str().unwrap())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The live stream of `device` with `token`, or the HTTP status refusing it.
async fn live(w: &World, token: &str, device: &str) -> Result<Ws, u16> {
    let url = format!("ws://{}/ws/health-metrics/{}?token={token}", w.app.running().http_addr, w.id(device));
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

#[tokio::test]
async fn a_linked_account_sees_its_record_and_the_account_linked_before_loses_it_at_once() {
    let mut w = World::new(TestApp::spawn().await).await;
    more_patients(&mut w).await;
    let p1 = w.id("p1").to_owned();
    let account = format!("/api/patients/{p1}/account");
    let email = "registered@mqtt.test";
    let newcomer = register(&w, email).await;

    // Not verified yet: the account is not active.
    let r = w.as_user("adm").put(&account, json!({"userId": newcomer})).await;
    assert_eq!((r.status, r.code()), (409, "account_inactive"), "{}", r.text);
    let new_client = verify(&w, email).await;
    assert_eq!(new_client.get(&format!("/api/patients/{p1}")).await.status, 403, "not linked yet");

    // `pat` (linked to p1 now) follows its own treatment on MQTT and on the live stream.
    let mut pat = w.connect("pat", "").await;
    let own = w.fill("nc/v1/h/{ha}/p/{p1}/#");
    assert_eq!(pat.subscribe(&[(&own, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let mut stream = live(&w, &w.access["pat"], "d1").await.expect("pat's live stream of d1");

    // Re-linking p1 to the newcomer: `pat` loses it everywhere, the newcomer gains it.
    let r = w.as_user("adm").put(&account, json!({"userId": newcomer})).await;
    let returned = Instant::now();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["userId"].as_str(), r.body["diagnosis"].clone()),
        (Some(newcomer.as_str()), Value::Null),
        "admin view"
    );
    assert_cut(&mut pat, returned, "the account linked before").await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the live stream closes");
    assert_eq!(closed, Some(4403), "the live stream ends: not permitted any more");
    assert!(returned.elapsed() < std::time::Duration::from_secs(3), "{:?}", returned.elapsed());
    assert_eq!(w.as_user("pat").get(&format!("/api/patients/{p1}")).await.status, 403);
    assert!(keys(&w, &w.as_user("pat").get("/api/patients").await).is_empty());
    let mut again = w.connect("pat", "").await;
    assert_eq!(again.subscribe(&[(&own, QoS::AtLeastOnce)]).await, vec![REFUSED]);

    let profile = new_client.get("/api/users/profile").await;
    assert_eq!(profile.body["patientId"], p1.as_str(), "{}", profile.text);
    assert_eq!(new_client.get(&format!("/api/patients/{p1}")).await.status, 200);
    assert_eq!(keys(&w, &new_client.get("/api/patients").await), set(&["p1"]));
    let token = new_client.token.clone().unwrap();
    let mut newcomer_mqtt =
        EventClient::connect(crate::support::options(w.mqtt(), &format!("{newcomer}-app"), &newcomer, &token), false)
            .await
            .expect("the newcomer connects");
    assert_eq!(newcomer_mqtt.subscribe(&[(&own, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    assert!(live(&w, &token, "d1").await.is_ok(), "the newcomer's live stream of their device");

    // Kept in the trail and audited.
    let rows = trail(&w, "p1").await;
    assert_eq!(rows, vec![("userId".into(), json!(w.id("pat")), json!(newcomer), w.id("adm").to_owned())]);
    let mut c = w.app.db.sql().await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_audit_log WHERE resource = 'patient.account' AND patient_id = $1::uuid",
    )
    .bind(&p1)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    // Refusals: another record's account, staff, another hospital's, not for technicians
    // or patients, nor doctors not caring for the patient.
    let p3 = format!("/api/patients/{}/account", w.id("p3"));
    for (who, body, status, code) in [
        ("adm", json!({"userId": newcomer}), 409, "user_already_linked"),
        ("adm", json!({"userId": w.id("pat2")}), 409, "user_already_linked"),
        ("adm", json!({"userId": w.id("tec")}), 422, "validation_failed"),
        ("adm", json!({"userId": w.id("docB")}), 404, "not_found"),
        ("adm", json!({"userId": uuid::Uuid::now_v7()}), 404, "not_found"),
        ("tec", json!({"userId": w.id("pat")}), 403, "forbidden"),
        ("pat", json!({"userId": w.id("pat")}), 403, "forbidden"),
        ("doc", json!({"userId": w.id("pat")}), 403, "forbidden"),
        ("admB", json!({"userId": w.id("pat")}), 404, "not_found"),
        ("adm", json!({"userId": w.id("pat"), "extra": 1}), 400, "bad_request"),
    ] {
        let r = w.as_user(who).put(&p3, body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{who} {body}: {}", r.text);
    }
    // The record's doctor links `pat` (now free) to p3.
    let r = w.as_user("doc2").put(&p3, json!({"userId": w.id("pat")})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["diagnosis"], "IgA nephropathy", "the doctor's view is the full record");
    assert_eq!(w.as_user("pat").get(&format!("/api/patients/{}", w.id("p3"))).await.status, 200);

    // Unlinking: the newcomer loses p1 (MQTT within a second), the record keeps its data.
    assert_cut_by(&mut newcomer_mqtt, w.as_user("doc").delete(&account, None), 204, "an unlinked account").await;
    assert_eq!(new_client.get(&format!("/api/patients/{p1}")).await.status, 403);
    assert_eq!(new_client.get("/api/users/profile").await.body["patientId"], Value::Null);
    assert_eq!(w.as_user("doc").delete(&account, None).await.status, 204, "unlinking twice changes nothing");
    assert_eq!(trail(&w, "p1").await.len(), 2);
    w.app.stop().await;
}
