//! Acknowledgements, original mode (HL7 v2.6 chapter 2, 2.9.2; IHE PCD TF-2 B.2 MSA, B.3 ERR,
//! appendix G.1): building the `ACK^{trigger}^ACK` for a message we received, and reading the
//! acknowledgement a peer sent us, a plain `ACK` or the `ORA^R41^ORA_R41` that HL7 v2.8 defines
//! for alerts (TF-2 §3.4.4.1.5 says "HL7 ACK"; both are accepted).

use chrono::{DateTime, FixedOffset};

use crate::message::{format_dtm, ErrorCode, Field, Location, Message, ParseError, Segment};

/// MSA-1 (HL7 table 0008). Enhanced-mode commit codes map to the same three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// AA (or CA): accepted.
    Accepted,
    /// AE (or CE): an error in the message; sending it again unchanged will not help.
    Error,
    /// AR (or CR): rejected, e.g. unsupported type or the receiver cannot process it now.
    Rejected,
}

impl AckCode {
    /// The original-mode code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "AA",
            Self::Error => "AE",
            Self::Rejected => "AR",
        }
    }
}

/// ERR-4 (HL7 table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// E
    Error,
    /// W
    Warning,
    /// I
    Information,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "E",
            Self::Warning => "W",
            Self::Information => "I",
        }
    }
}

/// One ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    /// ERR-3.1, HL7 table 0357 ([`ErrorCode::from_code`] for the known ones).
    pub code: u16,
    /// ERR-2 (ERL), where.
    pub location: Option<Location>,
    /// ERR-4.
    pub severity: Severity,
    /// ERR-7 diagnostic information (or ERR-8 user message when read), free text.
    pub diagnostic: Option<String>,
}

impl ErrorEntry {
    /// The ERR for a parse error: its code, place and detail, severity E.
    pub fn from_parse_error(err: &ParseError) -> Self {
        let location = (!err.location.segment.is_empty()).then(|| err.location.clone());
        Self { code: err.code.code(), location, severity: Severity::Error, diagnostic: Some(err.detail.to_string()) }
    }

    fn segment(&self) -> Segment {
        let mut seg = Segment::new("ERR");
        if let Some(l) = &self.location {
            let n = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
            seg.set(
                2,
                Field::components([
                    l.segment.clone(),
                    l.sequence.to_string(),
                    n(l.field),
                    n(l.repetition),
                    n(l.component),
                    n(l.subcomponent),
                ]),
            );
        }
        let text = ErrorCode::from_code(self.code).map(ErrorCode::text).unwrap_or_default();
        seg.set(3, Field::components([self.code.to_string(), text.to_owned(), "HL70357".to_owned()]));
        seg.set(4, Field::text(self.severity.as_str()));
        if let Some(d) = &self.diagnostic {
            seg.set(7, Field::text(d.clone()));
        }
        seg
    }
}

/// An acknowledgement, read from a peer's `ACK` or `ORA^R41`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// MSA-1.
    pub code: AckCode,
    /// Whether MSA-1 was an enhanced-mode commit code (CA/CE/CR).
    pub enhanced: bool,
    /// MSA-2: the control id of the message acknowledged.
    pub control_id: String,
    /// MSA-3, text (deprecated in v2.6 but still sent).
    pub text: Option<String>,
    /// The ERR segments.
    pub errors: Vec<ErrorEntry>,
}

impl Acknowledgement {
    /// Reads an acknowledgement: MSH-9 `ACK` (any trigger) or `ORA`, an MSA with a known
    /// MSA-1 and a control id in MSA-2, and its ERR segments (ERR-2/3/4, or the v2.4 ERR-1
    /// when ERR-3 is empty).
    pub fn from_message(msg: &Message) -> Result<Self, ParseError> {
        let fail = |e: ParseError| e.with_control_id(msg.control_id());
        match msg.message_type().0 {
            Some("ACK" | "ORA") => {}
            _ => {
                return Err(fail(ParseError::new(
                    ErrorCode::UnsupportedMessageType,
                    Location::field("MSH", 1, 9),
                    "not an acknowledgement (ACK or ORA)",
                )))
            }
        }
        if !msg.has("MSA") {
            return Err(fail(ParseError::new(ErrorCode::SegmentSequence, Location::segment("MSA", 1), "no MSA")));
        }
        let (code, enhanced) = match msg.require("MSA", 0, 1, 1)? {
            "AA" => (AckCode::Accepted, false),
            "AE" => (AckCode::Error, false),
            "AR" => (AckCode::Rejected, false),
            "CA" => (AckCode::Accepted, true),
            "CE" => (AckCode::Error, true),
            "CR" => (AckCode::Rejected, true),
            _ => {
                return Err(fail(ParseError::new(
                    ErrorCode::TableValueNotFound,
                    Location::field("MSA", 1, 1),
                    "MSA-1 is not AA, AE, AR, CA, CE or CR",
                )))
            }
        };
        let control_id = msg.require("MSA", 0, 2, 1)?.to_owned();
        let text = msg.get("MSA", 0, 3, 1).map(str::to_owned);
        let errors = msg.segments_named("ERR").map(read_err).collect();
        Ok(Self { code, enhanced, control_id, text, errors })
    }

