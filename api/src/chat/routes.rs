//! Chat over REST: rooms (opened on demand, idempotent), messages (cursor pages both ways,
//! idempotent posts), read receipts (a watermark). Every rule lives in the chat crate and
//! the policy module; this file maps HTTP to them. The same conversation is live on
//! `WebSocket /ws/chat/{roomId}` and on MQTT (topics.md).

use chrono::{DateTime, Utc};
use nc_access::RoomRequest;
use nc_domain::{ChatRoomKind, DeviceId, HospitalId, Interface, MessageId, PatientId, Role, RoomId, UserId};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::dto::page;
use crate::error::{ApiError, ApiResult};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

/// Opens a conversation.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenRoomIn {
    /// `doctor-patient` (you and `counterpartId`: a patient and one of their doctors) or
    /// `doctor-technician` (the room of `deviceId`'s doctors and technicians).
    pub kind: ChatRoomKind,
    /// The other person (required for doctor-patient; joins the device room if given).
    pub counterpart_id: Option<UserId>,
    /// The device (doctor-technician only).
    pub device_id: Option<DeviceId>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct ParticipantOut {
    pub user_id: UserId,
    pub name: String,
    pub role: Role,
    /// Everything up to this message has been read by this participant.
    pub last_read_message_id: Option<MessageId>,
    pub last_read_at: Option<DateTime<Utc>>,
}

#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct ReadStateOut {
    pub user_id: UserId,
    pub read_at: Option<DateTime<Utc>>,
}

/// A message. `isRead`: read by every other participant (in a two-person room, the
/// recipient); `readAt`: when the last of them read it; `readBy`: per participant.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct MessageOut {
    pub id: MessageId,
    pub chat_room_id: RoomId,
    pub sender_id: Option<UserId>,
    pub sender_role: Option<Role>,
    pub message: String,
    pub client_message_id: Option<String>,
    /// Server time the message was stored (the conversation's order: time, then id).
    pub timestamp: DateTime<Utc>,
    pub is_read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub read_by: Vec<ReadStateOut>,
}

