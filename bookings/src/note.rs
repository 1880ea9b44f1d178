//! What a booking change publishes on the notification topic of the people it concerns.

use chrono::{DateTime, Utc};
use nc_domain::{BookingId, BookingStatus, DeviceId, PatientId, Role, SeriesId};
use nc_messaging::payload::{kind, V1};
use schemars::JsonSchema;
use serde::Serialize;

/// What happened to a booking (or a series, named by its first booking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingChange {
    Created,
    Rescheduled,
    Confirmed,
    /// Its notes changed.
    Updated,
    Cancelled,
    SeriesCreated,
    SeriesCancelled,
}

impl BookingChange {
    pub fn as_str(&self) -> &'static str {
        match self {
            BookingChange::Created => "created",
            BookingChange::Rescheduled => "rescheduled",
            BookingChange::Confirmed => "confirmed",
            BookingChange::Updated => "updated",
            BookingChange::Cancelled => "cancelled",
            BookingChange::SeriesCreated => "series_created",
            BookingChange::SeriesCancelled => "series_cancelled",
        }
    }
}

/// A booking changed (`…/u/{user}/notifications`): sent to the booking's patient and the
/// device's technicians, but not to whoever made the change.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingNote {
    pub v: V1,
    pub r#type: kind::Booking,
    pub event: BookingChange,
    pub booking_id: BookingId,
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub status: BookingStatus,
    /// Start, UTC.
    pub scheduled_date: DateTime<Utc>,
    /// End, UTC.
    pub scheduled_end: DateTime<Utc>,
    /// Start in the hospital's time zone (RFC 3339 with its offset).
    pub local_start: String,
    /// The hospital's IANA time zone.
    pub time_zone: String,
    pub series_id: Option<SeriesId>,
    /// The role of whoever made the change.
    pub by: Role,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::BookingChange;

    #[test]
    fn changes_are_spelled_as_serialized() {
        for c in [BookingChange::Created, BookingChange::Updated, BookingChange::SeriesCancelled] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
