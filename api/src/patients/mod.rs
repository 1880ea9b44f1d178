//! Patient records: lists, reads and changes (`routes`), the one place a record is changed
//! (`changes`: policy per record and per field, the trail, the audit), and the link to the
//! patient's own account (`account`).

pub(crate) mod account;
pub(crate) mod changes;
pub(crate) mod dto;
pub(crate) mod routes;
