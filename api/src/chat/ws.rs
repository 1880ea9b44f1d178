//! `WebSocket /ws/chat/{roomId}?token=JWT`: a conversation, live. Authorized like the
//! health stream (the token in the query string is never logged; 401/403/404 before the
//! upgrade), re-checked every second (4403 when the care relationship ends) and closed with
//! 4401 when the token expires.
//!
//! Server → client: `{"type":"message","message":{…}}`, `{"type":"typing","typing":{…}}`,
//! `{"type":"read","receipt":{…}}`, and answers to the client's frames:
//! `{"type":"ack","ref":…,…}` or `{"type":"error","ref":…,"code","message","field"}`.
//! Client → server (text frames of at most 16 KiB, JSON): `{"type":"message",
//! "clientMessageId","message"}`, `{"type":"typing","typing":bool}`, `{"type":"read",
//! "messageId"}`; an optional `"ref"` is echoed in the answer. After a reconnect, catch up
//! with `GET /api/chat/rooms/{roomId}/messages?after=<last id>`: events that happen after
//! the upgrade reach the stream, and everything stored before is in that page.

use nc_domain::{Interface, MessageId, RoomId};
use poem::http::StatusCode;
use poem::web::websocket::{Message, WebSocket};
use poem::web::{Data, Path, Query};
use poem::{handler, IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use crate::http::streams::{opening, refuse, too_many_streams, unavailable, Live, LiveQuery, Wake};
use crate::state::ApiState;

/// Largest client frame.
const MAX_FRAME: usize = 16 * 1024;

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
enum Frame {
    #[serde(rename_all = "camelCase")]
    Message {
        client_message_id: String,
        message: String,
        r#ref: Option<serde_json::Value>,
    },
    Typing {
        typing: bool,
        r#ref: Option<serde_json::Value>,
    },
    #[serde(rename_all = "camelCase")]
    Read {
        message_id: MessageId,
        r#ref: Option<serde_json::Value>,
    },
}

#[handler]
pub async fn chat(
    Path(room): Path<String>,
    Query(query): Query<LiveQuery>,
    state: Data<&ApiState>,
    ws: WebSocket,
) -> Response {
    let (room, user, expires) = match opening::<RoomId>(&room, "roomId", &state.authn, query).await {
        Ok(opened) => opened,
        Err(refused) => return refused,
    };
    // Re-checked when access changes (an access event, or its grant's end), not per tick.
    let mut watch = nc_broker::registry::Watch::new(state.mqtt.clone());
    let epoch = watch.begin();
    match state.chat.membership(&user, room).await {
        Ok((_, until)) => watch.decided(epoch, until),
        Err(nc_chat::ChatError::NotFound(_)) => return refuse(StatusCode::NOT_FOUND, "not_found", "room not found"),
        Err(nc_chat::ChatError::Forbidden(m)) => return refuse(StatusCode::FORBIDDEN, "forbidden", &m),
        Err(_) => return unavailable(),
    }
    let Some(slot) = state.streams.take(user.id) else { return too_many_streams() };
    // Reading the conversation live is a read of it: audited once per stream.
    if state.chat.messages(&user, room, nc_chat::PageFrom::Newest, 1, Interface::Websocket).await.is_err() {
        return unavailable();
    }
    let state = state.0.clone();
    // Subscribed before the upgrade: nothing that happens after the 101 is missed.
    let mut events = state.chat.subscribe(room);
    let watching = state.chat.stream_opened(room, user.id);
    // Frames larger than the limit end the connection (1009) before they are buffered.
    let config = poem::web::websocket::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    ws.config(config).on_upgrade(move |socket| async move {
        let (_slot, _watching) = (slot, watching);
        let mut live = Live::new(socket, expires, watch);
        loop {
            let outgoing = match live.next(events.recv()).await {
                Wake::Events(Ok(e)) => vec![e.to_json()],
                Wake::Events(Err(RecvError::Lagged(n))) => vec![serde_json::json!({"type": "lagged", "missed": n,
                    "message": "catch up with GET /api/chat/rooms/{roomId}/messages?after=<last id>"})],
                Wake::Events(Err(RecvError::Closed)) | Wake::Gone => break,
                Wake::Recheck(epoch) => {
                    let member = match state.authn.recheck_user(&user).await {
                        Ok(()) => state.chat.membership(&user, room).await.ok(),
                        Err(_) => None,
                    };
                    let Some((_, until)) = member else {
                        live.revoke().await;
                        break;
                    };
                    live.decided(epoch, until);
                    Vec::new()
                }
                Wake::Frame(Message::Text(text)) => vec![answer(&state, &user, room, &text).await],
                Wake::Frame(Message::Binary(_)) => {
                    vec![serde_json::json!({"type": "error", "code": "bad_frame", "message": "frames are JSON text"})]
                }
                Wake::Frame(_) => Vec::new(),
            };
            if !live.send(outgoing).await {
                return;
            }
        }
    })
    .into_response()
}

/// Handles one client frame; the answer echoes its `ref`.
async fn answer(state: &ApiState, user: &nc_access::UserSubject, room: RoomId, text: &str) -> serde_json::Value {
    if text.len() > MAX_FRAME {
        return serde_json::json!({"type": "error", "code": "frame_too_large", "message": "frames are at most 16 KiB"});
    }
    let frame: Frame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            return serde_json::json!({"type": "error", "code": "bad_frame", "message": format!(
                "expected {{\"type\":\"message\"|\"typing\"|\"read\", …}}: {e}")})
        }
    };
    let with_ref = |mut v: serde_json::Value, r: Option<serde_json::Value>| {
        v["ref"] = r.unwrap_or(serde_json::Value::Null);
        v
    };
    let error = |e: nc_chat::ChatError, id: Option<&str>| {
        let mut v = e.to_json(id);
        if let Some(o) = v.as_object_mut() {
            o.remove("v");
        }
        v
    };
    match frame {
        Frame::Message { client_message_id, message, r#ref } => {
            match state.chat.post(user, room, Some(&client_message_id), &message).await {
                Ok((m, created)) => with_ref(
                    serde_json::json!({"type": "ack", "for": "message", "created": created, "message": m}),
                    r#ref,
                ),
                Err(e) => with_ref(error(e, Some(&client_message_id)), r#ref),
            }
        }
        Frame::Typing { typing, r#ref } => match state.chat.typing(user, room, typing).await {
            Ok(()) => with_ref(serde_json::json!({"type": "ack", "for": "typing"}), r#ref),
            Err(e) => with_ref(error(e, None), r#ref),
        },
        Frame::Read { message_id, r#ref } if !matches!(state.chat.room_of(message_id).await, Ok(Some(r)) if r == room) => {
            with_ref(
                serde_json::json!({"type": "error", "code": "validation_failed", "field": "messageId",
                    "message": "not a message of this room"}),
                r#ref,
            )
        }
        Frame::Read { message_id, r#ref } => match state.chat.read(user, message_id).await {
            Ok(receipt) if receipt.room_id == room => {
                with_ref(serde_json::json!({"type": "ack", "for": "read", "receipt": receipt}), r#ref)
            }
            Ok(_) => with_ref(
                serde_json::json!({"type": "error", "code": "validation_failed", "field": "messageId",
                    "message": "this message belongs to another room"}),
                r#ref,
            ),
            Err(e) => with_ref(error(e, None), r#ref),
        },
    }
}
