//! What can be wrong with a received message, where, and the HL7 code that says so.
//!
//! One error type for reading messages at every level (syntax here, then the content checks of
//! `ack` and `acm`), because the answer to any of them is the same: an acknowledgement with an
//! ERR segment naming the location (ERR-2, data type ERL) and a code from HL7 table 0357
//! (ERR-3). `ack::acknowledge_error` does that mapping.

use std::fmt;

/// HL7 table 0357, Message error condition codes (HL7 v2.6 chapter 2; 104 was added in v2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0
    MessageAccepted,
    /// 100: segments out of order, or a required segment missing.
    SegmentSequence,
    /// 101
    RequiredFieldMissing,
    /// 102: a field's content is not of its data type (a bad timestamp, bad delimiters).
    DataType,
    /// 103: a coded value (ID/IS/CWE against its table) is unknown.
    TableValueNotFound,
    /// 104 (v2.7+). Not used for our own limits: a v2.6 peer does not know it (see `Limits`).
    ValueTooLong,
    /// 200
    UnsupportedMessageType,
    /// 201
    UnsupportedEventCode,
    /// 202
    UnsupportedProcessingId,
    /// 203
    UnsupportedVersionId,
    /// 204: e.g. a key (a machine, a patient number) that is not known.
    UnknownKeyIdentifier,
    /// 205: e.g. a control id already used for another message.
    DuplicateKeyIdentifier,
    /// 207: the catch-all, also for input beyond what we are able to safely handle.
    ApplicationInternal,
}

impl ErrorCode {
    /// The numeric code, as written in ERR-3.1.
    pub fn code(self) -> u16 {
        match self {
            Self::MessageAccepted => 0,
            Self::SegmentSequence => 100,
            Self::RequiredFieldMissing => 101,
            Self::DataType => 102,
            Self::TableValueNotFound => 103,
            Self::ValueTooLong => 104,
            Self::UnsupportedMessageType => 200,
            Self::UnsupportedEventCode => 201,
            Self::UnsupportedProcessingId => 202,
            Self::UnsupportedVersionId => 203,
            Self::UnknownKeyIdentifier => 204,
            Self::DuplicateKeyIdentifier => 205,
            Self::ApplicationInternal => 207,
        }
    }

    /// HL7's description, as written in ERR-3.2.
    pub fn text(self) -> &'static str {
        match self {
            Self::MessageAccepted => "Message accepted",
            Self::SegmentSequence => "Segment sequence error",
            Self::RequiredFieldMissing => "Required field missing",
            Self::DataType => "Data type error",
            Self::TableValueNotFound => "Table value not found",
            Self::ValueTooLong => "Value too long",
            Self::UnsupportedMessageType => "Unsupported message type",
            Self::UnsupportedEventCode => "Unsupported event code",
            Self::UnsupportedProcessingId => "Unsupported processing id",
            Self::UnsupportedVersionId => "Unsupported version id",
            Self::UnknownKeyIdentifier => "Unknown key identifier",
            Self::DuplicateKeyIdentifier => "Duplicate key identifier",
            Self::ApplicationInternal => "Application internal error",
        }
    }

    /// The code for a number read from an ERR-3.1 (unknown numbers: `None`).
    pub fn from_code(code: u16) -> Option<Self> {
        [
            Self::MessageAccepted,
            Self::SegmentSequence,
            Self::RequiredFieldMissing,
            Self::DataType,
            Self::TableValueNotFound,
            Self::ValueTooLong,
            Self::UnsupportedMessageType,
            Self::UnsupportedEventCode,
            Self::UnsupportedProcessingId,
            Self::UnsupportedVersionId,
            Self::UnknownKeyIdentifier,
            Self::DuplicateKeyIdentifier,
            Self::ApplicationInternal,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// Where in a message: HL7's ERL data type (ERR-2), 1-based like HL7 itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Segment id, e.g. `OBX` (empty when the message has no readable segment at all).
    pub segment: String,
    /// The occurrence of that segment id in the message: 1 for the first OBX (ERL-2).
    pub sequence: u32,
    /// Field position (ERL-3); `None` for the segment as a whole.
    pub field: Option<u32>,
    /// Field repetition (ERL-4).
    pub repetition: Option<u32>,
    /// Component number (ERL-5).
    pub component: Option<u32>,
    /// Sub-component number (ERL-6).
    pub subcomponent: Option<u32>,
}

/// A position as ERL holds it (u32 keeps the error small; nothing real comes near the limit).
fn pos(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Location {
    /// The segment as a whole.
    pub fn segment(segment: &str, sequence: usize) -> Self {
        Self { segment: segment.to_owned(), sequence: pos(sequence), ..Self::default() }
    }

    /// A field (its first repetition, component and sub-component as a whole).
    pub fn field(segment: &str, sequence: usize, field: usize) -> Self {
        Self { field: Some(pos(field)), ..Self::segment(segment, sequence) }
    }

    /// A component of a field.
    pub fn component(segment: &str, sequence: usize, field: usize, component: usize) -> Self {
        Self { component: Some(pos(component)), repetition: Some(1), ..Self::field(segment, sequence, field) }
    }
}

impl fmt::Display for Location {
    /// `OBX[2]-5.1`: segment, occurrence, field, component, as people write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seg = if self.segment.is_empty() { "message" } else { &self.segment };
        write!(f, "{seg}")?;
        if self.sequence > 1 {
            write!(f, "[{}]", self.sequence)?;
        }
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(rep) = self.repetition.filter(|r| *r > 1) {
                write!(f, "({rep})")?;
            }
            if let Some(c) = self.component {
                write!(f, ".{c}")?;
            }
            if let Some(s) = self.subcomponent {
                write!(f, ".{s}")?;
            }
        }
        Ok(())
    }
}

/// A received message that could not be read, or whose content is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}) at {location}: {detail}", code.code(), code.text())]
pub struct ParseError {
    /// The HL7 table 0357 code for ERR-3.
    pub code: ErrorCode,
    /// Where (ERR-2).
    pub location: Location,
    /// What exactly, for a person reading a log or ERR-7 (never the offending value: it may be PHI).
    pub detail: Box<str>,
    /// MSH-10 of the message, when the header could be read: MSA-2 of the negative acknowledgement.
    pub control_id: Option<Box<str>>,
}

impl ParseError {
    /// An error without a known control id.
    pub fn new(code: ErrorCode, location: Location, detail: impl Into<String>) -> Self {
        Self { code, location, detail: detail.into().into_boxed_str(), control_id: None }
    }

    /// A required value is missing (101).
    pub fn missing(location: Location, what: &str) -> Self {
        Self::new(ErrorCode::RequiredFieldMissing, location, format!("{what} is required"))
    }

    /// The same error, naming the message's control id.
    pub fn with_control_id(mut self, control_id: Option<&str>) -> Self {
        if self.control_id.is_none() {
            self.control_id = control_id.filter(|c| !c.is_empty()).map(Box::from);
        }
        self
    }
}
