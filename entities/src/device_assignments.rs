//! `device_assignments`: doctors and technicians assigned to devices. An assignment ends
//! (`ended_at`) rather than being deleted, so past responsibility stays answerable.

use nc_domain::{AssignmentId, AssignmentRole, DeviceId, HospitalId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_assignments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AssignmentId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub role: AssignmentRole,
    pub assigned_by: Option<UserId>,
    pub assigned_at: DateTimeUtc,
    /// `None` while the assignment is in force.
    pub ended_at: Option<DateTimeUtc>,
    pub ended_by: Option<UserId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
