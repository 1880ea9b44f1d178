//! `enrollment_codes`: admin-issued codes with which a doctor or technician enrolls; the
//! role comes from the code, never from the person enrolling.

use nc_domain::{AssignmentRole, CodeId, HospitalId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "enrollment_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CodeId,
    pub hospital_id: HospitalId,
    /// `doctor` or `technician`: the staff roles, hence `AssignmentRole`.
    pub role: AssignmentRole,
    /// Hash of the code (unique).
    pub code_hash: Vec<u8>,
    pub created_by: UserId,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
    pub used_by: Option<UserId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
