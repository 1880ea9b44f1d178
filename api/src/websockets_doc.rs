//! The two WebSockets, documented in the OpenAPI document's `x-websockets` extension (they
//! are no request/response operations): where, how to authenticate, the close codes, and
//! the JSON schema of every frame each side sends. The frames are built in `live.rs` and
//! `chat_ws.rs`; `tests/e2e/openapi.rs` checks that the document carries them.

use serde_json::{json, Value};

fn frame(kind: &str, required: &[&str], properties: Value) -> Value {
    let mut props = properties;
    props["type"] = json!({"type": "string", "enum": [kind]});
    let mut req = vec!["type"];
    req.extend_from_slice(required);
    json!({"type": "object", "required": req, "properties": props})
}

/// What every socket states alike, before its frames: the summary, the path parameter
/// `param` (an id) and the access token `token`, the close codes and the handshake errors.
/// `[revoked, refused, missing]`: why it closes with 4403, why the handshake answers 403,
/// and what 404 means.
fn socket(summary: &str, param: &str, [revoked, refused, missing]: [&str; 3]) -> Value {
    let token = json!({"name": "token", "in": "query", "required": true,
        "description": "An access token (`POST /api/auth/login`); the socket closes with 4401 when it expires and 4403 when access is revoked.",
        "schema": {"type": "string"}});
    json!({
        "summary": summary,
        "parameters": [{"name": param, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}, token],
        "closeCodes": {"4401": "the token expired", "4403": revoked},
        "handshakeErrors": {"401": "no valid token", "403": refused, "404": missing, "429": "too many open streams"},
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The `x-websockets` extension.
pub fn extension() -> Value {
    let lagged = frame(
        "lagged",
        &["missed"],
        json!({"missed": {"type": "integer", "minimum": 0, "description": "Events dropped because this client read too slowly; reload over REST."}}),
    );
    let id = json!({"type": "string", "format": "uuid"});
    let reference_field = json!({"description": "Echoed in the answer (`ack` or `error`).", "nullable": true});
    let mut health = socket(
        "A device's live readings, alerts and presence (what its viewer may see: a patient their own treatment only).",
        "deviceId",
        ["access to the device ended", "not allowed", "no such device"],
    );
    health["serverFrames"] = json!({"oneOf": [
        frame("reading", &["deviceId", "time", "seq", "reading"], json!({
            "deviceId": id, "time": {"type": "string", "format": "date-time"}, "seq": {"type": "integer"},
            "patientId": {"type": "string", "format": "uuid", "nullable": true},
            "sessionId": {"type": "string", "format": "uuid", "nullable": true},
            "reading": {"type": "object", "description": "The reading as the machine sent it (topics.md)."}})),
        frame("alert", &["event", "alert"], json!({
            "event": {"type": "string", "enum": ["raised", "acknowledged", "cleared"]}, "alert": reference("AlertOut")})),
        frame("status", &["deviceId", "online", "at"], json!({
            "deviceId": id, "online": {"type": "boolean"}, "reason": {"type": "string", "nullable": true},
            "at": {"type": "string", "format": "date-time"}})),
        lagged.clone(),
    ]});
    health["clientFrames"] = json!({"description": "None: the stream is read-only."});
    let mut chat = socket(
        "A conversation live: messages, typing and read receipts, and sending them (text frames of at most 16 KiB).",
        "roomId",
        ["the care relationship ended", "not a participant now", "no such room"],
    );
    chat["clientFrames"] = json!({"oneOf": [
        frame("message", &["clientMessageId", "message"], json!({
            "clientMessageId": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._:-]+$"},
            "message": {"type": "string", "minLength": 1, "maxLength": 4000}, "ref": reference_field})),
        frame("typing", &["typing"], json!({"typing": {"type": "boolean"}, "ref": reference_field})),
        frame("read", &["messageId"], json!({"messageId": id, "ref": reference_field})),
    ]});
    chat["serverFrames"] = json!({"oneOf": [
        frame("message", &["message"], json!({"message": reference("MessageOut")})),
        frame("typing", &["typing"], json!({"typing": {"type": "object", "description": "The stamped indicator, as on MQTT (topics.md): userId, role, typing, at, expiresAt."}})),
        frame("read", &["receipt"], json!({"receipt": reference("ReceiptOut")})),
        frame("ack", &["for"], json!({"for": {"type": "string", "enum": ["message", "typing", "read"]},
            "created": {"type": "boolean"}, "message": reference("MessageOut"), "receipt": reference("ReceiptOut"), "ref": reference_field})),
        frame("error", &["code", "message"], json!({"code": {"type": "string"}, "message": {"type": "string"},
            "field": {"type": "string", "nullable": true}, "ref": reference_field})),
        lagged,
    ]});
    json!({"/ws/health-metrics/{deviceId}": health, "/ws/chat/{roomId}": chat})
}