    /// MSA-1 was AA or CA.
    pub fn is_accepted(&self) -> bool {
        self.code == AckCode::Accepted
    }
}

fn read_err(seg: &Segment) -> ErrorEntry {
    let num = |f: usize, c: usize| seg.get(f, c).and_then(|v| v.parse::<u32>().ok());
    let (code, location) = match seg.get(3, 1) {
        Some(code) => {
            let location = seg.get(2, 1).map(|name| Location {
                segment: name.to_owned(),
                sequence: num(2, 2).unwrap_or(1),
                field: num(2, 3),
                repetition: num(2, 4),
                component: num(2, 5),
                subcomponent: num(2, 6),
            });
            (code.parse().unwrap_or(ErrorCode::ApplicationInternal.code()), location)
        }
        // v2.4 ERR-1 (ELD): segment ^ sequence ^ field ^ code&text&system.
        None => {
            let code = seg.field(1).and_then(|f| f.0.first()).and_then(|r| r.0.get(3)).and_then(|c| c.sub(1));
            let location = seg.get(1, 1).map(|name| Location {
                segment: name.to_owned(),
                sequence: num(1, 2).unwrap_or(1),
                field: num(1, 3),
                ..Location::default()
            });
            (code.and_then(|c| c.parse().ok()).unwrap_or(ErrorCode::ApplicationInternal.code()), location)
        }
    };
    let severity = match seg.get(4, 1) {
        Some("W") => Severity::Warning,
        Some("I") => Severity::Information,
        _ => Severity::Error,
    };
    let diagnostic = seg.get(7, 1).or_else(|| seg.get(8, 1)).map(str::to_owned);
    ErrorEntry { code, location, severity, diagnostic }
}

/// The acknowledgement of `received`: `ACK^{its trigger}^ACK`, sender and receiver swapped,
/// MSH-10 `control_id` (ours, unique), MSA-1 `code`, MSA-2 its MSH-10, one ERR per entry.
pub fn acknowledge(
    received: &Message,
    code: AckCode,
    errors: &[ErrorEntry],
    control_id: &str,
    at: &DateTime<FixedOffset>,
) -> Message {
    let field = |n: usize| received.get_field("MSH", 0, n).cloned().unwrap_or_default();
    let trigger = received.get("MSH", 0, 9, 2).unwrap_or_default();
    let msh = Segment::new("MSH")
        .with(3, field(5))
        .with(4, field(6))
        .with(5, field(3))
        .with(6, field(4))
        .with_text(7, format_dtm(at))
        .with(9, Field::components(["ACK", trigger, "ACK"]))
        .with_text(10, control_id)
        .with_text(11, received.get("MSH", 0, 11, 1).unwrap_or("P"))
        .with_text(12, received.get("MSH", 0, 12, 1).unwrap_or("2.6"));
    let mut msg = Message::new().with(msh);
    msg.push(Segment::new("MSA").with_text(1, code.as_str()).with_text(2, received.control_id().unwrap_or_default()));
    for e in errors {
        msg.push(e.segment());
    }
    msg
}

