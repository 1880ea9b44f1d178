//! `device_maintenance`: the log of maintenance done on a dialysis machine, with when the
//! next one is due. The device's `last_maintenance_at` / `maintenance_due_at` follow the
//! latest entry.

use nc_domain::{DeviceId, HospitalId, MaintenanceId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_maintenance")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MaintenanceId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub performed_at: DateTimeUtc,
    /// Who recorded it (a technician of the device, or an admin).
    pub performed_by: Option<UserId>,
    pub next_due_at: DateTimeUtc,
    pub notes: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
