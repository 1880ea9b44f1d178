//! The MQTT topic contract as types. Every topic string is parsed into a [`Topic`] (and
//! every subscription filter into a [`Filter`]) at the edge, before any decision; a string
//! that does not parse is refused. `topics.md` documents the same set, and a test keeps the
//! two in step (see [`TopicKind`]); the AsyncAPI document is generated from [`TopicKind`].
//!
//! Ids in topics are canonical UUIDs, so an id can never contain `+`, `#` or `/`, and a
//! filter can never widen beyond the literal hospital/device/room prefix it names.

use std::fmt;

use nc_domain::{DeviceId, HospitalId, PatientId, RoomId, UserId};

/// The root of every topic, with the contract's version.
pub const ROOT: &str = "nc/v1";

/// The topics under one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceChannel {
    /// Readings from the machine (machine → service, QoS 1).
    Telemetry,
    /// Online/offline presence, retained (service → apps).
    Status,
    /// Treatment session start/end (machine → service, QoS 1).
    Session,
    /// Alerts raised and cleared for the device (service → apps, QoS 1).
    Alerts,
    /// Why a payload from the machine was rejected (service → machine, QoS 1).
    Errors,
}

/// The topics of one patient's own treatment: the service republishes there what the
/// patient's machine sent or raised for that patient, so that a patient on a shared
/// machine receives their own treatment and nobody else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatientChannel {
    /// The patient's readings, as the machine sent them (service → apps, QoS 1).
    Telemetry,
    /// Start and end of the patient's treatment sessions (service → apps, QoS 1).
    Session,
    /// Alerts about the patient (service → apps, QoS 1).
    Alerts,
}

impl PatientChannel {
    pub const ALL: [PatientChannel; 3] = [PatientChannel::Telemetry, PatientChannel::Session, PatientChannel::Alerts];
    pub fn as_str(&self) -> &'static str {
        match self {
            PatientChannel::Telemetry => "telemetry",
            PatientChannel::Session => "session",
            PatientChannel::Alerts => "alerts",
        }
    }

    /// The patient channel that mirrors a device channel, if any.
    pub fn of(channel: DeviceChannel) -> Option<PatientChannel> {
        match channel {
            DeviceChannel::Telemetry => Some(PatientChannel::Telemetry),
            DeviceChannel::Session => Some(PatientChannel::Session),
            DeviceChannel::Alerts => Some(PatientChannel::Alerts),
            DeviceChannel::Status | DeviceChannel::Errors => None,
        }
    }
}

/// The topics under one chat room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomChannel {
    /// A participant sends a message (participant → service, QoS 1; acknowledged once stored,
    /// never relayed as sent: the stored message appears on `messages`).
    Post,
    /// Stored messages (service → participants, QoS 1).
    Messages,
    /// Typing indicators (participant → participants, QoS 0).
    Typing,
    /// Read receipts (service → participants, QoS 1).
    Read,
}

impl DeviceChannel {
    pub const ALL: [DeviceChannel; 5] = [
        DeviceChannel::Telemetry,
        DeviceChannel::Status,
        DeviceChannel::Session,
        DeviceChannel::Alerts,
        DeviceChannel::Errors,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceChannel::Telemetry => "telemetry",
            DeviceChannel::Status => "status",
            DeviceChannel::Session => "session",
            DeviceChannel::Alerts => "alerts",
            DeviceChannel::Errors => "errors",
        }
    }
}

impl RoomChannel {
    pub const ALL: [RoomChannel; 4] =
        [RoomChannel::Post, RoomChannel::Messages, RoomChannel::Typing, RoomChannel::Read];
    pub fn as_str(&self) -> &'static str {
        match self {
            RoomChannel::Post => "post",
            RoomChannel::Messages => "messages",
            RoomChannel::Typing => "typing",
            RoomChannel::Read => "read",
        }
    }
}

