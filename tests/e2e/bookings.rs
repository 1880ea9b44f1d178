//! Bookings end to end against the real service and database:
//!
//! - availability against hand-computed expectations: opening hours in the hospital's time
//!   zone, the changeover buffer, existing bookings, maintenance windows and devices, a
//!   fully booked day and a DST change (sessions last real hours);
//! - 50 concurrent requests for one slot: one 201, 49 × 409 naming the winner, one row;
//! - recurring series: all or nothing by default, book-what-fits, cancelling from a date;
//! - status transitions, and completion by a real device session;
//! - notifications over MQTT to the patient and the device's technicians.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rumqttc::QoS;
use serde_json::{json, Value};

use crate::support::{body, eventually, now, TestApp, World, WAIT};

pub(crate) const BERLIN: chrono_tz::Tz = chrono_tz::Europe::Berlin;

/// Berlin, 06:00-22:00 every day (`sunday` overrides Sunday), a grid of `slot` minutes,
/// 30 minutes of changeover, 24 h notice, patients on their own machine, 400 days ahead.
pub(crate) async fn configure(w: &World, sunday: Value, slot: u32) {
    configure_with(w, json!({"open": "06:00", "close": "22:00"}), sunday, slot, 1440).await;
}

pub(crate) async fn configure_with(w: &World, day: Value, sunday: Value, slot: u32, notice: u32) {
    let r = w
        .as_user("adm")
        .put(
            "/api/bookings/settings",
            json!({"timeZone": "Europe/Berlin", "openingHours": {"mon": day, "tue": day, "wed": day, "thu": day,
                   "fri": day, "sat": day, "sun": sunday}, "slotMinutes": slot, "changeoverMinutes": 30,
                   "cancellationNoticeMinutes": notice, "patientsMayBookAnyDevice": false, "maxDaysAhead": 400}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A Monday at least a week ahead (Berlin).
pub(crate) fn monday() -> NaiveDate {
    let today = Utc::now().with_timezone(&BERLIN).date_naive();
    today + Duration::days(14 - i64::from(today.weekday().num_days_from_monday()))
}

/// `date` at `hh:mm` Berlin time, RFC 3339.
pub(crate) fn at(date: NaiveDate, hh: u32, mm: u32) -> String {
    date.and_hms_opt(hh, mm, 0).unwrap().and_local_timezone(BERLIN).earliest().unwrap().to_rfc3339()
}

pub(crate) async fn book(
    w: &World,
    who: &str,
    patient: &str,
    device: &str,
    start: &str,
    minutes: u32,
) -> crate::support::Reply {
    let mut b = json!({"deviceId": w.id(device), "scheduledDate": start, "duration": minutes});
    if !patient.is_empty() {
        b["patientId"] = json!(w.id(patient));
    }
    w.as_user(who).post("/api/bookings", b).await
}

/// Free local start times ("HH:MM") of `device` on `date`, as `who` sees them.
async fn free(w: &World, who: &str, device: &str, date: NaiveDate, minutes: u32) -> Vec<String> {
    let (from, to) = (at(date, 0, 0), at(date.succ_opt().unwrap(), 0, 0));
    let path = format!(
        "/api/bookings/available-slots?deviceId={}&from={}&to={}&duration={minutes}",
        w.id(device),
        urlencode(&from),
        urlencode(&to)
    );
    let r = w.as_user(who).get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("Patient p"), "availability never names patients: {}", r.text);
    r.body["slots"].as_array().unwrap().iter().map(|s| s["localStart"].as_str().unwrap()[11..16].to_owned()).collect()
}

pub(crate) fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

fn hours(list: &[u32]) -> Vec<String> {
    list.iter().map(|h| format!("{h:02}:00")).collect()
}

#[tokio::test]
async fn availability_follows_opening_hours_changeovers_bookings_and_maintenance() {
    let w = World::new(TestApp::spawn().await).await;
    configure(&w, json!({"open": "06:00", "close": "22:00"}), 60).await;
    let day = monday();
    // Open 06:00-22:00: 4 h sessions start 06:00 to 18:00.
    assert_eq!(free(&w, "adm", "d1", day, 240).await, hours(&[6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]));
    // A session 08:00-12:00 holds the machine until 12:30 (changeover): a new session and
    // its own changeover must fit around that.
    let r = book(&w, "adm", "p1", "d1", &at(day, 8, 0), 240).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["localStart"].as_str().unwrap(), at(day, 8, 0));
    assert_eq!(r.body["timeZone"], "Europe/Berlin");
    assert_eq!(r.body["changeoverUntil"].as_str().map(parse), Some(parse(&at(day, 12, 30))));
    assert_eq!(free(&w, "adm", "d1", day, 240).await, hours(&[13, 14, 15, 16, 17, 18]));
    // Short sessions fit before it: 06:00-07:00 plus 30 minutes ends by 08:00.
    assert_eq!(free(&w, "adm", "d1", day, 60).await[..2], hours(&[6, 13])[..]);
    // A maintenance window 15:00-16:00 (planned by the device's technician).
    let r = w
        .as_user("tec")
        .post(
            "/api/bookings/maintenance-windows",
            json!({"deviceId": w.id("d1"), "startsAt": at(day, 15, 0), "endsAt": at(day, 16, 0), "reason": "filter change"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(free(&w, "adm", "d1", day, 240).await, hours(&[16, 17, 18]));
    let r = book(&w, "adm", "p2", "d1", &at(day, 13, 0), 240).await;
    assert_eq!((r.status, r.code()), (409, "device_maintenance"), "{}", r.text);
    // The patient sees their own treatment's machine only, free/busy.
    let path = format!(
        "/api/bookings/available-slots?from={}&to={}&duration=240",
        urlencode(&at(day, 0, 0)),
        urlencode(&at(day, 23, 0))
    );
    let mine = w.as_user("pat").get(&path).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let devices: Vec<&str> =
        mine.body["devices"].as_array().unwrap().iter().map(|d| d["deviceId"].as_str().unwrap()).collect();
    assert_eq!(devices, [w.id("d1")]);
    assert!(mine.body["busy"].as_array().unwrap().iter().all(|b| b.as_object().unwrap().len() == 4), "{}", mine.text);

    // A fully booked day on d2: 06:00, 10:30 and 15:00 leave nothing for 4 hours (19:30 + 4 h > 22:00).
    for (h, m) in [(6, 0), (10, 30), (15, 0)] {
        let r = book(&w, "adm", "p2", "d2", &at(day, h, m), 240).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    assert_eq!(free(&w, "adm", "d2", day, 240).await, Vec::<String>::new());
    assert_eq!(free(&w, "adm", "d2", day, 120).await, hours(&[20]), "20:00-22:00 still fits 2 hours");
    // A device in maintenance has no slots at all.
    let r =
        w.as_user("adm").put(&format!("/api/devices/{}/status", w.id("d2")), json!({"status": "maintenance"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let day2 = day.succ_opt().unwrap();
    assert_eq!(free(&w, "adm", "d2", day2, 240).await, Vec::<String>::new());
    let r = book(&w, "adm", "p2", "d2", &at(day2, 8, 0), 240).await;
    assert_eq!((r.status, r.code()), (409, "device_not_bookable"), "{}", r.text);
    // Outside opening hours, in the past, too long: clear errors.
    let r = book(&w, "adm", "p1", "d1", &at(day2, 19, 0), 240).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some("scheduledDate")), "{}", r.text);
    assert!(r.text.contains("06:00-22:00"), "{}", r.text);
    let r = book(&w, "adm", "p1", "d1", "2020-01-06T08:00:00+01:00", 240).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = book(&w, "adm", "p1", "d1", &at(day2, 8, 0), 721).await;
    assert_eq!(r.status, 422, "{}", r.text);
}

fn parse(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The next day on which Berlin's clocks change.
fn next_dst_change() -> NaiveDate {
    let offset = |d: NaiveDate| at(d, 12, 0)[19..].to_owned();
    let mut d = Utc::now().with_timezone(&BERLIN).date_naive() + Duration::days(2);
    while offset(d) == offset(d.pred_opt().unwrap()) {
        d = d.succ_opt().unwrap();
    }
    d
}

#[tokio::test]
async fn across_a_dst_change_slots_follow_local_time_and_sessions_last_real_hours() {
    let w = World::new(TestApp::spawn().await).await;
    let change = next_dst_change();
    assert_eq!(change.weekday(), chrono::Weekday::Sun);
    configure(&w, json!({"open": "00:00", "close": "24:00"}), 60).await;
    let (from, to) = (at(change, 0, 0), at(change.succ_opt().unwrap(), 0, 0));
    let r = w
        .as_user("adm")
        .get(&format!(
            "/api/bookings/available-slots?deviceId={}&from={}&to={}&duration=240",
            w.id("d1"),
            urlencode(&from),
            urlencode(&to)
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let slots = r.body["slots"].as_array().unwrap();
    let local: Vec<&str> = slots.iter().map(|s| &s["localStart"].as_str().unwrap()[11..]).collect();
    let spring = at(change, 12, 0).ends_with("+02:00");
    if spring {
        // 02:00 does not exist; the day has 23 hours; the last 4 h session starts 20:00.
        assert_eq!(&local[..3], ["00:00:00+01:00", "01:00:00+01:00", "03:00:00+02:00"]);
        assert_eq!((local.len(), *local.last().unwrap()), (20, "20:00:00+02:00"));
    } else {
        // 02:00 happens twice; the day has 25 hours.
        assert_eq!(&local[..4], ["00:00:00+02:00", "01:00:00+02:00", "02:00:00+02:00", "02:00:00+01:00"]);
        assert_eq!((local.len(), *local.last().unwrap()), (22, "20:00:00+01:00"));
    }
    for s in slots {
        let (a, b) = (parse(s["start"].as_str().unwrap()), parse(s["end"].as_str().unwrap()));
        assert_eq!(b - a, Duration::hours(4), "four real hours: {s}");
    }
    // Booked at 01:00 local, the session ends 4 real hours later: 06:00 summer time, or
    // 04:00 winter time.
    let r = book(&w, "adm", "p1", "d1", &at(change, 1, 0), 240).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let end = &r.body["localEnd"].as_str().unwrap()[11..];
    assert_eq!(end, if spring { "06:00:00+02:00" } else { "04:00:00+01:00" });
}

#[tokio::test]
async fn fifty_concurrent_requests_for_one_slot_book_it_once() {
    let w = World::new(TestApp::spawn().await).await;
    configure(&w, json!(null), 30).await;
    let start = at(monday(), 7, 0);
    let requests = (0..50).map(|i| {
        let patient = if i % 2 == 0 { "p1" } else { "p2" };
        book(&w, "adm", patient, "d1", &start, 240)
    });
    let replies = futures_util::future::join_all(requests).await;
    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    let winner = created[0].body["id"].as_str().unwrap();
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!((r.status, r.code()), (409, "booking_conflict"), "{}", r.text);
        assert_eq!(r.body["conflicts"][0]["bookingId"], winner, "{}", r.text);
        assert!(r.body["message"].as_str().unwrap().contains(winner));
    }
    let mut c = w.app.db.sql().await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM session_bookings").fetch_one(&mut c).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_recurring_series_is_all_or_nothing_unless_asked_and_cancels_from_a_date() {
    let w = World::new(TestApp::spawn().await).await;
    configure(&w, json!(null), 30).await;
    let first = monday();
    // The second Wednesday is taken on d1 by another patient.
    let wednesday = first + Duration::days(9);
    let taken = book(&w, "adm", "p2", "d1", &at(wednesday, 9, 0), 120).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
    let series = |fits: bool| {
        json!({"patientId": w.id("p1"), "deviceId": w.id("d1"), "weekdays": ["mon", "wed", "fri"], "startTime": "07:00",
               "firstDate": first, "weeks": 4, "duration": 240, "bookWhatFits": fits})
    };
    let r = w.as_user("doc").post("/api/bookings/series", series(false)).await;
    assert_eq!((r.status, r.code()), (409, "series_conflict"), "{}", r.text);
    let conflicts = r.body["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{}", r.text);
    assert_eq!(conflicts[0]["date"], json!(wednesday));
    assert_eq!(conflicts[0]["reason"], "device_booked");
    assert_eq!(conflicts[0]["bookingId"], taken.body["id"]);
    let list = w.as_user("adm").get(&format!("/api/bookings?patientId={}", w.id("p1"))).await;
    assert_eq!(list.body["total"], 0, "all or nothing: {}", list.text);

    let r = w.as_user("doc").post("/api/bookings/series", series(true)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["created"].as_array().unwrap().len(), 11);
    assert_eq!(r.body["conflicts"].as_array().unwrap().len(), 1);
    assert!(r.body["created"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["localStart"].as_str().unwrap()[11..16] == *"07:00"));
    let id = r.body["seriesId"].as_str().unwrap().to_owned();
    // Cancel from the third week on: six bookings.
    let from = at(first + Duration::days(14), 0, 0);
    let r = w
        .as_user("doc")
        .post(&format!("/api/bookings/series/{id}/cancel"), json!({"from": from, "reason": "transplant"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cancelled = r.body["cancelled"].as_array().unwrap();
    assert_eq!(cancelled.len(), 6);
    assert!(cancelled.iter().all(|b| b["status"] == "cancelled" && b["cancelReason"] == "transplant"));
    let list = w.as_user("doc").get(&format!("/api/bookings?seriesId={id}&status=scheduled")).await;
    assert_eq!(list.body["total"], 5, "{}", list.text);
    // The patient may not cancel someone else's series, nor staff of another hospital see it.
    let r = w.as_user("pat2").post(&format!("/api/bookings/series/{id}/cancel"), json!({"from": from})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_user("admB").post(&format!("/api/bookings/series/{id}/cancel"), json!({"from": from})).await;
    assert_eq!(r.status, 404, "{}", r.text);
}

#[tokio::test]
async fn bookings_move_through_their_statuses_and_complete_from_a_real_session() {
    let w = World::new(TestApp::spawn().await).await;
    let all_day = json!({"open": "00:00", "close": "24:00"});
    configure_with(&w, all_day.clone(), all_day.clone(), 30, 1440).await;
    // The patient and the device's technician hear of bookings over MQTT.
    let notes = |who: &str| format!("nc/v1/h/{}/u/{}/notifications", w.id("ha"), w.id(who));
    let mut listeners = Vec::new();
    for who in ["pat", "tec"] {
        let mut conn = w.connect(who, "").await;
        conn.subscribe(&[(notes(who).as_str(), QoS::AtLeastOnce)]).await;
        listeners.push((who, conn));
    }

    let day = monday();
    let r = book(&w, "doc", "p1", "d1", &at(day, 8, 0), 240).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    for (who, conn) in &mut listeners {
        let m = body(&conn.message(&notes(who), WAIT).await);
        assert_eq!((m["type"].as_str(), m["event"].as_str()), (Some("booking"), Some("created")), "{m}");
        assert_eq!(m["bookingId"].as_str(), Some(id.as_str()));
    }
    let path = format!("/api/bookings/{id}");
    // Staff confirm; the patient cannot.
    let r = w.as_user("pat").put(&path, json!({"status": "confirmed"})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_user("doc").put(&path, json!({"status": "confirmed"})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("confirmed")), "{}", r.text);
    assert_eq!(r.body["confirmedBy"].as_str(), Some(w.id("doc")));
    // The patient moves it: it waits for confirmation again.
    let r = w.as_user("pat").put(&path, json!({"scheduledDate": at(day, 9, 0)})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("scheduled")), "{}", r.text);
    assert_eq!(parse(r.body["scheduledDate"].as_str().unwrap()), parse(&at(day, 9, 0)));
    // Only the server sets `scheduled` and `completed`.
    for status in ["completed", "scheduled"] {
        let r = w.as_user("doc").put(&path, json!({"status": status})).await;
        assert_eq!(r.status, 422, "{status}: {}", r.text);
    }
    let r = w.as_user("doc").delete(&format!("{path}?reason=patient%20unwell"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["status"].as_str(), r.body["cancelReason"].as_str()),
        (Some("cancelled"), Some("patient unwell"))
    );
    let again = w.as_user("doc").delete(&path, None).await;
    assert_eq!((again.status, &again.body["cancelledAt"]), (200, &r.body["cancelledAt"]), "idempotent");
    let r = w.as_user("doc").put(&path, json!({"status": "confirmed"})).await;
    assert_eq!((r.status, r.code()), (409, "invalid_transition"), "{}", r.text);
    // Cancelled bookings free the slot; their history is kept.
    let r = book(&w, "doc", "p1", "d1", &at(day, 9, 0), 240).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Within the notice a patient can no longer change or cancel; staff still can.
    let tomorrow = Utc::now().with_timezone(&BERLIN).date_naive().succ_opt().unwrap();
    let r = book(&w, "pat", "", "d1", &at(tomorrow, 12, 0), 60).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tomorrow_id = r.body["id"].as_str().unwrap().to_owned();
    configure_with(&w, all_day.clone(), all_day, 30, 20160).await;
    let r = w.as_user("pat").delete(&format!("/api/bookings/{tomorrow_id}"), None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_user("pat").put(&format!("/api/bookings/{tomorrow_id}"), json!({"duration": 90})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_user("doc").put(&format!("/api/bookings/{tomorrow_id}"), json!({"duration": 90})).await;
    assert_eq!((r.status, r.body["duration"].as_i64()), (200, Some(90)), "{}", r.text);

    // A booking whose time has come (made earlier: inserted as it would stand now), and
    // p1's treatment on d1 running in it: the booking completes by itself.
    let mut c = w.app.db.sql().await;
    let due = uuid::Uuid::now_v7().to_string();
    crate::support::exec(
        &mut c,
        &format!(
            "INSERT INTO session_bookings (id, hospital_id, patient_id, device_id, scheduled_start, duration_minutes, scheduled_end, blocked_until, status)
             VALUES ('{due}', '{}', '{}', '{}', now() - interval '10 minutes', 60, now() + interval '50 minutes', now() + interval '80 minutes', 'confirmed')",
            w.id("ha"),
            w.id("p1"),
            w.id("d1")
        ),
    )
    .await;
    let mut d1 = w.connect("d1", "").await;
    let session = w.topic("d1", "session");
    d1.publish_acked(&session, json!({"v": 1, "event": "start", "ts": now(), "patientId": w.id("p1")}).to_string())
        .await;
    // A negative check, not synchronisation: time for a wrong completion, were there one.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = w.as_user("pat").get(&format!("/api/bookings/{due}")).await;
    assert_eq!(r.body["status"], "confirmed", "not completed while the treatment runs: {}", r.text);
    d1.publish_acked(&session, json!({"v": 1, "event": "end", "ts": now()}).to_string()).await;
    let completed = eventually("the booking completed by the session's end", WAIT, || async {
        let r = w.as_user("pat").get(&format!("/api/bookings/{due}")).await;
        (r.body["status"] == "completed").then_some(r)
    })
    .await;
    assert!(completed.body["completedSessionId"].is_string(), "{}", completed.text);
    let r = w.as_user("doc").delete(&format!("/api/bookings/{due}"), None).await;
    assert_eq!((r.status, r.code()), (409, "invalid_transition"), "{}", r.text);
    // A booking of another time or device is not completed by that session.
    let r = w.as_user("doc").get(&format!("/api/bookings/{tomorrow_id}")).await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.text);
    // Every change is audited.
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM access_audit_log WHERE resource = 'booking'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(n >= 7, "{n} audit rows");
}
