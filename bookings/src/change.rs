//! Booking, rescheduling, confirming and cancelling, one booking or a recurring series.
//! Status: `scheduled` → `confirmed` (staff) → `completed` (by the database, when a
//! session of the patient on the device ran in the booking's window), or `cancelled`.
//! Completed and cancelled bookings are final; nothing is deleted.

use chrono::{DateTime, Duration, Utc};
use nc_access::{BookingAction, Subject, UserSubject};
use nc_domain::{AuditAction, BookingId, BookingStatus, DeviceId, PatientId, Role, SeriesId};
use nc_entities::{booking_series, session_bookings};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};

use crate::note::BookingChange;
use crate::series::{Rule, MAX_WEEKS};
use crate::settings::{format_hhmm, Settings};
use crate::slots::fits_opening_hours;
use crate::store::{self, Placement};
use crate::{access, Booking, BookingError, Bookings, Conflict, ConflictReason, ACTIVE, DURATION_MINUTES};

/// A booking to make.
#[derive(Debug, Clone)]
pub struct NewBooking {
    /// Required for staff; a patient books for themself.
    pub patient: Option<PatientId>,
    pub device: DeviceId,
    pub start: DateTime<Utc>,
    pub duration_minutes: u32,
    pub notes: Option<String>,
}

/// A change to a booking: reschedule (any of start, duration, device), notes, or a status
/// (`confirmed`, `cancelled` with an optional reason).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub start: Option<DateTime<Utc>>,
    pub duration_minutes: Option<u32>,
    pub device: Option<DeviceId>,
    pub notes: Option<String>,
    pub status: Option<BookingStatus>,
    pub cancel_reason: Option<String>,
}

/// A recurring series to book.
#[derive(Debug, Clone)]
pub struct SeriesRequest {
    pub patient: Option<PatientId>,
    pub device: DeviceId,
    pub rule: Rule,
    /// Book the occurrences that fit and report the others (default: all or nothing).
    pub book_what_fits: bool,
    pub notes: Option<String>,
}

/// What a series request booked, and what did not fit.
#[derive(Debug, Clone)]
pub struct SeriesOutcome {
    pub series: SeriesId,
    pub created: Vec<Booking>,
    pub conflicts: Vec<Conflict>,
}

fn check_duration(minutes: u32) -> Result<(), BookingError> {
    if DURATION_MINUTES.contains(&minutes) {
        Ok(())
    } else {
        Err(BookingError::invalid("duration", "must be 15 to 720 minutes"))
    }
}

/// Whether a session may be booked at this time: in the future, not too far ahead, within
/// the day's opening hours.
fn check_time(s: &Settings, p: &Placement) -> Result<(), (ConflictReason, String)> {
    let now = Utc::now();
    if p.start < now {
        return Err((ConflictReason::InThePast, "must be in the future".into()));
    }
    if p.start > now + Duration::days(i64::from(s.max_days_ahead)) {
        return Err((
            ConflictReason::TooFarAhead,
            format!("the unit takes bookings up to {} days ahead", s.max_days_ahead),
        ));
    }
    if !fits_opening_hours(s, p.start, Duration::minutes(i64::from(p.duration_minutes))) {
        let local = p.start.with_timezone(&s.time_zone);
        let day = chrono::Datelike::weekday(&local.date_naive());
        let hours = s
            .hours
            .day(day)
            .map_or("closed".to_owned(), |h| format!("{}-{}", format_hhmm(h.open), format_hhmm(h.close)));
        return Err((
            ConflictReason::OutsideOpeningHours,
            format!(
                "the session must lie within the unit's opening hours ({} {hours}, {})",
                day.to_string().to_lowercase(),
                s.time_zone.name()
            ),
        ));
    }
    Ok(())
}

/// Writes a new or changed row; a collision becomes the conflict naming the booking in the way.
async fn write(
    txn: &DatabaseTransaction,
    row: session_bookings::ActiveModel,
    p: &Placement,
    patient: PatientId,
    existing: Option<BookingId>,
) -> Result<session_bookings::Model, BookingError> {
    store::serialize_writes(txn, p.device, patient).await?;
    let savepoint = txn.begin().await?;
    let written = if existing.is_some() { row.update(&savepoint).await } else { row.insert(&savepoint).await };
    match written {
        Ok(m) => {
            savepoint.commit().await?;
            Ok(m)
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(store::collision(txn, e, p, patient, existing).await)
        }
    }
}