/// A concrete topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Device {
        hospital: HospitalId,
        device: DeviceId,
        channel: DeviceChannel,
    },
    Room {
        hospital: HospitalId,
        room: RoomId,
        channel: RoomChannel,
    },
    Patient {
        hospital: HospitalId,
        patient: PatientId,
        channel: PatientChannel,
    },
    /// A person's own notifications (service → that user, QoS 1).
    Notifications {
        hospital: HospitalId,
        user: UserId,
    },
}

/// A kind of topic: a topic without its ids. The AsyncAPI document has one channel per
/// kind (`nc_api::asyncapi`), and `topics.md` one table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Device(DeviceChannel),
    Patient(PatientChannel),
    Room(RoomChannel),
    Notifications,
}

impl TopicKind {
    /// Every kind, in the order of `topics.md`.
    pub fn all() -> Vec<TopicKind> {
        let device = DeviceChannel::ALL.into_iter().map(TopicKind::Device);
        let patient = PatientChannel::ALL.into_iter().map(TopicKind::Patient);
        let room = RoomChannel::ALL.into_iter().map(TopicKind::Room);
        device.chain(patient).chain(room).chain([TopicKind::Notifications]).collect()
    }

    /// The topic name with its ids as `{parameters}`, e.g. `nc/v1/h/{hospital}/d/{device}/telemetry`.
    pub fn template(&self) -> String {
        match self {
            TopicKind::Device(c) => format!("{ROOT}/h/{{hospital}}/d/{{device}}/{}", c.as_str()),
            TopicKind::Patient(c) => format!("{ROOT}/h/{{hospital}}/p/{{patient}}/{}", c.as_str()),
            TopicKind::Room(c) => format!("{ROOT}/h/{{hospital}}/chat/{{room}}/{}", c.as_str()),
            TopicKind::Notifications => format!("{ROOT}/h/{{hospital}}/u/{{user}}/notifications"),
        }
    }

    /// Whether anyone may subscribe to topics of this kind. A room's `post` topic is the
    /// way in for chat messages: the service stores what is posted there and publishes the
    /// stored message on the room's `messages` topic, so nothing is ever delivered on
    /// `post` and nobody may subscribe to it (topics.md: "may subscribe: nobody").
    pub fn subscribable(&self) -> bool {
        !matches!(self, TopicKind::Room(RoomChannel::Post))
    }

    /// The parameters of [`TopicKind::template`], in order.
    pub fn parameters(&self) -> [&'static str; 2] {
        match self {
            TopicKind::Device(_) => ["hospital", "device"],
            TopicKind::Patient(_) => ["hospital", "patient"],
            TopicKind::Room(_) => ["hospital", "room"],
            TopicKind::Notifications => ["hospital", "user"],
        }
    }

    /// A topic of this kind (nil ids): what the contract says about one topic of a kind
    /// (e.g. `Publisher::contract`) it says about all.
    pub fn example(&self) -> Topic {
        let hospital = HospitalId(uuid::Uuid::nil());
        match *self {
            TopicKind::Device(channel) => Topic::Device { hospital, device: DeviceId(uuid::Uuid::nil()), channel },
            TopicKind::Patient(channel) => Topic::Patient { hospital, patient: PatientId(uuid::Uuid::nil()), channel },
            TopicKind::Room(channel) => Topic::Room { hospital, room: RoomId(uuid::Uuid::nil()), channel },
            TopicKind::Notifications => Topic::Notifications { hospital, user: UserId(uuid::Uuid::nil()) },
        }
    }
}

/// Why a topic or filter string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("not a Nephrocare topic (topics start with nc/v1/h/{{hospital}}/)")]
    Unknown,
    #[error("'{0}' is not a valid id (ids are canonical UUIDs)")]
    BadId(String),
    #[error("wildcards are allowed only as the last level below a device, room or user")]
    Wildcard,
    #[error("system and shared-subscription topics are not available")]
    Reserved,
}

