//! The authorization matrix: every management endpoint called as each role, inside and
//! outside the hospital, with and without the assignment, before and after a temporary
//! grant expires, asserting the exact status. The matrix is data: adding an endpoint means
//! adding a row.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::Executor;

use crate::support::{Client, PatientLinks, TestApp};

const PASSWORD: &str = "Matrix-pass-2026";

/// Who calls. Hospital A unless the name ends in `_b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Actor {
    Anon,
    Admin,
    /// Doctor assigned to device d1 (and assigned doctor of patient p1).
    Doctor,
    /// Doctor of hospital A with no assignment.
    Doctor2,
    /// Technician assigned to d1.
    Tech,
    /// Technician of hospital A with no assignment (receives a temporary grant later).
    Tech2,
    /// Patient whose record is on d1.
    Patient,
    /// Patient whose record is on d2.
    Patient2,
    AdminB,
    DoctorB,
}

use Actor::*;

impl Actor {
    pub(crate) fn key(s: &str) -> Actor {
        match s {
            "anon" => Anon,
            "adm" => Admin,
            "doc" => Doctor,
            "doc2" => Doctor2,
            "tec" => Tech,
            "tec2" => Tech2,
            "pat" => Patient,
            "pat2" => Patient2,
            "admB" => AdminB,
            "docB" => DoctorB,
            other => panic!("unknown actor {other}"),
        }
    }
}

/// Two hospitals with staff, patients and devices, and a logged-in client per actor.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) ids: HashMap<&'static str, String>,
    pub(crate) clients: HashMap<Actor, Client>,
}

