//! Chat between doctors, patients and technicians: one capability that owns its storage
//! ([`store`]), its rules (who talks to whom is the policy module's `room` and `open_room`)
//! and its fan-out. The transports call it: the REST API and the chat WebSocket (api) and
//! MQTT (the broker hands people's `post` and `typing` publishes to [`Chat`] as its
//! [`PersonSink`]). Whatever the transport, a stored message is published on the room's MQTT
//! `messages` topic, pushed to the room's WebSocket streams, and announced on the
//! notification topic of every participant who has neither, so every client sees the same
//! conversation in the same order (server time, then id).

mod membership;
pub mod model;
pub mod store;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use nc_access::{audit, Policy, PolicyError, RoomRequest, Subject, UserSubject};
use nc_domain::{AuditAction, Interface, MessageId, RoomId, UserId};
use nc_messaging::payload::{kind, ErrorCode, ErrorNote, TypingIndicator, V1};
use nc_messaging::topic::{RoomChannel, Topic};
use nc_messaging::Connections;
use nc_messaging::{PersonMessage, PersonSink, Publisher, SinkFuture, SinkOutcome, SinkUnavailable};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::broadcast;

pub use model::{
    ChatMessageNote, Event, Message, MessagePage, MessagePublished, PageFrom, Participant, PostIn, ReadPublished,
    Receipt, Room, TypingIn,
};

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Longest client message id.
pub const MAX_CLIENT_ID: usize = 64;
/// Most messages in a page.
pub const MAX_PAGE: u64 = 100;

/// Why a chat request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("too many messages; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

impl From<PolicyError> for ChatError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Denied(nc_access::Denied::NotFound) => ChatError::NotFound("room"),
            PolicyError::Denied(nc_access::Denied::Forbidden(m)) => ChatError::Forbidden(m.to_owned()),
            PolicyError::Db(e) => ChatError::Db(e),
        }
    }
}

impl ChatError {
    /// The error as a JSON body (MQTT notification, WebSocket frame).
    pub fn to_json(&self, client_message_id: Option<&str>) -> serde_json::Value {
        let (code, field) = match self {
            ChatError::NotFound(_) => (ErrorCode::NotFound, None),
            ChatError::Forbidden(_) => (ErrorCode::Forbidden, None),
            ChatError::Invalid { field, .. } => (ErrorCode::ValidationFailed, Some((*field).to_owned())),
            ChatError::RateLimited { .. } => (ErrorCode::RateLimited, None),
            ChatError::Db(_) => (ErrorCode::Unavailable, None),
        };
        let message = match self {
            ChatError::Db(_) => "temporarily unavailable; retry".to_owned(),
            other => other.to_string(),
        };
        let client_message_id = client_message_id.map(str::to_owned);
        nc_messaging::payload::to_json(&ErrorNote {
            v: V1,
            r#type: kind::Error,
            code,
            field,
            message,
            client_message_id,
        })
    }
}

/// A message's text: 1 to 4,000 characters, not only blanks, no control characters but
/// newline and tab.
pub fn check_text(text: &str) -> Result<&str, ChatError> {
    let invalid = |m: &str| ChatError::Invalid { field: "message", message: m.to_owned() };
    if text.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(invalid("must be at most 4000 characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid("must not contain control characters (newline and tab are fine)"));
    }
    // Zero-width and direction-override characters: a message cannot be invisible or
    // display reversed.
    let format =
        |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    if text.chars().any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
        return Err(invalid("must not contain text-direction override characters"));
    }
    if !text.chars().any(|c| !c.is_whitespace() && !format(c)) {
        return Err(invalid("must contain visible characters"));
    }
    Ok(text)
}

/// A client message id: 1 to 64 letters, digits, `-`, `_`, `.` or `:`.
pub fn check_client_id(id: &str) -> Result<&str, ChatError> {
    let ok = (1..=MAX_CLIENT_ID).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(id)
    } else {
        Err(ChatError::Invalid {
            field: "clientMessageId",
            message: "must be 1-64 letters, digits, '-', '_', '.' or ':'".into(),
        })
    }
}

/// Limits.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Messages per minute per person (also the burst).
    pub messages_per_minute: u32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self { messages_per_minute: 30 }
    }
}

