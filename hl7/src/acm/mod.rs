//! IHE PCD Alarm Communication Management: we are the Alert Reporter.
//!
//! - [`report_alert`] builds **PCD-04 Report Alert** (`ORU^R40^ORU_R40`, TF-2 §3.4) from an
//!   [`AlertReport`]; the Alert Manager acknowledges it (see [`crate::ack`]).
//! - [`read_alert_manager_message`] reads what the Alert Manager sends on our listener: a
//!   **PCD-05 Report Alert Status** ([`DisseminationStatus`], TF-2 §3.5, appendix B.10 PRT), or
//!   a bare acknowledgement.
//! - [`report_status`] builds a PCD-05, for tests that play the Alert Manager.
//!
//! Field positions follow IHE PCD TF-2 Revision 9.0 (Final Text, 2019-12-12) and were checked
//! against the Revision 10.0 draft (2022-04-22); each is cited where it is used.

mod pcd04;
mod pcd05;
#[cfg(test)]
pub(crate) mod tests;

pub use pcd04::report_alert;
pub use pcd05::{read_alert_manager_message, report_status, AlertManagerMessage, StatusReport};

use chrono::{DateTime, FixedOffset};

/// MSH-21 of PCD-04: TF-2 B.1 assigns OID 1.3.6.1.4.1.19376.1.6.1.4.1 to "PCD-04 Report Alert".
/// (The annex E examples show 1.3.6.1.4.1.19376.1.6.4.4.1, which the OID table does not list;
/// the table is normative and receivers must key on EI-3 alone.)
pub const PCD04_PROFILE_OID: &str = "1.3.6.1.4.1.19376.1.6.1.4.1";
/// MSH-21 of PCD-05 (TF-2 B.1).
pub const PCD05_PROFILE_OID: &str = "1.3.6.1.4.1.19376.1.6.1.5.1";
/// Our local coding system for alarm conditions and sources that have no verified MDC code
/// (HL7 table 0396's `99zzz` form for local codes). The same codes as the FHIR API's
/// `urn:nephrocare:fhir:CodeSystem:alarm`.
pub const LOCAL_CODING_SYSTEM: &str = "99NCA";

/// A coded value (CWE components 1-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Identifier, e.g. `150456` or `systolic_bp_low`.
    pub code: String,
    /// Text, e.g. `MDC_PULS_OXIM_SAT_O2` or a readable name.
    pub text: String,
    /// Coding system: `MDC`, or [`LOCAL_CODING_SYSTEM`].
    pub system: String,
}

impl Code {
    /// An ISO/IEEE 11073 MDC code.
    pub fn mdc(code: u32, refid: &str) -> Self {
        Self { code: code.to_string(), text: refid.to_owned(), system: "MDC".to_owned() }
    }

    /// A code of ours ([`LOCAL_CODING_SYSTEM`]).
    pub fn local(code: &str, text: &str) -> Self {
        Self { code: code.to_owned(), text: text.to_owned(), system: LOCAL_CODING_SYSTEM.to_owned() }
    }
}

/// An HL7 hierarchic designator (HD): an application or facility.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Designator {
    /// HD-1 namespace id.
    pub namespace: String,
    /// HD-2 universal id (an OID, an EUI-64, …).
    pub universal_id: Option<String>,
    /// HD-3 universal id type (`ISO`, `EUI-64`, `DNS`, …).
    pub universal_id_type: Option<String>,
}

impl Designator {
    /// Just a namespace id.
    pub fn named(namespace: &str) -> Self {
        Self { namespace: namespace.to_owned(), ..Self::default() }
    }
}

/// The event phase facet's value (TF-2 B.8.5, table B.8.5-4, `MDC_ATTR_EVENT_PHASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `start`: an end is expected.
    Start,
    /// `start_only`: no continue or end will follow.
    StartOnly,
    /// `continue`: still going (e.g. a periodic or recovery resend).
    Continue,
    /// `end`
    End,
    /// `present`: active at this time.
    Present,
    /// `update`: a change other than a state transition.
    Update,
    /// `escalate`: priority raised at the source.
    Escalate,
    /// `deescalate`
    Deescalate,
    /// `inactivate` (e.g. silenced).
    Inactivate,
    /// `acknowledged` at the source.
    Acknowledged,
    /// `reset`: a latched alarm cleared.
    Reset,
    /// `stop`
    Stop,
    /// `tpoint`: a time point event without duration.
    TimePoint,
}

impl Phase {
    /// The value written in OBX-5.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::StartOnly => "start_only",
            Self::Continue => "continue",
            Self::End => "end",
            Self::Present => "present",
            Self::Update => "update",
            Self::Escalate => "escalate",
            Self::Deescalate => "deescalate",
            Self::Inactivate => "inactivate",
            Self::Acknowledged => "acknowledged",
            Self::Reset => "reset",
            Self::Stop => "stop",
            Self::TimePoint => "tpoint",
        }
    }
}

