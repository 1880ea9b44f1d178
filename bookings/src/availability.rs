//! Free start times, and the maintenance windows that make a device unbookable. Free/busy
//! only: availability never tells whose booking holds a time.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use nc_access::{Subject, UserSubject};
use nc_domain::{AuditAction, DeviceId, DeviceStatus, DowntimeId, PatientId};
use nc_entities::{device_downtimes, devices};
use sea_orm::TransactionTrait;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set};

use crate::slots::{device_free, grid_starts, patient_free, Interval};
use crate::{access, store, BookingError, Bookings, MAX_AVAILABILITY_DAYS};

/// Most devices one availability answer covers.
const MAX_DEVICES: u64 = 100;

/// Which devices, when, for how long, and (staff) for which patient.
#[derive(Debug, Clone)]
pub struct AvailabilityQuery {
    pub device: Option<DeviceId>,
    /// Devices whose location is this ward.
    pub ward: Option<String>,
    /// Also keep clear of this patient's other sessions (a patient: always themself).
    pub patient: Option<PatientId>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub duration_minutes: u32,
}

/// A free start time and the devices free then.
#[derive(Debug, Clone)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub devices: Vec<DeviceId>,
}

/// A time a device is taken: `maintenance`, or `booked` (a session and its changeover).
#[derive(Debug, Clone)]
pub struct Busy {
    pub device: DeviceId,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub maintenance: bool,
}

/// A device considered, and whether it can be booked at all.
#[derive(Debug, Clone)]
pub struct DeviceAvailability {
    pub id: DeviceId,
    pub name: String,
    pub status: DeviceStatus,
    pub bookable: bool,
}

#[derive(Debug, Clone)]
pub struct Availability {
    pub time_zone: Tz,
    pub duration_minutes: u32,
    pub changeover_minutes: u32,
    pub devices: Vec<DeviceAvailability>,
    pub slots: Vec<Slot>,
    pub busy: Vec<Busy>,
}

impl Bookings {
    /// Free start times in `[from, to)` (at most 14 days; from now on, up to the unit's
    /// booking horizon).
    pub async fn available(&self, user: &UserSubject, q: AvailabilityQuery) -> Result<Availability, BookingError> {
        let subject = Subject::User(*user);
        if q.to <= q.from {
            return Err(BookingError::invalid("to", "must be after `from`"));
        }
        if q.to - q.from > Duration::days(MAX_AVAILABILITY_DAYS) {
            return Err(BookingError::invalid("to", "at most 14 days after `from`"));
        }
        if !crate::DURATION_MINUTES.contains(&q.duration_minutes) {
            return Err(BookingError::invalid("duration", "must be 15 to 720 minutes"));
        }
        if q.device.is_some() && q.ward.is_some() {
            return Err(BookingError::invalid("ward", "give `deviceId` or `ward`, not both"));
        }
        let settings = store::settings(self.db(), user.hospital).await?;
        let patient = self
            .policy()
            .booking_patient(&nc_access::Subject::User(*user), q.patient)
            .await
            .map_err(|e| BookingError::policy(e, "patient"))?;
        let mut candidates = devices::Entity::find().filter(devices::Column::HospitalId.eq(user.hospital));
        if let Some(d) = q.device {
            candidates = candidates.filter(devices::Column::Id.eq(d));
        }
        if let Some(ward) = &q.ward {
            candidates = candidates.filter(devices::Column::Location.eq(ward.as_str()));
        }
        let mut found = candidates.order_by_asc(devices::Column::Name).limit(MAX_DEVICES).all(self.db()).await?;
        if q.device.is_some() && found.is_empty() {
            return Err(BookingError::NotFound("device"));
        }
        // Only devices this person may book (for this patient); a named device they may not
        // is refused, others are left out.
        if let Some(p) = patient {
            let mut allowed = Vec::new();
            for d in found {
                match self.policy().book(&subject, p, d.id, settings.patients_book_any_device).await {
                    Ok(_) => allowed.push(d),
                    Err(e) if q.device.is_some() => return Err(BookingError::policy(e, "patient or device")),
                    Err(nc_access::PolicyError::Db(e)) => return Err(e.into()),
                    Err(nc_access::PolicyError::Denied(nc_access::Denied::NotFound)) => {
                        return Err(BookingError::NotFound("patient"))
                    }
                    Err(_) => {}
                }
            }
            found = allowed;
        }
        let now = Utc::now();
        let from = q.from.max(now);
        let to = q.to.min(now + Duration::days(i64::from(settings.max_days_ahead)));
        let duration = Duration::minutes(i64::from(q.duration_minutes));
        let changeover = Duration::minutes(i64::from(settings.changeover_minutes));
        let ids: Vec<DeviceId> = found.iter().map(|d| d.id).collect();
        // Whatever may touch a session starting in the range.
        let (lo, hi) = (from - Duration::days(1), to + duration + changeover + Duration::days(1));
        let busy = store::device_busy(self.db(), &ids, lo, hi).await?;
        let patient_busy = match patient {
            Some(p) => store::patient_busy(self.db(), p, lo, hi).await?,
            None => Vec::new(),
        };
        let bookable: Vec<DeviceId> = found.iter().filter(|d| d.status == DeviceStatus::Active).map(|d| d.id).collect();
        let per_device: Vec<(DeviceId, Vec<Interval>)> = bookable
            .iter()
            .map(|d| (*d, busy.iter().filter(|(id, ..)| id == d).map(|(_, i, _)| *i).collect()))
            .collect();
        let mut slots = Vec::new();
        if from < to {
            for start in grid_starts(&settings, from, to, duration) {
                if !patient_free(&patient_busy, start, duration) {
                    continue;
                }
                let free: Vec<DeviceId> = per_device
                    .iter()
                    .filter(|(_, b)| device_free(b, start, duration, changeover))
                    .map(|(d, _)| *d)
                    .collect();
                if !free.is_empty() {
                    slots.push(Slot { start, end: start + duration, devices: free });
                }
            }
        }
        Ok(Availability {
            time_zone: settings.time_zone,
            duration_minutes: q.duration_minutes,
            changeover_minutes: settings.changeover_minutes,
            devices: found
                .into_iter()
                .map(|d| DeviceAvailability {
                    bookable: d.status == DeviceStatus::Active,
                    id: d.id,
                    name: d.name,
                    status: d.status,
                })
                .collect(),
            slots,
            busy: busy
                .into_iter()
                .filter(|(_, i, _)| i.end > q.from && i.start < q.to)
                .map(|(device, i, maintenance)| Busy { device, start: i.start, end: i.end, maintenance })
                .collect(),
        })
    }

