//! The FHIR R4 API over real HTTP on the real database: the authorization matrix (another
//! hospital 404, a visible patient the caller may not read 403, a patient reading another
//! patient, a technician outside its window, admins reading no clinical data — every refusal
//! an `OperationOutcome`), Observation pages that neither skip nor repeat in either order,
//! reads audited, and a Bulk Data export from kick-off to cancellation. (Validation of every
//! resource against the R4 models is `scripts/check-fhir.sh`, in CI.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{ago, eventually, grant, now, Client, Reply, TestApp, World};

/// d1 treats p1 (readings 1-3, the session ended), then p2 (4, then 5 after tec2 got a
/// hand-over of d1); p2 was treated on d2 before (reading 20). Each reading: heart rate,
/// SpO2, systolic and diastolic pressure.
async fn treated() -> World {
    let w = World::new(TestApp::spawn().await).await;
    let (t1, s1) = (w.topic("d1", "telemetry"), w.topic("d1", "session"));
    let mut d1 = w.connect("d1", "").await;
    let mut d2 = w.connect("d2", "").await;
    let reading = |seq: i64, ts: String, patient: Option<&str>| {
        let mut r = json!({"v": 1, "seq": seq, "ts": ts, "systemStatus": "normal", "heartRate": 70 + seq,
                           "oxygenSaturation": 97, "bloodPressure": 120, "diastolicPressure": 80});
        if let Some(p) = patient {
            r["patientId"] = json!(p);
        }
        r.to_string()
    };
    let start = |p: &str, ts: String| json!({"v": 1, "event": "start", "ts": ts, "patientId": w.id(p)}).to_string();
    d2.publish_acked(&w.topic("d2", "telemetry"), reading(20, now(), Some(w.id("p2")))).await;
    // p1's treatment stamped in the recent past, so that p2's (stamped now) starts after it.
    d1.publish_acked(&s1, start("p1", ago(40))).await;
    for seq in 1..=3 {
        d1.publish_acked(&t1, reading(seq, ago(40 - 10 * seq), None)).await;
    }
    d1.publish_acked(&s1, start("p2", now())).await;
    d1.publish_acked(&t1, reading(4, now(), None)).await;
    grant(&w).await;
    d1.publish_acked(&t1, reading(5, now(), None)).await;
    w
}

fn outcome(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(r.body["resourceType"], "OperationOutcome", "{what}: {}", r.text);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/fhir+json"), "{what}");
}

/// The seqs of the readings the Observations of a search are made of (each reading gives
/// two vital signs here: heart rate and the pressure panel; SpO2 a third).
fn seqs(bundle: &Value) -> Vec<u64> {
    let mut out: Vec<u64> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = e["resource"]["id"].as_str().unwrap();
            u64::from_str_radix(id.split('-').nth(2).unwrap(), 36).unwrap()
        })
        .collect();
    out.dedup();
    out
}

