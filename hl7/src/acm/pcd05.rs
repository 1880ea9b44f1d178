//! PCD-05 Report Alert Status (TF-2 §3.5.4.1.4) and telling it from a bare acknowledgement.
//!
//! Forms accepted: MSH-9 `ORA^R41^ORA_R41` (TF-2 §3.5.4.1.3 and 3.5.4.1.4, HL7 v2.8) and
//! `ORU^R41^ORU_R41` (TF-2 B.1 MSH-9 lists that): the framework names both. A status carries
//! an OBR (the alert) and a PRT (TF-2 B.10: PRT-3 the status, PRT-4 the participation, PRT-5
//! the person, PRT-10 the endpoint device, PRT-11 when); an `ORA` or `ACK` with MSH and MSA
//! only is an acknowledgement. Rev 10's PCD-05 has an MSA whose MSA-2 is the starting PCD-04's
//! control id; Rev 9's has none: both are read.

use chrono::{DateTime, FixedOffset};

use super::{Code, DeliveryStatus, Designator, DisseminationStatus, Recipient, PCD05_PROFILE_OID};
use crate::ack::Acknowledgement;
use crate::message::{format_dtm, parse_dtm, Component, ErrorCode, Field, Location, Message, ParseError, Segment};

/// What the Alert Manager sent us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertManagerMessage {
    /// A PCD-05 status: acknowledge it (MSA-2 = its MSH-10) and record it.
    Status(DisseminationStatus),
    /// An acknowledgement (of something we sent), no status.
    Ack(Acknowledgement),
}

/// Reads a message from the Alert Manager: a PCD-05 status (R41 with OBR or PRT), or an
/// acknowledgement (ACK, or ORA with only MSH/MSA/ERR). Anything else is an error with code
/// 200 (unsupported message type), 100 (no PRT in a status) or 101/103 at the field at fault.
pub fn read_alert_manager_message(msg: &Message) -> Result<AlertManagerMessage, ParseError> {
    let fail = |e: ParseError| e.with_control_id(msg.control_id());
    let (code, trigger, _) = msg.message_type();
    let is_status = matches!((code, trigger), (Some("ORA" | "ORU"), Some("R41"))) && (msg.has("OBR") || msg.has("PRT"));
    if is_status {
        return read_status(msg).map(AlertManagerMessage::Status).map_err(fail);
    }
    if matches!(code, Some("ACK" | "ORA")) {
        return Acknowledgement::from_message(msg).map(AlertManagerMessage::Ack);
    }
    Err(fail(ParseError::new(
        ErrorCode::UnsupportedMessageType,
        Location::field("MSH", 1, 9),
        "expected a PCD-05 (ORA^R41 or ORU^R41) or an acknowledgement",
    )))
}

fn read_status(msg: &Message) -> Result<DisseminationStatus, ParseError> {
    let control_id = msg.require("MSH", 0, 10, 1)?.to_owned();
    let Some(obr) = msg.segment("OBR", 0) else {
        return Err(ParseError::new(ErrorCode::SegmentSequence, Location::segment("OBR", 1), "no OBR"));
    };
    // OBR-29 EIP-2 (filler assigned) EI-1, else EIP-1, else OBR-3: the alert's identity.
    let parent = obr.field(29).and_then(|f| f.0.first());
    let alert_id = parent
        .and_then(|r| r.0.get(1).and_then(|c| c.sub(1)).or_else(|| r.0.first().and_then(|c| c.sub(1))))
        .filter(|v| !v.is_empty())
        .or_else(|| obr.get(3, 1))
        .ok_or_else(|| ParseError::missing(Location::field("OBR", 1, 29), "OBR-29 (or OBR-3), the alert id"))?
        .to_owned();
    let Some(prt) = msg.segment("PRT", 0) else {
        return Err(ParseError::new(ErrorCode::SegmentSequence, Location::segment("PRT", 1), "no PRT: no status"));
    };
    let status_text = msg.require("PRT", 0, 3, 2)?;
    let status = DeliveryStatus::parse(status_text).ok_or_else(|| {
        ParseError::new(
            ErrorCode::TableValueNotFound,
            Location::component("PRT", 1, 3, 2),
            "PRT-3.2 is not a dissemination status of TF-2 table B.10.2-2",
        )
    })?;
    let name = [prt.get(5, 3), prt.get(5, 2)].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let telecom = prt.get(15, 12).or_else(|| prt.get(15, 7)).or_else(|| prt.get(15, 4));
    let recipient = Recipient {
        id: prt.get(5, 1).map(str::to_owned),
        name: (!name.is_empty()).then_some(name),
        device: prt.get(10, 1).map(str::to_owned),
        telecom: telecom.map(str::to_owned),
    };
    let at = match prt.get(11, 1).or_else(|| msg.get("MSH", 0, 7, 1)) {
        Some(t) => Some(parse_dtm(t).ok_or_else(|| {
            ParseError::new(ErrorCode::DataType, Location::field("PRT", 1, 11), "not an HL7 DTM timestamp")
        })?),
        None => None,
    };
    Ok(DisseminationStatus {
        control_id,
        report_control_id: msg.get("MSA", 0, 2, 1).map(str::to_owned),
        alert_id,
        dissemination_id: prt.get(1, 1).map(str::to_owned),
        recipient,
        status,
        at,
    })
}

