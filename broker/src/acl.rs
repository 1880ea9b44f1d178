//! Who may publish and subscribe to what: the topic contract's rules, decided through the
//! one policy module (`nc_access::policy`). Every SUBSCRIBE filter, PUBLISH topic and will
//! topic goes through here.

use chrono::{DateTime, Utc};
use nc_access::policy::ClinicalView;
use nc_access::{DeviceAction, PatientAction, Policy, PolicyError, Subject};
use nc_domain::Role;

use crate::topic::{DeviceChannel, Filter, PatientChannel, RoomChannel, Topic};

/// A permission, and until when it lasts if it rests on a temporary grant.
pub type Grant = Option<DateTime<Utc>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("not permitted: {0}")]
    Denied(String),
    #[error("policy lookup failed: {0}")]
    Lookup(String),
}

fn denied(e: PolicyError) -> AclError {
    match e {
        PolicyError::Denied(d) => AclError::Denied(d.to_string()),
        PolicyError::Db(db) => AclError::Lookup(db.to_string()),
    }
}

fn refuse(why: &str) -> Result<Grant, AclError> {
    Err(AclError::Denied(why.to_owned()))
}

/// Whether `subject` may publish on `topic`. Only the service publishes alerts, status,
/// errors, chat messages, read receipts and notifications; devices publish their own
/// telemetry and session messages; participants publish typing indicators.
pub async fn may_publish(policy: &Policy, subject: &Subject, topic: &Topic) -> Result<Grant, AclError> {
    if topic.hospital() != subject.hospital() {
        return refuse("another hospital");
    }
    match (subject, topic) {
        (
            Subject::Device { id, .. },
            Topic::Device { device, channel: DeviceChannel::Telemetry | DeviceChannel::Session, .. },
        ) if id == device => Ok(None),
        // A chat post is handed to the chat service, which decides it with the policy and
        // answers a refusal on the sender's notification topic (the connection stays).
        (Subject::User(_), Topic::Room { channel: RoomChannel::Post, .. }) => Ok(None),
        (Subject::User(_), Topic::Room { room, channel: RoomChannel::Typing, .. }) => {
            policy.room(subject, *room).await.map_err(denied)?;
            Ok(None)
        }
        _ => refuse("this topic is published by the service or by its device only"),
    }
}

/// Whether `subject` may receive messages published on `topic`.
pub async fn may_receive(policy: &Policy, subject: &Subject, topic: &Topic) -> Result<Grant, AclError> {
    if topic.hospital() != subject.hospital() {
        return refuse("another hospital");
    }
    if !topic.subscribable() {
        return refuse("nothing is delivered on a room's post topic: stored messages arrive on its messages topic");
    }
    match (subject, topic) {
        (Subject::Device { id, .. }, Topic::Device { device, channel: DeviceChannel::Errors, .. }) if id == device => {
            Ok(None)
        }
        (Subject::Device { .. }, _) => refuse("devices subscribe only to their own errors topic"),
        (Subject::User(_), Topic::Device { device, channel: DeviceChannel::Status, .. }) => {
            policy.device(subject, *device, DeviceAction::View).await.map_err(denied)?;
            policy.grant_expiry(subject, *device).await.map_err(|e| AclError::Lookup(e.to_string()))
        }
        (Subject::User(_), Topic::Device { hospital, device, .. }) => {
            match policy.clinical_view(subject, *device).await.map_err(denied)? {
                ClinicalView::Device => {}
                ClinicalView::OwnTreatment(patient) => {
                    let own = Topic::Patient { hospital: *hospital, patient, channel: PatientChannel::Telemetry };
                    return Err(AclError::Denied(format!(
                        "a machine treats several patients: receive your own treatment on {}",
                        own.to_string().replace("/telemetry", "/#")
                    )));
                }
            }
            policy.grant_expiry(subject, *device).await.map_err(|e| AclError::Lookup(e.to_string()))
        }
        (Subject::User(u), Topic::Patient { patient, .. }) => {
            if !matches!(u.role, Role::Patient | Role::Doctor) {
                return refuse("patient topics are for the patient and their doctors; technicians follow devices");
            }
            policy.patient(subject, *patient, PatientAction::Read).await.map_err(denied)?;
            Ok(None)
        }
        (Subject::User(_), Topic::Room { room, .. }) => {
            let r = policy.room(subject, *room).await.map_err(denied)?;
            // A technician in a device's room through a hand-over: until it expires.
            match r.device_id {
                Some(device) => policy.grant_expiry(subject, device).await.map_err(|e| AclError::Lookup(e.to_string())),
                None => Ok(None),
            }
        }
        (Subject::User(u), Topic::Notifications { user, .. }) if u.id == *user => Ok(None),
        (Subject::User(_), Topic::Notifications { .. }) => refuse("notifications of another person"),
    }
}

/// Whether `subject` may subscribe to `filter`: it must be allowed to receive every topic
/// the filter can match. A wildcard passes over the topics nothing is delivered on (a
/// room's `post`); naming one exactly is refused. Returns the earliest expiry among the
/// permissions it rests on.
pub async fn may_subscribe(policy: &Policy, subject: &Subject, filter: &Filter) -> Result<Grant, AclError> {
    let mut until: Grant = None;
    let exact = matches!(filter, Filter::Exact(_));
    for topic in filter.topics().into_iter().filter(|t| exact || t.subscribable()) {
        if let Some(t) = may_receive(policy, subject, &topic).await? {
            until = Some(until.map_or(t, |u| u.min(t)));
        }
    }
    Ok(until)
}
