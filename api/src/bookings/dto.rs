//! The bookings API's request and response bodies.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use nc_bookings::settings::{format_hhmm, DayHours, Settings};
use nc_bookings::Tz;
use nc_domain::{
    BookingId, BookingStatus, DeviceId, DeviceStatus, DowntimeId, HospitalId, PatientId, SeriesId, SessionId, UserId,
    Weekday,
};
use poem_openapi::{Enum, Object};

use crate::error::ConflictOut;

fn local(t: DateTime<Utc>, tz: Tz) -> DateTime<FixedOffset> {
    t.with_timezone(&tz).fixed_offset()
}

/// Books one session.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBookingIn {
    /// The patient (staff); a patient books for themself and may leave it out.
    pub patient_id: Option<PatientId>,
    pub device_id: DeviceId,
    /// Start, RFC 3339 with an offset (e.g. `2026-12-07T07:00:00+01:00`).
    #[oai(validator(custom = "crate::validate::Time"))]
    pub scheduled_date: DateTime<Utc>,
    /// Length in minutes, 15 to 720.
    #[oai(validator(minimum(value = "15"), maximum(value = "720")))]
    pub duration: u32,
    #[oai(validator(max_length = 2000, custom = "crate::validate::NoNul"))]
    pub notes: Option<String>,
}

/// Changes a booking; absent fields stay as they are.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateBookingIn {
    /// A new start (reschedule).
    #[oai(validator(custom = "crate::validate::Time"))]
    pub scheduled_date: Option<DateTime<Utc>>,
    /// A new length in minutes, 15 to 720.
    #[oai(validator(minimum(value = "15"), maximum(value = "720")))]
    pub duration: Option<u32>,
    /// Another device.
    pub device_id: Option<DeviceId>,
    #[oai(validator(max_length = 2000, custom = "crate::validate::NoNul"))]
    pub notes: Option<String>,
    /// `confirmed` (staff) or `cancelled`; `scheduled` and `completed` are set by the server.
    pub status: Option<BookingStatus>,
    /// With `status: cancelled`.
    #[oai(validator(max_length = 500, custom = "crate::validate::NoNul"))]
    pub cancel_reason: Option<String>,
}

impl From<UpdateBookingIn> for nc_bookings::Change {
    fn from(b: UpdateBookingIn) -> Self {
        Self {
            start: b.scheduled_date,
            duration_minutes: b.duration,
            device: b.device_id,
            notes: b.notes,
            status: b.status,
            cancel_reason: b.cancel_reason,
        }
    }
}

