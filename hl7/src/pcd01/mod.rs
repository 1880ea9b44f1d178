//! IHE PCD-01 Communicate PCD Data (`ORU^R01^ORU_R01`, TF-2 §3.1), read as the Device
//! Observation Consumer: what a device gateway reports for the machines behind it.
//!
//! The structure read (TF-2 §3.1.4.1.2, table 3.1.4.1.2-1): MSH, then per patient a PID
//! (optional: a machine with no patient associated sends none; PD1, NK1, PV1 and the rest are
//! skipped), then one or more OBR, each followed by its OBX. Segments we do not use (SFT,
//! NTE, PV1, PRT, TQ1, Z-segments …) are skipped wherever they are; an OBX before any OBR is a
//! segment sequence error.
//!
//! Each OBX (TF-2 B.8): OBX-2 the value type, OBX-3 the observation identifier (CWE), OBX-4
//! the sub-id encoding the containment tree `MDS.VMD.CHAN.METRIC`, OBX-5 the value, OBX-6
//! the units, OBX-11 the result status, OBX-14 the observation time, OBX-18 the equipment
//! instance identifier (EI). Gateways describe the device (MDS), its virtual devices (VMD)
//! and channels with OBX of no value, and commonly put OBX-18 on the MDS row only: a metric
//! without OBX-18 is the equipment of its MDS (OBX-4's first number) in the same OBR. A value
//! without OBX-14 takes OBR-7, then MSH-7.

use chrono::{DateTime, FixedOffset};

use crate::acm::Code;
use crate::message::{parse_dtm, ErrorCode, Field, Location, Message, ParseError, Segment};

/// One PCD-01 message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcd01 {
    /// MSH-3.1 and MSH-4.1: who sent it.
    pub sending_application: String,
    pub sending_facility: String,
    /// MSH-8, the security field: what a gateway authenticates with.
    pub security: Option<String>,
    /// MSH-10.
    pub control_id: String,
    /// The patients (a group without PID: observations of machines with no patient).
    pub groups: Vec<PatientGroup>,
}

/// A patient (PID) and the observations reported for them.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientGroup {
    /// PID-3's medical record number (the repetition with CX-5 `MR`, else the first), and
    /// which PID it was (1-based occurrence, for an ERR).
    pub patient: Option<(String, u32)>,
    pub observations: Vec<Observation>,
}

/// An observation with a value (descriptive OBX of no value are not listed).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Which OBX of the message it is (1-based occurrence, ERR-2's sequence).
    pub obx: u32,
    /// OBX-3.
    pub code: Code,
    pub value: Value,
    /// OBX-6 (components 1-3), if any.
    pub units: Option<Code>,
    /// OBX-11 (`F`, `R`, `C`, `P`, `X`, …).
    pub status: String,
    /// OBX-14, else OBR-7, else MSH-7.
    pub at: DateTime<FixedOffset>,
    /// OBX-18.1, or that of its MDS.
    pub equipment: String,
}

/// An OBX-5 by OBX-2.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `NM`.
    Numeric(f64),
    /// `CWE`, `CE`, `CNE`: the code.
    Coded(Code),
    /// `ST`, `TX`, or a type we do not read, with the type.
    Other { value_type: String, text: String },
}

/// Reads a PCD-01. Errors name the place and the table 0357 code: 200/201 for another message
/// type, 202 for a processing id other than `P`/`T`, 203 for a version other than 2.x, 100 for
/// an OBX before any OBR, 101/102 for a missing or malformed field.
pub fn read_pcd01(msg: &Message) -> Result<Pcd01, ParseError> {
    read(msg).map_err(|e| e.with_control_id(msg.control_id()))
}

