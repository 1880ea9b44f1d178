//! The JSON payloads the broker itself builds (device status, stamped typing indicators,
//! the notifications it sends a person), and the pieces every payload of the contract
//! shares: the version field ([`V1`]) and the `type` tags of the notification topic
//! ([`kind`]). Each payload is a serde type that also derives `schemars::JsonSchema`, so
//! the AsyncAPI document (`nc_api::asyncapi`) describes exactly what is published: the
//! schema and the bytes come from the same type and the same serde attributes.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use nc_domain::{Role, UserId};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The contract version every payload carries: `"v": 1`. Deserializing anything else fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<V1, D::Error> {
        match u64::deserialize(d)? {
            1 => Ok(V1),
            v => Err(serde::de::Error::custom(format!("payload version {v} is not supported; use 1"))),
        }
    }
}

impl JsonSchema for V1 {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "V1".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "const": 1, "description": "Payload version: 1."})
    }
}

/// A string that is always the same: the `type` of a notification.
macro_rules! tag {
    ($($(#[$doc:meta])* $name:ident = $s:literal),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $name {
            pub const TAG: &'static str = $s;
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($s)
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string", "const": $s})
            }
        }
    )+};
}

/// The `type` of each kind of message on a person's `notifications` topic, in one place so
/// that no two kinds share one. The payload types themselves live with the code that
/// builds them (alerts in ingest, bookings, chat, and [`SubscriptionEnded`], [`ErrorNote`]).
pub mod kind {
    tag!(
        /// An alert of one of the person's devices changed.
        Alert = "alert",
        /// A booking of the person (or of a device they look after) changed.
        Booking = "booking",
        /// A new message in a room the person is not connected to.
        ChatMessage = "chat_message",
        /// Something the person published was refused.
        Error = "error",
        /// Subscriptions of a resumed session were removed.
        SubscriptionEnded = "subscription_ended",
        /// What became of a request (MQTT 5 request/response).
        Response = "response",
    );
}

/// Serializes a time as RFC 3339 in UTC with milliseconds (`2026-11-24T10:15:00.000Z`), for
/// `#[serde(serialize_with = …)]` (with `#[schemars(with = "DateTime<Utc>")]`).
pub mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};

    pub fn serialize<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn option<S: serde::Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serialize(at, s),
            None => s.serialize_none(),
        }
    }
}

/// Whether a device is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceState {
    Online,
    Offline,
}

/// Why a device's status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusReason {
    /// The device connected.
    Connected,
    /// The device disconnected (DISCONNECT).
    Disconnected,
    /// The connection dropped without DISCONNECT (with several nodes: the device's last will).
    ConnectionLost,
    /// The device sent nothing within its keepalive.
    KeepaliveTimeout,
    /// The device was retired or its secret rotated.
    Revoked,
    /// The service shut down.
    Shutdown,
}

impl StatusReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusReason::Connected => "connected",
            StatusReason::Disconnected => "disconnected",
            StatusReason::ConnectionLost => "connection_lost",
            StatusReason::KeepaliveTimeout => "keepalive_timeout",
            StatusReason::Revoked => "revoked",
            StatusReason::Shutdown => "shutdown",
        }
    }
}

/// A device's status (`…/d/{device}/status`, retained).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Status {
    pub v: V1,
    pub state: PresenceState,
    pub reason: StatusReason,
    /// When it changed; absent from the last will (`connection_lost`, several nodes), which
    /// is prepared at connect time.
    #[serde(serialize_with = "millis::option", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "DateTime<Utc>")]
    pub at: Option<DateTime<Utc>>,
}

impl Status {
    pub fn new(online: bool, reason: StatusReason, at: Option<DateTime<Utc>>) -> Status {
        let state = if online { PresenceState::Online } else { PresenceState::Offline };
        Status { v: V1, state, reason, at }
    }
}

/// How long a typing indicator holds without a refresh.
pub const TYPING_EXPIRES_SECS: i64 = 5;

