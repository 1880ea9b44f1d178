//! What each kind of topic carries, in which direction and for whom: one arm per
//! [`TopicKind`], with no wildcard arm, so a topic kind added to the broker does not compile
//! until it is described here. Payloads are named by their Rust types.

use nc_alarms::{AlertEvent, AlertNote};
use nc_bookings::BookingNote;
use nc_chat::{ChatMessageNote, MessagePublished, PostIn, ReadPublished, TypingIn};
use nc_ingest::reading::{DeviceError, ReadingIn, SessionIn};
use nc_messaging::payload::{ErrorNote, Response, Status, SubscriptionEnded, TypingIndicator};
use nc_messaging::topic::{DeviceChannel as D, PatientChannel as P, RoomChannel as R, TopicKind};
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// Who connects to take part in a flow (the security scheme it authenticates with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Party {
    Device,
    Person,
}

/// Whether a payload is described as the service serializes it, or as the service parses it
/// (what clients publish, and what the service relays exactly as it was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    Serialized,
    Parsed,
}

/// One kind of message: its name in the document and its payload type.
pub(super) struct Msg {
    pub name: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    pub form: Form,
    pub payload: fn(&mut SchemaGenerator) -> Schema,
}

fn sent<T: JsonSchema>(name: &'static str, title: &'static str, summary: &'static str) -> Msg {
    Msg { name, title, summary, form: Form::Serialized, payload: SchemaGenerator::subschema_for::<T> }
}

/// The answer to an MQTT 5 request, on the requester's own inbox topic.
fn response() -> Msg {
    sent::<Response>(
        "response",
        "Response (MQTT 5)",
        "What became of a PUBLISH that named this topic as its Response Topic: sent with its Correlation Data, \
         at QoS 0, to the requesting connection only (topics.md, \"MQTT 5\", request/response).",
    )
}

fn parsed<T: JsonSchema>(name: &'static str, title: &'static str, summary: &'static str) -> Msg {
    Msg { name, title, summary, form: Form::Parsed, payload: SchemaGenerator::subschema_for::<T> }
}

/// Messages in one direction on one channel.
pub(super) struct Flow {
    /// Inbound: who may publish. Outbound: who may subscribe.
    pub parties: &'static [Party],
    pub summary: &'static str,
    pub messages: Vec<Msg>,
}

pub(super) struct ChannelDoc {
    /// The channel's key in the document (operations are `receive…`/`send…` of it).
    pub id: &'static str,
    pub title: &'static str,
    /// Who may subscribe, and the rules.
    pub description: &'static str,
    /// What clients publish here and the service receives; `None`: clients may not publish.
    pub inbound: Option<Flow>,
    /// What the service publishes here; `None`: nobody may subscribe.
    pub outbound: Option<Flow>,
}

const DEVICE: &[Party] = &[Party::Device];
const PERSON: &[Party] = &[Party::Person];

fn reading() -> Msg {
    parsed::<ReadingIn>("reading", "Reading", "One reading of a dialysis machine, with a per-device sequence number.")
}

fn session_message() -> Msg {
    parsed::<SessionIn>("sessionMessage", "Session start or end", "The machine starts or ends treating a patient.")
}

fn alert_event() -> Msg {
    sent::<AlertEvent>(
        "alertEvent",
        "Alert change",
        "An alert was raised, escalated, acknowledged, snoozed, re-alerted after a snooze, or cleared.",
    )
}

fn flow(parties: &'static [Party], summary: &'static str, messages: Vec<Msg>) -> Option<Flow> {
    Some(Flow { parties, summary, messages })
}