fn read(msg: &Message) -> Result<Pcd01, ParseError> {
    let control_id = msg.require("MSH", 0, 10, 1)?.to_owned();
    match msg.message_type() {
        (Some("ORU"), Some("R01"), None | Some("ORU_R01")) => {}
        (Some("ORU"), _, _) => {
            return Err(ParseError::new(
                ErrorCode::UnsupportedEventCode,
                Location::component("MSH", 1, 9, 2),
                "only ORU^R01 (IHE PCD-01) is taken here",
            ))
        }
        _ => {
            return Err(ParseError::new(
                ErrorCode::UnsupportedMessageType,
                Location::field("MSH", 1, 9),
                "only ORU^R01^ORU_R01 (IHE PCD-01) is taken here",
            ))
        }
    }
    if !matches!(msg.get("MSH", 0, 11, 1), Some("P" | "T")) {
        return Err(ParseError::new(
            ErrorCode::UnsupportedProcessingId,
            Location::field("MSH", 1, 11),
            "MSH-11 must be P (production) or T (training)",
        ));
    }
    if !msg.get("MSH", 0, 12, 1).is_some_and(|v| v.starts_with("2.")) {
        return Err(ParseError::new(
            ErrorCode::UnsupportedVersionId,
            Location::field("MSH", 1, 12),
            "MSH-12 must be 2.x",
        ));
    }
    let sending_application = msg.require("MSH", 0, 3, 1)?.to_owned();
    let sending_facility = msg.get("MSH", 0, 4, 1).unwrap_or_default().to_owned();
    let security = msg.get("MSH", 0, 8, 1).map(str::to_owned);
    let sent = dtm(msg.segment("MSH", 0), 7, Location::field("MSH", 1, 7))?
        .ok_or_else(|| ParseError::missing(Location::field("MSH", 1, 7), "MSH-7"))?;

    let mut groups: Vec<PatientGroup> = Vec::new();
    let (mut pids, mut obrs, mut obxs) = (0u32, 0u32, 0u32);
    let mut obr: Option<Request> = None;
    for seg in msg.segments() {
        match seg.name() {
            "PID" => {
                pids += 1;
                groups.push(PatientGroup {
                    patient: Some((medical_record_number(seg, pids)?, pids)),
                    observations: vec![],
                });
                obr = None;
            }
            "OBR" => {
                obrs += 1;
                obr = Some(Request {
                    time: dtm(Some(seg), 7, Location::field("OBR", obrs as usize, 7))?,
                    mds: Vec::new(),
                });
            }
            "OBX" => {
                obxs += 1;
                let Some(Request { time: obr_time, mds }) = obr.as_mut() else {
                    return Err(ParseError::new(
                        ErrorCode::SegmentSequence,
                        Location::segment("OBX", obxs as usize),
                        "an OBX must follow an OBR",
                    ));
                };
                let at_ = |f: usize| Location::field("OBX", obxs as usize, f);
                let mds_number = seg.get(4, 1).and_then(|s| s.split('.').next()).unwrap_or("").to_owned();
                let own_equipment = seg.get(18, 1).map(str::to_owned);
                if let Some(e) = &own_equipment {
                    if !mds.iter().any(|(n, _)| *n == mds_number) {
                        mds.push((mds_number.clone(), e.clone()));
                    }
                }
                let value_field = seg.field(5).filter(|f| !f.is_empty());
                let Some(value_field) = value_field else { continue };
                let code = coded(seg.field(3)).ok_or_else(|| ParseError::missing(at_(3), "OBX-3.1"))?;
                let value_type = seg.get(2, 1).unwrap_or_default();
                let value = match value_type {
                    "NM" => {
                        let text = value_field.value().unwrap_or_default().trim();
                        let n = text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                            ParseError::new(ErrorCode::DataType, at_(5), "OBX-5 of an NM observation must be a number")
                        })?;
                        Value::Numeric(n)
                    }
                    "CWE" | "CE" | "CNE" => {
                        Value::Coded(coded(Some(value_field)).ok_or_else(|| ParseError::missing(at_(5), "OBX-5.1"))?)
                    }
                    "" => return Err(ParseError::missing(at_(2), "OBX-2 (the value type of OBX-5)")),
                    other => Value::Other {
                        value_type: other.to_owned(),
                        text: value_field.value().unwrap_or_default().to_owned(),
                    },
                };
                let at = match dtm(Some(seg), 14, at_(14))? {
                    Some(t) => t,
                    None => obr_time.unwrap_or(sent),
                };
                let equipment = own_equipment
                    .or_else(|| mds.iter().find(|(n, _)| *n == mds_number).map(|(_, e)| e.clone()))
                    .ok_or_else(|| {
                        ParseError::missing(at_(18), "OBX-18.1 (the equipment instance, here or on its MDS's OBX)")
                    })?;
                let observation = Observation {
                    obx: obxs,
                    code,
                    value,
                    units: coded(seg.field(6)),
                    status: seg.get(11, 1).unwrap_or_default().to_owned(),
                    at,
                    equipment,
                };
                match groups.last_mut() {
                    Some(g) => g.observations.push(observation),
                    None => groups.push(PatientGroup { patient: None, observations: vec![observation] }),
                }
            }
            _ => {}
        }
    }
    if obxs == 0 {
        return Err(ParseError::new(
            ErrorCode::SegmentSequence,
            Location::segment("OBX", 1),
            "no OBX: nothing observed",
        ));
    }
    Ok(Pcd01 { sending_application, sending_facility, security, control_id, groups })
}

/// The current OBR: its time (OBR-7), and the equipment of each MDS described under it
/// (MDS number, OBX-18.1).
struct Request {
    time: Option<DateTime<FixedOffset>>,
    mds: Vec<(String, String)>,
}

/// CWE components 1-3, when component 1 is there.
fn coded(field: Option<&Field>) -> Option<Code> {
    let f = field?;
    let code = f.component(1).filter(|c| !c.trim().is_empty())?;
    Some(Code {
        code: code.trim().to_owned(),
        text: f.component(2).unwrap_or_default().to_owned(),
        system: f.component(3).unwrap_or_default().to_owned(),
    })
}

/// A DTM field, if present (a malformed one is a 102).
fn dtm(seg: Option<&Segment>, field: usize, at: Location) -> Result<Option<DateTime<FixedOffset>>, ParseError> {
    match seg.and_then(|s| s.get(field, 1)) {
        None => Ok(None),
        Some(text) => parse_dtm(text)
            .map(Some)
            .ok_or_else(|| ParseError::new(ErrorCode::DataType, at, "not an HL7 DTM (YYYYMMDDHHMMSS[.SSSS][+ZZZZ])")),
    }
}

/// PID-3: the repetition whose CX-5 (identifier type) is `MR`, else the first with an id.
fn medical_record_number(pid: &Segment, sequence: u32) -> Result<String, ParseError> {
    let reps = pid.field(3).map(Field::repetitions).unwrap_or_default();
    let id =
        |r: &crate::message::Repetition| r.component(1).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    reps.iter()
        .find(|r| r.component(5) == Some("MR"))
        .and_then(id)
        .or_else(|| reps.iter().find_map(id))
        .ok_or_else(|| ParseError::missing(Location::component("PID", sequence as usize, 3, 1), "PID-3.1"))
}

#[cfg(test)]
mod tests;