/// Parses an id, in its canonical form only: the core routes on topic strings, so an
/// upper-case spelling of an id would be authorized for the id yet reach nobody
/// subscribed to (or receive nothing published on) its canonical topic.
fn id<T: std::str::FromStr + fmt::Display>(s: &str) -> Result<T, TopicError> {
    s.parse::<T>().ok().filter(|t| t.to_string() == s).ok_or_else(|| TopicError::BadId(s.to_owned()))
}

impl Topic {
    /// Parses a topic name (no wildcards).
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        if s.starts_with('$') {
            return Err(TopicError::Reserved);
        }
        if s.contains(['+', '#']) {
            return Err(TopicError::Wildcard);
        }
        let levels: Vec<&str> = s.split('/').collect();
        match levels.as_slice() {
            ["nc", "v1", "h", h, "d", d, channel] => {
                let channel =
                    DeviceChannel::ALL.into_iter().find(|c| c.as_str() == *channel).ok_or(TopicError::Unknown)?;
                Ok(Topic::Device { hospital: id(h)?, device: id(d)?, channel })
            }
            ["nc", "v1", "h", h, "p", p, channel] => {
                let channel =
                    PatientChannel::ALL.into_iter().find(|c| c.as_str() == *channel).ok_or(TopicError::Unknown)?;
                Ok(Topic::Patient { hospital: id(h)?, patient: id(p)?, channel })
            }
            ["nc", "v1", "h", h, "chat", r, channel] => {
                let channel =
                    RoomChannel::ALL.into_iter().find(|c| c.as_str() == *channel).ok_or(TopicError::Unknown)?;
                Ok(Topic::Room { hospital: id(h)?, room: id(r)?, channel })
            }
            ["nc", "v1", "h", h, "u", u, "notifications"] => {
                Ok(Topic::Notifications { hospital: id(h)?, user: id(u)? })
            }
            _ => Err(TopicError::Unknown),
        }
    }

    /// The patient's own copy of a message on a machine's topic (topics.md: a patient
    /// receives their own treatment on their patient topics), if the channel has one.
    pub fn patient_copy(&self, patient: PatientId) -> Option<Topic> {
        match *self {
            Topic::Device { hospital, channel, .. } => {
                PatientChannel::of(channel).map(|channel| Topic::Patient { hospital, patient, channel })
            }
            _ => None,
        }
    }

    /// Whether anyone may subscribe to this topic (see [`TopicKind::subscribable`]).
    pub fn subscribable(&self) -> bool {
        self.kind().subscribable()
    }

    pub fn kind(&self) -> TopicKind {
        match *self {
            Topic::Device { channel, .. } => TopicKind::Device(channel),
            Topic::Patient { channel, .. } => TopicKind::Patient(channel),
            Topic::Room { channel, .. } => TopicKind::Room(channel),
            Topic::Notifications { .. } => TopicKind::Notifications,
        }
    }

    pub fn hospital(&self) -> HospitalId {
        match self {
            Topic::Device { hospital, .. }
            | Topic::Patient { hospital, .. }
            | Topic::Room { hospital, .. }
            | Topic::Notifications { hospital, .. } => *hospital,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Device { hospital, device, channel } => {
                write!(f, "{ROOT}/h/{hospital}/d/{device}/{}", channel.as_str())
            }
            Topic::Patient { hospital, patient, channel } => {
                write!(f, "{ROOT}/h/{hospital}/p/{patient}/{}", channel.as_str())
            }
            Topic::Room { hospital, room, channel } => {
                write!(f, "{ROOT}/h/{hospital}/chat/{room}/{}", channel.as_str())
            }
            Topic::Notifications { hospital, user } => write!(f, "{ROOT}/h/{hospital}/u/{user}/notifications"),
        }
    }
}

