//! The authorization matrix of list filters: every parameter of every list (REST and FHIR)
//! that selects by an object, and the value filters beside them, called as every role,
//! inside and outside the hospital, asserting the exact status; and, for every answer that
//! is a list, that the filtered list holds nothing the same person's unfiltered list does
//! not (a filter narrows, it never widens). A filter is a read of what it narrows to:
//! narrowing alarms to a patient is reading that patient's clinical data (admins: 403, as
//! `DetectedIssue?patient=` and the alarm burden already answered).

use std::collections::HashSet;

use serde_json::Value;

use crate::authz::{exec, Actor, World};

const ACTORS: [&str; 10] = ["anon", "adm", "doc", "doc2", "tec", "tec2", "pat", "pat2", "admB", "docB"];

/// Alarms: one of p1 on d1 escalated to tier 3 (every tier of hospital A sees it), one of p2
/// on d2 at tier 1 (its care team only: nobody is assigned to d2, so only its patient), one
/// of hospital B. Raised now, so inside the technician's window on d1.
async fn alarms(w: &World) {
    let mut c = w.app.db.sql().await;
    for (h, d, p, level, code) in [
        ("ha", "d1", "p1", 3, "systolic_bp_low"),
        ("ha", "d2", "p2", 1, "venous_pressure_high"),
        ("hb", "d3", "p3", 3, "systolic_bp_low"),
    ] {
        exec(
            &mut c,
            &format!(
                "INSERT INTO alerts (id, hospital_id, device_id, patient_id, kind, code, metric, priority, message, value, threshold, raised_at, escalation_level)
                 VALUES ('{}', '{}', '{}', '{}', 'physiological', '{code}', 'systolicBp', 'high', 'Systolic pressure low', 82, 90, now(), {level})",
                uuid::Uuid::now_v7(),
                w.ids[h],
                w.ids[d],
                w.ids[p]
            ),
        )
        .await;
    }
}

