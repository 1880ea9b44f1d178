//! The interfaces through which the edge hands what clients publish to the service, and
//! learns when it is stored: "acknowledged means stored". Devices' telemetry and session
//! messages go to a [`TelemetrySink`]; people's messages (chat posts, typing indicators) to
//! a [`PersonSink`]. Both answer with the same [`SinkOutcome`], and the edge treats both
//! alike: PUBACK in publish order once settled, rejections answered on the sender's own
//! error topic, nothing relayed that the service did not approve. The edge sends a device's PUBACK only
//! after [`TelemetrySink::submit`] resolves to [`SinkOutcome::Committed`] (or
//! [`SinkOutcome::Rejected`], which is answered on the device's `errors` topic), and in
//! publish order. The ingest crate implements the committing side.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use nc_access::UserSubject;
use nc_domain::{DeviceId, HospitalId, PatientId};

use crate::payload::{kind, ErrorCode, ErrorNote, V1};
use crate::topic::{DeviceChannel, Topic};

/// A message a device published on one of its own topics.
#[derive(Debug, Clone)]
pub struct DeviceMessage {
    pub device: DeviceId,
    pub hospital: HospitalId,
    /// `Telemetry` or `Session`.
    pub channel: DeviceChannel,
    pub payload: Bytes,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkOutcome {
    /// Durably stored (or already stored: a redelivery). Acknowledge it. `patient` is the
    /// patient whose treatment it belongs to, if any: the edge also publishes it on that
    /// patient's own topic.
    Committed { patient: Option<PatientId> },
    /// Invalid: never stored. Acknowledge it (resending cannot help) and tell the sender
    /// why on its own error topic (a device's `errors`, a person's `notifications`).
    /// `error` is the JSON body of that message.
    Rejected { error: serde_json::Value },
}

/// Storage is unavailable: do not acknowledge; the device will resend.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub struct SinkUnavailable(pub String);

pub type SinkFuture = Pin<Box<dyn Future<Output = Result<SinkOutcome, SinkUnavailable>> + Send + 'static>>;

/// The committing side of "acknowledged means stored". Implementations bound their own
/// memory (the edge bounds what each connection has in flight).
pub trait TelemetrySink: Send + Sync + 'static {
    fn submit(&self, message: DeviceMessage) -> SinkFuture;
}

/// A message a person published on a topic they may publish on (a room's `post` or
/// `typing`). The service stores or stamps it and publishes what follows from it itself
/// (the stored message, the stamped indicator): the edge relays nothing of it.
#[derive(Debug, Clone)]
pub struct PersonMessage {
    pub sender: UserSubject,
    pub topic: Topic,
    pub payload: Bytes,
}

/// The service's handler of people's messages (chat). [`SinkOutcome::Committed`] means
/// handled (stored, for a post); its `patient` is ignored.
pub trait PersonSink: Send + Sync + 'static {
    fn submit(&self, message: PersonMessage) -> SinkFuture;
}

/// Accepts nothing: for a broker without a chat service (tests, benchmarks).
pub struct NoPersonSink;

impl PersonSink for NoPersonSink {
    fn submit(&self, _: PersonMessage) -> SinkFuture {
        Box::pin(async {
            Ok(SinkOutcome::Rejected {
                error: crate::payload::to_json(&ErrorNote {
                    v: V1,
                    r#type: kind::Error,
                    code: ErrorCode::Unavailable,
                    field: None,
                    message: "chat is not available".into(),
                    client_message_id: None,
                }),
            })
        })
    }
}

/// What the service sends a person when a subscription of theirs starts: the state that a
/// stream of changes alone would not give them (their open, unanswered alarms on their
/// `notifications` topic), published through the [`crate::Publisher`] like everything else.
/// The edge calls it once the subscription holds (after its SUBACK), for every topic
/// subscribed by name (not a wildcard). A resumed session is not told: its queue kept what
/// it missed.
pub trait Subscribed: Send + Sync + 'static {
    fn subscribed(&self, who: UserSubject, topic: Topic);
}

/// Sends nothing: for a broker without an alarm system (tests, benchmarks).
pub struct NothingOnSubscribe;

impl Subscribed for NothingOnSubscribe {
    fn subscribed(&self, _: UserSubject, _: Topic) {}
}
