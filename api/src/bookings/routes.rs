//! `/api/bookings/*`: dialysis session bookings, availability, recurring series, the
//! unit's booking settings and maintenance windows. Every rule lives in the bookings crate
//! and the policy module; this file maps HTTP to them. Times are RFC 3339 with an offset;
//! each booking also states its start and end in the hospital's local time.

use chrono::{DateTime, Utc};
use nc_bookings::series::Rule;
use nc_bookings::settings::{parse_hhmm, DayHours, OpeningHours, Settings};
use nc_domain::{BookingId, BookingStatus, DeviceId, DowntimeId, PatientId, SeriesId};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::bookings::dto::*;
use crate::dto::page;
use crate::error::{ApiError, ApiResult};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

#[derive(ApiResponse)]
pub enum Booked {
    /// Booked.
    #[oai(status = 201)]
    Created(Json<BookingOut>),
}

#[derive(ApiResponse)]
pub enum SeriesBooked {
    /// Booked (with `bookWhatFits`, `conflicts` lists the occurrences left out).
    #[oai(status = 201)]
    Created(Json<SeriesOut>),
}

#[derive(ApiResponse)]
pub enum WindowPlanned {
    #[oai(status = 201)]
    Created(Json<DowntimeOut>),
}

fn settings_in(b: SettingsIn) -> std::result::Result<Settings, ApiError> {
    let time_zone = b
        .time_zone
        .parse::<nc_bookings::Tz>()
        .map_err(|_| ApiError::field("timeZone", "must be an IANA time zone name, e.g. Europe/Berlin"))?;
    let h = b.opening_hours;
    let mut days = [None; 7];
    for (i, (name, day)) in
        [("mon", h.mon), ("tue", h.tue), ("wed", h.wed), ("thu", h.thu), ("fri", h.fri), ("sat", h.sat), ("sun", h.sun)]
            .into_iter()
            .enumerate()
    {
        let Some(day) = day else { continue };
        let open = parse_hhmm(&day.open, false);
        let close = parse_hhmm(&day.close, true);
        match (open, close) {
            (Some(open), Some(close)) if open < close => days[i] = Some(DayHours { open, close }),
            _ => {
                return Err(ApiError::Validation(vec![crate::FieldError {
                    field: format!("openingHours.{name}"),
                    message: "needs `open` before `close` (HH:MM; `close` may be 24:00)".into(),
                }]))
            }
        }
    }
    Ok(Settings {
        time_zone,
        hours: OpeningHours(days),
        slot_minutes: b.slot_minutes,
        changeover_minutes: b.changeover_minutes,
        cancel_notice_minutes: b.cancellation_notice_minutes,
        patients_book_any_device: b.patients_may_book_any_device,
        max_days_ahead: b.max_days_ahead,
    })
}

pub struct BookingsApi;