/// The negative acknowledgement of a message we could not accept: AR for an unsupported
/// message type, event, processing id or version (table 0357's 2xx "rejection" codes), AE
/// otherwise, with one ERR from the error. `received` is the message when it could be read
/// (its header is then answered); otherwise MSA-2 is the control id the error carries, if any.
pub fn acknowledge_error(
    err: &ParseError,
    received: Option<&Message>,
    control_id: &str,
    at: &DateTime<FixedOffset>,
) -> Message {
    let code = if err.code.code() >= 200 && err.code != ErrorCode::ApplicationInternal {
        AckCode::Rejected
    } else {
        AckCode::Error
    };
    let entry = ErrorEntry::from_parse_error(err);
    match received {
        Some(msg) => acknowledge(msg, code, &[entry], control_id, at),
        None => {
            let msh = Segment::new("MSH")
                .with_text(7, format_dtm(at))
                .with(9, Field::components(["ACK", "", "ACK"]))
                .with_text(10, control_id)
                .with_text(11, "P")
                .with_text(12, "2.6");
            Message::new()
                .with(msh)
                .with(
                    Segment::new("MSA")
                        .with_text(1, code.as_str())
                        .with_text(2, err.control_id.as_deref().unwrap_or_default()),
                )
                .with(entry.segment())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_dtm, Limits};

    fn parse(text: &str) -> Message {
        Message::parse(text, &Limits::default()).unwrap()
    }

    const PCD04: &str =
        "MSH|^~\\&|NEPHROCARE^1.2.3^ISO|UNIT||AM|20240101120000+0000||ORU^R40^ORU_R40|m-7|P|2.6|||AL|NE\r";

    #[test]
    fn an_ack_answers_the_message_it_acknowledges() {
        let at = parse_dtm("20240101120001+0000").unwrap();
        let ack = acknowledge(&parse(PCD04), AckCode::Accepted, &[], "a-1", &at);
        assert_eq!(
            ack.encode(),
            "MSH|^~\\&||AM|NEPHROCARE^1.2.3^ISO|UNIT|20240101120001.000+0000||ACK^R40^ACK|a-1|P|2.6\rMSA|AA|m-7\r"
        );
        let read = Acknowledgement::from_message(&ack).unwrap();
        assert_eq!((read.code, read.control_id.as_str(), read.errors.len()), (AckCode::Accepted, "m-7", 0));
    }

    #[test]
    fn errors_carry_location_code_and_severity_both_ways() {
        let at = parse_dtm("20240101").unwrap();
        let received = parse(PCD04);
        let err = received.require("OBX", 2, 3, 1).unwrap_err();
        let nak = acknowledge_error(&err, Some(&received), "a-2", &at);
        let text = nak.encode();
        assert!(
            text.contains("MSA|AE|m-7\rERR||OBX^3^3^1^1|101^Required field missing^HL70357|E|||OBX-3.1 is required\r"),
            "{text}"
        );
        let read = Acknowledgement::from_message(&parse(&text)).unwrap();
        assert_eq!(read.code, AckCode::Error);
        assert_eq!(read.errors, vec![ErrorEntry::from_parse_error(&err)]);

        let unreadable = Message::parse("MSH|^~\\&|A||||||ORU^R01|c-9|P\rbad\r", &Limits::default()).unwrap_err();
        let nak = acknowledge_error(&unreadable, None, "a-3", &at);
        assert_eq!(nak.get("MSA", 0, 2, 1), Some("c-9"));
        assert_eq!(nak.get("ERR", 0, 3, 1), Some("100"));
        let unsupported = ParseError::new(ErrorCode::UnsupportedMessageType, Location::field("MSH", 1, 9), "x");
        assert_eq!(acknowledge_error(&unsupported, Some(&received), "a-4", &at).get("MSA", 0, 1, 1), Some("AR"));
    }

    #[test]
    fn reads_ack_ora_enhanced_codes_and_v24_errors() {
        let ora = parse("MSH|^~\\&|AM||AR||20240101||ORA^R41^ORA_R41|x|P|2.6\rMSA|CA|m-1\r");
        let a = Acknowledgement::from_message(&ora).unwrap();
        assert!(a.is_accepted() && a.enhanced);
        let ce = parse("MSH|^~\\&|AM||AR||20240101||ACK|x|P|2.6\rMSA|CR|m-1|busy\rERR|PID^1^3^207&Application internal error&HL70357\r");
        let a = Acknowledgement::from_message(&ce).unwrap();
        assert_eq!((a.code, a.text.as_deref()), (AckCode::Rejected, Some("busy")));
        assert_eq!(a.errors[0].code, 207);
        assert_eq!(a.errors[0].location, Some(Location::field("PID", 1, 3)));
        let w = parse("MSH|^~\\&|AM||AR||20240101||ACK|x|P|2.6\rMSA|AE|m-1\rERR||OBR^1^29|103|W\r");
        let a = Acknowledgement::from_message(&w).unwrap();
        assert_eq!((a.code, a.errors[0].severity, a.errors[0].code), (AckCode::Error, Severity::Warning, 103));
    }

    #[test]
    fn what_is_not_an_acknowledgement_is_an_error() {
        let e = Acknowledgement::from_message(&parse(PCD04)).unwrap_err();
        assert_eq!((e.code, e.control_id.as_deref()), (ErrorCode::UnsupportedMessageType, Some("m-7")));
        let e = Acknowledgement::from_message(&parse("MSH|^~\\&|||||||ACK|x\r")).unwrap_err();
        assert_eq!(e.code, ErrorCode::SegmentSequence);
        let e = Acknowledgement::from_message(&parse("MSH|^~\\&|||||||ACK|x\rMSA|OK|1\r")).unwrap_err();
        assert_eq!((e.code, e.location.clone()), (ErrorCode::TableValueNotFound, Location::field("MSA", 1, 1)));
        let e = Acknowledgement::from_message(&parse("MSH|^~\\&|||||||ACK|x\rMSA|AA\r")).unwrap_err();
        assert_eq!(e.code, ErrorCode::RequiredFieldMissing);
    }
}