/// The ids of a list answer (`items[].id`, a bare array's `id`s, or a FHIR Bundle's
/// `entry[].resource.id`), if the answer is a list.
fn ids(body: &Value) -> Option<HashSet<String>> {
    let items = body["items"].as_array().or_else(|| body.as_array()).or_else(|| body["entry"].as_array())?;
    Some(
        items
            .iter()
            .filter_map(|i| i["id"].as_str().or_else(|| i["resource"]["id"].as_str()))
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test]
async fn every_list_filter_is_decided_by_the_policy_and_never_widens_the_list() {
    let w = World::new().await;
    alarms(&w).await;
    let all = "anon=401 adm=200 doc=200 doc2=200 tec=200 tec2=200 pat=200 pat2=200 admB=200 docB=200";
    let day = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive();
    let range = format!("from={day}T00:00:00Z&to={day}T23:00:00Z");
    // (unfiltered list, filter, expectations). Every object filter of every list with one, as
    // every actor; then the value filters.
    let mut rows: Vec<(&str, String, String)> = vec![
        // Alarms: a patient's only with the right to read the patient; a device's with the
        // right to see the device (then the list shows what the person sees of it anyway).
        ("/api/alerts", "patientId={p1}".into(), CLINICAL_ON_D1.into()),
        ("/api/alerts", "patientId={p2}".into(), "adm=403 doc=403 doc2=200 tec=403 pat=403 pat2=200".into()),
        ("/api/alerts", "patientId={p3}".into(), "adm=404 doc=404 admB=403 docB=200".into()),
        ("/api/alerts", "deviceId={d1}".into(), SEES_D1.into()),
        ("/api/alerts", "deviceId={d3}".into(), "adm=404 doc=404 admB=200 docB=200".into()),
        ("/api/alerts", "state=active".into(), all.into()),
        ("/api/alerts", "openOnly=true".into(), all.into()),
        // The alarm burden: doctors and admins of the hospital; the same filter rights.
        (
            "/api/alerts/burden",
            "patientId={p1}".into(),
            "anon=401 adm=403 doc=200 doc2=403 tec=403 pat=403 admB=404 docB=404".into(),
        ),
        (
            "/api/alerts/burden",
            "deviceId={d1}".into(),
            "anon=401 adm=200 doc=200 doc2=200 tec=403 pat=403 admB=404 docB=404".into(),
        ),
        ("/api/alerts/burden", "ward=Ward%207".into(), "anon=401 adm=200 doc=200 tec=403 pat=403 admB=200".into()),
        // Patients: the filters narrow the policy's scope of the list.
        ("/api/patients", "deviceId={d1}".into(), all.into()),
        ("/api/patients", "doctorId={doc}".into(), all.into()),
        ("/api/patients", "name=Patient".into(), all.into()),
        // People and machines.
        ("/api/users/doctor", "q=doc".into(), "anon=401 adm=200 doc=200 tec=200 pat=403 admB=200 docB=200".into()),
        ("/api/users/patient", "active=true".into(), "anon=401 adm=200 doc=200 tec=403 pat=403 docB=200".into()),
        ("/api/devices", "mine=true".into(), all.into()),
        ("/api/devices", "status=active".into(), all.into()),
        // Bookings: the list applies the policy's booking scope and a filter narrows it (an
        // object one may not see simply matches nothing of it); available slots name no
        // booking, and a named device or patient one may not book for is refused.
        ("/api/bookings", "patientId={p1}".into(), all.into()),
        ("/api/bookings", "deviceId={d1}".into(), all.into()),
        ("/api/bookings", "patientId={p3}".into(), all.into()),
        ("/api/bookings", "deviceId={d3}".into(), all.into()),
        ("/api/bookings", format!("seriesId={}", uuid::Uuid::now_v7()), all.into()),
        ("/api/bookings/maintenance-windows", "deviceId={d1}".into(), all.into()),
        ("/api/bookings/maintenance-windows", "deviceId={d3}".into(), all.into()),
        ("/api/bookings/available-slots", format!("deviceId={{d1}}&{range}&duration=240"), SEES_D1.into()),
        (
            "/api/bookings/available-slots",
            format!("patientId={{p1}}&{range}&duration=240"),
            "anon=401 adm=200 doc=200 doc2=200 tec=403 tec2=403 pat=200 pat2=403 admB=404 docB=404".into(),
        ),
        (
            "/api/bookings/available-slots",
            format!("deviceId={{d3}}&{range}&duration=240"),
            "anon=401 adm=404 doc=404 pat=404 admB=200 docB=200".into(),
        ),
    ];
    // FHIR searches (references as `Type/id`): each by p1 or by d1, so each p1's clinical data.
    for (list, filter) in [
        ("/fhir/r4/DetectedIssue", "patient=Patient/{p1}"),
        ("/fhir/r4/DetectedIssue", "author=Device/{d1}"),
        ("/fhir/r4/Observation", "patient=Patient/{p1}"),
        ("/fhir/r4/Observation", "device=Device/{d1}"),
        ("/fhir/r4/Procedure", "patient=Patient/{p1}"),
        ("/fhir/r4/Device", "patient=Patient/{p1}"),
    ] {
        rows.push((list, filter.into(), CLINICAL_ON_D1.into()));
    }
    let mut unfiltered_cache = std::collections::HashMap::new();
    for (list, filter, expect) in &rows {
        let path = format!("{list}?{filter}");
        w.check("GET", &path, None, expect).await;
        // Whatever the expectations name, the filtered list of every actor is a subset of
        // that actor's unfiltered list.
        for who in ACTORS {
            let actor = Actor::key(who);
            let client = &w.clients[&actor];
            let filtered = client.get(&w.fill(&path, actor)).await;
            let Some(narrowed) = (filtered.status == 200).then(|| ids(&filtered.body)).flatten() else { continue };
            let key = (list.to_string(), who);
            if !unfiltered_cache.contains_key(&key) {
                let whole = client.get(list).await;
                unfiltered_cache.insert(key.clone(), ids(&whole.body));
            }
            if let Some(Some(whole)) = unfiltered_cache.get(&key) {
                let extra: Vec<&String> = narrowed.difference(whole).collect();
                assert!(extra.is_empty(), "{path} as {who} shows {extra:?}, which its unfiltered list does not");
            }
        }
    }

    // The admin's unfiltered list: the tier-3 alarm, in the administrative view (no patient,
    // no value), and nothing of tier 1.
    let r = w.clients[&Actor::Admin].get("/api/alerts").await;
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", r.text);
    assert_eq!((items[0]["patientId"].clone(), items[0]["value"].clone()), (Value::Null, Value::Null), "{}", r.text);
    w.app.stop().await;
}

/// The clinical data of d1 or of p1, the patient on it: its care team, and the patient
/// (their own treatment).
const CLINICAL_ON_D1: &str = "anon=401 adm=403 doc=200 doc2=403 tec=200 tec2=403 pat=200 pat2=403 admB=404 docB=404";

/// What concerns d1 but no patient's clinical data: everyone of its hospital, except a
/// patient of another machine.
const SEES_D1: &str = "anon=401 adm=200 doc=200 doc2=200 tec=200 tec2=200 pat=200 pat2=403 admB=404 docB=404";
