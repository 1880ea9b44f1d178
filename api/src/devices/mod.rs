//! The devices capability, `/api/devices/*`: the hospital's machines ([`registry`]:
//! registration, status, secrets, their patients and sessions, technician assignment and
//! hand-over), their upkeep ([`maintenance`]) and their performance figures
//! ([`performance`]).

pub(crate) mod maintenance;
pub(crate) mod performance;
pub(crate) mod registry;