/// The contract of one kind of topic.
pub(super) fn channel(kind: TopicKind) -> ChannelDoc {
    match kind {
        TopicKind::Device(D::Telemetry) => ChannelDoc {
            id: "deviceTelemetry",
            title: "Device telemetry",
            description: "Readings of one machine. May subscribe: the device's doctors and technicians (incl. a \
                technician holding an active hand-over).",
            inbound: flow(
                DEVICE,
                "The machine publishes its readings at QoS 1. PUBACK means stored (in publish order); a reading \
                 sent again (same seq and ts) is stored once; an invalid one is acknowledged, never stored, and \
                 answered on the device's errors topic. Storage unavailable: the connection is closed without \
                 PUBACK and the machine resends.",
                vec![reading()],
            ),
            outbound: flow(PERSON, "Every stored reading, forwarded as the machine sent it.", vec![reading()]),
        },
        TopicKind::Device(D::Status) => ChannelDoc {
            id: "deviceStatus",
            title: "Device status",
            description: "Whether the machine is connected (retained). May subscribe: staff of the hospital; the \
                patient on the device.",
            inbound: None,
            outbound: flow(
                PERSON,
                "Online/offline, retained, published by the service with `at`. With several nodes (an external \
                 core), a connection that drops without DISCONNECT is announced by the device's last will: \
                 `connection_lost` without `at`, also when the node itself stops.",
                vec![sent::<Status>("deviceStatus", "Device status", "The device came online or went offline.")],
            ),
        },
        TopicKind::Device(D::Session) => ChannelDoc {
            id: "deviceSession",
            title: "Device treatment sessions",
            description: "Start and end of treatments on one machine. May subscribe: as telemetry.",
            inbound: flow(
                DEVICE,
                "`start` ends any active session of the device and starts one; `end` completes it. Stored in \
                 order with the readings; PUBACK once stored.",
                vec![session_message()],
            ),
            outbound: flow(PERSON, "Every stored session message, forwarded as sent.", vec![session_message()]),
        },
        TopicKind::Device(D::Alerts) => ChannelDoc {
            id: "deviceAlerts",
            title: "Device alerts",
            description: "Alerts of one machine. May subscribe: as telemetry. Acknowledge, snooze and clear over REST \
                (`POST /api/alerts/{id}/acknowledge`, `/snooze`, `/clear`).",
            inbound: None,
            outbound: flow(PERSON, "Every change of an alert of the device.", vec![alert_event()]),
        },
        TopicKind::Device(D::Errors) => ChannelDoc {
            id: "deviceErrors",
            title: "Device errors",
            description: "Why a message of the machine was refused. May subscribe: the device itself; as telemetry.",
            inbound: None,
            outbound: flow(
                &[Party::Device, Party::Person],
                "A refused reading or session message (acknowledged all the same: resending cannot help).",
                vec![
                    sent::<DeviceError>("deviceError", "Refused message", "A message of the machine broke a rule."),
                    response(),
                ],
            ),
        },
        TopicKind::Patient(P::Telemetry) => ChannelDoc {
            id: "patientTelemetry",
            title: "A patient's readings",
            description: "The readings of one patient's treatments, whatever machine. May subscribe: the patient; \
                the doctors who may read the patient.",
            inbound: None,
            outbound: flow(
                PERSON,
                "The readings of the patient's sessions, as the machine sent them.",
                vec![reading()],
            ),
        },
        TopicKind::Patient(P::Session) => ChannelDoc {
            id: "patientSession",
            title: "A patient's treatment sessions",
            description: "Start and end of one patient's treatments. May subscribe: as the patient's telemetry.",
            inbound: None,
            outbound: flow(
                PERSON,
                "The session messages of the patient's treatments, as sent.",
                vec![session_message()],
            ),
        },
        TopicKind::Patient(P::Alerts) => ChannelDoc {
            id: "patientAlerts",
            title: "A patient's alerts",
            description: "Alerts naming one patient. May subscribe: as the patient's telemetry.",
            inbound: None,
            outbound: flow(PERSON, "Every change of an alert naming the patient.", vec![alert_event()]),
        },
        TopicKind::Room(R::Post) => ChannelDoc {
            id: "roomPost",
            title: "Post a chat message",
            description: "Where participants post. Nobody may subscribe: the stored message appears on `messages`.",
            inbound: flow(
                PERSON,
                "A participant posts at QoS 1. PUBACK means stored; a resend with the same clientMessageId is \
                 stored once. An invalid, unauthorized or rate-limited post (30 a minute per person) is \
                 acknowledged too and answered on the sender's notifications topic.",
                vec![parsed::<PostIn>("chatPost", "Chat post", "A message a participant sends to the room.")],
            ),
            outbound: None,
        },
        TopicKind::Room(R::Messages) => ChannelDoc {
            id: "roomMessages",
            title: "Chat messages",
            description: "Every stored message of a room, whatever transport it came from, in the conversation's \
                order. May subscribe: the room's participants.",
            inbound: None,
            outbound: flow(
                PERSON,
                "A message was stored.",
                vec![sent::<MessagePublished>("chatMessage", "Chat message", "A stored message of the room.")],
            ),
        },
        TopicKind::Room(R::Typing) => ChannelDoc {
            id: "roomTyping",
            title: "Typing indicators",
            description: "Never stored, never retained. May subscribe: the room's participants.",
            inbound: flow(
                PERSON,
                "A participant publishes whether they are typing (any QoS; other fields are ignored). At most one \
                 indicator per 2 s per person per room is relayed.",
                vec![parsed::<TypingIn>("typingInput", "Typing", "A participant starts or stops typing.")],
            ),
            outbound: flow(
                PERSON,
                "The indicator, stamped with its sender by the service; it expires at `expiresAt`.",
                vec![sent::<TypingIndicator>("typingIndicator", "Typing indicator", "Who is typing, until when.")],
            ),
        },
        TopicKind::Room(R::Read) => ChannelDoc {
            id: "roomRead",
            title: "Read receipts",
            description: "A participant's read watermark moved (over REST or the chat WebSocket; it never moves \
                backwards). May subscribe: the room's participants.",
            inbound: None,
            outbound: flow(
                PERSON,
                "A read watermark moved.",
                vec![sent::<ReadPublished>("readReceipt", "Read receipt", "Everything up to a message is read.")],
            ),
        },
        TopicKind::Notifications => ChannelDoc {
            id: "userNotifications",
            title: "A person's notifications",
            description: "Messages for one person, told apart by `type`. May subscribe: that user only.",
            inbound: None,
            outbound: flow(
                PERSON,
                "Alerts of the person's devices (and, once escalated to their tier, of their ward's or hospital's \
                 devices), bookings, chat messages while not connected to the room, refused \
                 posts, and subscriptions removed on reconnect.",
                vec![
                    sent::<AlertNote>(
                        "alertNotification",
                        "Alert",
                        "An alert of a device the person looks after changed (doctors, technicians, hand-overs), or an \
                         alert escalated to the person's tier (2: doctors of the device's ward or hospital; 3: the \
                         hospital's admins, who get the administrative view: no patient, values or clinical message). \
                         `escalated` carries the tier reached; every change reaches everyone of the tiers reached.",
                    ),
                    sent::<BookingNote>(
                        "bookingNotification",
                        "Booking",
                        "A booking of the person's, or on a machine they look after, changed (not sent to whoever \
                         made the change).",
                    ),
                    sent::<ChatMessageNote>(
                        "chatMessageNotification",
                        "New chat message",
                        "A new message in a room the person is connected to on no transport (no text: push).",
                    ),
                    sent::<ErrorNote>(
                        "errorNotification",
                        "Refused post",
                        "Something the person published was refused.",
                    ),
                    sent::<SubscriptionEnded>(
                        "subscriptionEnded",
                        "Subscriptions ended",
                        "Subscriptions of a resumed session the person may no longer hold were removed.",
                    ),
                    response(),
                ],
            ),
        },
    }
}
