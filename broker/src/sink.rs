//! The interface through which the edge hands device messages to storage, and learns when
//! they are stored: "acknowledged means stored". The edge sends a device's PUBACK only
//! after [`TelemetrySink::submit`] resolves to [`SinkOutcome::Committed`] (or
//! [`SinkOutcome::Rejected`], which is answered on the device's `errors` topic), and in
//! publish order. The ingest crate implements the committing side.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use nc_domain::{DeviceId, HospitalId, PatientId};

use crate::topic::DeviceChannel;

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
    /// Invalid: never stored. Acknowledge it (resending cannot help) and tell the device
    /// why on its `errors` topic. `error` is the JSON body of that message.
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