impl Bookings {
    /// Books one session.
    pub async fn create(&self, user: &UserSubject, req: NewBooking) -> Result<Booking, BookingError> {
        let subject = Subject::User(*user);
        check_duration(req.duration_minutes)?;
        let settings = store::settings(self.db(), user.hospital).await?;
        let patient = self.patient_for(user, req.patient).await?;
        self.policy()
            .book(&subject, patient, req.device, settings.patients_book_any_device)
            .await
            .map_err(|e| BookingError::policy(e, "patient or device"))?;
        let p = Placement {
            device: req.device,
            start: req.start,
            duration_minutes: req.duration_minutes,
            changeover_minutes: settings.changeover_minutes,
        };
        check_time(&settings, &p).map_err(|(_, m)| BookingError::invalid("scheduledDate", m))?;
        let txn = self.db().begin().await?;
        store::check_device(&txn, &p).await?;
        let row = store::new_row(user.hospital, patient, &p, req.notes, None, user.id);
        let row = write(&txn, row, &p, patient, None).await?;
        crate::audit::record_with(
            &txn,
            access(&subject, AuditAction::Create, "booking", Some(patient), Some(req.device)),
            Some(
                serde_json::json!({"bookingId": row.id, "start": row.scheduled_start, "minutes": row.duration_minutes}),
            ),
        )
        .await?;
        txn.commit().await?;
        self.notify(user, BookingChange::Created, &row, settings.time_zone).await;
        Ok(self.decorate(vec![row], settings.time_zone).await?.remove(0))
    }

