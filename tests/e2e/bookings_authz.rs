//! Who may do what with bookings: every booking endpoint × role × hospital × ownership,
//! denials as well as grants. In the fixture, `doc` and `tec` are d1's doctor and
//! technician and p1 (account `pat`) is on d1; p2 (`pat2`) is on d2, which has no staff;
//! `doc2` and `tec2` have no devices; `admB` and `docB` are in the other hospital.

use std::collections::BTreeSet;

use chrono::Duration;
use serde_json::{json, Value};

use crate::bookings::{at, book, configure, monday, urlencode};
use crate::support::{TestApp, World};

const EVERYONE: [&str; 9] = ["adm", "doc", "doc2", "tec", "tec2", "pat", "pat2", "admB", "docB"];

async fn status(w: &World, who: &str, method: &str, path: &str, body: Option<Value>) -> u16 {
    w.as_user(who).request(method, path, body).await.status
}

/// Asserts each caller's status.
async fn expect(w: &World, method: &str, path: &str, body: Option<Value>, want: &[(&str, u16)]) {
    for (who, code) in want {
        let got = status(w, who, method, path, body.clone()).await;
        assert_eq!(got, *code, "{who} {method} {path}");
    }
}

#[tokio::test]
async fn every_booking_endpoint_refuses_whoever_may_not_use_it() {
    let w = World::new(TestApp::spawn().await).await;
    configure(&w, json!({"open": "06:00", "close": "22:00"}), 30).await;
    let day = monday();
    let b1 = book(&w, "adm", "p1", "d1", &at(day, 8, 0), 240).await.body["id"].as_str().unwrap().to_owned();
    let b2 = book(&w, "adm", "p2", "d2", &at(day, 8, 0), 240).await.body["id"].as_str().unwrap().to_owned();

    // One booking.
    let (p1, p2) = (format!("/api/bookings/{b1}"), format!("/api/bookings/{b2}"));
    let on_d1 = [("adm", 200), ("doc", 200), ("doc2", 403), ("tec", 200), ("tec2", 403), ("pat", 200), ("pat2", 403)];
    expect(&w, "GET", &p1, None, &on_d1).await;
    expect(&w, "GET", &p1, None, &[("admB", 404), ("docB", 404)]).await;
    let on_d2 = [("adm", 200), ("doc", 403), ("tec", 403), ("pat", 403), ("pat2", 200), ("admB", 404)];
    expect(&w, "GET", &p2, None, &on_d2).await;
    let unknown = format!("/api/bookings/{}", uuid::Uuid::now_v7());
    expect(&w, "GET", &unknown, None, &[("adm", 404), ("pat", 404)]).await;

    // Lists are scoped, whatever the filters ask for.
    for (who, visible) in [
        ("adm", vec![&b1, &b2]),
        ("doc", vec![&b1]),
        ("doc2", vec![]),
        ("tec", vec![&b1]),
        ("tec2", vec![]),
        ("pat", vec![&b1]),
        ("pat2", vec![&b2]),
        ("admB", vec![]),
        ("docB", vec![]),
    ] {
        let r = w.as_user(who).get("/api/bookings").await;
        assert_eq!(r.status, 200, "{who}: {}", r.text);
        let got: BTreeSet<&str> =
            r.body["items"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
        let want: BTreeSet<&str> = visible.into_iter().map(String::as_str).collect();
        assert_eq!(got, want, "{who}");
        let r = w.as_user(who).get(&format!("/api/bookings?patientId={}", w.id("p2"))).await;
        let filtered = r.body["items"].as_array().unwrap().len();
        assert_eq!(filtered, usize::from(who == "adm" || who == "pat2"), "{who} filtering on p2");
    }

    // Booking: each attempt on its own day, so a success never blocks the next one.
    let mut next = 1;
    let mut attempt = |who: &'static str, patient: &'static str, device: &'static str| {
        next += 1;
        (who, patient, device, at(day + Duration::days(next), 8, 0))
    };
    let cases = [
        (attempt("adm", "p1", "d1"), 201),
        (attempt("doc", "p1", "d1"), 201),
        (attempt("doc", "p2", "d2"), 403),
        (attempt("doc2", "p1", "d1"), 403),
        (attempt("tec", "p1", "d1"), 403),
        (attempt("tec2", "p1", "d1"), 403),
        (attempt("pat", "", "d1"), 201),
        (attempt("pat", "p1", "d1"), 201),
        (attempt("pat", "p2", "d2"), 403),
        (attempt("pat", "", "d2"), 403),
        (attempt("pat2", "p1", "d1"), 403),
        (attempt("admB", "p1", "d1"), 404),
        (attempt("docB", "p1", "d1"), 404),
        (attempt("admB", "", "d3"), 422),
    ];
    for ((who, patient, device, start), code) in cases {
        let r = book(&w, who, patient, device, &start, 240).await;
        assert_eq!(r.status, code, "{who} books {patient:?} on {device}: {}", r.text);
    }
    // A patient of another hospital's device: not found.
    let r = book(&w, "adm", "p1", "d3", &at(day + Duration::days(1), 8, 0), 240).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Confirming, changing, cancelling.
    let confirm = Some(json!({"status": "confirmed"}));
    expect(&w, "PUT", &p1, confirm.clone(), &[("doc2", 403), ("tec", 403), ("pat", 403), ("pat2", 403), ("admB", 404)])
        .await;
    expect(&w, "PUT", &p1, confirm, &[("doc", 200), ("adm", 200)]).await;
    let notes = Some(json!({"notes": "bring the blood results"}));
    expect(&w, "PUT", &p2, notes.clone(), &[("doc", 403), ("tec", 403), ("pat", 403), ("docB", 404)]).await;
    expect(&w, "PUT", &p2, notes, &[("pat2", 200), ("adm", 200)]).await;
    expect(&w, "DELETE", &p2, None, &[("pat", 403), ("tec2", 403), ("doc", 403), ("docB", 404), ("admB", 404)]).await;
    expect(&w, "DELETE", &p2, None, &[("pat2", 200)]).await;

    // Availability: free/busy for everyone of the hospital; a patient only for their own
    // machine; technicians do not book for patients.
    let range = format!("from={}&to={}&duration=240", urlencode(&at(day, 0, 0)), urlencode(&at(day, 23, 0)));
    let d1 = format!("/api/bookings/available-slots?deviceId={}&{range}", w.id("d1"));
    let free_busy = [("adm", 200), ("doc2", 200), ("tec2", 200), ("pat", 200), ("pat2", 403), ("admB", 404)];
    expect(&w, "GET", &d1, None, &free_busy).await;
    let for_p1 = format!("{d1}&patientId={}", w.id("p1"));
    expect(&w, "GET", &for_p1, None, &[("adm", 200), ("doc", 200), ("doc2", 403), ("tec", 403), ("docB", 404)]).await;

    // Settings: read by everyone of the hospital, changed by its admin only.
    for who in EVERYONE {
        let r = w.as_user(who).get("/api/bookings/settings").await;
        assert_eq!(r.status, 200, "{who}");
        let own = !who.ends_with('B');
        assert_eq!(r.body["timeZone"] == "Europe/Berlin", own, "{who} sees its own hospital's settings: {}", r.text);
    }
    let current = w.as_user("adm").get("/api/bookings/settings").await.body;
    for who in ["doc", "tec", "pat"] {
        assert_eq!(status(&w, who, "PUT", "/api/bookings/settings", Some(current.clone())).await, 403, "{who}");
    }
    let mut other = current.clone();
    other["timeZone"] = json!("Asia/Tokyo");
    assert_eq!(status(&w, "admB", "PUT", "/api/bookings/settings", Some(other)).await, 200);
    assert_eq!(w.as_user("adm").get("/api/bookings/settings").await.body["timeZone"], "Europe/Berlin");

    // Maintenance windows: the device's technicians and admins.
    let window = |h: u32| {
        Some(
            json!({"deviceId": w.id("d1"), "startsAt": at(day + Duration::days(30), h, 0), "endsAt": at(day + Duration::days(30), h + 1, 0)}),
        )
    };
    let windows = "/api/bookings/maintenance-windows";
    let planned = w.as_user("tec").post(windows, window(6).unwrap()).await;
    assert_eq!(planned.status, 201, "{}", planned.text);
    expect(&w, "POST", windows, window(8), &[("tec2", 403), ("doc", 403), ("pat", 403), ("admB", 404)]).await;
    expect(&w, "POST", windows, window(10), &[("adm", 201)]).await;
    let path = format!("/api/bookings/maintenance-windows/{}", planned.body["id"].as_str().unwrap());
    expect(&w, "DELETE", &path, None, &[("tec2", 403), ("admB", 404), ("tec", 200)]).await;
    let listed = w.as_user("admB").get(windows).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(0), "other hospital: {}", listed.text);
}
