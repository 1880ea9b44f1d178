//! The web dashboard's files, as the real service serves them: the page and every asset it
//! links, each with its content type, caching and the strict Content-Security-Policy (whose
//! `connect-src` names the MQTT WebSocket listener the page is told about); other methods
//! 405 with `Allow`, unknown assets 404 with the API's error body; and none of it in the
//! OpenAPI document. (The dashboard working in a browser: scripts/browser-test.sh.)

use crate::support::TestApp;

fn header<'a>(r: &'a crate::support::Reply, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn strict(csp: &str, ws: &str) {
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(csp.contains(&format!("connect-src 'self' {ws}")) || ws.is_empty(), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_caching_and_csp() {
    let app = TestApp::spawn().await;
    let ws_port = app.running().mqtt_ws_addr.port();
    let page = app.client.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    strict(header(&page, "content-security-policy"), &format!("ws://127.0.0.1:{ws_port}"));
    assert!(
        page.text.contains(&format!(r#"<meta name="nc-mqtt-ws" content="ws://{{host}}:{ws_port}/mqtt">"#)),
        "the page is told where the broker listens: {}",
        page.text
    );

    let linked: Vec<&str> =
        page.text.split("\"/assets/").skip(1).map(|s| &s[..s.find('"').expect("a quoted path")]).collect();
    assert!(linked.iter().any(|n| n.ends_with(".js")) && linked.iter().any(|n| n.ends_with(".css")), "{linked:?}");
    for name in linked {
        let r = app.client.get(&format!("/assets/{name}")).await;
        assert_eq!(r.status, 200, "{name}");
        let expected = match name.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset {name} ({other:?})"),
        };
        assert_eq!(header(&r, "content-type"), expected, "{name}");
        assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable", "{name}");
        strict(header(&r, "content-security-policy"), "");
        assert!(!r.text.is_empty());
    }

    let head = app.client.request("HEAD", "/", None).await;
    assert_eq!((head.status, head.text.as_str()), (200, ""));
    let missing = app.client.get("/assets/main-NOPE.js").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"), "{}", missing.text);
    let posted = app.client.post("/", serde_json::json!({})).await;
    assert_eq!((posted.status, header(&posted, "allow")), (405, "GET, HEAD"), "{}", posted.text);
    let deleted = app.client.request("DELETE", "/assets/x.js", None).await;
    assert_eq!((deleted.status, header(&deleted, "allow")), (405, "GET, HEAD"));
    // The API is where it was.
    assert_eq!(app.client.get("/healthz").await.status, 200);
    assert_eq!(app.client.get("/docs").await.status, 200);
    assert_eq!(app.client.get("/api/devices").await.status, 401);
}

#[tokio::test]
async fn the_openapi_document_does_not_list_the_dashboard() {
    let app = TestApp::spawn().await;
    let doc = app.client.get("/api/openapi.json").await;
    let paths = doc.body["paths"].as_object().expect("paths");
    assert!(!paths.contains_key("/"), "the page is not an API operation");
    assert!(
        paths.keys().all(|p| p.starts_with("/api/") || ["/healthz", "/readyz", "/metrics"].contains(&p.as_str())),
        "{:?}",
        paths.keys()
    );
    assert!(paths.contains_key("/api/devices/{deviceId}/performance"));
}

#[tokio::test]
async fn a_configured_public_broker_url_is_what_the_page_and_its_csp_name() {
    let app = TestApp::spawn_with(|c| c.mqtt.public_ws_url = Some("wss://mqtt.unit.example/mqtt".into())).await;
    let page = app.client.get("/").await;
    assert!(page.text.contains(r#"content="wss://mqtt.unit.example/mqtt""#), "{}", page.text);
    strict(header(&page, "content-security-policy"), "wss://mqtt.unit.example/mqtt");
}
