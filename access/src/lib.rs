//! Identity and access, shared by the REST API, the MQTT broker and the live streams:
//! - [`password`]: argon2id hashing of passwords and device secrets, off the async
//!   executor and with bounded concurrency;
//! - [`secret`]: random opaque tokens and codes, and their SHA-256 digests for storage;
//! - [`token`]: short-lived JWT access tokens (HS256, pinned);
//! - [`policy`]: the one policy module;
//! - [`audit`]: the access audit log (who read or changed which patient's data).

pub mod audit;
pub mod authn;
pub mod password;
pub mod policy;
pub mod secret;
pub mod token;

pub use policy::{BookingAction, BookingScope, RoomGrant, RoomRequest};
pub use policy::{Denied, DeviceAction, HospitalAction, PatientAction, Policy, PolicyError, Subject, UserSubject};
