//! `booking_series`: one request that booked recurring sessions; its bookings carry its id.

use nc_domain::{DeviceId, HospitalId, PatientId, SeriesId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "booking_series")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SeriesId,
    pub hospital_id: HospitalId,
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    /// The rule as asked (weekdays, local start time, time zone, first date, weeks, duration).
    pub rule: Json,
    pub created_by: Option<UserId>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