/// The alert state facet (TF-2 B.8.5, `MDC_ATTR_ALARM_STATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// The condition does not exist.
    Inactive,
    /// The condition exists.
    Active,
    /// The condition no longer exists but is held so people are told of it.
    Latched,
}

/// One value of the inactivation state facet (TF-2 B.8.5, `MDC_ATTR_ALARM_INACTIVATION_STATE`;
/// repeated: visual and aural states and "acknowledged" independently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactivation {
    /// `enabled`: visual and aural indications on.
    Enabled,
    /// `audio-paused`
    AudioPaused,
    /// `audio-off`
    AudioOff,
    /// `alarm-paused`
    AlarmPaused,
    /// `alarm-off`
    AlarmOff,
    /// `acknowledged`: acknowledged at the source, latched until the alert ends (TF-2 B.8.5
    /// prose; table B.8.5-3 writes `alert-acknowledged` "per CP #126": the prose is followed).
    Acknowledged,
}

/// Alarm condition priority (IEC 60601-1-8), the facet `MDC_ATTR_ALARM_PRIORITY` (TF-2 B.8.5-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// PH
    High,
    /// PM
    Medium,
    /// PL
    Low,
    /// PN: not indicated.
    NotIndicated,
}

/// Alert type, the facet `MDC_ATTR_ALERT_TYPE` (TF-2 B.8.5-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// SP: an alarm about the patient (a limit crossed).
    Physiological,
    /// ST: an alarm about the equipment.
    Technical,
    /// SA: an advisory, not an alarm.
    Advisory,
}

/// The device the alarm comes from (OBX-18 equipment instance identifier, an EI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDevice {
    /// EI-1: the device's id, e.g. its serial number or our device id.
    pub id: String,
    /// EI-2..4: who assigned the id (for an EUI-64: universal id type `EUI-64`).
    pub assigner: Designator,
    /// What kind of device, as the technical alarm's source (facet 2's OBX-5), e.g.
    /// `Code::local("dialysis_machine", "Dialysis machine")`.
    pub kind: Code,
}

/// Where the alarm is (PV1-3, a PL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertLocation {
    /// PL-1 point of care: the unit or ward.
    pub unit: String,
    /// PL-2 room.
    pub room: Option<String>,
    /// PL-3 bed: the dialysis bay.
    pub bay: Option<String>,
    /// PL-4 facility.
    pub facility: Option<String>,
}

/// The patient (PID), only when the hospital allows it in alarm traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPatient {
    /// PID-3 CX-1.
    pub id: String,
    /// PID-3 CX-4 assigning authority (namespace id).
    pub assigning_authority: String,
    /// PID-3 CX-5 identifier type code (`MR`, `PI`, …).
    pub id_type: String,
    /// PID-5 family name.
    pub family_name: Option<String>,
    /// PID-5 given name.
    pub given_name: Option<String>,
}

/// The measured value behind a physiological alarm (facet 2, TF-2 B.8.5 "source identification").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// OBX-3: what was measured.
    pub code: Code,
    /// OBX-5: the value as the device reported it (precision kept, TF-2 B.8 OBX-5).
    pub value: String,
    /// OBX-6 units (MDC or UCUM).
    pub units: Option<Code>,
    /// OBX-7: the alarm limits set on the device, low and high.
    pub limits: (Option<String>, Option<String>),
    /// OBX-8 abnormality: `L`, `LL`, `H`, `HH` or `A` (TF-2 table B.8.5-5).
    pub abnormality: Option<String>,
}

/// Everything one PCD-04 says, neutral of where it came from. At most one alert per message
/// (TF-2 §3.4.4.1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertReport {
    /// MSH-10: unique per message (a resend of the same report gets a new one, TF-2 B.8.5).
    pub control_id: String,
    /// MSH-3.
    pub sending_app: Designator,
    /// MSH-4.
    pub sending_facility: Designator,
    /// MSH-5.
    pub receiving_app: Designator,
    /// MSH-6.
    pub receiving_facility: Designator,
    /// MSH-7 and OBR-7: when this report was made.
    pub sent_at: DateTime<FixedOffset>,
    /// The alert's identity, the same in every report about it (OBR-3, OBR-29).
    pub alert_id: String,
    /// OBX-14 of the event identification: when the alert began (or this phase happened).
    pub occurred_at: DateTime<FixedOffset>,
    /// Event phase facet.
    pub phase: Phase,
    /// Alert state facet.
    pub state: AlertState,
    /// Inactivation state facet (empty: `enabled`).
    pub inactivation: Vec<Inactivation>,
    /// Alarm priority facet.
    pub priority: Priority,
    /// Alert type facet.
    pub kind: AlertKind,
    /// The alarm condition: OBX-3 of the event identification for a physiological alarm,
    /// its OBX-5 (under `MDC_EVT_ALARM`) otherwise.
    pub event: Code,
    /// The device.
    pub source: SourceDevice,
    /// PV1-3.
    pub location: Option<AlertLocation>,
    /// PID; `None` when the hospital forbids patient data here.
    pub patient: Option<AlertPatient>,
    /// The value that crossed a limit.
    pub measurement: Option<Measurement>,
    /// Display text for the Alert Manager to append (the annotation OBX, TF-2 B.8.5).
    pub annotation: Option<String>,
    /// Our escalation tier and a note, sent as an NTE (ACM has no field for it).
    pub escalation: Option<(u32, String)>,
    /// MSH-16: whether we want PCD-05 status messages back (TF-2 B.1: "other than NE").
    pub wants_status: bool,
}

