//! `device_latest_metrics`: the latest reading of each device, upserted by ingest, so that
//! "current values" never scan the `health_metrics` hypertable.

use nc_domain::{DeviceId, HospitalId, PatientId, SessionId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_latest_metrics")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub device_id: DeviceId,
    pub hospital_id: HospitalId,
    pub patient_id: Option<PatientId>,
    /// Not a foreign key (a reading outlives its session row).
    pub session_id: Option<SessionId>,
    /// When the reading was taken.
    pub time: DateTimeUtc,
    /// The device's sequence number of the reading.
    pub seq: i64,
    /// The reading itself, as JSON.
    pub reading: Json,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
