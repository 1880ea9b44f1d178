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
    let token = json!({"name": "token", "in": "query", "required": true,
        "description": "An access token (`POST /api/auth/login`); the socket closes with 4401 when it expires and 4403 when access is revoked.",
        "schema": {"type": "string"}});
    let id = json!({"type": "string", "format": "uuid"});
    let reference_field = json!({"description": "Echoed in the answer (`ack` or `error`).", "nullable": true});
    json!({
        "/ws/health-metrics/{deviceId}": {
            "summary": "A device's live readings, alerts and presence (what its viewer may see: a patient their own treatment only).",
            "parameters": [{"name": "deviceId", "in": "path", "required": true, "schema": id}, token],
            "closeCodes": {"4401": "the token expired", "4403": "access to the device ended"},
            "handshakeErrors": {"401": "no valid token", "403": "not allowed", "404": "no such device", "429": "too many open streams"},
            "serverFrames": {"oneOf": [
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
            ]},
            "clientFrames": {"description": "None: the stream is read-only."}
        },
        "/ws/chat/{roomId}": {
            "summary": "A conversation live: messages, typing and read receipts, and sending them (text frames of at most 16 KiB).",
            "parameters": [{"name": "roomId", "in": "path", "required": true, "schema": id}, token],
            "closeCodes": {"4401": "the token expired", "4403": "the care relationship ended"},
            "handshakeErrors": {"401": "no valid token", "403": "not a participant now", "404": "no such room", "429": "too many open streams"},
            "clientFrames": {"oneOf": [
                frame("message", &["clientMessageId", "message"], json!({
                    "clientMessageId": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._:-]+$"},
                    "message": {"type": "string", "minLength": 1, "maxLength": 4000}, "ref": reference_field})),
                frame("typing", &["typing"], json!({"typing": {"type": "boolean"}, "ref": reference_field})),
                frame("read", &["messageId"], json!({"messageId": id, "ref": reference_field})),
            ]},
            "serverFrames": {"oneOf": [
                frame("message", &["message"], json!({"message": reference("MessageOut")})),
                frame("typing", &["typing"], json!({"typing": {"type": "object", "description": "The stamped indicator, as on MQTT (topics.md): userId, role, typing, at, expiresAt."}})),
                frame("read", &["receipt"], json!({"receipt": reference("ReceiptOut")})),
                frame("ack", &["for"], json!({"for": {"type": "string", "enum": ["message", "typing", "read"]},
                    "created": {"type": "boolean"}, "message": reference("MessageOut"), "receipt": reference("ReceiptOut"), "ref": reference_field})),
                frame("error", &["code", "message"], json!({"code": {"type": "string"}, "message": {"type": "string"},
                    "field": {"type": "string", "nullable": true}, "ref": reference_field})),
                lagged,
            ]}
        }
    })
}