/// A subscription filter: a topic, or a wildcard (`+` or `#`, as the last level only)
/// directly below one literal device or room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    Exact(Topic),
    /// `nc/v1/h/{hospital}/d/{device}/+` or `/#`: every channel of one device.
    AnyDeviceChannel {
        hospital: HospitalId,
        device: DeviceId,
    },
    /// `nc/v1/h/{hospital}/p/{patient}/+` or `/#`: every channel of one patient.
    AnyPatientChannel {
        hospital: HospitalId,
        patient: PatientId,
    },
    /// `nc/v1/h/{hospital}/chat/{room}/+` or `/#`: every channel of one room.
    AnyRoomChannel {
        hospital: HospitalId,
        room: RoomId,
    },
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, TopicError> {
        if s.starts_with('$') {
            return Err(TopicError::Reserved);
        }
        let levels: Vec<&str> = s.split('/').collect();
        let (last, prefix) = levels.split_last().ok_or(TopicError::Unknown)?;
        if prefix.iter().any(|l| l.contains(['+', '#'])) || (last.contains(['+', '#']) && last.len() != 1) {
            return Err(TopicError::Wildcard);
        }
        if *last == "+" || *last == "#" {
            return match prefix {
                ["nc", "v1", "h", h, "d", d] => Ok(Filter::AnyDeviceChannel { hospital: id(h)?, device: id(d)? }),
                ["nc", "v1", "h", h, "p", p] => Ok(Filter::AnyPatientChannel { hospital: id(h)?, patient: id(p)? }),
                ["nc", "v1", "h", h, "chat", r] => Ok(Filter::AnyRoomChannel { hospital: id(h)?, room: id(r)? }),
                _ => Err(TopicError::Wildcard),
            };
        }
        Topic::parse(s).map(Filter::Exact)
    }

    /// Every topic this filter can match.
    pub fn topics(&self) -> Vec<Topic> {
        match *self {
            Filter::Exact(t) => vec![t],
            Filter::AnyDeviceChannel { hospital, device } => {
                DeviceChannel::ALL.into_iter().map(|channel| Topic::Device { hospital, device, channel }).collect()
            }
            Filter::AnyPatientChannel { hospital, patient } => {
                PatientChannel::ALL.into_iter().map(|channel| Topic::Patient { hospital, patient, channel }).collect()
            }
            Filter::AnyRoomChannel { hospital, room } => {
                RoomChannel::ALL.into_iter().map(|channel| Topic::Room { hospital, room, channel }).collect()
            }
        }
    }

    /// Whether a message published on `topic` is delivered through this filter.
    pub fn matches(&self, topic: &Topic) -> bool {
        match (*self, *topic) {
            (Filter::Exact(t), _) => t == *topic,
            (Filter::AnyDeviceChannel { hospital, device }, Topic::Device { hospital: h, device: d, .. }) => {
                hospital == h && device == d
            }
            (Filter::AnyPatientChannel { hospital, patient }, Topic::Patient { hospital: h, patient: p, .. }) => {
                hospital == h && patient == p
            }
            (Filter::AnyRoomChannel { hospital, room }, Topic::Room { hospital: h, room: r, .. }) => {
                hospital == h && room == r
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_tricks_are_refused() {
        let (h, d) = (HospitalId::new(), DeviceId::new());
        let t = Topic::Device { hospital: h, device: d, channel: DeviceChannel::Telemetry };
        assert_eq!(Topic::parse(&t.to_string()), Ok(t));
        for bad in [
            "#".to_owned(),
            "+/+/+".to_owned(),
            "$SYS/#".to_owned(),
            format!("$share/g/nc/v1/h/{h}/d/{d}/telemetry"),
            format!("nc/v1/h/{h}/d/+/telemetry"),
            format!("nc/v1/h/+/d/{d}/telemetry"),
            format!("nc/v1/h/{h}/#"),
            format!("nc/v1/h/{h}/d/#"),
            format!("nc/v1/h/{h}/d/{d}#/telemetry"),
            format!("nc/v1/h/{h}/d/{d}/tele#"),
            "nc/v1/h/not-a-uuid/d/x/telemetry".to_owned(),
            format!("nc/v1/h/{h}/d/{d}/telemetry/extra"),
            format!("nc/v2/h/{h}/d/{d}/telemetry"),
            format!("nc/v1/h/{h}/d/{}/telemetry", d.to_string().to_uppercase()),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(
            Filter::parse(&format!("nc/v1/h/{h}/d/{d}/#")),
            Ok(Filter::AnyDeviceChannel { hospital: h, device: d })
        );
        assert_eq!(Filter::parse(&format!("nc/v1/h/{h}/d/{d}/+")).unwrap().topics().len(), 5);
    }

    #[test]
    fn filters_match_exactly_the_topics_they_can_reach() {
        let (h, d, p) = (HospitalId::new(), DeviceId::new(), PatientId::new());
        let telemetry = Topic::Device { hospital: h, device: d, channel: DeviceChannel::Telemetry };
        let other = Topic::Device { hospital: h, device: DeviceId::new(), channel: DeviceChannel::Telemetry };
        let mine = Topic::Patient { hospital: h, patient: p, channel: PatientChannel::Alerts };
        let any_device = Filter::AnyDeviceChannel { hospital: h, device: d };
        let any_patient = Filter::AnyPatientChannel { hospital: h, patient: p };
        assert!(any_device.matches(&telemetry) && !any_device.matches(&other) && !any_device.matches(&mine));
        assert!(any_patient.matches(&mine) && !any_patient.matches(&telemetry));
        assert!(Filter::Exact(telemetry).matches(&telemetry) && !Filter::Exact(telemetry).matches(&other));
        for f in [any_device, any_patient] {
            assert!(f.topics().iter().all(|t| f.matches(t)), "every topic of {f:?} matches it");
        }
    }

    #[test]
    fn every_template_parses_into_the_enum() {
        let (h, d, r, u) = (HospitalId::new(), DeviceId::new(), RoomId::new(), UserId::new());
        let p = PatientId::new();
        for kind in TopicKind::all() {
            let tpl = kind.template();
            let s = tpl
                .replace("{hospital}", &h.to_string())
                .replace("{device}", &d.to_string())
                .replace("{patient}", &p.to_string())
                .replace("{room}", &r.to_string())
                .replace("{user}", &u.to_string());
            let t = Topic::parse(&s).unwrap_or_else(|e| panic!("{tpl}: {e}"));
            assert_eq!(t.to_string(), s);
            assert_eq!((t.kind(), kind.example().kind()), (kind, kind));
            assert!(kind.parameters().iter().all(|p| tpl.contains(&format!("{{{p}}}"))), "{tpl}");
        }
        assert_eq!(
            TopicKind::all().len(),
            DeviceChannel::ALL.len() + PatientChannel::ALL.len() + RoomChannel::ALL.len() + 1,
            "one template per variant"
        );
    }
}

#[cfg(test)]
mod contract {
    use super::TopicKind;

    /// topics.md and the enum agree: every topic in the document's table is a template
    /// here, and every template is in the table.
    #[test]
    fn topics_md_lists_exactly_the_templates() {
        let doc = include_str!("../../topics.md");
        let in_doc: Vec<&str> =
            doc.lines().filter(|l| l.starts_with("| `nc/v1/")).filter_map(|l| l.split('`').nth(1)).collect();
        let mut a: Vec<&str> = in_doc.clone();
        let templates: Vec<String> = TopicKind::all().iter().map(TopicKind::template).collect();
        let mut b: Vec<&str> = templates.iter().map(String::as_str).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "topics.md table vs messaging::topic::TopicKind");
    }

    /// topics.md's "may subscribe" column says "nobody" exactly for the kinds nobody may
    /// subscribe to.
    #[test]
    fn topics_md_says_who_may_subscribe() {
        let doc = include_str!("../../topics.md");
        for line in doc.lines().filter(|l| l.starts_with("| `nc/v1/")) {
            let template = line.split('`').nth(1).unwrap();
            let may_subscribe = line.trim_end_matches('|').rsplit('|').next().unwrap().trim();
            let kind = TopicKind::all().into_iter().find(|k| k.template() == template).unwrap();
            assert_eq!(
                !may_subscribe.starts_with("nobody"),
                kind.subscribable(),
                "{template}: topics.md says '{may_subscribe}'"
            );
        }
    }
}