#[OpenApi(tag = "Tag::Bookings")]
impl BookingsApi {
    /// The bookings you may see, soonest first: a patient their own; a doctor those of
    /// their patients and devices; a technician those of its devices; an admin the
    /// hospital's. `from`/`to` select bookings overlapping that time.
    #[oai(path = "/api/bookings", method = "get", operation_id = "listBookings")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Query<Option<PatientId>>,
        #[oai(name = "deviceId")] device_id: Query<Option<DeviceId>>,
        #[oai(name = "seriesId")] series_id: Query<Option<SeriesId>>,
        status: Query<Option<BookingStatus>>,
        #[oai(validator(custom = "crate::validate::Time"))] from: Query<Option<DateTime<Utc>>>,
        #[oai(validator(custom = "crate::validate::Time"))] to: Query<Option<DateTime<Utc>>>,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
    ) -> ApiResult<Json<BookingPage>> {
        let (limit, offset) = page(limit.0, offset.0)?;
        let filter = nc_bookings::Filter {
            patient: patient_id.0,
            device: device_id.0,
            status: status.0,
            series: series_id.0,
            from: from.0,
            to: to.0,
        };
        let (items, total) = state.bookings.list(&auth.0, &filter, limit, offset).await?;
        Ok(Json(BookingPage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }

    /// Books a session. A patient books for themself (no `patientId`) on their assigned
    /// device, or any device of the unit when it allows it; doctors book for their
    /// patients, admins for anyone. The session must lie within the unit's opening hours,
    /// in the future and within its booking horizon. 409 `booking_conflict` names the
    /// booking in the way (the device's, including the changeover, or the patient's);
    /// `device_not_bookable` and `device_maintenance` when the machine is unavailable.
    #[oai(path = "/api/bookings", method = "post", operation_id = "createBooking")]
    async fn create(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<CreateBookingIn>,
    ) -> ApiResult<Booked> {
        let b = body.0;
        let booking = state
            .bookings
            .create(
                &auth.0,
                nc_bookings::NewBooking {
                    patient: b.patient_id,
                    device: b.device_id,
                    start: b.scheduled_date,
                    duration_minutes: b.duration,
                    notes: b.notes,
                },
            )
            .await?;
        Ok(Booked::Created(Json(booking.into())))
    }

    /// Free start times for sessions of `duration` minutes between `from` and `to` (at most
    /// 14 days), on one device, the devices of a ward (their location), or every device
    /// you may book: the unit's opening hours in its time zone (DST-correct: sessions
    /// last real time), its slot grid, the changeover between sessions, existing bookings
    /// of the devices and of the patient, maintenance windows; inactive devices and
    /// devices in maintenance have no slots. Free/busy only: never whose booking it is.
    #[oai(path = "/api/bookings/available-slots", method = "get", operation_id = "listAvailableSlots")]
    #[allow(clippy::too_many_arguments)]
    async fn available(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Query<Option<DeviceId>>,
        /// A ward: the devices whose location it is.
        #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
        ward: Query<Option<String>>,
        /// Staff: keep clear of this patient's other sessions too (patients: always themself).
        #[oai(name = "patientId")]
        patient_id: Query<Option<PatientId>>,
        #[oai(validator(custom = "crate::validate::Time"))] from: Query<DateTime<Utc>>,
        #[oai(validator(custom = "crate::validate::Time"))] to: Query<DateTime<Utc>>,
        /// Session length in minutes, 15 to 720.
        #[oai(validator(minimum(value = "15"), maximum(value = "720")))]
        duration: Query<u32>,
    ) -> ApiResult<Json<AvailabilityOut>> {
        let a = state
            .bookings
            .available(
                &auth.0,
                nc_bookings::AvailabilityQuery {
                    device: device_id.0,
                    ward: ward.0,
                    patient: patient_id.0,
                    from: from.0,
                    to: to.0,
                    duration_minutes: duration.0,
                },
            )
            .await?;
        Ok(Json(a.into()))
    }

    /// Books a weekly series (e.g. Mon/Wed/Fri 07:00 local, 4 h, for 8 weeks). All or
    /// nothing by default: if an occurrence conflicts nothing is booked and 409
    /// `series_conflict` lists every conflicting occurrence in `conflicts`; with
    /// `bookWhatFits` the others are booked and the conflicts reported.
    #[oai(path = "/api/bookings/series", method = "post", operation_id = "createBookingSeries")]
    async fn series(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<SeriesIn>,
    ) -> ApiResult<SeriesBooked> {
        let b = body.0;
        let start_minutes = parse_hhmm(&b.start_time, false)
            .ok_or_else(|| ApiError::field("startTime", "must be HH:MM (00:00-23:59)"))?;
        let outcome = state
            .bookings
            .create_series(
                &auth.0,
                nc_bookings::SeriesRequest {
                    patient: b.patient_id,
                    device: b.device_id,
                    rule: Rule {
                        weekdays: b.weekdays,
                        start_minutes,
                        first_date: b.first_date,
                        weeks: b.weeks,
                        duration_minutes: b.duration,
                    },
                    book_what_fits: b.book_what_fits.unwrap_or(false),
                    notes: b.notes,
                },
            )
            .await?;
        Ok(SeriesBooked::Created(Json(outcome.into())))
    }

    /// Cancels the bookings of a series that start at or after `from`.
    #[oai(path = "/api/bookings/series/:seriesId/cancel", method = "post", operation_id = "cancelBookingSeries")]
    async fn cancel_series(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "seriesId")] series_id: Path<SeriesId>,
        body: Json<CancelSeriesIn>,
    ) -> ApiResult<Json<CancelledSeriesOut>> {
        let b = body.0;
        let cancelled = state.bookings.cancel_series(&auth.0, series_id.0, b.from, b.reason).await?;
        Ok(Json(CancelledSeriesOut { cancelled: cancelled.into_iter().map(Into::into).collect() }))
    }

    /// The unit's booking settings: time zone, opening hours, slot grid, changeover,
    /// cancellation notice. Every person of the hospital may read them.
    #[oai(path = "/api/bookings/settings", method = "get", operation_id = "getBookingSettings")]
    async fn settings(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<SettingsOut>> {
        Ok(Json(state.bookings.settings(&auth.0).await?.into()))
    }

    /// Replaces the unit's booking settings (admins). Bookings already made keep the
    /// changeover they were made with. Audited.
    #[oai(path = "/api/bookings/settings", method = "put", operation_id = "updateBookingSettings")]
    async fn set_settings(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<SettingsIn>,
    ) -> ApiResult<Json<SettingsOut>> {
        let settings = settings_in(body.0)?;
        Ok(Json(state.bookings.set_settings(&auth.0, settings).await?.into()))
    }

    /// Maintenance windows that are not over yet (every person of the hospital may see
    /// them: free/busy).
    #[oai(path = "/api/bookings/maintenance-windows", method = "get", operation_id = "listMaintenanceWindows")]
    async fn windows(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Query<Option<DeviceId>>,
    ) -> ApiResult<Json<Vec<DowntimeOut>>> {
        let w = state.bookings.downtimes(&auth.0, device_id.0).await?;
        Ok(Json(w.into_iter().map(Into::into).collect()))
    }

    /// Plans a maintenance window on a device (its technicians and admins): it cannot be
    /// booked then. 409 `booking_conflict` lists the bookings in the way.
    #[oai(path = "/api/bookings/maintenance-windows", method = "post", operation_id = "createMaintenanceWindow")]
    async fn add_window(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<DowntimeIn>,
    ) -> ApiResult<WindowPlanned> {
        let b = body.0;
        let window = nc_bookings::slots::Interval { start: b.starts_at, end: b.ends_at };
        let w = state.bookings.add_downtime(&auth.0, b.device_id, window, b.reason).await?;
        Ok(WindowPlanned::Created(Json(w.into())))
    }

    /// Calls off (or ends) a maintenance window.
    #[oai(
        path = "/api/bookings/maintenance-windows/:windowId",
        method = "delete",
        operation_id = "cancelMaintenanceWindow"
    )]
    async fn cancel_window(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "windowId")] window_id: Path<DowntimeId>,
    ) -> ApiResult<Json<DowntimeOut>> {
        Ok(Json(state.bookings.cancel_downtime(&auth.0, window_id.0).await?.into()))
    }

    /// One booking.
    #[oai(path = "/api/bookings/:bookingId", method = "get", operation_id = "getBooking")]
    async fn get(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "bookingId")] booking_id: Path<BookingId>,
    ) -> ApiResult<Json<BookingOut>> {
        Ok(Json(state.bookings.get(&auth.0, booking_id.0).await?.into()))
    }

    /// Reschedules (`scheduledDate`, `duration`, `deviceId`), annotates, confirms (`status:
    /// confirmed`, staff) or cancels (`status: cancelled`, with `cancelReason`) a booking.
    /// Patients change their own bookings only up to the unit's notice before the start,
    /// and a new time needs confirming again. Completed and cancelled bookings are final
    /// (409 `invalid_transition`).
    #[oai(path = "/api/bookings/:bookingId", method = "put", operation_id = "updateBooking")]
    async fn update(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "bookingId")] booking_id: Path<BookingId>,
        body: Json<UpdateBookingIn>,
    ) -> ApiResult<Json<BookingOut>> {
        Ok(Json(state.bookings.update(&auth.0, booking_id.0, body.0.into()).await?.into()))
    }

    /// Cancels a booking (nothing is deleted; cancelling again changes nothing).
    #[oai(path = "/api/bookings/:bookingId", method = "delete", operation_id = "cancelBooking")]
    async fn cancel(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "bookingId")] booking_id: Path<BookingId>,
        /// Why (at most 500 characters).
        #[oai(validator(max_length = 500, custom = "crate::validate::NoNul"))]
        reason: Query<Option<String>>,
    ) -> ApiResult<Json<BookingOut>> {
        Ok(Json(state.bookings.cancel(&auth.0, booking_id.0, reason.0).await?.into()))
    }
}
