//! compose.yaml cannot be run here (no Docker engine), so it is checked against what the
//! code expects: the services, ports, environment and healthchecks.

use std::collections::BTreeSet;

use serde_yaml::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/compose.yaml")).expect("compose.yaml");
    serde_yaml::from_str(&text).expect("compose.yaml is YAML")
}

#[test]
fn compose_matches_what_the_code_expects() {
    let c = compose();
    let services = &c["services"];
    let names: BTreeSet<&str> = services.as_mapping().unwrap().keys().filter_map(Value::as_str).collect();
    assert_eq!(names, BTreeSet::from(["nephrocare", "timescaledb"]));

    let db = &services["timescaledb"];
    assert!(db["image"].as_str().unwrap().starts_with("timescale/timescaledb:"), "official image");
    assert!(db["image"].as_str().unwrap().ends_with("-pg15"), "PostgreSQL 15");
    assert!(db["healthcheck"]["test"].is_sequence());
    let volume = db["volumes"][0].as_str().unwrap();
    let volume_name = volume.split(':').next().unwrap();
    assert!(c["volumes"].as_mapping().unwrap().contains_key(volume_name), "named volume {volume_name}");

    let app = &services["nephrocare"];
    let dockerfile = app["build"]["dockerfile"].as_str().unwrap();
    assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dockerfile).exists(), "{dockerfile} exists");
    assert_eq!(app["depends_on"]["timescaledb"]["condition"], "service_healthy");
    assert!(app["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v.as_str().is_some_and(|s| s.ends_with("/readyz"))));

    // Every variable the service needs, parsed by the real configuration loader.
    let env = app["environment"].as_mapping().unwrap();
    let get = |k: &str| -> Option<String> {
        env.get(k).and_then(Value::as_str).map(|v| {
            // Resolve ${VAR:-default} and ${VAR:?message} as compose would, with test values.
            let mut out = v.to_owned();
            while let Some(start) = out.find("${") {
                let end = out[start..].find('}').unwrap() + start;
                let inner = &out[start + 2..end];
                let value = match inner.split_once(":-") {
                    Some((_, default)) => default.to_owned(),
                    None => "0123456789abcdef0123456789abcdef-from-env".to_owned(),
                };
                out.replace_range(start..=end, &value);
            }
            out
        })
    };
    for key in [
        "DATABASE_URL",
        "NEPHROCARE_HTTP_ADDR",
        "NEPHROCARE_MQTT_ADDR",
        "NEPHROCARE_MQTT_WS_ADDR",
        "NEPHROCARE_JWT_SECRET",
    ] {
        assert!(get(key).is_some(), "{key} is set");
    }
    let config = nephrocare::Config::load(None, &get, &Default::default())
        .expect("compose environment is a valid configuration");
    assert!(config.database.url.expose().contains("@timescaledb:5432/"), "the app reaches the db service");

    // Published ports are the ones the service listens on.
    let published: BTreeSet<u16> = app["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let listening = BTreeSet::from([config.http.addr.port(), config.mqtt.addr.port(), config.mqtt.ws_addr.port()]);
    assert_eq!(published, listening);
    for addr in [config.http.addr, config.mqtt.addr, config.mqtt.ws_addr] {
        assert!(addr.ip().is_unspecified(), "{addr}: inside a container, listen on all interfaces");
    }
}
