//! `GET /api/devices/{id}/performance` end to end (the MQTT world: d1 has `doc` and `tec`;
//! `hb` is another hospital): a known history written into the tables (presence, sessions,
//! readings with skipped seqs and a slow one, refused messages, alerts) gives exactly the
//! figures worked out by hand, and the same as independent SQL over the stored rows; a real
//! machine's connection and refused payload reach the presence log and the refusal tally;
//! the staff of the hospital may read the figures, patients 403, another hospital 404.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::{eventually, exec, TestApp, World};

/// Tuesday 17 November 2026 (UTC, the world's hospitals' time zone): the unit opens
/// 06:00–22:00 Monday to Saturday (the default booking settings).
const DAY: &str = "2026-11-17";

fn t(s: &str) -> String {
    format!("'{DAY}T00:00:00Z'::timestamptz + interval '{s}'")
}

/// A history of d1 on DAY and the day after.
async fn history(w: &World) {
    let mut c = w.app.db.sql().await;
    let (h, d, p) = (w.id("ha"), w.id("d1"), w.id("p1"));
    let presence = [
        ("5 hours", true, "connected"),
        ("7 hours", false, "connection_lost"),
        ("7 hours 30 minutes", true, "connected"),
        ("23 hours", false, "disconnected"),
    ];
    for (at, online, reason) in presence {
        exec(
            &mut c,
            &format!(
                "INSERT INTO device_presence_events (device_id, hospital_id, at, online, reason) VALUES ('{d}', '{h}', {}, {online}, '{reason}')",
                t(at)
            ),
        )
        .await;
    }
    // Two treatments: 08:00–12:00, and 20:00 to 01:00 the next day.
    let (s1, s2) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for (s, from, to) in [(s1, "8 hours", "12 hours"), (s2, "20 hours", "25 hours")] {
        exec(
            &mut c,
            &format!(
                "INSERT INTO device_sessions (id, hospital_id, device_id, patient_id, started_at, ended_at, status, expected_interval_ms)
                 VALUES ('{s}', '{h}', '{d}', '{p}', {}, {}, 'completed', 60000)",
                t(from),
                t(to)
            ),
        )
        .await;
    }
    // Session 1's readings, one a minute from 08:00: seqs 1..=10 without 4, 7 and 8 (3
    // missing), stored 200 ms after their time but seq 10, 1 s after; and one
    // reading outside any session (no gap is counted for it).
    for seq in [1, 2, 3, 5, 6, 9, 10] {
        let lag = if seq == 10 { 1000 } else { 200 };
        exec(
            &mut c,
            &format!(
                "INSERT INTO health_metrics (time, device_id, seq, hospital_id, patient_id, session_id, received_at, system_status, heart_rate)
                 VALUES ({0}, '{d}', {seq}, '{h}', '{p}', '{s1}', {0} + interval '{lag} milliseconds', 'normal', 70)",
                t(&format!("8 hours {seq} minutes"))
            ),
        )
        .await;
    }
    exec(
        &mut c,
        &format!(
            "INSERT INTO health_metrics (time, device_id, seq, hospital_id, received_at, system_status, heart_rate)
             VALUES ({0}, '{d}', 500, '{h}', {0} + interval '200 milliseconds', 'normal', 70)",
            t("15 hours")
        ),
    )
    .await;
    for (hour, code, n) in [("9 hours", "validation_failed", 3), ("34 hours", "seq_conflict", 2)] {
        exec(
            &mut c,
            &format!("INSERT INTO device_rejections (device_id, hospital_id, hour, code, count) VALUES ('{d}', '{h}', {}, '{code}', {n})", t(hour)),
        )
        .await;
    }
    for (kind, code, at) in [
        ("technical", "system_status_danger", "10 hours"),
        ("physiological", "systolic_bp_low", "10 hours 30 minutes"),
        ("physiological", "heart_rate_high", "24 hours 30 minutes"),
    ] {
        exec(
            &mut c,
            &format!(
                "INSERT INTO alerts (id, hospital_id, device_id, kind, code, priority, state, message, raised_at, cleared_at)
                 VALUES (gen_random_uuid(), '{h}', '{d}', '{kind}', '{code}', 'high', 'cleared', 'x', {0}, {0} + interval '1 minute')",
                t(at)
            ),
        )
        .await;
    }
    exec(
        &mut c,
        &format!("UPDATE devices SET last_maintenance_at = now() - interval '10 days', maintenance_due_at = now() + interval '20 days' WHERE id = '{d}'"),
    )
    .await;
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-6)
}