impl From<nc_chat::Message> for MessageOut {
    fn from(m: nc_chat::Message) -> Self {
        MessageOut {
            id: m.id,
            chat_room_id: m.chat_room_id,
            sender_id: m.sender_id,
            sender_role: m.sender_role,
            message: m.message,
            client_message_id: m.client_message_id,
            timestamp: m.timestamp,
            is_read: m.is_read,
            read_at: m.read_at,
            read_by: m.read_by.into_iter().map(|r| ReadStateOut { user_id: r.user_id, read_at: r.read_at }).collect(),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct RoomOut {
    pub id: RoomId,
    pub hospital_id: HospitalId,
    #[oai(rename = "type")]
    pub kind: ChatRoomKind,
    pub device_id: Option<DeviceId>,
    pub patient_id: Option<PatientId>,
    pub participants: Vec<ParticipantOut>,
    pub created_at: DateTime<Utc>,
    /// Last activity.
    pub updated_at: DateTime<Utc>,
    pub last_message: Option<MessageOut>,
    /// Messages of others after your read watermark.
    pub unread_count: i64,
}

impl From<nc_chat::Room> for RoomOut {
    fn from(r: nc_chat::Room) -> Self {
        RoomOut {
            id: r.id,
            hospital_id: r.hospital_id,
            kind: r.kind,
            device_id: r.device_id,
            patient_id: r.patient_id,
            participants: r
                .participants
                .into_iter()
                .map(|p| ParticipantOut {
                    user_id: p.user_id,
                    name: p.name,
                    role: p.role,
                    last_read_message_id: p.last_read_message_id,
                    last_read_at: p.last_read_at,
                })
                .collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_message: r.last_message.map(Into::into),
            unread_count: r.unread_count,
        }
    }
}

#[derive(Object, Debug)]
pub struct RoomPage {
    pub items: Vec<RoomOut>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MessagePageOut {
    /// Oldest first.
    pub items: Vec<MessageOut>,
    /// More messages exist beyond this page in the direction read (older for `before` or
    /// the newest page, newer for `after`).
    pub has_more: bool,
}

/// Sends a message.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostIn {
    /// 1 to 4,000 characters; no control characters but newline and tab.
    #[oai(validator(min_length = 1, max_length = 4000))]
    pub message: String,
    /// Your id for this message (1-64 letters, digits, `-_.:`): sending again with the
    /// same id returns the stored message instead of a duplicate.
    #[oai(validator(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub client_message_id: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct ReceiptOut {
    pub room_id: RoomId,
    pub user_id: UserId,
    pub last_read_message_id: MessageId,
    pub at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum RoomOpened {
    /// The conversation already existed.
    #[oai(status = 200)]
    Existing(Json<RoomOut>),
    /// Opened now.
    #[oai(status = 201)]
    Created(Json<RoomOut>),
}

#[derive(ApiResponse)]
pub enum Posted {
    /// Sent before with this `clientMessageId`: the stored message, unchanged.
    #[oai(status = 200)]
    Existing(Json<MessageOut>),
    /// Stored and delivered.
    #[oai(status = 201)]
    Created(Json<MessageOut>),
}

pub struct ChatApi;

#[OpenApi(tag = "Tag::Chat")]
impl ChatApi {
    /// Opens a conversation, or returns it if it exists (idempotent). Doctor-patient: a
    /// patient and a doctor responsible for them (their assigned doctor, or a doctor of the
    /// device they are on). Doctor-technician: the device's room, for its doctors and
    /// technicians (a technician holding a hand-over while it lasts). 403/404 when the
    /// relationship does not exist. Admins do not chat.
    #[oai(path = "/api/chat/rooms", method = "post", operation_id = "openChatRoom")]
    async fn open(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<OpenRoomIn>,
    ) -> ApiResult<RoomOpened> {
        let b = body.0;
        let request = match (b.kind, b.counterpart_id, b.device_id) {
            (ChatRoomKind::DoctorPatient, Some(counterpart), None) => RoomRequest::DoctorPatient { counterpart },
            (ChatRoomKind::DoctorPatient, None, _) => {
                return Err(ApiError::field("counterpartId", "required for a doctor-patient conversation").into())
            }
            (ChatRoomKind::DoctorPatient, Some(_), Some(_)) => {
                return Err(ApiError::field("deviceId", "only for a doctor-technician conversation").into())
            }
            (ChatRoomKind::DoctorTechnician, counterpart, Some(device)) => {
                RoomRequest::DoctorTechnician { device, counterpart }
            }
            (ChatRoomKind::DoctorTechnician, _, None) => {
                return Err(ApiError::field("deviceId", "required for a doctor-technician conversation").into())
            }
        };
        let (room, created) = state.chat.open(&auth.0, request).await.map_err(ApiError::from)?;
        Ok(if created { RoomOpened::Created(Json(room.into())) } else { RoomOpened::Existing(Json(room.into())) })
    }

    /// Your conversations, newest activity first, with participants, the last message and
    /// your unread count. Conversations whose care relationship ended are not listed.
    #[oai(path = "/api/chat/rooms", method = "get", operation_id = "listChatRooms")]
    async fn rooms(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
    ) -> ApiResult<Json<RoomPage>> {
        let (limit, offset) = page(limit.0, offset.0)?;
        let (items, total) = state.chat.rooms(&auth.0, limit, offset).await.map_err(ApiError::from)?;
        Ok(Json(RoomPage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }

    /// One conversation.
    #[oai(path = "/api/chat/rooms/:roomId", method = "get", operation_id = "getChatRoom")]
    async fn room(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<RoomId>,
    ) -> ApiResult<Json<RoomOut>> {
        Ok(Json(state.chat.room(&auth.0, room_id.0).await.map_err(ApiError::from)?.into()))
    }

    /// A page of a conversation's messages, oldest first: the newest page by default,
    /// `before` a message for older ones, `after` a message to catch up (e.g. after a
    /// WebSocket reconnect: nothing is lost between the two). Audited.
    #[oai(path = "/api/chat/rooms/:roomId/messages", method = "get", operation_id = "listChatMessages")]
    async fn messages(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<RoomId>,
        /// Messages older than this one.
        before: Query<Option<MessageId>>,
        /// Messages newer than this one.
        after: Query<Option<MessageId>>,
        /// Page size, 1 to 100 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<Json<MessagePageOut>> {
        let from = match (before.0, after.0) {
            (Some(_), Some(_)) => return Err(ApiError::field("after", "give `before` or `after`, not both").into()),
            (Some(b), None) => nc_chat::PageFrom::Before(b),
            (None, Some(a)) => nc_chat::PageFrom::After(a),
            (None, None) => nc_chat::PageFrom::Newest,
        };
        let page = state
            .chat
            .messages(&auth.0, room_id.0, from, limit.0.unwrap_or(50), Interface::Rest)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(MessagePageOut { items: page.items.into_iter().map(Into::into).collect(), has_more: page.has_more }))
    }

    /// Sends a message; it reaches the other participants live over MQTT and the
    /// WebSocket, and as a notification those connected to neither. Idempotent per
    /// `clientMessageId`. At most 30 messages a minute per person (429 + Retry-After).
    #[oai(path = "/api/chat/rooms/:roomId/messages", method = "post", operation_id = "postChatMessage")]
    async fn post(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "roomId")] room_id: Path<RoomId>,
        body: Json<PostIn>,
    ) -> ApiResult<Posted> {
        let b = body.0;
        let (message, created) = state
            .chat
            .post(&auth.0, room_id.0, Some(&b.client_message_id), &b.message)
            .await
            .map_err(ApiError::from)?;
        Ok(if created { Posted::Created(Json(message.into())) } else { Posted::Existing(Json(message.into())) })
    }

    /// Marks this message and every earlier one of its conversation read (a watermark that
    /// never moves backwards: marking an older message changes nothing). The receipt is
    /// published to the other participants.
    #[oai(path = "/api/chat/messages/:messageId/read", method = "put", operation_id = "markChatMessageRead")]
    async fn read(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<MessageId>,
    ) -> ApiResult<Json<ReceiptOut>> {
        let r = state.chat.read(&auth.0, message_id.0).await.map_err(ApiError::from)?;
        Ok(Json(ReceiptOut {
            room_id: r.room_id,
            user_id: r.user_id,
            last_read_message_id: r.last_read_message_id,
            at: r.at,
        }))
    }
}
