//! `patients`: patients' clinical profiles (demographics, dialysis prescription, assigned
//! doctor and machine). Distinct from the patient's login, which is an optional `users` row.

use nc_domain::{BloodGroup, DeviceId, Gender, HospitalId, PatientId, UserId, VascularAccess};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "patients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: PatientId,
    pub hospital_id: HospitalId,
    /// The patient's own login, when the patient uses the app (unique).
    pub user_id: Option<UserId>,
    /// Unique within the hospital.
    pub patient_number: String,
    pub name: String,
    pub date_of_birth: Option<Date>,
    pub gender: Gender,
    pub blood_group: Option<BloodGroup>,
    pub assigned_doctor_id: Option<UserId>,
    pub assigned_device_id: Option<DeviceId>,
    /// e.g. `{"days": ["mon", "wed", "fri"], "start": "08:00", "durationMinutes": 240}`.
    pub dialysis_schedule: Json,
    pub last_dialysis_at: Option<DateTimeUtc>,
    /// Dry (target) weight in kg (`double precision`).
    pub dry_weight_kg: Option<f64>,
    pub diagnosis: Option<String>,
    pub vascular_access: Option<VascularAccess>,
    pub allergies: Option<String>,
    pub medications: Option<String>,
    pub notes: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// `users` is reached through two foreign keys (the patient's login and the assigned
/// doctor), so there is no `Related<users::Entity>`: join with `Relation::User` or
/// `Relation::AssignedDoctor` explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::hospitals::Entity",
        from = "Column::HospitalId",
        to = "super::hospitals::Column::Id",
        on_update = "NoAction",
        on_delete = "Restrict"
    )]
    Hospital,
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::AssignedDoctorId",
        to = "super::users::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    AssignedDoctor,
    #[sea_orm(
        belongs_to = "super::devices::Entity",
        from = "Column::AssignedDeviceId",
        to = "super::devices::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    AssignedDevice,
    #[sea_orm(has_many = "super::device_sessions::Entity")]
    DeviceSessions,
    #[sea_orm(has_many = "super::alerts::Entity")]
    Alerts,
    #[sea_orm(has_many = "super::medical_updates::Entity")]
    MedicalUpdates,
    #[sea_orm(has_many = "super::session_bookings::Entity")]
    SessionBookings,
}

impl Related<super::hospitals::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Hospital.def()
    }
}

impl Related<super::devices::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AssignedDevice.def()
    }
}

impl Related<super::device_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DeviceSessions.def()
    }
}

impl Related<super::alerts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Alerts.def()
    }
}

impl Related<super::medical_updates::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MedicalUpdates.def()
    }
}

impl Related<super::session_bookings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SessionBookings.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
