//! Identity and access, shared by the REST API, the MQTT broker and the live streams:
//! - [`password`]: argon2id hashing of passwords and device secrets, off the async
//!   executor and with bounded concurrency;
//! - [`secret`]: random opaque tokens and codes, and their SHA-256 digests for storage.

pub mod password;
pub mod secret;