#[tokio::test]
async fn fhir_reads_are_decided_by_the_policy() {
    let w = treated().await;
    let p1 = |who: &str| w.as_user(who);
    let obs = |c: Client, p: &str| {
        let path = format!("/fhir/r4/Observation?patient={}&_count=100", w.id(p));
        async move { c.get(&path).await }
    };
    // Who reads p1's readings: the doctor of d1, its technician (assigned before them), p1.
    for who in ["doc", "tec", "pat"] {
        let r = obs(p1(who), "p1").await;
        assert_eq!(r.status, 200, "{who}: {}", r.text);
        assert_eq!(seqs(&r.body), vec![3, 2, 1], "{who}");
    }
    // Visible but not theirs: 403; another hospital: 404; admins read no clinical data; no
    // token: 401. Each an OperationOutcome.
    for (who, status) in [("doc2", 403), ("pat2", 403), ("adm", 403), ("docB", 404), ("admB", 404)] {
        outcome(&obs(p1(who), "p1").await, status, who);
        let read = p1(who).get(&format!("/fhir/r4/Patient/{}", w.id("p1"))).await;
        outcome(&read, status, who);
    }
    outcome(&w.app.client.get(&format!("/fhir/r4/Observation?patient={}", w.id("p1"))).await, 401, "anonymous");
    let anonymous = w.app.client.get(&format!("/fhir/r4/Patient/{}", w.id("p1"))).await;
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");

    // A technician holding a hand-over of d1 (where p1 is assigned): as over REST, a search of
    // p1 finds nothing (p1's treatment ended before the hand-over), and a reading of it read
    // by id is refused; p2's treatment running when it was given and what followed (4, 5),
    // never p2's treatment on d2 (20).
    let r = obs(p1("tec2"), "p1").await;
    assert_eq!((r.status, seqs(&r.body)), (200, vec![]), "{}", r.text);
    let p1_reading = obs(p1("doc"), "p1").await.body["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    outcome(&p1("tec2").get(&format!("/fhir/r4/Observation/{p1_reading}")).await, 403, "tec2 reading p1's reading");
    assert_eq!(p1("tec").get(&format!("/fhir/r4/Observation/{p1_reading}")).await.status, 200);
    let r = obs(p1("tec2"), "p2").await;
    assert_eq!(seqs(&r.body), vec![5, 4], "{}", r.text);
    let doctor = obs(p1("doc"), "p2").await;
    assert_eq!(seqs(&doctor.body), vec![5, 4, 20], "a doctor of p2 reads all of p2's treatment");
    let pat2 = obs(p1("pat2"), "p2").await;
    assert_eq!(seqs(&pat2.body), vec![5, 4, 20], "the patient reads all of their treatment");
    // A reading outside tec2's window, read by id: refused.
    let old = pat2.body["entry"].as_array().unwrap().last().unwrap()["resource"]["id"].as_str().unwrap().to_owned();
    outcome(&p1("tec2").get(&format!("/fhir/r4/Observation/{old}")).await, 403, "tec2 reading p2's d2 reading");
    assert_eq!(p1("pat2").get(&format!("/fhir/r4/Observation/{old}")).await.status, 200);
    // A device's readings: its staff all of them; a patient their own treatment only.
    let by_device = |who: &str| {
        let c = p1(who);
        let path = format!("/fhir/r4/Observation?device=Device/{}&_count=100", w.id("d1"));
        async move { c.get(&path).await }
    };
    assert_eq!(seqs(&by_device("doc").await.body), vec![5, 4, 3, 2, 1]);
    assert_eq!(seqs(&by_device("pat").await.body), vec![3, 2, 1], "p1 (assigned to d1): their own treatment");
    assert_eq!(seqs(&by_device("pat2").await.body), vec![5, 4], "only p2's own treatment");

    // Sessions and alarms follow the same rules.
    let procs =
        p1("doc").get(&format!("/fhir/r4/Procedure?patient={}&_revinclude=Observation:part-of", w.id("p1"))).await;
    assert_eq!(procs.status, 200, "{}", procs.text);
    let kinds: Vec<&str> = procs.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"Procedure"));
    assert!(kinds.contains(&"Observation"), "the ended session's summaries: {kinds:?}");
    outcome(&p1("pat2").get(&format!("/fhir/r4/Procedure?patient={}", w.id("p1"))).await, 403, "pat2 on p1's sessions");
    outcome(&p1("docB").get(&format!("/fhir/r4/DetectedIssue?patient={}", w.id("p1"))).await, 404, "docB");

    // Reads are audited, like every other read.
    let mut c = w.app.db.sql().await;
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM access_audit_log WHERE resource LIKE 'fhir.%'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(audited >= 10, "{audited} audited FHIR reads");

    // Bulk export: admins and doctors only; admins not clinical types; groups of the caller's
    // hospital.
    outcome(&p1("tec").get("/fhir/r4/Patient/$export").await, 403, "tec exports");
    outcome(&p1("pat").get("/fhir/r4/Patient/$export").await, 403, "pat exports");
    outcome(&p1("adm").get("/fhir/r4/Patient/$export?_type=Observation").await, 403, "adm exports Observations");
    outcome(&p1("docB").get(&format!("/fhir/r4/Group/{}/$export", w.id("ha"))).await, 404, "docB exports A");
    outcome(&p1("doc").get("/fhir/r4/Patient/$export?_type=Nope").await, 400, "unknown type");
}