    /// Books a weekly series: all of it or nothing by default (then nothing is stored and
    /// the conflicts are the error), or what fits when asked.
    pub async fn create_series(&self, user: &UserSubject, req: SeriesRequest) -> Result<SeriesOutcome, BookingError> {
        let subject = Subject::User(*user);
        check_duration(req.rule.duration_minutes)?;
        if req.rule.weekdays.is_empty() {
            return Err(BookingError::invalid("weekdays", "name at least one weekday"));
        }
        if !(1..=MAX_WEEKS).contains(&req.rule.weeks) {
            return Err(BookingError::invalid("weeks", "must be 1 to 52"));
        }
        let settings = store::settings(self.db(), user.hospital).await?;
        let tz = settings.time_zone;
        if req.rule.first_date < Utc::now().with_timezone(&tz).date_naive() {
            return Err(BookingError::invalid("firstDate", "must be today or later (the unit's local date)"));
        }
        let patient = self.patient_for(user, req.patient).await?;
        self.policy()
            .book(&subject, patient, req.device, settings.patients_book_any_device)
            .await
            .map_err(|e| BookingError::policy(e, "patient or device"))?;
        let txn = self.db().begin().await?;
        let series = booking_series::ActiveModel {
            id: Set(SeriesId::new()),
            hospital_id: Set(user.hospital),
            patient_id: Set(patient),
            device_id: Set(req.device),
            rule: Set(req.rule.to_json(tz)),
            created_by: Set(Some(user.id)),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await?;
        let mut created = Vec::new();
        let mut conflicts = Vec::new();
        for occurrence in req.rule.occurrences(tz) {
            let conflict = |reason, start, booking| Conflict { start, date: Some(occurrence.date), reason, booking };
            let Some(start) = occurrence.start else {
                conflicts.push(conflict(ConflictReason::TimeDoesNotExist, None, None));
                continue;
            };
            let p = Placement {
                device: req.device,
                start,
                duration_minutes: req.rule.duration_minutes,
                changeover_minutes: settings.changeover_minutes,
            };
            if let Err((reason, _)) = check_time(&settings, &p) {
                conflicts.push(conflict(reason, Some(start), None));
                continue;
            }
            let row = store::new_row(user.hospital, patient, &p, req.notes.clone(), Some(series.id), user.id);
            let outcome = match store::check_device(&txn, &p).await {
                Ok(()) => write(&txn, row, &p, patient, None).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(row) => created.push(row),
                Err(BookingError::Conflict { code: "device_not_bookable", message, conflicts }) => {
                    return Err(BookingError::conflict("device_not_bookable", message, conflicts));
                }
                Err(BookingError::Conflict { conflicts: found, .. }) => {
                    conflicts.extend(found.into_iter().map(|c| Conflict { date: Some(occurrence.date), ..c }))
                }
                Err(other) => return Err(other),
            }
        }
        if created.is_empty() || (!conflicts.is_empty() && !req.book_what_fits) {
            txn.rollback().await?;
            let message = if created.is_empty() {
                format!("no occurrence of the series could be booked ({} conflict(s))", conflicts.len())
            } else {
                format!(
                    "{} of {} occurrences conflict; nothing was booked (ask for bookWhatFits to book the others)",
                    conflicts.len(),
                    conflicts.len() + created.len()
                )
            };
            return Err(BookingError::conflict("series_conflict", message, conflicts));
        }
        crate::audit::record_with(
            &txn,
            access(&subject, AuditAction::Create, "booking.series", Some(patient), Some(req.device)),
            Some(serde_json::json!({"seriesId": series.id, "booked": created.len(), "conflicts": conflicts.len()})),
        )
        .await?;
        txn.commit().await?;
        self.notify(user, BookingChange::SeriesCreated, &created[0], tz).await;
        Ok(SeriesOutcome { series: series.id, created: self.decorate(created, tz).await?, conflicts })
    }

    /// Reschedules, annotates, confirms or cancels a booking.
    pub async fn update(&self, user: &UserSubject, id: BookingId, change: Change) -> Result<Booking, BookingError> {
        let reschedule = change.start.is_some() || change.duration_minutes.is_some() || change.device.is_some();
        match change.status {
            Some(BookingStatus::Cancelled) if reschedule => {
                return Err(BookingError::invalid("status", "cancel, or reschedule: not both at once"))
            }
            Some(BookingStatus::Cancelled) => return self.cancel(user, id, change.cancel_reason).await,
            Some(BookingStatus::Scheduled | BookingStatus::Completed) => {
                return Err(BookingError::invalid(
                    "status",
                    "only `confirmed` or `cancelled` can be set; bookings complete by themselves",
                ))
            }
            Some(BookingStatus::Confirmed) | None => {}
        }
        if change.cancel_reason.is_some() {
            return Err(BookingError::invalid("cancelReason", "only with status `cancelled`"));
        }
        let subject = Subject::User(*user);
        let (settings, notice) = self.settings_and_notice(user).await?;
        let current = self.authorized(&subject, id, BookingAction::Change, notice).await?;
        let confirm = change.status == Some(BookingStatus::Confirmed);
        if confirm {
            self.authorized(&subject, id, BookingAction::Confirm, notice).await?;
        }
        if !ACTIVE.contains(&current.status) {
            return Err(BookingError::conflict(
                "invalid_transition",
                format!("the booking is {}: it can no longer be changed", current.status),
                Vec::new(),
            ));
        }
        let p = Placement {
            device: change.device.unwrap_or(current.device_id),
            start: change.start.unwrap_or(current.scheduled_start),
            duration_minutes: match change.duration_minutes {
                Some(m) => {
                    check_duration(m)?;
                    m
                }
                None => current.duration_minutes as u32,
            },
            changeover_minutes: settings.changeover_minutes,
        };
        if reschedule && p.device != current.device_id {
            self.policy()
                .book(&subject, current.patient_id, p.device, settings.patients_book_any_device)
                .await
                .map_err(|e| BookingError::policy(e, "device"))?;
        }
        if reschedule {
            check_time(&settings, &p).map_err(|(_, m)| BookingError::invalid("scheduledDate", m))?;
        }
        let txn = self.db().begin().await?;
        let mut row = current.clone().into_active_model();
        if reschedule {
            store::check_device(&txn, &p).await?;
            row.device_id = Set(p.device);
            row.scheduled_start = Set(p.start);
            row.duration_minutes = Set(p.duration_minutes as i32);
            row.scheduled_end = Set(p.end());
            row.blocked_until = Set(p.blocked_until());
            // Not an access rule: the patient may reschedule (the policy decided `Change`
            // above); what differs is the state a rescheduling leaves the booking in. A
            // patient's new time waits for the unit to confirm it again (staff, who confirm
            // bookings, keep theirs as they are): the booking workflow, not who may act.
            if user.role == Role::Patient {
                row.status = Set(BookingStatus::Scheduled);
                row.confirmed_at = Set(None);
                row.confirmed_by = Set(None);
            }
        }
        if let Some(notes) = change.notes {
            row.notes = Set(Some(notes));
        }
        if confirm && current.status == BookingStatus::Scheduled {
            row.status = Set(BookingStatus::Confirmed);
            row.confirmed_at = Set(Some(Utc::now()));
            row.confirmed_by = Set(Some(user.id));
        }
        row.updated_at = Set(Utc::now());
        let updated = write(&txn, row, &p, current.patient_id, Some(id)).await?;
        let event = if reschedule {
            BookingChange::Rescheduled
        } else if confirm {
            BookingChange::Confirmed
        } else {
            BookingChange::Updated
        };
        self.audit_change(&txn, &subject, event.as_str(), &current, &updated).await?;
        txn.commit().await?;
        self.notify(user, event, &updated, settings.time_zone).await;
        Ok(self.decorate(vec![updated], settings.time_zone).await?.remove(0))
    }

    /// Cancels a booking (idempotent: a cancelled booking is returned as it is).
    pub async fn cancel(
        &self,
        user: &UserSubject,
        id: BookingId,
        reason: Option<String>,
    ) -> Result<Booking, BookingError> {
        let subject = Subject::User(*user);
        let (settings, notice) = self.settings_and_notice(user).await?;
        let current = self.authorized(&subject, id, BookingAction::Change, notice).await?;
        match current.status {
            BookingStatus::Cancelled => return Ok(self.decorate(vec![current], settings.time_zone).await?.remove(0)),
            BookingStatus::Completed => {
                return Err(BookingError::conflict(
                    "invalid_transition",
                    "the booking is completed: it can no longer be cancelled",
                    Vec::new(),
                ))
            }
            BookingStatus::Scheduled | BookingStatus::Confirmed => {}
        }
        let txn = self.db().begin().await?;
        let updated = cancel_row(&txn, &current, user, reason).await?;
        self.audit_change(&txn, &subject, "cancelled", &current, &updated).await?;
        txn.commit().await?;
        self.notify(user, BookingChange::Cancelled, &updated, settings.time_zone).await;
        Ok(self.decorate(vec![updated], settings.time_zone).await?.remove(0))
    }

    /// Cancels the bookings of a series that start at or after `from` (all of them, or
    /// none when one may not be cancelled by this person).
    pub async fn cancel_series(
        &self,
        user: &UserSubject,
        series: SeriesId,
        from: DateTime<Utc>,
        reason: Option<String>,
    ) -> Result<Vec<Booking>, BookingError> {
        let subject = Subject::User(*user);
        let (settings, notice) = self.settings_and_notice(user).await?;
        let s = booking_series::Entity::find_by_id(series)
            .one(self.db())
            .await?
            .filter(|s| s.hospital_id == user.hospital)
            .ok_or(BookingError::NotFound("series"))?;
        self.policy()
            .book(&subject, s.patient_id, s.device_id, true)
            .await
            .map_err(|e| BookingError::policy(e, "series"))?;
        let rows = session_bookings::Entity::find()
            .filter(session_bookings::Column::SeriesId.eq(series))
            .filter(session_bookings::Column::Status.is_in(ACTIVE))
            .filter(session_bookings::Column::ScheduledStart.gte(from))
            .order_by_asc(session_bookings::Column::ScheduledStart)
            .all(self.db())
            .await?;
        for r in &rows {
            self.authorized(&subject, r.id, BookingAction::Change, notice).await?;
        }
        let txn = self.db().begin().await?;
        let mut cancelled = Vec::new();
        for r in &rows {
            cancelled.push(cancel_row(&txn, r, user, reason.clone()).await?);
        }
        crate::audit::record_with(
            &txn,
            access(&subject, AuditAction::Update, "booking.series", Some(s.patient_id), Some(s.device_id)),
            Some(serde_json::json!({"event": "cancelled", "seriesId": series, "from": from, "cancelled": cancelled.len()})),
        )
        .await?;
        txn.commit().await?;
        if let Some(first) = cancelled.first() {
            self.notify(user, BookingChange::SeriesCancelled, first, settings.time_zone).await;
        }
        Ok(self.decorate(cancelled, settings.time_zone).await?)
    }

    /// The hospital's settings and its cancellation notice.
    async fn settings_and_notice(&self, user: &UserSubject) -> Result<(Settings, Duration), BookingError> {
        let settings = store::settings(self.db(), user.hospital).await?;
        let notice = Duration::minutes(i64::from(settings.cancel_notice_minutes));
        Ok((settings, notice))
    }

    /// The booking, if `subject` may do `action` to it.
    async fn authorized(
        &self,
        subject: &Subject,
        id: BookingId,
        action: BookingAction,
        notice: Duration,
    ) -> Result<session_bookings::Model, BookingError> {
        self.policy().booking(subject, id, action, notice).await.map_err(|e| BookingError::policy(e, "booking"))
    }

    async fn audit_change(
        &self,
        txn: &DatabaseTransaction,
        subject: &Subject,
        event: &str,
        old: &session_bookings::Model,
        new: &session_bookings::Model,
    ) -> Result<(), BookingError> {
        let view = |b: &session_bookings::Model| {
            serde_json::json!({"status": b.status, "deviceId": b.device_id, "start": b.scheduled_start,
                "minutes": b.duration_minutes, "notes": b.notes, "cancelReason": b.cancel_reason})
        };
        crate::audit::record_with(
            txn,
            access(subject, AuditAction::Update, "booking", Some(new.patient_id), Some(new.device_id)),
            Some(serde_json::json!({"bookingId": new.id, "event": event, "old": view(old), "new": view(new)})),
        )
        .await?;
        Ok(())
    }
}

async fn cancel_row(
    txn: &DatabaseTransaction,
    current: &session_bookings::Model,
    user: &UserSubject,
    reason: Option<String>,
) -> Result<session_bookings::Model, BookingError> {
    let mut row = current.clone().into_active_model();
    row.status = Set(BookingStatus::Cancelled);
    row.cancelled_at = Set(Some(Utc::now()));
    row.cancelled_by = Set(Some(user.id));
    row.cancel_reason = Set(reason);
    row.updated_at = Set(Utc::now());
    Ok(row.update(txn).await?)
}