    /// Plans a maintenance window on a device (its admins and technicians): refused while
    /// a booking is in the way.
    pub async fn add_downtime(
        &self,
        user: &UserSubject,
        device: DeviceId,
        window: Interval,
        reason: Option<String>,
    ) -> Result<device_downtimes::Model, BookingError> {
        let subject = Subject::User(*user);
        let d = self.maintainer(&subject, device).await?;
        if window.end <= window.start {
            return Err(BookingError::invalid("endsAt", "must be after `startsAt`"));
        }
        if window.end - window.start > Duration::days(90) {
            return Err(BookingError::invalid("endsAt", "a window lasts at most 90 days"));
        }
        if window.end <= Utc::now() {
            return Err(BookingError::invalid("endsAt", "must be in the future"));
        }
        let txn = self.db().begin().await?;
        let w = store::add_downtime(&txn, &d, window, reason, user.id).await?;
        crate::audit::record_with(
            &txn,
            access(&subject, AuditAction::Create, "device.downtime", None, Some(device)),
            Some(serde_json::json!({"downtimeId": w.id, "startsAt": w.starts_at, "endsAt": w.ends_at})),
        )
        .await?;
        txn.commit().await?;
        Ok(w)
    }

    /// Maintenance windows of the hospital's devices (every person of the hospital may
    /// see them: they are free/busy), soonest first, not yet over.
    pub async fn downtimes(
        &self,
        user: &UserSubject,
        device: Option<DeviceId>,
    ) -> Result<Vec<device_downtimes::Model>, BookingError> {
        let mut q = device_downtimes::Entity::find()
            .filter(device_downtimes::Column::HospitalId.eq(user.hospital))
            .filter(device_downtimes::Column::CancelledAt.is_null())
            .filter(device_downtimes::Column::EndsAt.gt(Utc::now()));
        if let Some(d) = device {
            q = q.filter(device_downtimes::Column::DeviceId.eq(d));
        }
        Ok(q.order_by_asc(device_downtimes::Column::StartsAt).limit(500).all(self.db()).await?)
    }

    /// Ends a maintenance window early or calls it off.
    pub async fn cancel_downtime(
        &self,
        user: &UserSubject,
        id: DowntimeId,
    ) -> Result<device_downtimes::Model, BookingError> {
        let subject = Subject::User(*user);
        let w = device_downtimes::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .filter(|w| w.hospital_id == user.hospital)
            .ok_or(BookingError::NotFound("maintenance window"))?;
        self.maintainer(&subject, w.device_id).await?;
        if w.cancelled_at.is_some() {
            return Ok(w);
        }
        let txn = self.db().begin().await?;
        let mut row = w.clone().into_active_model();
        row.cancelled_at = Set(Some(Utc::now()));
        let w = row.update(&txn).await?;
        crate::audit::record_with(
            &txn,
            access(&subject, AuditAction::Update, "device.downtime", None, Some(w.device_id)),
            Some(serde_json::json!({"downtimeId": w.id, "event": "cancelled"})),
        )
        .await?;
        txn.commit().await?;
        Ok(w)
    }

    async fn maintainer(&self, subject: &Subject, device: DeviceId) -> Result<devices::Model, BookingError> {
        self.policy().plan_maintenance(subject, device).await.map_err(|e| BookingError::policy(e, "device"))
    }
}
