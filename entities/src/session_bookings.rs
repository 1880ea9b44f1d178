//! `session_bookings`: booked dialysis sessions. Exclusion constraints keep a device from
//! being booked twice within `[start, blocked_until)` (the session plus its changeover) and
//! a patient from being in two sessions at once (`[start, end)`). Never deleted: cancelled.

use nc_domain::{BookingId, BookingStatus, DeviceId, HospitalId, PatientId, SeriesId, SessionId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "session_bookings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: BookingId,
    pub hospital_id: HospitalId,
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub scheduled_start: DateTimeUtc,
    /// 15 to 720.
    pub duration_minutes: i32,
    /// Must equal `scheduled_start + duration_minutes` (CHECK); stored for the exclusion
    /// constraints.
    pub scheduled_end: DateTimeUtc,
    pub status: BookingStatus,
    pub notes: Option<String>,
    pub created_by: Option<UserId>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// `scheduled_end` plus the changeover buffer in force when booked.
    pub blocked_until: DateTimeUtc,
    pub series_id: Option<SeriesId>,
    pub confirmed_at: Option<DateTimeUtc>,
    pub confirmed_by: Option<UserId>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub cancelled_by: Option<UserId>,
    pub cancel_reason: Option<String>,
    /// The device session that completed it (set by the database).
    pub completed_session_id: Option<SessionId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
