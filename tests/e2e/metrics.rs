//! `GET /metrics`: what an operator needs to see a stall, scraped as Prometheus would,
//! after real traffic (a machine over MQTT, REST requests).

use std::collections::HashMap;

use chrono::{DurationRound, SecondsFormat, Utc};
use serde_json::json;

use crate::support::{JsonClient, PatientLinks, TestApp};

const SECRET: &str = "metrics-test-device-secret-0123456789";

/// The samples of the OpenMetrics text: `name{labels}` → value (the `# HELP`/`# TYPE`
/// lines checked for each family).
pub(crate) fn samples(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
        out.insert(key.to_owned(), value.parse().unwrap_or_else(|_| panic!("a number: {line}")));
    }
    out
}

#[tokio::test]
async fn the_metrics_show_acknowledgement_commit_derivation_and_requests() {
    let app = TestApp::spawn().await;
    let hospital = app.db.hospital("M", "metrics").await;
    let device = app.db.machine(hospital, "m-1", "M", None, SECRET).await;
    let patient = app.db.patient(hospital, "p", "P", PatientLinks::default()).await;
    let id = device.to_string();
    let mut machine = JsonClient::connect(app.running().mqtt_addr, &id, &id, SECRET, true).await;
    let topic = format!("nc/v1/h/{hospital}/d/{device}/telemetry");
    let now = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap();
    for seq in 1..=5 {
        let at = (now - chrono::Duration::seconds(10 - seq)).to_rfc3339_opts(SecondsFormat::Secs, true);
        let reading =
            json!({"v": 1, "seq": seq, "ts": at, "patientId": patient, "systemStatus": "normal", "heartRate": 70});
        machine.publish_acked(&topic, &reading).await;
    }
    // A refused one: PUBACKed, answered on the errors topic, counted.
    machine.publish_acked(&topic, &json!({"v": 1, "seq": 6, "ts": "not a time"})).await;
    app.db.derived().await;
    assert_eq!(app.client.get("/healthz").await.status, 200);

    let resp = app.client.http.get(format!("{}/metrics", app.client.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    for family in [
        "mqtt_puback_seconds histogram",
        "mqtt_connections gauge",
        "readings_accepted counter",
        "readings_rejected counter",
        "ingest_commit_seconds histogram",
        "ingest_batch_readings histogram",
        "ingest_queue_depth gauge",
        "alert_evaluation_backlog_readings gauge",
        "derive_apply_seconds histogram",
        "derived_lag_seconds histogram",
        "derived_backlog_batches gauge",
        "alarms_raised counter",
        "alarms_escalated counter",
        "http_request_seconds histogram",
        "db_pool_connections gauge",
    ] {
        assert!(text.contains(&format!("# TYPE nephrocare_{family}\n")), "{family} in\n{text}");
    }
    let s = samples(&text);
    let at_least = |key: &str, n: f64| {
        let v = s.get(key).copied().unwrap_or_else(|| panic!("{key} in\n{text}"));
        assert!(v >= n, "{key} = {v}, expected at least {n}");
    };
    // The metrics are the process's (other tests' services run in it too): at least ours.
    at_least("nephrocare_mqtt_puback_seconds_count{outcome=\"committed\"}", 5.0);
    at_least("nephrocare_mqtt_puback_seconds_count{outcome=\"rejected\"}", 1.0);
    at_least("nephrocare_readings_accepted_total", 5.0);
    at_least("nephrocare_readings_rejected_total", 1.0);
    at_least("nephrocare_ingest_commit_seconds_count", 1.0);
    at_least("nephrocare_derived_lag_seconds_count", 1.0);
    at_least("nephrocare_http_request_seconds_count{method=\"GET\",route=\"/healthz\",status=\"2xx\"}", 1.0);
    // Gauges are set by the scrape from the scraped service (another test's scrape may
    // interleave: their presence, and what all test services share).
    assert!(s.contains_key("nephrocare_mqtt_connections{kind=\"machine\"}"));
    assert!(s.contains_key("nephrocare_derived_backlog_batches"));
    assert_eq!(s["nephrocare_db_pool_connections{state=\"max\"}"], 10.0);
    assert!(s.contains_key("nephrocare_ingest_queue_depth{writer=\"0\"}"));
    assert!(s.contains_key("nephrocare_alert_evaluation_backlog_readings{writer=\"0\"}"));
    // A route template, never a raw path with its ids.
    assert!(!text.contains(&device.to_string()), "no id in a label");
    drop(machine);
}
