//! `/api/records/emr`: where the hospital's treatment records go (its EMR, HL7 v2 `ORU^R01`
//! over MLLP), set by its admins; the capability is `nc_records`.

mod routes;

pub use routes::RecordsApi;