#[tokio::test]
async fn a_known_history_gives_the_figures_worked_out_by_hand_and_by_sql() {
    let w = World::new(TestApp::spawn().await).await;
    history(&w).await;
    let tec = w.as_user("tec");
    let r =
        tec.get(&format!("/api/devices/{}/performance?from={DAY}T00:00:00Z&to=2026-11-19T00:00:00Z", w.id("d1"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["timeZone"], "UTC");
    // Connected 05:00–07:00 and 07:30–23:00: 17.5 h of the 43 since the first presence
    // recorded (05:00; before it, unknown, not offline); one abrupt loss.
    assert!(close(&b["connectedHours"], 17.5), "{b}");
    assert!(close(&b["uptimePct"], 17.5 / 43.0 * 100.0), "{b}");
    assert_eq!(b["connectionDrops"], 1);
    // Two treatments started on the Tuesday: 4 h, and 5 h across midnight.
    assert_eq!(b["treatments"], 2);
    assert!(close(&b["treatmentHours"], 9.0), "{b}");
    // Opening hours 2 × 16 h; treated within them: 08–12 and 20–22 (00–01 is closed time).
    assert!(close(&b["openingHours"], 32.0), "{b}");
    assert!(close(&b["utilizationPct"], 6.0 / 32.0 * 100.0), "{b}");
    assert_eq!((b["readings"].as_i64(), b["missingReadings"].as_i64()), (Some(8), Some(3)));
    assert_eq!(b["rejectedMessages"], 5);
    assert!(close(&b["ingestLagP50Ms"], 200.0) && close(&b["ingestLagMaxMs"], 1000.0), "{b}");
    assert_eq!((b["technicalAlarms"].as_i64(), b["physiologicalAlarms"].as_i64()), (Some(1), Some(2)));
    assert!((b["daysSinceMaintenance"].as_f64().unwrap() - 10.0).abs() < 0.01, "{b}");
    assert!((b["daysUntilMaintenance"].as_f64().unwrap() - 20.0).abs() < 0.01, "{b}");

    let days = b["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "{b}");
    let (tue, wed) = (&days[0], &days[1]);
    assert_eq!((tue["date"].as_str(), wed["date"].as_str()), (Some(DAY), Some("2026-11-18")));
    assert!(close(&tue["uptimePct"], 17.5 / 19.0 * 100.0) && close(&wed["uptimePct"], 0.0), "{b}");
    assert!(close(&tue["treatmentHours"], 8.0) && close(&wed["treatmentHours"], 1.0), "{b}");
    assert!(close(&tue["utilizationPct"], 6.0 / 16.0 * 100.0) && close(&wed["utilizationPct"], 0.0), "{b}");
    assert_eq!((tue["treatments"].as_i64(), wed["treatments"].as_i64()), (Some(2), Some(0)));
    assert_eq!((tue["rejectedMessages"].as_i64(), wed["rejectedMessages"].as_i64()), (Some(3), Some(2)));
    assert_eq!((tue["physiologicalAlarms"].as_i64(), wed["physiologicalAlarms"].as_i64()), (Some(1), Some(1)));
    assert_eq!((tue["readings"].as_i64(), tue["missingReadings"].as_i64()), (Some(8), Some(3)));

    // The same figures from independent SQL over the stored rows.
    let mut c = w.app.db.sql().await;
    let d = uuid::Uuid::parse_str(w.id("d1")).unwrap();
    let (readings, lag95): (i64, f64) = sqlx::query_as(
        "SELECT count(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - time) * 1000)
         FROM health_metrics WHERE device_id = $1",
    )
    .bind(d)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(b["readings"].as_i64(), Some(readings));
    assert!(close(&b["ingestLagP95Ms"], lag95), "{b} vs {lag95}");
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM health_metrics WHERE device_id = $1 AND session_id IS NOT NULL ORDER BY seq",
    )
    .bind(d)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let missing: i64 = seqs.windows(2).map(|p| p[1] - p[0] - 1).sum();
    assert_eq!(b["missingReadings"].as_i64(), Some(missing));
    let (rejected, alarms, hours): (i64, i64, f64) = sqlx::query_as(
        "SELECT (SELECT sum(count)::int8 FROM device_rejections WHERE device_id = $1),
                (SELECT count(*) FROM alerts WHERE device_id = $1),
                (SELECT sum(extract(epoch FROM ended_at - started_at))::float8 / 3600 FROM device_sessions WHERE device_id = $1)",
    )
    .bind(d)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(b["rejectedMessages"].as_i64(), Some(rejected));
    assert_eq!(b["technicalAlarms"].as_i64().unwrap() + b["physiologicalAlarms"].as_i64().unwrap(), alarms);
    assert!(close(&b["treatmentHours"], hours));

    // A period ending before the unit opens: no opening hours (none negative), no utilization.
    let r = tec.get(&format!("/api/devices/{}/performance?from={DAY}T00:00:00Z&to={DAY}T03:00:00Z", w.id("d1"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(close(&r.body["openingHours"], 0.0) && r.body["utilizationPct"].is_null(), "{}", r.text);

    // A period in which nothing happened, before the machine's presence was first recorded:
    // zeros, no lag, and the uptime unknown (not 0 %).
    let r = tec
        .get(&format!("/api/devices/{}/performance?from=2026-11-10T00:00:00Z&to=2026-11-11T00:00:00Z", w.id("d1")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["uptimePct"].is_null() && r.body["days"][0]["uptimePct"].is_null(), "{}", r.text);
    assert!(r.body["ingestLagP50Ms"].is_null() && r.body["lateReadings"] == 0, "{}", r.text);
    assert_eq!((r.body["readings"].as_i64(), r.body["treatments"].as_i64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn uptime_counts_only_the_time_since_the_machines_presence_was_first_recorded() {
    // A machine the service first saw connect two hours ago (a fresh start: nothing was
    // recorded before), offline for the last hour. The week before is unknown, not offline.
    let w = World::new(TestApp::spawn().await).await;
    let mut c = w.app.db.sql().await;
    let (h, d) = (w.id("ha"), w.id("d1"));
    for (ago, online, reason) in [("2 hours", true, "connected"), ("1 hour", false, "disconnected")] {
        exec(
            &mut c,
            &format!(
                "INSERT INTO device_presence_events (device_id, hospital_id, at, online, reason)
                 VALUES ('{d}', '{h}', now() - interval '{ago}', {online}, '{reason}')"
            ),
        )
        .await;
    }
    let r = w.as_user("tec").get(&format!("/api/devices/{d}/performance")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    // One hour connected of the two known: 50 %, not 1 h of the 7 days (0.6 %).
    assert!((b["connectedHours"].as_f64().unwrap() - 1.0).abs() < 0.01, "{b}");
    assert!((b["uptimePct"].as_f64().unwrap() - 50.0).abs() < 0.1, "{b}");
    // The days that ended before the first presence: unknown; today known (connected or not).
    let days = b["days"].as_array().unwrap();
    assert_eq!(days.len(), 8, "{b}");
    assert!(days[..6].iter().all(|d| d["uptimePct"].is_null()), "{b}");
    assert!(days[7]["uptimePct"].is_f64(), "{b}");
    // A period that ended before it: unknown throughout.
    let r = w
        .as_user("tec")
        .get(&format!(
            "/api/devices/{d}/performance?from={}&to={}",
            (Utc::now() - chrono::Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (Utc::now() - chrono::Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["uptimePct"].is_null(), "{}", r.text);
    assert!(r.body["days"].as_array().unwrap().iter().all(|d| d["uptimePct"].is_null()), "{}", r.text);
}

#[tokio::test]
async fn late_back_filled_readings_are_counted_apart_from_the_live_ingest_lag() {
    // Live readings stored 200 ms, 1 s and 4 min after their time (a machine's buffering
    // through a short outage), and two back-filled ones: 10 minutes and 3 days late.
    let w = World::new(TestApp::spawn().await).await;
    let mut c = w.app.db.sql().await;
    let (h, d, p) = (w.id("ha"), w.id("d1"), w.id("p1"));
    let lags_ms: [i64; 7] = [200, 200, 200, 1_000, 240_000, 600_000, 3 * 86_400_000];
    for (i, lag) in lags_ms.iter().enumerate() {
        exec(
            &mut c,
            &format!(
                "INSERT INTO health_metrics (time, device_id, seq, hospital_id, patient_id, received_at, system_status, heart_rate)
                 VALUES ({0}, '{d}', {seq}, '{h}', '{p}', {0} + interval '{lag} milliseconds', 'normal', 70)",
                t(&format!("8 hours {i} minutes")),
                seq = i + 1,
            ),
        )
        .await;
    }
    let r = w
        .as_user("tec")
        .get(&format!("/api/devices/{d}/performance?from={DAY}T00:00:00Z&to=2026-11-18T00:00:00Z"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["readings"], 7, "{b}");
    // The live lag over the five live readings: p50 200 ms, p95 between 1 s and 4 min
    // (interpolated: 1000 + 0.8 × 239000), the longest 4 min.
    assert!(close(&b["ingestLagP50Ms"], 200.0), "{b}");
    assert!(close(&b["ingestLagP95Ms"], 1_000.0 + 0.8 * 239_000.0), "{b}");
    assert!(close(&b["ingestLagMaxMs"], 240_000.0), "{b}");
    // The back-fill, counted apart: two late readings, the oldest 3 days late.
    assert_eq!(b["lateReadings"], 2, "{b}");
    assert!(close(&b["lateLagMaxMs"], 3.0 * 86_400_000.0), "{b}");

    // Only back-fill (a machine sending past treatments): no live lag, all of it late.
    let r =
        w.as_user("tec").get(&format!("/api/devices/{d}/performance?from={DAY}T08:05:00Z&to={DAY}T08:07:00Z")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["ingestLagP50Ms"].is_null() && r.body["ingestLagP95Ms"].is_null(), "{}", r.text);
    assert_eq!(r.body["lateReadings"], 2, "{}", r.text);
}

#[tokio::test]
async fn a_machines_connection_and_refused_payloads_are_recorded() {
    let w = World::new(TestApp::spawn().await).await;
    let mut d1 = w.connect("d1", "").await;
    let started: DateTime<Utc> = Utc::now();
    d1.publish_acked(
        &w.topic("d1", "telemetry"),
        json!({"v": 1, "seq": 1, "ts": started, "systemStatus": "normal", "heartRate": 720}).to_string(),
    )
    .await;
    d1.publish_acked(&w.topic("d1", "telemetry"), b"not json".to_vec()).await;
    let path = format!("/api/devices/{}/performance", w.id("d1"));
    let doc = w.as_user("doc");
    let last = eventually("the refusal tally to reach 2", Duration::from_secs(10), || async {
        let r = doc.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        (r.body["rejectedMessages"] == 2).then_some(r.body)
    })
    .await;
    assert!(last["uptimePct"].as_f64().unwrap() > 0.0, "connected now: {last}");
    let mut c = w.app.db.sql().await;
    let events: Vec<(bool, String)> =
        sqlx::query_as("SELECT online, reason FROM device_presence_events WHERE device_id = $1::uuid ORDER BY at")
            .bind(w.id("d1"))
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(events, vec![(true, "connected".to_owned())]);

    d1.kill();
    eventually("an abrupt loss counted as a connection drop", Duration::from_secs(10), || async {
        (doc.get(&path).await.body["connectionDrops"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_hospitals_staff_read_the_figures_patients_do_not_and_other_hospitals_see_nothing() {
    let w = World::new(TestApp::spawn().await).await;
    let path = format!("/api/devices/{}/performance", w.id("d1"));
    for who in ["adm", "doc", "doc2", "tec", "tec2"] {
        let r = w.as_user(who).get(&path).await;
        assert_eq!(r.status, 200, "{who}: {}", r.text);
    }
    for who in ["pat", "pat2"] {
        let r = w.as_user(who).get(&path).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{who}: {}", r.text);
    }
    for who in ["admB", "docB"] {
        let r = w.as_user(who).get(&path).await;
        assert_eq!((r.status, r.code()), (404, "not_found"), "{who}: {}", r.text);
    }
    let r = w.app.client.get(&path).await;
    assert_eq!(r.status, 401);
    let doc = w.as_user("doc");
    let r = doc.get(&format!("{path}?from=2026-11-19T00:00:00Z&to=2026-11-18T00:00:00Z")).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some("from")), "{}", r.text);
    let r = doc.get(&format!("{path}?from=2026-01-01T00:00:00Z&to=2026-11-18T00:00:00Z")).await;
    assert_eq!(r.status, 422, "at most 92 days: {}", r.text);
    let r = doc.get(&format!("/api/devices/{}/performance", uuid::Uuid::now_v7())).await;
    assert_eq!(r.status, 404);
}
