//! `device_downtimes`: maintenance windows during which a device cannot be booked
//! (`[starts_at, ends_at)`, at most 90 days; cancelled, never deleted).

use nc_domain::{DeviceId, DowntimeId, HospitalId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_downtimes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DowntimeId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub starts_at: DateTimeUtc,
    pub ends_at: DateTimeUtc,
    pub reason: Option<String>,
    pub created_by: Option<UserId>,
    pub created_at: DateTimeUtc,
    pub cancelled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
