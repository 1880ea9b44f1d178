//! Dialysis session bookings: one capability that owns its storage ([`store`]), its rules
//! (who books what is the policy module's `book` and `booking`; opening hours, slots and
//! recurrence are [`settings`], [`slots`] and [`series`]) and its fan-out (a notification
//! to the patient and the device's technicians on every change, over MQTT). The REST API
//! calls it.
//!
//! Double-booking is decided by the database: exclusion constraints on a device's
//! `[start, end + changeover)` and a patient's `[start, end)`, so concurrent requests for
//! one slot give exactly one booking; the others get [`BookingError::Conflict`] naming it.

mod availability;
mod change;
pub mod note;
pub mod series;
pub mod settings;
pub mod slots;
pub mod store;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use nc_access::{audit, BookingAction, BookingScope, HospitalAction, Policy, PolicyError, Subject, UserSubject};
pub use nc_domain::ConflictReason;
use nc_domain::{AuditAction, BookingId, BookingStatus, DeviceId, Interface, PatientId};
use nc_entities::session_bookings;
use nc_messaging::topic::Topic;
use nc_messaging::Publisher;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, TransactionTrait};

pub use chrono_tz::Tz;

pub use availability::{Availability, AvailabilityQuery, Busy, DeviceAvailability, Slot};
pub use change::{Change, NewBooking, SeriesOutcome, SeriesRequest};
pub use note::{BookingChange, BookingNote};
pub use settings::Settings;
pub use store::Filter;

/// Statuses that hold a slot.
pub(crate) const ACTIVE: [BookingStatus; 2] = [BookingStatus::Scheduled, BookingStatus::Confirmed];

/// Sessions last 15 minutes to 12 hours.
pub const DURATION_MINUTES: std::ops::RangeInclusive<u32> = 15..=720;
/// Longest availability query, in days.
pub const MAX_AVAILABILITY_DAYS: i64 = 14;

/// What a request collided with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub start: Option<DateTime<Utc>>,
    /// The local date (recurring series).
    pub date: Option<NaiveDate>,
    pub reason: ConflictReason,
    /// The booking in the way, if any.
    pub booking: Option<BookingId>,
}

/// Why a booking request is refused.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String, conflicts: Vec<Conflict> },
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

impl BookingError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        BookingError::Invalid { field, message: message.into() }
    }
    pub(crate) fn conflict(code: &'static str, message: impl Into<String>, conflicts: Vec<Conflict>) -> Self {
        BookingError::Conflict { code, message: message.into(), conflicts }
    }
    fn policy(e: PolicyError, what: &'static str) -> Self {
        match e {
            PolicyError::Denied(nc_access::Denied::NotFound) => BookingError::NotFound(what),
            PolicyError::Denied(nc_access::Denied::Forbidden(m)) => BookingError::Forbidden(m.to_owned()),
            PolicyError::Db(e) => BookingError::Db(e),
        }
    }
}

/// A booking with what is needed to show it: the hospital's time zone and the names.
#[derive(Debug, Clone)]
pub struct Booking {
    pub row: session_bookings::Model,
    pub time_zone: Tz,
    pub patient_name: Option<String>,
    pub device_name: Option<String>,
}

struct Inner {
    db: DatabaseConnection,
    policy: Policy,
    publisher: Publisher,
}

/// The bookings service. Cheap to clone.
#[derive(Clone)]
pub struct Bookings {
    inner: Arc<Inner>,
}

impl Bookings {
    /// The bookings service, notifying people through `publisher`.
    pub fn new(db: DatabaseConnection, publisher: Publisher) -> Bookings {
        Bookings { inner: Arc::new(Inner { policy: Policy::new(db.clone()), db, publisher }) }
    }

    fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The hospital's booking settings (every person of the hospital may read them).
    pub async fn settings(&self, user: &UserSubject) -> Result<Settings, BookingError> {
        Ok(store::settings(self.db(), user.hospital).await?)
    }

    /// Replaces the hospital's settings (admins). Bookings already made keep the changeover
    /// they were booked with.
    pub async fn set_settings(&self, user: &UserSubject, new: Settings) -> Result<Settings, BookingError> {
        let subject = Subject::User(*user);
        self.policy()
            .hospital(&subject, user.hospital, HospitalAction::ConfigureBookings)
            .map_err(|e| BookingError::policy(e.into(), "hospital"))?;
        if new.hours.0.iter().all(Option::is_none) {
            return Err(BookingError::invalid("openingHours", "the unit must open on at least one day"));
        }
        let old = store::settings(self.db(), user.hospital).await?;
        let txn = self.db().begin().await?;
        store::save_settings(&txn, user.hospital, &new, user.id).await?;
        let detail = serde_json::json!({
            "old": {"timeZone": old.time_zone.name(), "openingHours": settings::hours_to_json(&old.hours),
                    "slotMinutes": old.slot_minutes, "changeoverMinutes": old.changeover_minutes,
                    "cancelNoticeMinutes": old.cancel_notice_minutes, "patientsBookAnyDevice": old.patients_book_any_device,
                    "maxDaysAhead": old.max_days_ahead},
        });
        audit::record_with(&txn, access(&subject, AuditAction::Update, "booking.settings", None, None), Some(detail))
            .await?;
        txn.commit().await?;
        Ok(new)
    }