/// The node event that carries room events to the other nodes' streams.
const CHAT_EVENT: &str = "chat";

struct Inner {
    db: DatabaseConnection,
    policy: Policy,
    /// Room decisions, kept until access changes.
    members: membership::Memberships,
    publisher: Publisher,
    registry: Arc<dyn Connections>,
    /// Other nodes (an external MQTT core; off with one node).
    bus: nc_messaging::Bus,
    /// Live events, one channel per room with listeners (the WebSocket streams).
    events: Mutex<HashMap<RoomId, broadcast::Sender<Event>>>,
    posts: DefaultKeyedRateLimiter<UserId>,
    typing: DefaultKeyedRateLimiter<(UserId, RoomId)>,
    clock: DefaultClock,
    /// Open WebSocket streams per (room, person).
    streams: Mutex<HashMap<(RoomId, UserId), usize>>,
    /// Posts to one room are stored and fanned out one at a time, so every transport sees
    /// them in the stored order.
    room_locks: Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<()>>>>,
}

/// The chat service. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

/// An open WebSocket stream on a room, counted until dropped (a participant with one is
/// "connected to the room" and gets no push notification).
pub struct StreamGuard {
    chat: Chat,
    key: (RoomId, UserId),
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.chat.inner.streams.lock().expect("chat streams");
        if let Some(n) = streams.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

impl Chat {
    /// The chat service, publishing through `outbound` (and sharing room events with the
    /// other nodes' streams on its bus).
    pub fn new(db: DatabaseConnection, settings: &ChatSettings, outbound: &nc_messaging::Outbound) -> Chat {
        let per_minute = NonZeroU32::new(settings.messages_per_minute.max(1)).expect("non-zero");
        let chat = Chat {
            inner: Arc::new(Inner {
                policy: Policy::new(db.clone()),
                members: membership::Memberships::new(outbound.connections.clone()),
                db,
                publisher: outbound.publisher.clone(),
                registry: outbound.connections.clone(),
                bus: outbound.bus.clone(),
                events: Mutex::new(HashMap::new()),
                posts: RateLimiter::keyed(Quota::per_minute(per_minute)),
                // Typing: at most one indicator per 2 s per person per room.
                typing: RateLimiter::keyed(Quota::with_period(std::time::Duration::from_secs(2)).expect("non-zero")),
                clock: DefaultClock::default(),
                streams: Mutex::new(HashMap::new()),
                room_locks: Mutex::new(HashMap::new()),
            }),
        };
        let bus = &chat.inner.bus;
        if bus.enabled() {
            let here = chat.clone();
            bus.on(CHAT_EVENT, move |event: Event| here.emit_here(event));
        }
        chat
    }

    /// Live events of one room (the transport re-checks access).
    pub fn subscribe(&self, room: RoomId) -> broadcast::Receiver<Event> {
        self.inner
            .events
            .lock()
            .expect("chat events")
            .entry(room)
            .or_insert_with(|| broadcast::channel(256).0)
            .subscribe()
    }

    fn emit(&self, event: Event) {
        self.inner.bus.publish(CHAT_EVENT, &event);
        self.emit_here(event);
    }

    /// To this node's streams on the room.
    fn emit_here(&self, event: Event) {
        let room = event.room();
        if let Some(tx) = self.inner.events.lock().expect("chat events").get(&room) {
            let _ = tx.send(event);
        }
    }

    /// Counts a WebSocket stream of `user` on `room`.
    pub fn stream_opened(&self, room: RoomId, user: UserId) -> StreamGuard {
        *self.inner.streams.lock().expect("chat streams").entry((room, user)).or_default() += 1;
        StreamGuard { chat: self.clone(), key: (room, user) }
    }

    /// The room, if `subject` may take part in it now (the policy's decision, remembered
    /// until access changes: see [`membership`]).
    pub async fn authorize(
        &self,
        subject: &Subject,
        room: RoomId,
    ) -> Result<nc_entities::chat_rooms::Model, ChatError> {
        match subject {
            Subject::User(u) => Ok(self.membership(u, room).await?.0),
            Subject::Device { .. } => Ok(self.inner.policy.room(subject, room).await?),
        }
    }