/// A typing indicator as the service publishes it, stamped with its sender
/// (`…/chat/{room}/typing`, QoS 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypingIndicator {
    pub v: V1,
    pub user_id: UserId,
    pub role: Role,
    pub typing: bool,
    pub at: DateTime<Utc>,
    /// `at` + 5 s: show "typing" until then unless refreshed or stopped.
    pub expires_at: DateTime<Utc>,
}

impl TypingIndicator {
    pub fn now(user: &nc_access::UserSubject, typing: bool) -> TypingIndicator {
        let at = Utc::now();
        let expires_at = at + chrono::Duration::seconds(TYPING_EXPIRES_SECS);
        TypingIndicator { v: V1, user_id: user.id, role: user.role, typing, at, expires_at }
    }
}

/// Why a resumed session's subscriptions were removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndedReason {
    /// The person may no longer receive what they match.
    NotPermitted,
}

/// Subscriptions of a resumed persistent session that were removed on reconnect
/// (notification).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SubscriptionEnded {
    pub v: V1,
    pub r#type: kind::SubscriptionEnded,
    /// The filters, as the client subscribed them.
    pub filters: Vec<String>,
    pub reason: EndedReason,
    pub at: DateTime<Utc>,
}

/// Why something a person published was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ValidationFailed,
    Forbidden,
    NotFound,
    RateLimited,
    /// The service cannot handle it now; publish again later.
    Unavailable,
}

/// Something a person published was refused (notification): acknowledged all the same
/// (resending cannot help).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorNote {
    pub v: V1,
    pub r#type: kind::Error,
    pub code: ErrorCode,
    /// The field at fault (`payload`, `message`, `clientMessageId`), if one is.
    pub field: Option<String>,
    pub message: String,
    /// The post's `clientMessageId`, when it could be read.
    pub client_message_id: Option<String>,
}

/// What became of a request: the service's answer to an MQTT 5 PUBLISH that named a
/// Response Topic, sent there with the request's Correlation Data, to the requesting
/// connection only (topics.md, "MQTT 5").
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub v: V1,
    pub r#type: kind::Response,
    pub outcome: ResponseOutcome,
    /// Why it was not accepted: the service's error code (`validation_failed`,
    /// `seq_conflict`, `forbidden`, `not_found`, `rate_limited`, `unavailable`), or
    /// `not_authorized` / `topic_name_invalid` for a publish refused before the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseOutcome {
    /// Stored (a machine's message: committed) or handed to the service (a chat post).
    Accepted,
    /// The service refused it (also said on the `errors` or `notifications` topic).
    Rejected,
    /// Refused before it reached the service: not a topic this client may publish on.
    Refused,
}

/// A payload as a JSON value.
pub fn to_json(payload: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(payload).expect("payloads serialize")
}

/// A payload as the bytes published (fields in declaration order).
pub fn to_bytes(payload: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(payload).expect("payloads serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_their_wire_form() {
        let at = "2026-11-24T10:15:00.123456Z".parse().unwrap();
        assert_eq!(
            String::from_utf8(to_bytes(&Status::new(true, StatusReason::Connected, Some(at)))).unwrap(),
            r#"{"v":1,"state":"online","reason":"connected","at":"2026-11-24T10:15:00.123Z"}"#
        );
        assert_eq!(
            String::from_utf8(to_bytes(&Status::new(false, StatusReason::ConnectionLost, None))).unwrap(),
            r#"{"v":1,"state":"offline","reason":"connection_lost"}"#
        );
        let note = SubscriptionEnded {
            v: V1,
            r#type: kind::SubscriptionEnded,
            filters: vec!["a/b".into()],
            reason: EndedReason::NotPermitted,
            at,
        };
        let json = to_json(&note);
        assert_eq!(
            (json["type"].as_str(), json["reason"].as_str()),
            (Some("subscription_ended"), Some("not_permitted"))
        );
        assert!(serde_json::from_str::<V1>("1").is_ok() && serde_json::from_str::<V1>("2").is_err());
    }
}
