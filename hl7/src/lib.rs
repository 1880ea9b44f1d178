//! HL7 v2 for Nephrocare's hospital interfaces: the message model ([`message`]), MLLP
//! framing and connections ([`mllp`]), acknowledgements ([`ack`]) and IHE PCD Alarm
//! Communication Management as Alert Reporter ([`acm`]: PCD-04 out, PCD-05 in). A leaf: no
//! database, no other workspace crate; the alarms outbox (issue 31) and the device-gateway
//! listener for PCD-01 (issue 32) build on it.
//!
//! # Sources
//! - HL7 v2.6 chapter 2 (message construction, escape sequences, acknowledgements, tables 0008,
//!   0357, 0516) and chapter 7 (OBR, OBX); PRT from v2.7/v2.8, as IHE PCD uses it.
//! - IHE PCD Technical Framework Volume 2 (TF-2) **Revision 9.0, Final Text, 2019-12-12**, checked
//!   against the **Revision 10.0 draft of 2022-04-22** (the IHE PCD committee's working copy):
//!   §3.4 PCD-04 (static definition, table 3.4.4.1.2-2), §3.5 PCD-05, appendix B (B.1 MSH,
//!   B.2 MSA, B.3 ERR, B.5.1 PID, B.6.1 PV1, B.7.1 OBR, B.8.5 OBX facets, B.8.6 OBX-11,
//!   B.10 PRT), annex E.3 (the PCD-04 examples, used as test data), appendix I (MLLP).
//!   Where the two revisions or the framework and its examples disagree, the choice is
//!   documented where it is made: MSH-21's OID (`acm::PCD04_PROFILE_OID`), PCD-05's message
//!   type (both accepted, `acm::read_alert_manager_message`), PCD-05's MSA (Rev 10 only) and
//!   PRT-4 (Rev 9 `RO` with alternate `AAP`, Rev 10 `AAP`), PRT-3.2's case, OBR-3 vs OBR-29.
//!
//! # Why our own parser and codec
//! The crates.io HL7 crates seen when this was written did not fit: `rust-hl7` (0.5) calls
//! itself experimental ("use for real at your own risk"), has no encoder and pulls `regex`;
//! `hl7-mllp-codec` (0.4, 2022) is framing only, with no maximum frame size; `hl7v2` is large
//! and carries its own lint debt; `hl7kit` parses but does not build messages. None gives
//! parse *and* encode with escaping of every value, delimiters from MSH-2, a bound on every
//! allocation and an error naming the HL7 location and table 0357 code that an ERR segment
//! needs. What we need is small (under 3 000 lines with the tests), so it is here, tested
//! against the framework's own examples and, from outside, against python-hl7
//! (`tests/peers/`, see `scripts/peers.sh`).

pub mod ack;
pub mod acm;
pub mod message;
pub mod mllp;
pub mod pcd01;
pub mod server;

#[cfg(test)]
mod peers;
