//! HL7 v2 for Nephrocare: the message model, parser and encoder.

pub mod ack;
pub mod message;
pub mod mllp;