pub(crate) async fn exec(c: &mut sqlx::PgConnection, sql: &str) {
    c.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl World {
    pub(crate) async fn new() -> World {
        let app = TestApp::spawn().await;
        let mut c = app.db.sql().await;
        let hash = nc_access::password::hash(PASSWORD.to_owned()).await.unwrap();
        let mut ids: HashMap<&'static str, String> = HashMap::new();
        ids.insert("ha", app.db.hospital("A", "hosp-a").await.to_string());
        ids.insert("hb", app.db.hospital("B", "hosp-b").await.to_string());
        let uuid = |ids: &HashMap<&'static str, String>, k: &str| uuid::Uuid::parse_str(&ids[k]).unwrap();
        let users = [
            ("adm", "ha", "admin"),
            ("doc", "ha", "doctor"),
            ("doc2", "ha", "doctor"),
            ("tec", "ha", "technician"),
            ("tec2", "ha", "technician"),
            ("pat", "ha", "patient"),
            ("pat2", "ha", "patient"),
            ("admB", "hb", "admin"),
            ("docB", "hb", "doctor"),
            ("victim", "ha", "technician"),
        ];
        for (k, h, role) in users {
            let role: nc_domain::Role = role.parse().unwrap();
            let user = app.db.person(uuid(&ids, h), &format!("{k}@matrix.test"), role, k, None, &hash).await;
            ids.insert(k, user.to_string());
        }
        for (d, h) in [("d1", "ha"), ("d2", "ha"), ("d3", "hb")] {
            let device =
                app.db.machine(uuid(&ids, h), d, &format!("Machine {d}"), None, "not-used-by-these-tests").await;
            ids.insert(d, device.to_string());
        }
        for (d, u) in [("d1", "doc"), ("d1", "tec"), ("d3", "docB")] {
            app.db.assign(uuid(&ids, d), uuid(&ids, u)).await;
        }
        for (p, u, d, h, doctor) in
            [("p1", "pat", "d1", "ha", "doc"), ("p2", "pat2", "d2", "ha", "doc2"), ("p3", "docB", "d3", "hb", "docB")]
        {
            let account = (p != "p3").then(|| uuid(&ids, u));
            let links = PatientLinks { account, doctor: Some(uuid(&ids, doctor)), device: Some(uuid(&ids, d)) };
            let patient = app.db.patient(uuid(&ids, h), p, &format!("Patient {p}"), links).await;
            ids.insert(p, patient.to_string());
        }
        let id = |k: &str| ids[k].clone();
        // A past session of p2 on d2, so device sessions have content.
        exec(&mut c, &format!(
            "INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, ended_at, status)
             VALUES (gen_random_uuid(), '{}', '{}', '{}', now() - interval '5 hours', now() - interval '1 hour', 'completed')",
            id("ha"), id("d2"), id("p2")
        )).await;

        let mut clients = HashMap::new();
        clients.insert(Anon, app.client.clone());
        for k in ["adm", "doc", "doc2", "tec", "tec2", "pat", "pat2", "admB", "docB"] {
            let r = app
                .client
                .post("/api/auth/login", json!({"email": format!("{k}@matrix.test"), "password": PASSWORD}))
                .await;
            assert_eq!(r.status, 200, "login {k}: {}", r.text);
            clients.insert(Actor::key(k), app.client.with_token(r.body["accessToken"].as_str().unwrap()));
        }
        World { app, ids, clients }
    }

    pub(crate) fn fill(&self, template: &str, actor: Actor) -> String {
        let mut s = template.replace("{actor}", &format!("{actor:?}").to_lowercase());
        for (k, v) in &self.ids {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    /// Runs one row: `expect` is `actor=status` pairs, run in the order written (so a
    /// mutation's success comes last in its row).
    pub(crate) async fn check(&self, method: &str, path: &str, body: Option<Value>, expect: &str) {
        for pair in expect.split_whitespace() {
            let (who, status) = pair.split_once('=').unwrap();
            let actor = Actor::key(who);
            let status: u16 = status.parse().unwrap();
            let path = self.fill(path, actor);
            let body = body.as_ref().map(|b| serde_json::from_str(&self.fill(&b.to_string(), actor)).unwrap());
            let r = self.clients[&actor].request(method, &path, body).await;
            assert_eq!(r.status, status, "{method} {path} as {actor:?}: {}", r.text);
            let expected_code = match status {
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                422 => "validation_failed",
                _ => "",
            };
            if path.starts_with("/fhir/") {
                // FHIR's errors are OperationOutcomes.
                if status >= 400 {
                    assert_eq!(r.body["resourceType"], "OperationOutcome", "{method} {path} as {actor:?}: {}", r.text);
                }
            } else if !expected_code.is_empty() {
                assert_eq!(r.code(), expected_code, "{method} {path} as {actor:?}: {}", r.text);
            } else if status >= 400 {
                assert!(!r.code().is_empty(), "{method} {path} as {actor:?}: errors have a JSON code: {}", r.text);
            }
        }
    }
}

#[tokio::test]
async fn authorization_matrix() {
    let w = World::new().await;
    let all_ok = "adm=200 doc=200 doc2=200 tec=200 tec2=200 pat=200 pat2=200 admB=200 docB=200";
    let next_due = (chrono::Utc::now() + chrono::Duration::days(90)).to_rfc3339();

    // (method, path, body, expectations). Reads first, then mutations.
    let rows: Vec<(&str, &str, Option<Value>, String)> = vec![
        ("GET", "/api/users/profile", None, format!("anon=401 {all_ok}")),
        ("PUT", "/api/users/profile", Some(json!({"phone": "+43 1 234"})), format!("anon=401 {all_ok}")),
        // A ward is an administrative assignment (tier 2 of its machines' alarms): not one's own to set.
        ("PUT", "/api/users/profile", Some(json!({"ward": "Ward 7"})), "doc=400 tec=400 pat=400 adm=400".into()),
        (
            "PUT",
            "/api/users/{doc2}/ward",
            Some(json!({"ward": "Ward 7"})),
            "anon=401 doc=403 doc2=403 tec=403 pat=403 admB=404 docB=403 adm=200".into(),
        ),
        ("GET", "/api/users/doctor", None, "anon=401 adm=200 doc=200 tec=200 pat=403 admB=200 docB=200".into()),
        ("GET", "/api/users/patient", None, "anon=401 adm=200 doc=200 tec=403 tec2=403 pat=403 docB=200".into()),
        ("GET", "/api/devices", None, format!("anon=401 {all_ok}")),
        (
            "GET",
            "/api/devices/{d1}",
            None,
            "anon=401 adm=200 doc=200 doc2=200 tec=200 tec2=200 pat=200 pat2=403 admB=404 docB=404".into(),
        ),
        (
            "GET",
            "/api/devices/{d1}/patients",
            None,
            "anon=401 adm=403 doc=200 doc2=403 tec=200 tec2=403 pat=200 pat2=403 admB=404 docB=404".into(),
        ),
        (
            "GET",
            "/api/devices/{d2}/sessions",
            None,
            "anon=401 adm=403 doc=403 doc2=403 tec=403 tec2=403 pat=403 pat2=200 admB=404 docB=404".into(),
        ),
        ("GET", "/api/devices/{d3}/sessions", None, "adm=404 doc=404 docB=200".into()),
        (
            "GET",
            "/api/patients/{p1}",
            None,
            "anon=401 adm=403 doc=200 doc2=403 tec=200 tec2=403 pat=200 pat2=403 admB=404 docB=404".into(),
        ),
        ("GET", "/api/patients/{p2}", None, "doc=403 doc2=200 tec=403 pat=403 pat2=200".into()),
        ("GET", "/api/patients/{p1}/medical-updates", None, "adm=403 doc=200 tec=200 pat=200 pat2=403 docB=404".into()),
        (
            "PUT",
            "/api/patients/{p1}",
            Some(json!({"notes": "by {actor}"})),
            "anon=401 adm=403 doc2=403 tec2=403 pat=403 admB=404 docB=404 tec=200 doc=200".into(),
        ),
        // Field rights: technicians change treatment data only; identity and who treats
        // the patient stay the doctors' (and admins') — 403 naming the field.
        ("PUT", "/api/patients/{p1}", Some(json!({"name": "Renamed"})), "tec=403 adm=403".into()),
        ("PUT", "/api/patients/{p1}", Some(json!({"assignedDeviceId": "{d2}"})), "tec=403 pat=403".into()),
        ("GET", "/api/patients", None, format!("anon=401 {all_ok}")),
        (
            "PUT",
            "/api/patients/{p1}/medical-info",
            Some(json!({"notes": "at the machine, {actor}"})),
            "anon=401 adm=403 doc2=403 tec2=403 pat=403 pat2=403 admB=404 docB=404 tec=200 doc=200".into(),
        ),
        ("PUT", "/api/patients/{p1}/medical-info", Some(json!({"diagnosis": "CKD 5"})), "tec=403 doc=200".into()),
        ("PUT", "/api/patients/{p2}/medical-info", Some(json!({"notes": "x"})), "tec=403 doc2=200".into()),
        ("PUT", "/api/patients/{p1}/medical-info", Some(json!({"name": "x"})), "doc=400".into()),
        // A patient's alert limits stay a clinical decision of their doctors.
        (
            "PUT",
            "/api/patients/{p1}/alert-thresholds",
            Some(json!({"metric": "heart_rate", "low": 45, "high": 130, "priority": "medium"})),
            "anon=401 adm=403 tec=403 pat=403 doc2=403 docB=404 doc=200".into(),
        ),
        // Linking accounts: admins and the patient's doctors (p1 is linked to pat already).
        (
            "PUT",
            "/api/patients/{p1}/account",
            Some(json!({"userId": "{pat}"})),
            "anon=401 doc2=403 tec=403 pat=403 admB=404 docB=404 adm=200 doc=200".into(),
        ),
        ("PUT", "/api/patients/{p2}/account", Some(json!({"userId": "{pat}"})), "adm=409 doc2=409".into()),
        ("PUT", "/api/patients/{p2}/account", Some(json!({"userId": "{doc}"})), "adm=422".into()),
        ("PUT", "/api/patients/{p2}/account", Some(json!({"userId": "{docB}"})), "adm=404".into()),
        ("DELETE", "/api/patients/{p2}/account", None, "anon=401 doc=403 tec=403 pat2=403 admB=404".into()),
        (
            "POST",
            "/api/patients",
            Some(json!({"patientNumber": "N-{actor}", "name": "New {actor}"})),
            "anon=401 tec=403 pat=403 admB=201 doc=201 adm=201".into(),
        ),
        (
            "POST",
            "/api/users",
            Some(json!({"email": "{actor}-hire@matrix.test", "name": "Hire", "role": "technician"})),
            "anon=401 doc=403 tec=403 pat=403 admB=201 adm=201".into(),
        ),
        (
            "POST",
            "/api/users/enrollment-codes",
            Some(json!({"role": "doctor"})),
            "anon=401 doc=403 tec=403 pat=403 admB=201 adm=201".into(),
        ),
        (
            "POST",
            "/api/devices",
            Some(json!({"serial": "NEW-1", "name": "New machine"})),
            "anon=401 doc=403 tec=403 pat=403 admB=201 adm=201".into(),
        ),
        (
            "PUT",
            "/api/devices/{d2}/status",
            Some(json!({"status": "maintenance"})),
            "anon=401 doc=403 tec=403 pat2=403 admB=404 adm=200".into(),
        ),
        ("POST", "/api/devices/{d2}/rotate-secret", None, "anon=401 doc=403 tec=403 pat2=403 admB=404 adm=200".into()),
        // The device's technicians switch it between active and maintenance; retiring is the admins'.
        (
            "PUT",
            "/api/devices/{d1}/status",
            Some(json!({"status": "maintenance"})),
            "anon=401 doc=403 tec2=403 pat=403 admB=404 docB=404 tec=200".into(),
        ),
        ("PUT", "/api/devices/{d1}/status", Some(json!({"status": "inactive"})), "tec=403".into()),
        ("PUT", "/api/devices/{d1}/status", Some(json!({"status": "active"})), "tec=200".into()),
        (
            "POST",
            "/api/devices/{d1}/maintenance",
            Some(json!({"nextDueAt": next_due})),
            "anon=401 doc=403 tec2=403 pat=403 admB=404 docB=404 tec=201 adm=201".into(),
        ),
        (
            "GET",
            "/api/devices/{d1}/maintenance",
            None,
            "anon=401 adm=200 doc=200 tec=200 tec2=200 pat=403 admB=404 docB=404".into(),
        ),
        (
            "POST",
            "/api/users/assign-device",
            Some(json!({"userId": "{doc2}", "deviceId": "{d2}"})),
            "anon=401 doc=403 doc2=403 tec=403 pat=403 admB=404 adm=201".into(),
        ),
        ("POST", "/api/users/assign-device", Some(json!({"userId": "{doc2}", "deviceId": "{d2}"})), "adm=409".into()),
        ("POST", "/api/users/assign-device", Some(json!({"userId": "{docB}", "deviceId": "{d2}"})), "adm=404".into()),
        ("POST", "/api/users/assign-device", Some(json!({"userId": "{pat}", "deviceId": "{d2}"})), "adm=422".into()),
        ("GET", "/api/devices/{d2}/sessions", None, "doc2=200".into()),
        (
            "DELETE",
            "/api/users/assign-device",
            Some(json!({"userId": "{doc2}", "deviceId": "{d2}"})),
            "doc=403 admB=404 adm=204".into(),
        ),
        ("DELETE", "/api/users/assign-device", Some(json!({"userId": "{doc2}", "deviceId": "{d2}"})), "adm=404".into()),
        ("GET", "/api/devices/{d2}/sessions", None, "doc2=403".into()),
        (
            "POST",
            "/api/devices/assign-technician",
            Some(json!({"deviceId": "{d2}", "technicianId": "{tec2}"})),
            "anon=401 doc=403 tec=403 pat=403 admB=404 adm=201".into(),
        ),
        (
            "POST",
            "/api/devices/assign-technician",
            Some(json!({"deviceId": "{d2}", "technicianId": "{doc}"})),
            "adm=422".into(),
        ),
        ("POST", "/api/users/{victim}/deactivate", None, "anon=401 doc=403 tec=403 pat=403 admB=404 adm=200".into()),
        ("POST", "/api/users/{adm}/deactivate", None, "adm=422".into()),
        // Temporary hand-over: only a technician assigned to the device may grant.
        (
            "POST",
            "/api/devices/temporary-access",
            Some(json!({"deviceId": "{d1}", "technicianId": "{tec2}", "durationMinutes": 60})),
            "anon=401 adm=403 doc=403 tec2=403 pat=403 admB=404 docB=404".into(),
        ),
        (
            "POST",
            "/api/devices/temporary-access",
            Some(json!({"deviceId": "{d1}", "technicianId": "{docB}", "durationMinutes": 60})),
            "tec=404".into(),
        ),
        (
            "POST",
            "/api/devices/temporary-access",
            Some(json!({"deviceId": "{d1}", "technicianId": "{doc}", "durationMinutes": 60})),
            "tec=422".into(),
        ),
        (
            "POST",
            "/api/devices/temporary-access",
            Some(json!({"deviceId": "{d1}", "technicianId": "{tec2}", "durationMinutes": 20000})),
            "tec=422".into(),
        ),
    ];
    for (method, path, body, expect) in &rows {
        w.check(method, path, body.clone(), expect).await;
    }

    // Before the grant, tec2 cannot read d1; after it, it can; after expiry, not again.
    w.check("GET", "/api/devices/{d1}/patients", None, "tec2=403").await;
    let grant = w.clients[&Tech]
        .post(
            "/api/devices/temporary-access",
            w.fill_json(
                json!({"deviceId": "{d1}", "technicianId": "{tec2}", "durationMinutes": 60, "reason": "night shift"}),
            ),
        )
        .await;
    assert_eq!(grant.status, 201, "{}", grant.text);
    let grant_id = grant.body["id"].as_str().unwrap().to_owned();
    w.check("GET", "/api/devices/{d1}/patients", None, "tec2=200").await;
    w.check("GET", "/api/patients/{p1}", None, "tec2=200").await;
    // A grant does not let its holder hand the device on.
    w.check(
        "POST",
        "/api/devices/temporary-access",
        Some(json!({"deviceId": "{d1}", "technicianId": "{victim}", "durationMinutes": 5})),
        "tec2=403",
    )
    .await;
    let mut c = w.app.db.sql().await;
    exec(&mut c, &format!(
        "UPDATE temporary_access_grants SET granted_at = now() - interval '2 hours', expires_at = now() - interval '1 second' WHERE id = '{grant_id}'"
    )).await;
    w.check("GET", "/api/devices/{d1}/patients", None, "tec2=403").await;
    w.check("GET", "/api/patients/{p1}", None, "tec2=403").await;

    // A fresh grant, revoked: access ends at once. Only those involved (or an admin) revoke.
    let grant = w.clients[&Tech]
        .post(
            "/api/devices/temporary-access",
            w.fill_json(json!({"deviceId": "{d1}", "technicianId": "{tec2}", "durationMinutes": 60})),
        )
        .await;
    let path = format!("/api/devices/temporary-access/{}", grant.body["id"].as_str().unwrap());
    w.check("GET", "/api/devices/{d1}/patients", None, "tec2=200").await;
    w.check("DELETE", &path, None, "anon=401 doc=403 pat=403 admB=404 tec=204").await;
    w.check("GET", "/api/devices/{d1}/patients", None, "tec2=403").await;
    w.app.stop().await;
}

impl World {
    fn fill_json(&self, v: Value) -> Value {
        serde_json::from_str(&self.fill(&v.to_string(), Anon)).unwrap()
    }
}

#[tokio::test]
async fn lists_are_hospital_scoped_and_patients_see_only_their_device() {
    let w = World::new().await;
    let devices = w.clients[&Patient].get("/api/devices").await;
    let ids: Vec<&str> = devices.body["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![w.ids["d1"].as_str()], "a patient lists only their own device");

    let devices = w.clients[&Doctor2].get("/api/devices").await;
    assert_eq!(devices.body["total"], 2, "staff list every device of their hospital, none of another");
    let mine = w.clients[&Doctor].get("/api/devices?mine=true").await;
    assert_eq!(mine.body["total"], 1);

    let doctors = w.clients[&AdminB].get("/api/users/doctor").await;
    let emails: Vec<&str> =
        doctors.body["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, vec!["docB@matrix.test"], "hospital B sees only its own staff");

    // Pagination: limit bounds, and pages neither overlap nor skip.
    let r = w.clients[&Admin].get("/api/users/technician?limit=1").await;
    assert_eq!((r.body["total"].as_u64(), r.body["items"].as_array().unwrap().len()), (Some(3), 1));
    let mut seen = Vec::new();
    for offset in 0..3 {
        let r = w.clients[&Admin].get(&format!("/api/users/technician?limit=1&offset={offset}")).await;
        seen.push(r.body["items"][0]["id"].as_str().unwrap().to_owned());
    }
    seen.dedup();
    assert_eq!(seen.len(), 3);
    assert_eq!(w.clients[&Admin].get("/api/users/technician?limit=500").await.status, 422);
    assert_eq!(w.clients[&Admin].get("/api/users/surgeon").await.status, 400, "unknown role in the path");
    assert_eq!(w.clients[&Admin].get("/api/devices/not-a-uuid").await.status, 400);

    // The patient list of a device: a patient sees only themself.
    let r = w.clients[&Patient].get(&format!("/api/devices/{}/patients", w.ids["d1"])).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    w.app.stop().await;
}

#[tokio::test]
async fn patient_reads_and_changes_are_audited() {
    let w = World::new().await;
    let p1 = &w.ids["p1"];
    assert_eq!(w.clients[&Doctor].get(&format!("/api/patients/{p1}")).await.status, 200);
    let r = w.clients[&Doctor]
        .put(&format!("/api/patients/{p1}"), json!({"dryWeightKg": 70.5, "allergies": "penicillin"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.clients[&Doctor2].get(&format!("/api/patients/{p1}")).await.status, 403);

    let mut c = w.app.db.sql().await;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor_id::text, action, interface FROM access_audit_log WHERE patient_id = $1::uuid ORDER BY at",
    )
    .bind(p1)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let doc = w.ids["doc"].clone();
    assert_eq!(rows, vec![(doc.clone(), "read".into(), "rest".into()), (doc.clone(), "update".into(), "rest".into())]);

    let trail = w.clients[&Doctor].get(&format!("/api/patients/{p1}/medical-updates")).await;
    let fields: Vec<&str> = trail.body.as_array().unwrap().iter().map(|u| u["field"].as_str().unwrap()).collect();
    assert_eq!(fields.len(), 2);
    assert!(fields.contains(&"dryWeightKg") && fields.contains(&"allergies"), "{fields:?}");
    let weight = trail.body.as_array().unwrap().iter().find(|u| u["field"] == "dryWeightKg").unwrap();
    assert_eq!((weight["oldValue"].clone(), weight["newValue"].clone()), (Value::Null, json!(70.5)));
    assert_eq!(weight["updatedBy"], doc);
    w.app.stop().await;
}

/// A person's ward decides tier 2 of its machines' alarms, so only an admin sets it, the
/// change is audited with the old and the new ward, and it is an access event like a change
/// of role (every node's kept decisions end and live subscriptions are decided again).
#[tokio::test]
async fn a_ward_is_set_by_admins_audited_and_an_access_event() {
    let w = World::new().await;
    let mut listener = sqlx::postgres::PgListener::connect(&w.app.db.url).await.unwrap();
    listener.listen("nc_access").await.unwrap();
    let doc2 = w.ids["doc2"].clone();

    let r = w.clients[&Doctor2].put("/api/users/profile", json!({"ward": "Ward 7"})).await;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "{}", r.text);
    let r = w.clients[&Admin].put(&format!("/api/users/{doc2}/ward"), json!({"ward": "  "})).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = w.clients[&Admin].put(&format!("/api/users/{doc2}/ward"), json!({"ward": "Ward 7"})).await;
    assert_eq!((r.status, r.body["ward"].as_str()), (200, Some("Ward 7")), "{}", r.text);

    let event = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let n = listener.recv().await.unwrap();
            let v: Value = serde_json::from_str(n.payload()).unwrap();
            if v["user"] == doc2.as_str() {
                return v;
            }
        }
    })
    .await
    .expect("a change of ward fires an access event");
    assert_eq!(event["table"], "users");

    let mut c = w.app.db.sql().await;
    let detail: Value =
        sqlx::query_scalar("SELECT detail FROM access_audit_log WHERE resource = 'user_ward' AND actor_id = $1::uuid")
            .bind(&w.ids["adm"])
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(detail, json!({"userId": doc2, "before": null, "after": "Ward 7"}));

    // Out of the ward again.
    let r = w.clients[&Admin].put(&format!("/api/users/{doc2}/ward"), json!({"ward": null})).await;
    assert_eq!((r.status, r.body["ward"].clone()), (200, Value::Null), "{}", r.text);
    w.app.stop().await;
}