#[tokio::test]
async fn observation_pages_neither_skip_nor_repeat_in_either_order() {
    let w = World::new(TestApp::spawn().await).await;
    let mut d1 = w.connect("d1", "").await;
    let t1 = w.topic("d1", "telemetry");
    for seq in 1..=9 {
        let r = json!({"v": 1, "seq": seq, "ts": now(), "patientId": w.id("p1"), "systemStatus": "normal",
                       "heartRate": 70, "oxygenSaturation": 97, "bloodPressure": 120});
        d1.publish_acked(&t1, r.to_string()).await;
    }
    let doc = w.as_user("doc");
    for sort in ["-date", "date"] {
        let mut ids = Vec::new();
        let mut url = format!("/fhir/r4/Observation?patient=Patient/{}&_count=4&_sort={sort}", w.id("p1"));
        for _ in 0..20 {
            let r = doc.get(&url).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(r.body["entry"].as_array().unwrap().len() <= 4);
            ids.extend(
                r.body["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()),
            );
            match r.body["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
                Some(next) => {
                    url = next["url"]
                        .as_str()
                        .unwrap()
                        .split_once("/fhir/r4")
                        .map(|(_, p)| format!("/fhir/r4{p}"))
                        .unwrap()
                }
                None => break,
            }
        }
        assert_eq!(ids.len(), 27, "{sort}: 9 readings × (heart rate, pressure, SpO2)");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 27, "{sort}: no repeats");
    }
    // A code and a date range narrow the search; an unknown parameter is refused.
    let hr =
        doc.get(&format!("/fhir/r4/Observation?patient={}&code=http://loinc.org|8867-4&_count=100", w.id("p1"))).await;
    let codes: BTreeSet<&str> = hr.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!((hr.body["entry"].as_array().unwrap().len(), codes), (9, BTreeSet::from(["8867-4"])));
    let none = doc.get(&format!("/fhir/r4/Observation?patient={}&date=lt2000-01-01", w.id("p1"))).await;
    assert_eq!(none.body["entry"].as_array().unwrap().len(), 0);
    outcome(&doc.get(&format!("/fhir/r4/Observation?patient={}&colour=red", w.id("p1"))).await, 400, "unknown");
    outcome(&doc.get("/fhir/r4/Observation").await, 400, "no patient nor device");
    outcome(&doc.get("/fhir/r4/Nothing").await, 404, "unknown type");
}

#[tokio::test]
async fn a_bulk_export_is_planned_streamed_and_cancelled() {
    let w = treated().await;
    let doc = w.as_user("doc");
    let kick = doc.get("/fhir/r4/Patient/$export?_type=Patient,Observation,Procedure").await;
    assert_eq!(kick.status, 202, "{}", kick.text);
    let status_url = kick.headers["content-location"].to_str().unwrap().to_owned();
    let path = status_url.split_once("/fhir/r4").map(|(_, p)| format!("/fhir/r4{p}")).unwrap();
    // Another person cannot see the job.
    outcome(&w.as_user("doc2").get(&path).await, 404, "doc2 polls doc's export");
    let manifest = eventually("the export's manifest", Duration::from_secs(30), || async {
        let r = doc.get(&path).await;
        if r.status == 200 {
            return Some(r.body);
        }
        assert_eq!(r.status, 202);
        assert!(r.headers.contains_key("retry-after"));
        None
    })
    .await;
    assert_eq!(manifest["requiresAccessToken"], true);
    let mut lines = std::collections::BTreeMap::<String, usize>::new();
    for out in manifest["output"].as_array().unwrap() {
        let url = out["url"].as_str().unwrap();
        let file = url.split_once("/fhir/r4").map(|(_, p)| format!("/fhir/r4{p}")).unwrap();
        let r =
            doc.http.get(format!("{}{file}", doc.base)).bearer_auth(doc.token.as_ref().unwrap()).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        let text = r.text().await.unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["resourceType"], out["type"]);
        }
        *lines.entry(out["type"].as_str().unwrap().to_owned()).or_default() += text.lines().count();
        // Files are the requester's.
        assert_eq!(w.as_user("doc2").get(&file).await.status, 404);
    }
    // doc's patients: p1 (on d1) and p2 (treated on d1). Readings 1-5 and 20 (p2's
    // treatment on d2 is p2's, and doc reads all of a patient of theirs), 3 Observations
    // each, and the ended sessions' summaries.
    assert_eq!(lines["Patient"], 2, "{lines:?}");
    assert!(lines["Procedure"] >= 3, "{lines:?}");
    assert!(lines["Observation"] >= 18, "{lines:?}");
    assert_eq!(doc.delete(&path, None).await.status, 202);
    outcome(&doc.get(&path).await, 404, "a cancelled export");
    // An admin's export: the administrative types only.
    let adm = w.as_user("adm");
    let kick = adm.get(&format!("/fhir/r4/Group/{}/$export", w.id("ha"))).await;
    assert_eq!(kick.status, 202, "{}", kick.text);
    let path = kick.headers["content-location"]
        .to_str()
        .unwrap()
        .split_once("/fhir/r4")
        .map(|(_, p)| format!("/fhir/r4{p}"))
        .unwrap();
    let manifest = eventually("the group export's manifest", Duration::from_secs(30), || async {
        let r = adm.get(&path).await;
        (r.status == 200).then_some(r.body)
    })
    .await;
    let types: BTreeSet<&str> =
        manifest["output"].as_array().unwrap().iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from(["Device", "Patient", "Practitioner"]));
}

