//! `devices`: dialysis machines, with their connection state and the hash of the secret
//! with which they authenticate over MQTT and HTTP.

use nc_domain::{DeviceId, DeviceStatus, HospitalId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DeviceId,
    pub hospital_id: HospitalId,
    /// The physical id printed on the machine; unique within its hospital.
    pub serial: String,
    pub name: String,
    pub model: Option<String>,
    pub location: Option<String>,
    /// The ward the machine stands in: escalation tier 2 is that ward's doctors.
    pub ward: Option<String>,
    pub status: DeviceStatus,
    pub online: bool,
    pub last_seen: Option<DateTimeUtc>,
    /// Hash of the device secret (`sha256:<hex>`; argon2 PHC strings are also accepted).
    pub secret_hash: String,
    pub secret_rotated_at: DateTimeUtc,
    /// When the next maintenance is due (`maintenance_due` alert once passed).
    pub maintenance_due_at: Option<DateTimeUtc>,
    /// When the latest recorded maintenance was done (`device_maintenance`).
    pub last_maintenance_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
