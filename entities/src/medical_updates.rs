//! `medical_updates`: the audit trail of changes to patients' medical information, one row
//! per changed field with its old and new value.

use nc_domain::{HospitalId, MedicalUpdateId, PatientId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "medical_updates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MedicalUpdateId,
    pub hospital_id: HospitalId,
    pub patient_id: PatientId,
    /// The changed field's name.
    pub field: String,
    pub old_value: Option<Json>,
    pub new_value: Option<Json>,
    pub updated_by: Option<UserId>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