/// A booked session.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct BookingOut {
    pub id: BookingId,
    pub hospital_id: HospitalId,
    pub patient_id: PatientId,
    pub patient_name: Option<String>,
    pub device_id: DeviceId,
    pub device_name: Option<String>,
    /// Start (UTC).
    pub scheduled_date: DateTime<Utc>,
    /// End (UTC): the start plus `duration` real minutes.
    pub scheduled_end: DateTime<Utc>,
    /// Minutes.
    pub duration: i32,
    /// The device stays reserved until then (the end plus the changeover).
    pub changeover_until: DateTime<Utc>,
    pub status: BookingStatus,
    /// The start in the hospital's local time.
    pub local_start: DateTime<FixedOffset>,
    pub local_end: DateTime<FixedOffset>,
    /// The hospital's IANA time zone.
    pub time_zone: String,
    pub series_id: Option<SeriesId>,
    pub notes: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<UserId>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<UserId>,
    pub cancel_reason: Option<String>,
    /// The device session that completed it.
    pub completed_session_id: Option<SessionId>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<nc_bookings::Booking> for BookingOut {
    fn from(b: nc_bookings::Booking) -> Self {
        let (r, tz) = (b.row, b.time_zone);
        BookingOut {
            id: r.id,
            hospital_id: r.hospital_id,
            patient_id: r.patient_id,
            patient_name: b.patient_name,
            device_id: r.device_id,
            device_name: b.device_name,
            scheduled_date: r.scheduled_start,
            scheduled_end: r.scheduled_end,
            duration: r.duration_minutes,
            changeover_until: r.blocked_until,
            status: r.status,
            local_start: local(r.scheduled_start, tz),
            local_end: local(r.scheduled_end, tz),
            time_zone: tz.name().to_owned(),
            series_id: r.series_id,
            notes: r.notes,
            confirmed_at: r.confirmed_at,
            confirmed_by: r.confirmed_by,
            cancelled_at: r.cancelled_at,
            cancelled_by: r.cancelled_by,
            cancel_reason: r.cancel_reason,
            completed_session_id: r.completed_session_id,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Object, Debug)]
pub struct BookingPage {
    pub items: Vec<BookingOut>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// A weekly series: these weekdays at this local time, for `weeks` weeks from `firstDate`.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeriesIn {
    pub patient_id: Option<PatientId>,
    pub device_id: DeviceId,
    #[oai(validator(min_items = 1, max_items = 7, unique_items))]
    pub weekdays: Vec<Weekday>,
    /// Local start time, `HH:MM`.
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start_time: String,
    /// The first local date of the series (today or later).
    #[oai(validator(custom = "crate::validate::Date"))]
    pub first_date: NaiveDate,
    /// 1 to 52.
    #[oai(validator(minimum(value = "1"), maximum(value = "52")))]
    pub weeks: u32,
    /// Minutes, 15 to 720.
    #[oai(validator(minimum(value = "15"), maximum(value = "720")))]
    pub duration: u32,
    /// Book the occurrences that fit and report the others (default false: all or nothing).
    pub book_what_fits: Option<bool>,
    #[oai(validator(max_length = 2000, custom = "crate::validate::NoNul"))]
    pub notes: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SeriesOut {
    pub series_id: SeriesId,
    pub created: Vec<BookingOut>,
    /// Occurrences not booked (only with `bookWhatFits`).
    pub conflicts: Vec<ConflictOut>,
}

impl From<nc_bookings::SeriesOutcome> for SeriesOut {
    fn from(o: nc_bookings::SeriesOutcome) -> Self {
        SeriesOut {
            series_id: o.series,
            created: o.created.into_iter().map(Into::into).collect(),
            conflicts: crate::error::conflicts_out(o.conflicts),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelSeriesIn {
    /// Cancel the bookings starting at or after this.
    #[oai(validator(custom = "crate::validate::Time"))]
    pub from: DateTime<Utc>,
    #[oai(validator(max_length = 500, custom = "crate::validate::NoNul"))]
    pub reason: Option<String>,
}

#[derive(Object, Debug)]
pub struct CancelledSeriesOut {
    pub cancelled: Vec<BookingOut>,
}

/// One day's opening hours, local `HH:MM` (`close` may be `24:00`).
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct DayHoursIo {
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub open: String,
    #[oai(validator(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub close: String,
}

/// Opening hours per weekday; `null` (or absent): closed.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct OpeningHoursIo {
    pub mon: Option<DayHoursIo>,
    pub tue: Option<DayHoursIo>,
    pub wed: Option<DayHoursIo>,
    pub thu: Option<DayHoursIo>,
    pub fri: Option<DayHoursIo>,
    pub sat: Option<DayHoursIo>,
    pub sun: Option<DayHoursIo>,
}

/// The unit's booking settings (all fields; `PUT` replaces them).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsIn {
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[oai(validator(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_+\-/]+$"))]
    pub time_zone: String,
    pub opening_hours: OpeningHoursIo,
    /// Start-time grid, 5 to 240 minutes.
    #[oai(validator(minimum(value = "5"), maximum(value = "240")))]
    pub slot_minutes: u32,
    /// Disinfection between sessions on a machine, 0 to 240 minutes.
    #[oai(validator(maximum(value = "240")))]
    pub changeover_minutes: u32,
    /// Patients change or cancel up to this many minutes before the start (0 to 20160).
    #[oai(validator(maximum(value = "20160")))]
    pub cancellation_notice_minutes: u32,
    /// Patients may book any active device of the unit, not only their own.
    pub patients_may_book_any_device: bool,
    /// Bookings are taken up to this many days ahead (1 to 400).
    #[oai(validator(minimum(value = "1"), maximum(value = "400")))]
    pub max_days_ahead: u32,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SettingsOut {
    pub time_zone: String,
    pub opening_hours: OpeningHoursIo,
    pub slot_minutes: u32,
    pub changeover_minutes: u32,
    pub cancellation_notice_minutes: u32,
    pub patients_may_book_any_device: bool,
    pub max_days_ahead: u32,
}

impl From<Settings> for SettingsOut {
    fn from(s: Settings) -> Self {
        let day =
            |d: Option<DayHours>| d.map(|d| DayHoursIo { open: format_hhmm(d.open), close: format_hhmm(d.close) });
        let h = s.hours.0;
        SettingsOut {
            time_zone: s.time_zone.name().to_owned(),
            opening_hours: OpeningHoursIo {
                mon: day(h[0]),
                tue: day(h[1]),
                wed: day(h[2]),
                thu: day(h[3]),
                fri: day(h[4]),
                sat: day(h[5]),
                sun: day(h[6]),
            },
            slot_minutes: s.slot_minutes,
            changeover_minutes: s.changeover_minutes,
            cancellation_notice_minutes: s.cancel_notice_minutes,
            patients_may_book_any_device: s.patients_book_any_device,
            max_days_ahead: s.max_days_ahead,
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SlotOut {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub local_start: DateTime<FixedOffset>,
    pub local_end: DateTime<FixedOffset>,
    /// The devices free for the whole session and its changeover.
    pub device_ids: Vec<DeviceId>,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum BusyKind {
    /// A session and the changeover after it.
    Booked,
    Maintenance,
}

/// A time a device is taken (never whose booking it is).
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct BusyOut {
    pub device_id: DeviceId,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub kind: BusyKind,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct SlotDeviceOut {
    pub device_id: DeviceId,
    pub name: String,
    pub status: DeviceStatus,
    /// Active: inactive devices and devices in maintenance have no slots.
    pub bookable: bool,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct AvailabilityOut {
    pub time_zone: String,
    pub duration: u32,
    pub changeover_minutes: u32,
    pub devices: Vec<SlotDeviceOut>,
    /// Free start times, earliest first.
    pub slots: Vec<SlotOut>,
    pub busy: Vec<BusyOut>,
}

impl From<nc_bookings::Availability> for AvailabilityOut {
    fn from(a: nc_bookings::Availability) -> Self {
        let tz = a.time_zone;
        AvailabilityOut {
            time_zone: tz.name().to_owned(),
            duration: a.duration_minutes,
            changeover_minutes: a.changeover_minutes,
            devices: a
                .devices
                .into_iter()
                .map(|d| SlotDeviceOut { device_id: d.id, name: d.name, status: d.status, bookable: d.bookable })
                .collect(),
            slots: a
                .slots
                .into_iter()
                .map(|s| SlotOut {
                    start: s.start,
                    end: s.end,
                    local_start: local(s.start, tz),
                    local_end: local(s.end, tz),
                    device_ids: s.devices,
                })
                .collect(),
            busy: a
                .busy
                .into_iter()
                .map(|b| BusyOut {
                    device_id: b.device,
                    start: b.start,
                    end: b.end,
                    kind: if b.maintenance { BusyKind::Maintenance } else { BusyKind::Booked },
                })
                .collect(),
        }
    }
}

/// Plans a maintenance window.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct DowntimeIn {
    pub device_id: DeviceId,
    #[oai(validator(custom = "crate::validate::Time"))]
    pub starts_at: DateTime<Utc>,
    /// After `startsAt`, at most 90 days later.
    #[oai(validator(custom = "crate::validate::Time"))]
    pub ends_at: DateTime<Utc>,
    #[oai(validator(max_length = 500, custom = "crate::validate::NoNul"))]
    pub reason: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct DowntimeOut {
    pub id: DowntimeId,
    pub device_id: DeviceId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<nc_entities::device_downtimes::Model> for DowntimeOut {
    fn from(w: nc_entities::device_downtimes::Model) -> Self {
        DowntimeOut {
            id: w.id,
            device_id: w.device_id,
            starts_at: w.starts_at,
            ends_at: w.ends_at,
            reason: w.reason,
            created_by: w.created_by,
            created_at: w.created_at,
            cancelled_at: w.cancelled_at,
        }
    }
}