/// PCD-05's status, PRT-3.2 (TF-2 B.10, table B.10.2-2; Rev 10 adds COMPLETED and ACTIONURI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Received by the Alert Communicator.
    Received,
    /// Could not be delivered to the endpoint.
    Undeliverable,
    /// Delivered to the endpoint device.
    Delivered,
    /// Read at the endpoint.
    Read,
    /// The recipient accepted responsibility.
    Accepted,
    /// Accepted, as a true positive.
    AcceptedPositive,
    /// Accepted, true but not clinically relevant.
    AcceptedNotRelevant,
    /// Accepted, as a false positive.
    AcceptedFalse,
    /// The recipient declined.
    Rejected,
    /// Cancelled by the endpoint (the alert at the source is not cancelled).
    Cancelled,
    /// Cancelled by other than the endpoint.
    CancelledOther,
    /// A call back started.
    CallbackStart,
    /// A call back ended.
    CallbackEnd,
    /// The clinical workflow step is done (Rev 10).
    Completed,
    /// A link in the notification was followed (Rev 10).
    ActionUri,
}

impl DeliveryStatus {
    const ALL: [(Self, &'static str); 15] = [
        (Self::Received, "RECEIVED"),
        (Self::Undeliverable, "UNDELIVERABLE"),
        (Self::Delivered, "DELIVERED"),
        (Self::Read, "READ"),
        (Self::Accepted, "ACCEPTED"),
        (Self::AcceptedPositive, "ACCEPTEDPOSITIVE"),
        (Self::AcceptedNotRelevant, "ACCEPTEDNOTRELEVANT"),
        (Self::AcceptedFalse, "ACCEPTEDFALSE"),
        (Self::Rejected, "REJECTED"),
        (Self::Cancelled, "CANCELLED"),
        (Self::CancelledOther, "CANCELLEDOTHER"),
        (Self::CallbackStart, "CALLBACKSTART"),
        (Self::CallbackEnd, "CALLBACKEND"),
        (Self::Completed, "COMPLETED"),
        (Self::ActionUri, "ACTIONURI"),
    ];

    /// The PRT-3.2 spelling (Rev 10's upper case; Rev 9 writes `Delivered`: read either way).
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(s, _)| *s == self).map_or("", |(_, t)| t)
    }

    /// From PRT-3.2, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, t)| t.eq_ignore_ascii_case(text.trim())).map(|(s, _)| *s)
    }

    /// Whether the recipient took responsibility (any of the accepted statuses): what may
    /// acknowledge the alarm as that person.
    pub fn is_accepted(self) -> bool {
        matches!(self, Self::Accepted | Self::AcceptedPositive | Self::AcceptedNotRelevant | Self::AcceptedFalse)
    }
}

/// Who a status is about (PRT-5, PRT-10, PRT-15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    /// PRT-5 XCN-1: the person's id at the Alert Manager (mapped to a user by the admin).
    pub id: Option<String>,
    /// PRT-5 XCN-3 and XCN-2, "given family".
    pub name: Option<String>,
    /// PRT-10: the endpoint device.
    pub device: Option<String>,
    /// PRT-15: the endpoint's telecommunication address (XTN-12, unformatted, or XTN-4/7).
    pub telecom: Option<String>,
}

/// One PCD-05: what became of an alert at one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisseminationStatus {
    /// MSH-10 of the PCD-05 (what our acknowledgement names).
    pub control_id: String,
    /// MSA-2 (Rev 10): the control id of the PCD-04 that started the alert.
    pub report_control_id: Option<String>,
    /// The alert: OBR-29's filler-assigned identifier, else OBR-3.
    pub alert_id: String,
    /// PRT-1: the dissemination (the same for all updates about one notification).
    pub dissemination_id: Option<String>,
    /// Who.
    pub recipient: Recipient,
    /// What happened.
    pub status: DeliveryStatus,
    /// When (PRT-11, else MSH-7).
    pub at: Option<DateTime<FixedOffset>>,
}