/// The absolute URLs the service hands out (the Bulk Data status URL a client polls with its
/// token, Bundle links) come from the configured public URL, never from the request's `Host`;
/// forwarded headers count only from a configured trusted proxy.
#[tokio::test]
async fn absolute_links_come_from_the_public_url_not_from_the_request() {
    async fn links(w: &World, headers: &[(&str, &str)]) -> (String, String) {
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let mut r = http.get(format!("{}{path}", w.app.client.base)).bearer_auth(&w.access["doc"]);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r
        };
        let kick = get("/fhir/r4/Patient/$export").send().await.unwrap();
        assert_eq!(kick.status(), 202);
        let status_url = kick.headers()["content-location"].to_str().unwrap().to_owned();
        let bundle: Value = get("/fhir/r4/Patient").send().await.unwrap().json().await.unwrap();
        (status_url, bundle["link"][0]["url"].as_str().unwrap().to_owned())
    }
    let spoofed = [("Host", "evil.example:8443"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")];

    // Nothing configured: the listen address, whatever the request says.
    let w = World::new(TestApp::spawn().await).await;
    let base = w.app.client.base.clone();
    let (status_url, self_link) = links(&w, &spoofed).await;
    assert!(status_url.starts_with(&format!("{base}/fhir/r4/bulk-status/")), "{status_url}");
    assert!(self_link.starts_with(&format!("{base}/fhir/r4/Patient")), "{self_link}");
    w.app.stop().await;

    // A public URL, and this client as the trusted proxy: its forwarded headers count.
    let w = World::new(
        TestApp::spawn_with(|c| {
            c.http.public_url = Some("https://nephro.example.org".into());
            c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })
        .await,
    )
    .await;
    let (status_url, _) = links(&w, &[("Host", "evil.example")]).await;
    assert!(status_url.starts_with("https://nephro.example.org/fhir/r4/bulk-status/"), "{status_url}");
    let (status_url, self_link) =
        links(&w, &[("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "ward7.example.org:8443")]).await;
    assert!(status_url.starts_with("http://ward7.example.org:8443/fhir/r4/bulk-status/"), "{status_url}");
    assert!(self_link.starts_with("http://ward7.example.org:8443/fhir/r4/Patient"), "{self_link}");
    // Even a trusted proxy cannot inject what is not a host.
    let (status_url, _) = links(&w, &[("X-Forwarded-Host", "evil.example/x?")]).await;
    assert!(status_url.starts_with("https://nephro.example.org/fhir/r4/"), "{status_url}");
    w.app.stop().await;
}
