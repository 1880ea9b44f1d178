//! TLS on the MQTT listeners: with a certificate configured, clients connect with MQTT over
//! TLS (mosquitto clients verify the certificate), plain-text clients get nothing, and a bad
//! TLS setting stops startup with a clear message.

use std::process::{Command, Output};
use std::time::Duration;

use nephrocare::App;

use crate::support::{binary, test_config, TestDb};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `mosquitto_pub` of `payload` on `topic` as the device `did`: over TLS (verifying the test
/// certificate, at QoS 1) or in plain text.
/// mosquitto_pub as the machine, over TLS or not, at MQTT `level` (`mqttv311` or `5`).
async fn mosquitto_pub(port: &str, did: &str, topic: &str, payload: &str, tls: bool, level: &str) -> Output {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", port, "-V", level, "-i", did, "-u", did, "-P", "tls-device-secret"]);
    if tls {
        cmd.args(["--cafile", &fixture("cert.pem"), "-q", "1"]);
    }
    cmd.args(["-t", topic, "-m", payload]);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("mosquitto_pub runs (mosquitto-clients is installed by scripts/provision-db.sh)")
}

#[tokio::test]
async fn mqtt_over_tls_carries_readings_and_plain_text_is_refused() {
    let db = TestDb::migrated().await;
    let h = db.hospital("H", "tls-h").await;
    let d = db.machine(h, "T1", "T", None, "tls-device-secret").await;

    let mut config = test_config(&db.url);
    config.mqtt.tls_cert = Some(fixture("cert.pem").into());
    config.mqtt.tls_key = Some(fixture("key.pem").into());
    let app = App::new(config).start().await.expect("starts with TLS");
    let port = app.mqtt_addr.port().to_string();
    let topic = format!("nc/v1/h/{h}/d/{d}/telemetry");
    let now = chrono::Utc::now().to_rfc3339();
    let payload = format!(r#"{{"v":1,"seq":1,"ts":"{now}","systemStatus":"normal","heartRate":70}}"#);
    let did = d.to_string();
    let out = mosquitto_pub(&port, &did, &topic, &payload, true, "mqttv311").await;
    assert!(out.status.success(), "publish over TLS: {}", String::from_utf8_lossy(&out.stderr));
    let mut c = db.sql().await;
    let stored = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM health_metrics");
    assert_eq!(stored().fetch_one(&mut c).await.unwrap(), 1, "the PUBACK came after the commit");

    // MQTT 5 over the same TLS listener.
    let now = chrono::Utc::now().to_rfc3339();
    let payload5 = format!(r#"{{"v":1,"seq":2,"ts":"{now}","systemStatus":"normal","heartRate":71}}"#);
    let out = mosquitto_pub(&port, &did, &topic, &payload5, true, "5").await;
    assert!(out.status.success(), "publish over TLS at MQTT 5: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored().fetch_one(&mut c).await.unwrap(), 2, "the MQTT 5 PUBACK came after the commit");

    // Without TLS the same listener does not speak MQTT.
    let out = mosquitto_pub(&port, &did, &topic, &payload, false, "mqttv311").await;
    assert!(!out.status.success(), "plain text must fail against the TLS listener");
    tokio::time::timeout(Duration::from_secs(20), app.stop()).await.expect("stops").unwrap();
}

#[test]
fn a_bad_tls_setting_stops_startup_with_a_clear_message() {
    let out = binary()
        .args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "127.0.0.1:0"])
        .env("NEPHROCARE_MQTT_TLS_CERT", fixture("cert.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NEPHROCARE_MQTT_TLS_KEY"), "{err}");
}
