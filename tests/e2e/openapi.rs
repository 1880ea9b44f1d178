//! The OpenAPI document says what the server does (Schemathesis checks it at length in
//! `scripts/contract.sh`; these are the rules it relies on, over real HTTP):
//! 401 names its scheme, other methods get 405 with `Allow`, a body without a JSON content
//! type gets 415, values of another JSON type than declared get 400 naming the field,
//! optional fields are declared nullable, request objects closed.

use serde_json::{json, Value};

use crate::support::TestApp;

#[tokio::test]
async fn the_server_answers_as_the_document_declares() {
    let app = TestApp::spawn().await;
    let base = format!("http://{}", app.running().http_addr);
    let http = reqwest::Client::new();

    // 401 with the operation's challenge: a bearer token for people, Basic for machines.
    let r = http.get(format!("{base}/api/bookings")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = http.post(format!("{base}/api/health-metrics")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let r = http.get(format!("{base}/api/bookings")).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["www-authenticate"].to_str().unwrap()), (401, "Bearer"));

    // 405 with Allow.
    let r = http.patch(format!("{base}/api/bookings/settings")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, PUT, HEAD");
    let r = http.request(reqwest::Method::TRACE, format!("{base}/healthz")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "GET, HEAD"));

    // 415 without a JSON body type.
    let r = http.post(format!("{base}/api/auth/login")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);

    // A boolean where a string is declared: 400 naming the field (poem alone would read "false").
    let r = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "a@b.example", "password": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "password", "{body}");

    // The document: nullable optional fields, closed request objects, links, 415 declared.
    let doc: Value = http.get(format!("{base}/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["BookingOut"]["properties"]["cancelReason"]["nullable"], true);
    assert_eq!(schemas["RoomOut"]["properties"]["lastMessage"]["allOf"][0]["$ref"], "#/components/schemas/MessageOut");
    assert_eq!(schemas["CreateBookingIn"]["additionalProperties"], false);
    let booking = &doc["paths"]["/api/bookings"]["post"]["responses"];
    assert!(booking["415"].is_object());
    assert_eq!(booking["201"]["links"]["getBooking"]["operationId"], "getBooking");
    let offset =
        doc["paths"]["/api/bookings"]["get"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "offset");
    assert_eq!(offset.unwrap()["schema"]["minimum"], 0);
    // The WebSockets, with their frames.
    let ws = &doc["x-websockets"];
    let chat_frames = ws["/ws/chat/{roomId}"]["serverFrames"]["oneOf"].as_array().unwrap();
    let kinds: Vec<&str> = chat_frames.iter().map(|f| f["properties"]["type"]["enum"][0].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "typing", "read", "ack", "error", "lagged"]);
    assert!(ws["/ws/health-metrics/{deviceId}"]["closeCodes"]["4401"].is_string());
    app.stop().await;
}

/// What generators other than ours need (openapi-python-client read none of the operations
/// whose body had an enum with a description), and what an integrator is told: a path
/// parameter that does not parse is named as the document names it; an e-mail is checked by
/// the rule `format: email` declares.
#[tokio::test]
async fn path_parameters_are_named_and_emails_declared() {
    let w = crate::support::World::new(TestApp::spawn().await).await;
    let r = w.as_user("doc").get("/api/patients/not-a-uuid").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["fields"][0]["field"], "patientId", "{}", r.text);
    let r = w.as_user("doc").get("/api/bookings/0190/not-a-route").await;
    assert_eq!(r.status, 404);
    let r = w.as_user("adm").post("/api/users", json!({"email": "", "name": "X", "role": "doctor"})).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some("email")), "{}", r.text);
    let r = w.app.client.post("/api/auth/login", json!({"email": "not an address", "password": "x"})).await;
    assert_eq!((r.status, r.body["fields"][0]["field"].as_str()), (422, Some("email")), "{}", r.text);

    let doc: Value = serde_json::from_str(&nc_api::openapi_json()).unwrap();
    let mut emails = 0;
    let mut annotations_in_all_of = 0;
    walk(&doc, &mut |key, v| {
        if key == "email" && v["type"] == "string" {
            assert_eq!(v["format"], "email", "{v}");
            emails += 1;
        }
        if let Some(parts) = v["allOf"].as_array() {
            annotations_in_all_of += parts.iter().filter(|p| p.get("$ref").is_none()).count();
        }
    });
    assert!(emails >= 7, "{emails} email properties");
    assert_eq!(annotations_in_all_of, 0, "an allOf member without $ref");
    assert_eq!(
        doc["components"]["schemas"]["RegisterRequest"]["properties"]["role"]["allOf"].as_array().unwrap().len(),
        1
    );
}

fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}
