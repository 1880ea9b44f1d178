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

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
