//! Device gateways (IHE PCD-01 over MLLP), played by python-hl7's MLLP client with messages
//! hl7apy reads as v2.6 ORU_R01: readings are acknowledged (`AA`) only once committed, and
//! reach the MQTT subscribers, the alarms and the current values as readings sent over MQTT
//! do; bad messages get `AE`/`AR` with the ERR naming the place; nothing of a refused message
//! is stored; a message sent again is stored once; a gateway reaches only its own hospital's
//! machines and patients; admins (only) manage gateways. And across a `kill -9` of the
//! service mid-stream: no acknowledged reading lost, no resent message stored twice.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::alarms::{now_s, World};
use crate::support::{
    eventually, free_port, ws_open, ws_until_reading, GatewayPeer, JsonClient, PatientLinks, Service, TestDb, LONG_WAIT,
};

fn dtm(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

/// A machine's observation: `code` (CWE), `value`, `units`, at `at`, of machine `serial`.
fn obs(code: &str, value: &str, units: &str, at: DateTime<Utc>, serial: &str) -> Value {
    json!({"code": code, "value": value, "units": units, "time": dtm(at), "equipment": serial})
}

const BP: &str = "150021^MDC_PRESS_BLD_NONINV_SYS^MDC";
const MMHG: &str = "266016^MDC_DIM_MMHG^MDC";

/// A message of `control` from the gateway with `secret`: one patient (`mrn`, or none) and
/// the observations.
fn message(control: &str, secret: &str, mrn: Option<&str>, obx: Vec<Value>) -> Value {
    json!({"control": control, "secret": secret, "app": "GW-NORTH", "facility": "WARD-N", "time": dtm(Utc::now()),
           "patients": [{"mrn": mrn, "obx": obx}]})
}

async fn gateway_world() -> (World, GatewayPeer) {
    let w = World::with(|c| c.hl7.listen_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let port = w.app.running().hl7_addr.expect("the gateways' listener").port();
    (w, GatewayPeer::start(port).await)
}

/// Registers the gateway (as hospital A's admin) with a vendor code for venous pressure;
/// returns its id and secret.
async fn register(w: &World) -> (String, String) {
    let body = json!({"name": "North gateway", "sendingApplication": "GW-NORTH", "sendingFacility": "WARD-N",
                      "codes": [{"system": "99VENDOR", "code": "4711", "measurement": "venousPressure"}]});
    let r = w.as_("admin").post("/api/gateways", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.body["gateway"]["id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned())
}

async fn rows(w: &World, device: uuid::Uuid) -> Vec<(i64, Option<f32>, Option<f32>, Option<f32>, Option<uuid::Uuid>)> {
    sqlx::query_as(
        "SELECT seq, systolic_bp, venous_pressure, blood_flow_rate, patient_id FROM health_metrics
          WHERE device_id = $1 ORDER BY time",
    )
    .bind(device)
    .fetch_all(&mut w.app.db.sql().await)
    .await
    .unwrap()
}

fn one_error(ack: &Value) -> (&str, &str, &str) {
    let e = &ack["errors"][0];
    (e["code"].as_str().unwrap_or(""), e["location"].as_str().unwrap_or(""), ack["msa"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_gateways_readings_are_stored_before_aa_and_reach_mqtt_alarms_and_current_values() {
    let (w, mut gw) = gateway_world().await;
    let (id, secret) = register(&w).await;
    let d = w.device.to_string();
    let user = w.users["doc"].to_string();
    let mut doc =
        JsonClient::connect(w.app.running().mqtt_addr, &format!("{user}-gw"), &user, &w.tokens["doc"], true).await;
    let telemetry = format!("nc/v1/h/{}/d/{}/telemetry", w.hospital, w.device);
    assert!(matches!(doc.subscribe(&telemetry).await, rumqttc::SubscribeReasonCode::Success(_)));
    let mut live = ws_open(w.app.running().http_addr, w.device, Some(&w.tokens["doc"])).await.expect("stream");

    let at = now_s() - chrono::Duration::seconds(5);
    let spec = message(
        "M-1",
        &secret,
        Some("p1"),
        vec![
            json!({"type": "", "code": "DIALYZER^Dialysis machine^99VENDOR", "sub": "1.0.0.0", "status": "X", "equipment": "d1"}),
            json!({"code": BP, "value": "80", "units": MMHG, "time": dtm(at)}),
            json!({"code": "blood-flow-rate^Blood flow rate^99NCD", "value": "0.3", "units": "L/min^L/min^UCUM", "sub": "1.2.1.1", "time": dtm(at)}),
            json!({"code": "4711^VEN^99VENDOR", "value": "20", "units": "kPa^kPa^UCUM", "sub": "1.2.1.2", "time": dtm(at)}),
            json!({"code": "99999^FOO^99VENDOR", "value": "1", "units": "mL", "sub": "1.2.1.3", "time": dtm(at)}),
        ],
    );
    let ack = gw.send(&spec).await;
    assert_eq!((ack["msa"].as_str(), ack["control"].as_str()), (Some("AA"), Some("M-1")), "{ack}");
    assert_eq!(ack["type"], "ACK^R01^ACK");
    assert_eq!(ack["errors"].as_array().unwrap().len(), 1, "{ack}");
    assert_eq!(one_error(&ack), ("103", "OBX^5^3", "AA"), "the unknown code is reported: {ack}");
    assert_eq!(ack["errors"][0]["severity"], "W");
    // AA follows the commit: the reading is there now, converted (20 kPa = 150 mmHg, 0.3 L/min).
    let stored = rows(&w, w.device).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (_, bp, venous, qb, patient) = stored[0];
    assert_eq!((bp, qb, patient), (Some(80.0), Some(300.0), Some(w.patient)));
    assert!((venous.unwrap() - 150.01).abs() < 0.01, "{venous:?}");

    // The same pipeline as MQTT: the doctor's subscription and live stream, the alarm, the
    // current values, FHIR.
    let on_mqtt = doc.expect(&telemetry, "the gateway's reading on MQTT", |v| v["bloodPressure"] == 80.0).await;
    assert_eq!(on_mqtt["patientId"], json!(w.patient), "{on_mqtt}");
    let (on_ws, _) = ws_until_reading(&mut live, stored[0].0).await;
    assert_eq!(on_ws["reading"]["bloodPressure"], 80.0, "{on_ws}");
    w.alert_where("systolic_bp_low", |a| a["state"] == "active" && a["deviceId"] == d.as_str()).await;
    eventually("the current values", LONG_WAIT, || async {
        let r = w.as_("doc").get(&format!("/api/health-metrics/current/{}", w.patient)).await;
        (r.status == 200 && r.body["reading"]["bloodPressure"] == 80.0).then_some(())
    })
    .await;

    let r = w.as_("doc").get(&format!("/fhir/r4/Observation?patient=Patient/{}&_count=100", w.patient)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let systolic = r.body["entry"].as_array().expect("entries").iter().flat_map(|e| {
        e["resource"]["component"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c["valueQuantity"]["value"].clone())
    });
    assert!(systolic.into_iter().any(|v| v == 80.0), "the gateway's reading is a FHIR Observation: {}", r.text);

    // The unknown code is listed for the admins.
    let r = w.as_("admin").get(&format!("/api/gateways/{id}/unknown-codes")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body[0]["code"].as_str(), r.body[0]["system"].as_str()),
        (Some("99999"), Some("99VENDOR")),
        "{}",
        r.text
    );

    // Sent again: acknowledged, stored once. The same control id for another message: 205.
    let again = gw.send(&spec).await;
    assert_eq!(again["msa"], "AA", "{again}");
    assert_eq!(rows(&w, w.device).await.len(), 1);
    let mut other = spec.clone();
    other["patients"][0]["obx"][1]["value"] = json!("81");
    let ack = gw.send(&other).await;
    assert_eq!(one_error(&ack), ("205", "MSH^1^10", "AE"), "{ack}");
    assert_eq!(rows(&w, w.device).await.len(), 1, "nothing of a refused message is stored");

    // A machine with no patient: no PID; bound like an MQTT reading without patientId (to the
    // machine's active session, the patient's).
    let ack = gw.send(&message("M-2", &secret, None, vec![obs(BP, "120", MMHG, now_s(), "d1")])).await;
    assert_eq!(ack["msa"], "AA", "{ack}");
    let stored = rows(&w, w.device).await;
    assert_eq!((stored.len(), stored[1].4), (2, Some(w.patient)), "{stored:?}");
    w.app.stop().await;
}

#[tokio::test]
async fn bad_messages_are_answered_with_the_place_and_store_nothing() {
    let (w, mut gw) = gateway_world().await;
    let (id, secret) = register(&w).await;
    let db = &w.app.db;
    let d2 = db.machine(w.hospital, "d2", "Machine 2", Some("North"), "machine-two-secret-0123456789").await;
    let b1 = db.machine(w.hospital_b, "b1", "B's machine", None, "machine-b1-secret-0123456789").await;
    let links = PatientLinks { account: None, doctor: None, device: None };
    db.patient(w.hospital_b, "pb1", "B's patient", links).await;
    let t = now_s() - chrono::Duration::seconds(3);
    let send = |control: &str, mrn: Option<&str>, obx: Vec<Value>| message(control, &secret, mrn, obx);

    // One value out of range: AE naming it, and the other machine's good reading in the same
    // message is not stored either.
    let ack = gw
        .send(&send(
            "B-1",
            Some("p1"),
            vec![obs(BP, "120", MMHG, t, "d2"), obs("150456^MDC_PULS_OXIM_SAT_O2^MDC", "20", "%", t, "d1")],
        ))
        .await;
    assert_eq!(one_error(&ack), ("102", "OBX^2^5", "AE"), "{ack}");
    let cases: Vec<(Value, (&str, &str, &str))> = vec![
        (send("B-2", Some("p1"), vec![obs(BP, "120", MMHG, t, "nope")]), ("204", "OBX^1^18", "AE")),
        // Hospital B's machine and patient do not exist for hospital A's gateway.
        (send("B-3", Some("p1"), vec![obs(BP, "120", MMHG, t, "b1")]), ("204", "OBX^1^18", "AE")),
        (send("B-4", Some("pb1"), vec![obs(BP, "120", MMHG, t, "d1")]), ("204", "PID^1^3^1^1", "AE")),
        (send("B-5", Some("p1"), vec![obs(BP, "120", "cm[H2O]", t, "d1")]), ("103", "OBX^1^6", "AE")),
        (send("B-6", Some("p1"), vec![obs(BP, "120", "", t, "d1")]), ("101", "OBX^1^6", "AE")),
        (send("B-7", Some("p1"), vec![obs(BP, "high", MMHG, t, "d1")]), ("102", "OBX^1^5", "AE")),
        (
            send("B-8", Some("p1"), vec![obs(BP, "120", MMHG, t + chrono::Duration::hours(1), "d1")]),
            ("102", "OBX^1^14", "AE"),
        ),
        (send("B-9", Some("p1"), vec![obs(BP, "120", MMHG, t, "")]), ("101", "OBX^1^18", "AE")),
        (message("B-10", "wrong-secret", Some("p1"), vec![obs(BP, "120", MMHG, t, "d1")]), ("207", "MSH^1^8", "AR")),
    ];
    for (spec, expected) in &cases {
        let ack = gw.send(spec).await;
        assert_eq!(one_error(&ack), *expected, "{spec}: {ack}");
        assert_eq!(ack["control"], spec["control"], "MSA-2 names the message");
    }
    let mut wrong_app = send("B-11", Some("p1"), vec![obs(BP, "120", MMHG, t, "d1")]);
    wrong_app["app"] = json!("GW-SOUTH");
    assert_eq!(one_error(&gw.send(&wrong_app).await), ("207", "MSH^1^3", "AR"));
    let mut adt = send("B-12", Some("p1"), vec![obs(BP, "120", MMHG, t, "d1")]);
    adt["type"] = json!("ADT^A01^ADT_A01");
    assert_eq!(one_error(&gw.send(&adt).await), ("200", "MSH^1^9", "AR"));
    let ack =
        gw.raw("MSH|^~\\&|GW-NORTH|WARD-N|||20261207||ORU^R01^ORU_R01|B-13|P|2.6\rOBX|1|NM|150021^X^MDC||1\r").await;
    assert_eq!(one_error(&ack), ("100", "OBX^1", "AE"), "an OBX with no OBR: {ack}");
    // A machine's status alone is not a reading: said (W), not stored.
    let status = json!({"type": "CWE", "code": "system-status^Status^99NCD", "value": "warning^Warning^99NCD",
                        "time": dtm(t), "equipment": "d1"});
    let ack = gw.send(&send("B-13b", Some("p1"), vec![status])).await;
    assert_eq!(one_error(&ack), ("101", "OBX^1", "AA"), "{ack}");
    assert_eq!(ack["errors"][0]["severity"], "W", "{ack}");
    for serial in [w.device, d2, b1] {
        assert!(rows(&w, serial).await.is_empty(), "nothing stored for {serial}");
    }

    // A retired machine: refused. A disabled gateway: rejected.
    let mut c = db.sql().await;
    sqlx::query("UPDATE devices SET status = 'inactive' WHERE id = $1").bind(d2).execute(&mut c).await.unwrap();
    let ack = gw.send(&send("B-14", None, vec![obs(BP, "120", MMHG, t, "d2")])).await;
    assert_eq!(one_error(&ack), ("207", "OBX^1^18", "AE"), "{ack}");
    let body = json!({"name": "North gateway", "sendingApplication": "GW-NORTH", "sendingFacility": "WARD-N", "enabled": false});
    let r = w.as_("admin").put(&format!("/api/gateways/{id}"), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ack = gw.send(&send("B-15", Some("p1"), vec![obs(BP, "120", MMHG, t, "d1")])).await;
    assert_eq!(one_error(&ack), ("207", "MSH^1^8", "AR"), "{ack}");

    // Broken framing closes the connection (never a panic); the next connection is served.
    gw.command(json!({"bytes": "4d53487c5e7e5c267c0d1c0d"}));
    assert_eq!(gw.said().await, json!({"closed": true}));
    let r = w.as_("admin").post(&format!("/api/gateways/{id}/secret"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fresh = r.body["secret"].as_str().unwrap().to_owned();
    let body = json!({"name": "North gateway", "sendingApplication": "GW-NORTH", "sendingFacility": "WARD-N"});
    assert_eq!(w.as_("admin").put(&format!("/api/gateways/{id}"), body).await.status, 200);
    let old = gw.send(&send("B-16", Some("p1"), vec![obs(BP, "120", MMHG, t, "d1")])).await;
    assert_eq!(one_error(&old), ("207", "MSH^1^8", "AR"), "the old secret no longer works: {old}");
    let ok = gw.send(&message("B-17", &fresh, Some("p1"), vec![obs(BP, "120", MMHG, t, "d1")])).await;
    assert_eq!(ok["msa"], "AA", "{ok}");
    w.app.stop().await;
}

#[tokio::test]
async fn only_a_hospitals_admins_manage_its_gateways() {
    let (w, _gw) = gateway_world().await;
    let (id, _) = register(&w).await;
    for who in ["doc", "tec", "pat"] {
        assert_eq!(w.as_(who).get("/api/gateways").await.status, 403, "{who} lists");
        assert_eq!(w.as_(who).get(&format!("/api/gateways/{id}")).await.status, 403, "{who} reads");
    }
    let r = w.as_("admin_b").get(&format!("/api/gateways/{id}")).await;
    assert_eq!(r.status, 404, "another hospital's admin: {}", r.text);
    let r = w.as_("admin_b").post(&format!("/api/gateways/{id}/secret"), json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(w.as_("admin_b").delete(&format!("/api/gateways/{id}"), None).await.status, 404);
    let r = w.as_("admin_b").get("/api/gateways").await;
    assert_eq!((r.status, r.body.as_array().map(Vec::len)), (200, Some(0)), "{}", r.text);
    // The same sending application and facility twice in a hospital: 409; a bad mapping: 422.
    let body = json!({"name": "Twin", "sendingApplication": "GW-NORTH", "sendingFacility": "WARD-N"});
    assert_eq!(w.as_("admin").post("/api/gateways", body).await.status, 409);
    let body = json!({"name": "Bad", "sendingApplication": "GW-X", "codes": [{"system": "V", "code": "1", "measurement": "mood"}]});
    let r = w.as_("admin").post("/api/gateways", body).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some("codes[0]")), "{}", r.text);
    let r = w.as_("admin").get("/api/gateways").await;
    assert_eq!(r.body[0]["codes"][0]["measurement"], "venousPressure", "{}", r.text);
    assert!(r.text.find("secret").is_none(), "the secret is never shown again: {}", r.text);
    assert_eq!(w.as_("admin").delete(&format!("/api/gateways/{id}"), None).await.status, 204);
    assert_eq!(w.as_("admin").get(&format!("/api/gateways/{id}")).await.status, 404);
    w.app.stop().await;
}

/// `kill -9` of the service while a gateway streams: every acknowledged reading is stored,
/// and after the restart the gateway sends everything again (the acknowledged ones too):
/// each reading is stored exactly once.
#[tokio::test]
async fn a_kill_9_mid_stream_loses_no_acknowledged_reading_and_stores_nothing_twice() {
    let db = TestDb::migrated().await;
    let hospital = db.hospital("A", "gw-kill").await;
    let device = db.machine(hospital, "k1", "Machine k1", None, "machine-k1-secret-0123456789").await;
    let secret = "gateway-secret-for-the-kill-test-0123456789";
    let mut c = db.sql().await;
    let gateway: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO hl7_gateways (id, hospital_id, name, sending_application, sending_facility, secret_hash)
         VALUES (gen_random_uuid(), $1, 'gw', 'GW-NORTH', 'WARD-N', $2) RETURNING id",
    )
    .bind(hospital)
    .bind(nc_access::secret::hash_device_secret(secret))
    .fetch_one(&mut c)
    .await
    .unwrap();
    // Control ids are kept 7 days: the service forgets older ones as it starts (then hourly).
    sqlx::query(
        "INSERT INTO hl7_gateway_messages (gateway_id, control_id, digest, readings, received_at)
         VALUES ($1, 'OLD', '\\x00', 1, now() - interval '8 days'), ($1, 'RECENT', '\\x00', 1, now() - interval '6 days')",
    )
    .bind(gateway)
    .execute(&mut c)
    .await
    .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = [("NEPHROCARE_HL7_LISTEN_ADDR", addr.as_str())];
    let service = Service::start(&db, &env);
    let mut gw = GatewayPeer::start(port).await;
    eventually("the old control id forgotten", LONG_WAIT, || async {
        let mut c = db.sql().await;
        let kept: Vec<String> = sqlx::query_scalar("SELECT control_id FROM hl7_gateway_messages ORDER BY 1")
            .fetch_all(&mut c)
            .await
            .unwrap();
        (kept == ["RECENT"]).then_some(())
    })
    .await;
    let base = now_s() - chrono::Duration::minutes(20);
    let spec = json!({"control": "K", "secret": secret, "app": "GW-NORTH", "facility": "WARD-N", "time": dtm(base),
                      "patients": [{"mrn": null, "obx": [obs(BP, "120", MMHG, base, "k1")]}]});
    const N: i64 = 400;
    gw.command(json!({"stream": {"from": 1, "to": N, "spec": spec}}));
    let mut acked = Vec::new();
    while acked.len() < 40 {
        let line = gw.said().await;
        acked.push(line["acked"].as_i64().unwrap_or_else(|| panic!("streaming: {line}")));
    }
    service.kill9();
    loop {
        let line = gw.said().await;
        match line["acked"].as_i64() {
            Some(i) => acked.push(i),
            None => {
                assert!(line.get("down").is_some(), "the stream stops at the kill: {line}");
                break;
            }
        }
    }
    assert!((acked.len() as i64) < N, "the kill came mid-stream");
    let times: Vec<DateTime<Utc>> = sqlx::query_scalar("SELECT time FROM health_metrics WHERE device_id = $1")
        .bind(device)
        .fetch_all(&mut c)
        .await
        .unwrap();
    for i in &acked {
        assert!(times.contains(&(base + chrono::Duration::seconds(*i))), "acknowledged reading {i} is stored");
    }

    let _service = Service::start(&db, &env);
    gw.command(json!({"reconnect": true}));
    assert_eq!(gw.said().await, json!({"connected": true}));
    gw.command(json!({"stream": {"from": 1, "to": N, "spec": spec}}));
    loop {
        let line = gw.said().await;
        if line.get("acked").is_none() {
            assert_eq!(line, json!({"done": N}), "everything is acknowledged after the restart");
            break;
        }
    }
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT time) FROM health_metrics WHERE device_id = $1")
            .bind(device)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (N, N), "each reading stored once");
}

/// The SHA-256 of `tests/fixtures/tls/gateway-cert.pem` (DER):
/// `openssl x509 -in gateway-cert.pem -outform der | sha256sum`.
const GATEWAY_CERT_SHA256: &str = "250ace234295ea2c14549b9ed1cfb3153b75c405e32f8f8193ac4980269ddf2f";

/// Over TLS, a gateway registered with its client certificate's fingerprint needs no secret;
/// another certificate of the same CA is not a gateway; the registered gateway's secret
/// without its certificate is refused.
#[tokio::test]
async fn a_gateway_registered_with_its_certificate_connects_over_tls_without_a_secret() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let w = World::with(|c| {
        c.hl7.listen_addr = Some("127.0.0.1:0".parse().unwrap());
        c.hl7.tls_cert = Some(dir.join("core-cert.pem"));
        c.hl7.tls_key = Some(dir.join("core-key.pem"));
        c.hl7.tls_client_ca = Some(dir.join("gateway-ca.pem"));
    })
    .await;
    let port = w.app.running().hl7_addr.expect("the gateways' listener").port();
    let body = json!({"name": "North gateway", "sendingApplication": "GW-NORTH", "sendingFacility": "WARD-N",
                      "certificateSha256": GATEWAY_CERT_SHA256});
    let r = w.as_("admin").post("/api/gateways", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let t = now_s() - chrono::Duration::seconds(2);

    let mut gw = GatewayPeer::start_tls(port, Some("gateway")).await;
    let ack = gw.send(&message("T-1", "", Some("p1"), vec![obs(BP, "118", MMHG, t, "d1")])).await;
    assert_eq!(ack["msa"], "AA", "{ack}");
    assert_eq!(rows(&w, w.device).await.len(), 1);

    let mut other = GatewayPeer::start_tls(port, Some("gateway2")).await;
    let ack = other.send(&message("T-2", "", Some("p1"), vec![obs(BP, "118", MMHG, t, "d1")])).await;
    assert_eq!(one_error(&ack), ("207", "MSH^1^8", "AR"), "another certificate of the CA: {ack}");
    let mut bare = GatewayPeer::start_tls(port, None).await;
    let ack = bare.send(&message("T-3", &secret, Some("p1"), vec![obs(BP, "118", MMHG, t, "d1")])).await;
    assert_eq!(one_error(&ack), ("207", "MSH^1^8", "AR"), "the secret without the certificate: {ack}");
    assert!(ack["errors"][0]["text"].as_str().unwrap().contains("client certificate"), "{ack}");
    assert_eq!(rows(&w, w.device).await.len(), 1, "nothing stored from the refused ones");
    w.app.stop().await;
}
