//! Nephrocare's vocabulary, shared by every layer: typed identifiers and the enumerations
//! the database constrains (roles, statuses, priorities...).
//!
//! Types here derive sea-orm's value traits (so entities use them as column types),
//! serde (so JSON uses the same spelling as the database) and, with the `openapi`
//! feature, poem-openapi's schema traits.

pub mod ids;
pub mod kinds;

pub use ids::*;
pub use kinds::*;
