//! Device maintenance end to end (the MQTT world: `tec` is d1's technician, `tec2` none's):
//! who records a maintenance and switches a machine between active and maintenance, what
//! the device's dates become, and the `maintenance_due` alert raised and cleared with it
//! (in the database, and to the technician's notification topic).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rumqttc::QoS;
use serde_json::{json, Value};

use crate::support::{body, grant, TestApp, World, GRANTED, WAIT};

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A time in a response, to the microsecond.
fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("a time: {v}")).parse().unwrap()
}

/// `t` as stored (microseconds).
fn stored(t: DateTime<Utc>) -> DateTime<Utc> {
    at(t).parse().unwrap()
}

/// (state, cleared_by) of each maintenance_due alert of `device`, oldest first.
async fn alerts(w: &World, device: &str) -> Vec<(String, Option<String>)> {
    let mut c = w.app.db.sql().await;
    sqlx::query_as(
        "SELECT state, cleared_by::text FROM alerts WHERE device_id = $1::uuid AND code = 'maintenance_due' ORDER BY raised_at",
    )
    .bind(w.id(device))
    .fetch_all(&mut c)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_devices_technicians_record_maintenance_which_raises_and_clears_the_due_alert() {
    let w = World::new(TestApp::spawn().await).await;
    let path = format!("/api/devices/{}/maintenance", w.id("d1"));
    let tec = w.as_user("tec");
    let notifications = w.fill("nc/v1/h/{ha}/u/{tec}/notifications");
    let mut tec_mqtt = w.connect("tec", "").await;
    assert_eq!(tec_mqtt.subscribe(&[(&notifications, QoS::AtLeastOnce)]).await, vec![GRANTED]);
    let now = Utc::now();

    // A maintenance recorded late: the next one was due yesterday, so the alert is raised now.
    let r = tec
        .post(
            &path,
            json!({"performedAt": at(now - Duration::days(200)), "nextDueAt": at(now - Duration::days(1)), "notes": "filters"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!((r.body["performedBy"].as_str(), r.body["notes"].as_str()), (Some(w.id("tec")), Some("filters")));
    assert_eq!(alerts(&w, "d1").await, vec![("active".to_owned(), None)]);
    let note = body(&tec_mqtt.message(&notifications, WAIT).await);
    assert_eq!(
        (note["event"].as_str(), note["alert"]["code"].as_str()),
        (Some("raised"), Some("maintenance_due")),
        "{note}"
    );
    let device = tec.get(&format!("/api/devices/{}", w.id("d1"))).await;
    assert_eq!(time(&device.body["maintenanceDueAt"]), stored(now - Duration::days(1)), "{}", device.text);

    // Maintenance done now, next due in 90 days: the alert is cleared at once.
    let due = now + Duration::days(90);
    let r = tec.post(&path, json!({"nextDueAt": at(due)})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["notes"], Value::Null);
    assert_eq!(alerts(&w, "d1").await, vec![("cleared".to_owned(), None)], "cleared by the system");
    let note = body(&tec_mqtt.message(&notifications, WAIT).await);
    assert_eq!(note["event"], "cleared", "{note}");
    let device = tec.get(&format!("/api/devices/{}", w.id("d1"))).await;
    assert_eq!(time(&device.body["maintenanceDueAt"]), stored(due), "{}", device.text);
    let last = time(&device.body["lastMaintenanceAt"]);
    assert!((last - now).num_seconds().abs() < 60, "{}", device.text);

    // One done earlier, recorded afterwards, is logged but does not move the device's dates.
    let r = tec
        .post(&path, json!({"performedAt": at(now - Duration::days(10)), "nextDueAt": at(now - Duration::days(5))}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(time(&tec.get(&format!("/api/devices/{}", w.id("d1"))).await.body["maintenanceDueAt"]), stored(due));
    assert_eq!(alerts(&w, "d1").await.len(), 1, "no new alert");
    let log = w.as_user("doc").get(&path).await;
    assert_eq!(log.body["total"], 3, "{}", log.text);
    let performed: Vec<DateTime<Utc>> =
        log.body["items"].as_array().unwrap().iter().map(|m| time(&m["performedAt"])).collect();
    let mut sorted = performed.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(performed, sorted, "latest first");

    // Who may: the device's technicians (a hand-over too) and admins; not its doctor, not
    // another technician, nobody of another hospital.
    let later = json!({"nextDueAt": at(due)});
    for (who, status) in [("doc", 403), ("tec2", 403), ("pat", 403), ("docB", 404), ("admB", 404), ("adm", 201)] {
        let r = w.as_user(who).post(&path, later.clone()).await;
        assert_eq!(r.status, status, "{who}: {}", r.text);
    }
    grant(&w).await;
    assert_eq!(w.as_user("tec2").post(&path, later.clone()).await.status, 201, "holding the hand-over");
    assert_eq!(w.as_user("pat").get(&path).await.status, 403, "the log is for staff");

    // Every value is checked.
    for (body, field) in [
        (json!({"nextDueAt": at(now - Duration::days(1))}), "nextDueAt"),
        (json!({"performedAt": at(now + Duration::hours(1)), "nextDueAt": at(due)}), "performedAt"),
        (json!({"nextDueAt": at(now + Duration::days(4000))}), "nextDueAt"),
        (json!({"nextDueAt": "0001-01-01T00:00:00Z"}), "nextDueAt"),
        (json!({"nextDueAt": at(due), "notes": "n".repeat(4001)}), "notes"),
    ] {
        let r = tec.post(&path, body.clone()).await;
        assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some(field)), "{body}: {}", r.text);
    }
    for body in [json!({"nextDueAt": at(due), "cost": 12}), json!({}), json!({"nextDueAt": "soon"})] {
        assert_eq!(tec.post(&path, body.clone()).await.status, 400, "{body}");
    }
    w.app.stop().await;
}

#[tokio::test]
async fn technicians_switch_their_devices_between_active_and_maintenance_only() {
    let w = World::new(TestApp::spawn().await).await;
    let status = |device: &str| format!("/api/devices/{}/status", w.id(device));
    let set = |who: &str, device: &str, to: &str| {
        let (c, path) = (w.as_user(who), status(device));
        let to = to.to_owned();
        async move { c.put(&path, json!({"status": to})).await }
    };
    let r = set("tec", "d1", "maintenance").await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("maintenance")), "{}", r.text);
    // A device in maintenance still connects (to report its state).
    let _d1 = w.connect("d1", "").await;
    assert_eq!(set("tec", "d1", "active").await.status, 200);
    assert_eq!(set("tec", "d1", "inactive").await.status, 403, "retiring is the admins'");
    for (who, device, code) in
        [("tec", "d2", 403), ("tec2", "d1", 403), ("doc", "d1", 403), ("pat", "d1", 403), ("docB", "d1", 404)]
    {
        assert_eq!(set(who, device, "maintenance").await.status, code, "{who} {device}");
    }
    // A retired device comes back only through an admin.
    assert_eq!(set("adm", "d1", "inactive").await.status, 200);
    assert_eq!(set("tec", "d1", "active").await.status, 403);
    assert_eq!(set("tec", "d1", "maintenance").await.status, 403);
    assert_eq!(set("adm", "d1", "active").await.status, 200);
    let r = w.as_user("tec").put(&status("d1"), json!({"status": "broken"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    w.app.stop().await;
}
