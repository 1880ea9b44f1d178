//! `temporary_access_grants`: a technician's time-bounded hand-over of a device to another
//! technician of the same hospital (at most 7 days; in force while `expires_at > now()` and
//! not revoked).

use nc_domain::{DeviceId, GrantId, HospitalId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "temporary_access_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: GrantId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub granted_to: UserId,
    pub granted_by: UserId,
    pub granted_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoked_by: Option<UserId>,
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