    /// The room, if `user` takes part in it now, and when that ends if it rests on a
    /// temporary grant (a technician's hand-over of the room's device).
    pub async fn membership(
        &self,
        user: &UserSubject,
        room: RoomId,
    ) -> Result<(nc_entities::chat_rooms::Model, Option<chrono::DateTime<chrono::Utc>>), ChatError> {
        self.inner.members.room(&self.inner.policy, user, room).await
    }

    /// Opens (or finds) a conversation. Returns the room and whether it was created now.
    pub async fn open(&self, user: &UserSubject, request: RoomRequest) -> Result<(Room, bool), ChatError> {
        let subject = Subject::User(*user);
        let grant = self.inner.policy.open_room(&subject, request).await.map_err(|e| match e {
            PolicyError::Denied(nc_access::Denied::NotFound) => ChatError::NotFound("counterpart or device"),
            other => other.into(),
        })?;
        let (id, created) = store::open(&self.inner.db, user.hospital, &grant, user.id).await?;
        self.inner.members.joined(id);
        let room = self.fresh(self.authorize(&subject, id).await?).await?;
        Ok((store::room(&self.inner.db, &room, user.id).await?, created))
    }

    /// The rooms `user` takes part in now (rooms whose relationship ended are left out),
    /// newest activity first.
    pub async fn rooms(&self, user: &UserSubject, limit: u64, offset: u64) -> Result<(Vec<Room>, u64), ChatError> {
        let subject = Subject::User(*user);
        let mut visible = Vec::new();
        for r in store::rooms_of(&self.inner.db, user.id).await? {
            match self.authorize(&subject, r.id).await {
                Ok(_) => visible.push(r),
                Err(ChatError::Db(e)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        let total = visible.len() as u64;
        let mut out = Vec::new();
        for r in visible.iter().skip(offset as usize).take(limit as usize) {
            out.push(store::room(&self.inner.db, r, user.id).await?);
        }
        Ok((out, total))
    }

    /// One room.
    pub async fn room(&self, user: &UserSubject, room: RoomId) -> Result<Room, ChatError> {
        let r = self.fresh(self.authorize(&Subject::User(*user), room).await?).await?;
        Ok(store::room(&self.inner.db, &r, user.id).await?)
    }

    /// The room's row as it is now (a kept decision carries the row as it was, whose
    /// activity time has moved on since).
    async fn fresh(&self, room: nc_entities::chat_rooms::Model) -> Result<nc_entities::chat_rooms::Model, ChatError> {
        use sea_orm::EntityTrait;
        Ok(nc_entities::chat_rooms::Entity::find_by_id(room.id).one(&self.inner.db).await?.unwrap_or(room))
    }

    /// A page of messages (audited as a read of the conversation).
    pub async fn messages(
        &self,
        user: &UserSubject,
        room: RoomId,
        from: PageFrom,
        limit: u64,
        interface: Interface,
    ) -> Result<MessagePage, ChatError> {
        let subject = Subject::User(*user);
        let r = self.authorize(&subject, room).await?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ChatError::Invalid { field: "limit", message: "must be between 1 and 100".into() });
        }
        let page = store::messages(&self.inner.db, room, from, limit).await.map_err(|e| match e {
            DbErr::RecordNotFound(_) => ChatError::Invalid {
                field: if matches!(from, PageFrom::Before(_)) { "before" } else { "after" },
                message: "is not a message of this room".into(),
            },
            other => other.into(),
        })?;
        self.audit(&subject, AuditAction::Read, "chat.messages", &r, interface).await?;
        Ok(page)
    }

    async fn audit(
        &self,
        subject: &Subject,
        action: AuditAction,
        resource: &str,
        room: &nc_entities::chat_rooms::Model,
        interface: Interface,
    ) -> Result<(), DbErr> {
        audit::record(
            &self.inner.db,
            audit::Access {
                subject,
                action,
                resource,
                patient: room.patient_id,
                device: room.device_id,
                interface,
                client_addr: None,
            },
        )
        .await
    }

    /// Posts a message: validated, rate-limited, stored once per `client_id`, then
    /// published on every transport. Returns it and whether it was new. A retry of a stored
    /// message returns it without counting against the rate limit. Storing and fanning out
    /// run to completion even if the caller goes away (a dropped HTTP request or MQTT
    /// connection), and posts to one room are handled one at a time: every transport sees
    /// the stored order.
    pub async fn post(
        &self,
        user: &UserSubject,
        room: RoomId,
        client_id: Option<&str>,
        text: &str,
    ) -> Result<(Message, bool), ChatError> {
        if let Some(c) = client_id {
            check_client_id(c)?;
        }
        let subject = Subject::User(*user);
        self.authorize(&subject, room).await?;
        let text = check_text(text)?.to_owned();
        if let Err(not_until) = self.inner.posts.check_key(&user.id) {
            // A retry of a stored message is answered whatever the limit.
            if let Some(c) = client_id {
                if let Some(existing) = store::existing(&self.inner.db, room, user.id, c).await? {
                    return Ok((existing, false));
                }
            }
            let wait = not_until.wait_time_from(self.inner.clock.now()).as_secs_f64().ceil() as u64;
            return Err(ChatError::RateLimited { retry_after_secs: wait.max(1) });
        }
        let (chat, user, client_id) = (self.clone(), *user, client_id.map(str::to_owned));
        let task = tokio::spawn(async move {
            let lock = chat.inner.room_locks.lock().expect("room locks").entry(room).or_default().clone();
            let _turn = lock.lock().await;
            let (message, created) =
                store::post(&chat.inner.db, room, user.id, Some(user.role), client_id.as_deref(), &text).await?;
            if created {
                chat.fan_out_message(&user, &message).await;
            }
            Ok::<_, ChatError>((message, created))
        });
        task.await.map_err(|e| ChatError::Db(DbErr::Custom(format!("the post task failed: {e}"))))?
    }

    async fn fan_out_message(&self, sender: &UserSubject, message: &Message) {
        let room = message.chat_room_id;
        self.emit(Event::Message(message.clone()));
        {
            let publisher = &self.inner.publisher;
            let topic = Topic::Room { hospital: sender.hospital, room, channel: RoomChannel::Messages };
            let body = MessagePublished { v: V1, message: message.clone() };
            if let Err(e) = publisher.publish_json(&topic, &body).await {
                tracing::warn!(error = %e, "could not publish a chat message");
            }
            // Participants connected to the room neither over MQTT nor over a WebSocket
            // get a notification, so their app can raise a push (no text: lock screens).
            let members = self.inner.members.members(&self.inner.db, room).await.unwrap_or_default();
            for &(member, role) in members.iter().filter(|(m, _)| *m != sender.id) {
                let on_mqtt = self.inner.registry.user_in_room(member, room);
                let on_ws = self.inner.streams.lock().expect("chat streams").contains_key(&(room, member));
                if on_mqtt || on_ws {
                    continue;
                }
                // Only those who take part now (the relationship holds).
                let who = Subject::User(UserSubject { id: member, role, hospital: sender.hospital, family: None });
                if self.authorize(&who, room).await.is_err() {
                    continue;
                }
                let topic = Topic::Notifications { hospital: sender.hospital, user: member };
                let note = ChatMessageNote {
                    v: V1,
                    r#type: kind::ChatMessage,
                    room_id: room,
                    message_id: message.id,
                    sender_id: sender.id,
                    sender_role: sender.role,
                    at: message.timestamp,
                };
                if let Err(e) = publisher.publish_json(&topic, &note).await {
                    tracing::warn!(error = %e, "could not publish a chat notification");
                }
            }
        }
    }

    /// Marks `message` and everything before it in its room read for `user`. Returns the
    /// receipt (also when the watermark was already past it).
    pub async fn read(&self, user: &UserSubject, message: MessageId) -> Result<Receipt, ChatError> {
        let m = store::message(&self.inner.db, message).await?.ok_or(ChatError::NotFound("message"))?;
        let subject = Subject::User(*user);
        let room = self.authorize(&subject, m.room_id).await.map_err(|e| match e {
            ChatError::NotFound(_) => ChatError::NotFound("message"),
            other => other,
        })?;
        match store::read(&self.inner.db, &m, user.id).await? {
            Some(receipt) => {
                self.emit(Event::Read(receipt.clone()));
                {
                    let publisher = &self.inner.publisher;
                    let topic = Topic::Room { hospital: room.hospital_id, room: room.id, channel: RoomChannel::Read };
                    let body = ReadPublished { v: V1, receipt: receipt.clone() };
                    if let Err(e) = publisher.publish_json(&topic, &body).await {
                        tracing::warn!(error = %e, "could not publish a read receipt");
                    }
                }
                Ok(receipt)
            }
            None => {
                let me = store::room(&self.inner.db, &room, user.id).await?;
                let mark = me.participants.iter().find(|p| p.user_id == user.id);
                Ok(Receipt {
                    room_id: room.id,
                    user_id: user.id,
                    last_read_message_id: mark.and_then(|p| p.last_read_message_id).unwrap_or(message),
                    at: mark.and_then(|p| p.last_read_at).unwrap_or_else(chrono::Utc::now),
                })
            }
        }
    }

    /// The room a message belongs to, if it exists.
    pub async fn room_of(&self, message: MessageId) -> Result<Option<RoomId>, ChatError> {
        Ok(store::message(&self.inner.db, message).await?.map(|m| m.room_id))
    }

    /// A typing indicator: stamped with the sender, at most one per 2 s per person per room
    /// (more are dropped), published at QoS 0 and never stored or retained.
    pub async fn typing(&self, user: &UserSubject, room: RoomId, typing: bool) -> Result<(), ChatError> {
        if self.inner.typing.check_key(&(user.id, room)).is_err() {
            return Ok(());
        }
        let r = self.authorize(&Subject::User(*user), room).await?;
        let indicator = TypingIndicator::now(user, typing);
        self.emit(Event::Typing { room, indicator: indicator.clone() });
        {
            let publisher = &self.inner.publisher;
            let topic = Topic::Room { hospital: r.hospital_id, room, channel: RoomChannel::Typing };
            if let Err(e) = publisher.publish_json(&topic, &indicator).await {
                tracing::debug!(error = %e, "could not publish a typing indicator");
            }
        }
        Ok(())
    }

    /// Forgets rate-limit keys that have replenished (bounded memory).
    pub fn tidy(&self) {
        self.inner.posts.retain_recent();
        self.inner.typing.retain_recent();
        self.inner.members.tidy();
        self.inner.events.lock().expect("chat events").retain(|_, tx| tx.receiver_count() > 0);
    }
}

impl PersonSink for Chat {
    fn submit(&self, m: PersonMessage) -> SinkFuture {
        let chat = self.clone();
        Box::pin(async move {
            let Topic::Room { room, channel, .. } = m.topic else {
                return Ok(SinkOutcome::Rejected { error: ChatError::NotFound("topic").to_json(None) });
            };
            let outcome = match channel {
                RoomChannel::Post => match serde_json::from_slice::<PostIn>(&m.payload).ok() {
                    None => Err((
                        ChatError::Invalid {
                            field: "payload",
                            message: "expected {\"v\": 1, \"clientMessageId\": \"…\", \"message\": \"…\"}".into(),
                        },
                        None,
                    )),
                    Some(p) => chat
                        .post(&m.sender, room, Some(&p.client_message_id), &p.message)
                        .await
                        .map(|_| ())
                        .map_err(|e| (e, Some(p.client_message_id.clone()))),
                },
                RoomChannel::Typing => match serde_json::from_slice::<TypingIn>(&m.payload).ok() {
                    // An invalid indicator is dropped: typing is best effort.
                    None => Ok(()),
                    Some(t) => chat.typing(&m.sender, room, t.typing).await.map_err(|e| (e, None)),
                },
                _ => Err((ChatError::Forbidden("this topic is published by the service".into()), None)),
            };
            match outcome {
                Ok(()) => Ok(SinkOutcome::Committed { patient: None }),
                // Storage unavailable: no PUBACK, the app resends.
                Err((ChatError::Db(e), _)) => Err(SinkUnavailable(e.to_string())),
                Err((e, id)) => Ok(SinkOutcome::Rejected { error: e.to_json(id.as_deref()) }),
            }
        })
    }
}