    /// One booking.
    pub async fn get(&self, user: &UserSubject, id: BookingId) -> Result<Booking, BookingError> {
        let subject = Subject::User(*user);
        let row = self
            .policy()
            .booking(&subject, id, BookingAction::View, chrono::Duration::zero())
            .await
            .map_err(|e| BookingError::policy(e, "booking"))?;
        let tz = store::settings(self.db(), user.hospital).await?.time_zone;
        Ok(self.decorate(vec![row], tz).await?.remove(0))
    }

    /// The bookings `user` may see, filtered, soonest first.
    pub async fn list(
        &self,
        user: &UserSubject,
        filter: &Filter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<Booking>, u64), BookingError> {
        let subject = Subject::User(*user);
        let scope = match self.policy().booking_scope(&subject).await? {
            BookingScope::Hospital => None,
            BookingScope::Only { patients, devices } => Some(
                Condition::any()
                    .add(session_bookings::Column::PatientId.is_in(patients))
                    .add(session_bookings::Column::DeviceId.is_in(devices)),
            ),
        };
        let (rows, total) = store::list(self.db(), user.hospital, scope, filter, limit, offset).await?;
        let tz = store::settings(self.db(), user.hospital).await?.time_zone;
        Ok((self.decorate(rows, tz).await?, total))
    }

    async fn decorate(&self, rows: Vec<session_bookings::Model>, tz: Tz) -> Result<Vec<Booking>, DbErr> {
        let (patients, devices) = store::names(self.db(), &rows).await?;
        Ok(rows
            .into_iter()
            .map(|row| Booking {
                patient_name: patients.iter().find(|(id, _)| *id == row.patient_id).map(|(_, n)| n.clone()),
                device_name: devices.iter().find(|(id, _)| *id == row.device_id).map(|(_, n)| n.clone()),
                row,
                time_zone: tz,
            })
            .collect())
    }

    /// Tells the patient and the device's technicians (but not whoever made the change).
    async fn notify(&self, actor: &UserSubject, event: BookingChange, b: &session_bookings::Model, tz: Tz) {
        let publisher = &self.inner.publisher;
        let audience = match store::audience(self.db(), b.patient_id, b.device_id).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "could not find whom to notify of a booking change");
                return;
            }
        };
        let note = BookingNote {
            v: nc_messaging::payload::V1,
            r#type: nc_messaging::payload::kind::Booking,
            event,
            booking_id: b.id,
            patient_id: b.patient_id,
            device_id: b.device_id,
            status: b.status,
            scheduled_date: b.scheduled_start,
            scheduled_end: b.scheduled_end,
            local_start: b.scheduled_start.with_timezone(&tz).to_rfc3339(),
            time_zone: tz.name().to_owned(),
            series_id: b.series_id,
            by: actor.role,
            at: Utc::now(),
        };
        for user in audience.into_iter().filter(|u| *u != actor.id) {
            let topic = Topic::Notifications { hospital: b.hospital_id, user };
            if let Err(e) = publisher.publish_json(&topic, &note).await {
                tracing::warn!(error = %e, "could not publish a booking notification");
            }
        }
    }

    /// The patient a request is about (the policy's [`nc_access::Policy::booking_patient`]):
    /// the caller's own record for a patient, the named one for staff (who must name one).
    async fn patient_for(&self, user: &UserSubject, named: Option<PatientId>) -> Result<PatientId, BookingError> {
        let subject = nc_access::Subject::User(*user);
        self.policy()
            .booking_patient(&subject, named)
            .await
            .map_err(|e| BookingError::policy(e, "patient"))?
            .ok_or_else(|| BookingError::invalid("patientId", "required when staff book"))
    }
}

/// An audit entry about a booking.
fn access<'a>(
    subject: &'a Subject,
    action: AuditAction,
    resource: &'a str,
    patient: Option<PatientId>,
    device: Option<DeviceId>,
) -> audit::Access<'a> {
    audit::Access { subject, action, resource, patient, device, interface: Interface::Rest, client_addr: None }
}
