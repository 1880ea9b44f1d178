//! `booking_settings`: a hospital's booking rules (absent row: the defaults). Opening hours
//! are local wall-clock times in the hospital's time zone (`hospitals.timezone`).

use nc_domain::{HospitalId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "booking_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hospital_id: HospitalId,
    /// `{"mon": {"open": "06:00", "close": "22:00"}, ..., "sun": null}`.
    pub opening_hours: Json,
    pub slot_minutes: i32,
    pub changeover_minutes: i32,
    pub cancel_notice_minutes: i32,
    pub patients_book_any_device: bool,
    pub max_days_ahead: i32,
    pub updated_at: DateTimeUtc,
    pub updated_by: Option<UserId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
