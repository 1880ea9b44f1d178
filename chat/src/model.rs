//! What chat hands to the transports: rooms, messages, receipts and live events.

use chrono::{DateTime, Utc};
use nc_domain::{ChatRoomKind, DeviceId, HospitalId, MessageId, PatientId, Role, RoomId, UserId};
use nc_messaging::payload::{kind, TypingIndicator, V1};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{MAX_CLIENT_ID, MAX_MESSAGE_CHARS};

/// A member of a room, with their read watermark.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub user_id: UserId,
    pub name: String,
    pub role: Role,
    /// Everything up to this message has been read by this participant.
    pub last_read_message_id: Option<MessageId>,
    pub last_read_at: Option<DateTime<Utc>>,
}

/// A room as its participant sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: RoomId,
    pub hospital_id: HospitalId,
    pub kind: ChatRoomKind,
    pub device_id: Option<DeviceId>,
    pub patient_id: Option<PatientId>,
    pub participants: Vec<Participant>,
    pub created_at: DateTime<Utc>,
    /// Last activity (the newest message, or the creation).
    pub updated_at: DateTime<Utc>,
    pub last_message: Option<Message>,
    /// Messages of others after the viewer's read watermark.
    pub unread_count: i64,
}

/// Who has read a message, and when they last moved their watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub user_id: UserId,
    pub read_at: Option<DateTime<Utc>>,
}

/// A stored message. `is_read`: read by every other participant of the room (in a
/// two-person room: by the recipient); `read_at`: when the last of them read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub chat_room_id: RoomId,
    pub sender_id: Option<UserId>,
    pub sender_role: Option<Role>,
    pub message: String,
    pub client_message_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub is_read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub read_by: Vec<ReadState>,
}

/// A participant's read watermark moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub room_id: RoomId,
    pub user_id: UserId,
    pub last_read_message_id: MessageId,
    pub at: DateTime<Utc>,
}

/// A page of a room's messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// More messages exist beyond this page in the direction read.
    pub has_more: bool,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFrom {
    /// The newest messages.
    Newest,
    /// Messages before this one (older).
    Before(MessageId),
    /// Messages after this one (newer): catching up after a reconnect.
    After(MessageId),
}

/// Something that happened in a room, for the live transports (and, with several nodes,
/// for the other nodes' transports: it crosses the node bus as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Message(Message),
    /// The stamped indicator, as published on MQTT.
    Typing {
        room: RoomId,
        indicator: TypingIndicator,
    },
    Read(Receipt),
}

impl Event {
    pub fn room(&self) -> RoomId {
        match self {
            Event::Message(m) => m.chat_room_id,
            Event::Typing { room, .. } => *room,
            Event::Read(r) => r.room_id,
        }
    }

    /// The event as a JSON frame: `{"type": "message"|"typing"|"read", …}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Event::Message(m) => serde_json::json!({"type": "message", "message": m}),
            Event::Typing { indicator, .. } => serde_json::json!({"type": "typing", "typing": indicator}),
            Event::Read(r) => serde_json::json!({"type": "read", "receipt": r}),
        }
    }
}

/// What a participant publishes on a room's `post` topic (QoS 1; PUBACK once stored).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PostIn {
    pub v: V1,
    /// The sender's id for this message: a resend with the same id is stored once.
    #[schemars(length(min = 1, max = MAX_CLIENT_ID), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub client_message_id: String,
    /// The text: visible characters, no control characters but newline and tab.
    #[schemars(length(min = 1, max = MAX_MESSAGE_CHARS))]
    pub message: String,
}

/// What a participant publishes on a room's `typing` topic (other fields are ignored; the
/// service republishes it stamped with the sender, as a typing indicator).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct TypingIn {
    pub v: V1,
    pub typing: bool,
}

/// A stored message (`…/chat/{room}/messages`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MessagePublished {
    pub v: V1,
    pub message: Message,
}

/// A participant's read watermark moved (`…/chat/{room}/read`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ReadPublished {
    pub v: V1,
    #[serde(flatten)]
    pub receipt: Receipt,
}

/// A new message for a participant connected to the room on no transport, so that their
/// app can raise a push (`…/u/{user}/notifications`; no text: it may show on a lock screen).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessageNote {
    pub v: V1,
    pub r#type: kind::ChatMessage,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub sender_id: UserId,
    pub sender_role: Role,
    pub at: DateTime<Utc>,
}