/// A PCD-05 to build (tests playing the Alert Manager).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// MSH-10.
    pub control_id: String,
    /// MSH-3 (the Alert Manager).
    pub sending_app: Designator,
    /// MSH-5 (the Alert Reporter).
    pub receiving_app: Designator,
    /// MSH-7 and PRT-11.
    pub at: DateTime<FixedOffset>,
    /// MSA-2: the control id of the PCD-04 that started the alert.
    pub report_control_id: String,
    /// OBR-3 and OBR-29.
    pub alert_id: String,
    /// PRT-1.
    pub dissemination_id: String,
    /// PRT-5 id, family and given name; PRT-10 device.
    pub recipient: Recipient,
    /// PRT-3.
    pub status: DeliveryStatus,
    /// MSH-9 `ORU^R41^ORU_R41` instead of `ORA^R41^ORA_R41`.
    pub oru: bool,
}

/// A PCD-05 as TF-2 Rev 10 §3.5.4.1.4 and B.10 describe it.
pub fn report_status(s: &StatusReport) -> Message {
    let hd = |d: &Designator| {
        Field::components([
            d.namespace.clone(),
            d.universal_id.clone().unwrap_or_default(),
            d.universal_id_type.clone().unwrap_or_default(),
        ])
    };
    let kind = if s.oru { ["ORU", "R41", "ORU_R41"] } else { ["ORA", "R41", "ORA_R41"] };
    let msh = Segment::new("MSH")
        .with(3, hd(&s.sending_app))
        .with(5, hd(&s.receiving_app))
        .with_text(7, format_dtm(&s.at))
        .with(9, Field::components(kind))
        .with_text(10, s.control_id.clone())
        .with_text(11, "P")
        .with_text(12, "2.6")
        .with_text(15, "AL")
        .with_text(16, "NE")
        .with(21, Field::components(["IHE_PCD_ACM_001", "IHE PCD", PCD05_PROFILE_OID, "ISO"]));
    let alarm = Code::mdc(196_616, "MDC_EVT_ALARM");
    let obr = Segment::new("OBR")
        .with_text(1, "1")
        .with_text(3, s.alert_id.clone())
        .with(4, Field::components([alarm.code, alarm.text, alarm.system]))
        .with(29, Field::composite(vec![Component::default(), Component::text(s.alert_id.clone())]));
    let (given, family) = match s.recipient.name.as_deref().and_then(|n| n.split_once(' ')) {
        Some((g, f)) => (g.to_owned(), f.to_owned()),
        None => (String::new(), s.recipient.name.clone().unwrap_or_default()),
    };
    let prt = Segment::new("PRT")
        .with_text(1, s.dissemination_id.clone())
        .with_text(2, "AD")
        .with(3, Field::components(["RESPONSE", s.status.as_str(), "IHE_PCD_ACM"]))
        .with(4, Field::components(["AAP", "Alert Acknowledging Provider", "HL70912"]))
        .with(5, Field::components([s.recipient.id.clone().unwrap_or_default(), family, given]))
        .with_text(10, s.recipient.device.clone().unwrap_or_default())
        .with_text(11, format_dtm(&s.at));
    Message::new()
        .with(msh)
        .with(Segment::new("MSA").with_text(1, "AA").with_text(2, s.report_control_id.clone()))
        .with(obr)
        .with(prt)
}
