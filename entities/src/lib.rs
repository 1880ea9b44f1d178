//! sea-orm entities for Nephrocare's relational tables, one module per table.
//!
//! Column types are the domain crate's: typed ids for `uuid` keys and foreign keys, text
//! enumerations for CHECK-constrained `text` columns. The `health_metrics` hypertable has
//! no entity: it is read and written with sqlx.
//!
//! Foreign keys are the migrations' (`migration/`): no query joins through sea-orm
//! relations, so every entity's `Relation` is empty rather than a second, unused copy of them.

pub mod access_audit_log;
pub mod alert_thresholds;
pub mod alerts;
pub mod booking_series;
pub mod booking_settings;
pub mod chat_messages;
pub mod chat_room_participants;
pub mod chat_rooms;
pub mod device_assignments;
pub mod device_downtimes;
pub mod device_latest_metrics;
pub mod device_maintenance;
pub mod device_sessions;
pub mod devices;
pub mod enrollment_codes;
pub mod fhir_export_jobs;
pub mod hospitals;
pub mod medical_updates;
pub mod one_time_codes;
pub mod outbound_messages;
pub mod patients;
pub mod refresh_tokens;
pub mod session_bookings;
pub mod temporary_access_grants;
pub mod users;

/// Every entity, named after its table (sea-orm-cli style).
pub mod prelude {
    pub use super::access_audit_log::Entity as AccessAuditLog;
    pub use super::alert_thresholds::Entity as AlertThresholds;
    pub use super::alerts::Entity as Alerts;
    pub use super::booking_series::Entity as BookingSeries;
    pub use super::booking_settings::Entity as BookingSettings;
    pub use super::chat_messages::Entity as ChatMessages;
    pub use super::chat_room_participants::Entity as ChatRoomParticipants;
    pub use super::chat_rooms::Entity as ChatRooms;
    pub use super::device_assignments::Entity as DeviceAssignments;
    pub use super::device_downtimes::Entity as DeviceDowntimes;
    pub use super::device_latest_metrics::Entity as DeviceLatestMetrics;
    pub use super::device_maintenance::Entity as DeviceMaintenance;
    pub use super::device_sessions::Entity as DeviceSessions;
    pub use super::devices::Entity as Devices;
    pub use super::enrollment_codes::Entity as EnrollmentCodes;
    pub use super::fhir_export_jobs::Entity as FhirExportJobs;
    pub use super::hospitals::Entity as Hospitals;
    pub use super::medical_updates::Entity as MedicalUpdates;
    pub use super::one_time_codes::Entity as OneTimeCodes;
    pub use super::outbound_messages::Entity as OutboundMessages;
    pub use super::patients::Entity as Patients;
    pub use super::refresh_tokens::Entity as RefreshTokens;
    pub use super::session_bookings::Entity as SessionBookings;
    pub use super::temporary_access_grants::Entity as TemporaryAccessGrants;
    pub use super::users::Entity as Users;
}
