//! Booking storage. The exclusion constraints of `session_bookings` decide double-booking;
//! a booking takes a shared lock on its device row and a maintenance window an exclusive
//! one, so a window and a booking cannot slip past each other either.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use nc_domain::{
    AssignmentRole, BookingId, BookingStatus, DeviceId, DeviceStatus, DowntimeId, HospitalId, PatientId, SeriesId,
    UserId,
};
use nc_entities::{
    booking_settings, device_assignments, device_downtimes, devices, hospitals, patients, session_bookings,
    temporary_access_grants,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::settings::{hours_from_json, hours_to_json, Settings};
use crate::slots::Interval;
use crate::{BookingError, Conflict, ConflictReason, ACTIVE};

/// The hospital's settings (the defaults where none are stored).
pub async fn settings(db: &impl ConnectionTrait, hospital: HospitalId) -> Result<Settings, DbErr> {
    let h = hospitals::Entity::find_by_id(hospital).one(db).await?.ok_or(DbErr::RecordNotFound("hospital".into()))?;
    let tz = h.timezone.parse::<Tz>().unwrap_or_else(|_| {
        tracing::warn!(hospital = %hospital, timezone = %h.timezone, "unknown time zone; using UTC");
        Tz::UTC
    });
    Ok(match booking_settings::Entity::find_by_id(hospital).one(db).await? {
        None => Settings::defaults(tz),
        Some(s) => Settings {
            time_zone: tz,
            hours: hours_from_json(&s.opening_hours),
            slot_minutes: s.slot_minutes as u32,
            changeover_minutes: s.changeover_minutes as u32,
            cancel_notice_minutes: s.cancel_notice_minutes as u32,
            patients_book_any_device: s.patients_book_any_device,
            max_days_ahead: s.max_days_ahead as u32,
        },
    })
}

pub async fn save_settings(
    txn: &DatabaseTransaction,
    hospital: HospitalId,
    s: &Settings,
    by: UserId,
) -> Result<(), DbErr> {
    let row = booking_settings::ActiveModel {
        hospital_id: Set(hospital),
        opening_hours: Set(hours_to_json(&s.hours)),
        slot_minutes: Set(s.slot_minutes as i32),
        changeover_minutes: Set(s.changeover_minutes as i32),
        cancel_notice_minutes: Set(s.cancel_notice_minutes as i32),
        patients_book_any_device: Set(s.patients_book_any_device),
        max_days_ahead: Set(s.max_days_ahead as i32),
        updated_at: Set(Utc::now()),
        updated_by: Set(Some(by)),
    };
    booking_settings::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(booking_settings::Column::HospitalId)
                .update_columns([
                    booking_settings::Column::OpeningHours,
                    booking_settings::Column::SlotMinutes,
                    booking_settings::Column::ChangeoverMinutes,
                    booking_settings::Column::CancelNoticeMinutes,
                    booking_settings::Column::PatientsBookAnyDevice,
                    booking_settings::Column::MaxDaysAhead,
                    booking_settings::Column::UpdatedAt,
                    booking_settings::Column::UpdatedBy,
                ])
                .to_owned(),
        )
        .exec(txn)
        .await?;
    hospitals::ActiveModel {
        id: Set(hospital),
        timezone: Set(s.time_zone.name().to_owned()),
        updated_at: Set(Utc::now()),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Ok(())
}

/// Where and when a booking is to be: checked and written by [`place`].
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub device: DeviceId,
    pub start: DateTime<Utc>,
    pub duration_minutes: u32,
    pub changeover_minutes: u32,
}

impl Placement {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::minutes(i64::from(self.duration_minutes))
    }
    pub fn blocked_until(&self) -> DateTime<Utc> {
        self.end() + Duration::minutes(i64::from(self.changeover_minutes))
    }
}

/// Locks the device for booking (shared: bookings do not wait for each other) and checks
/// it can be booked then: active, and no maintenance window in the way.
pub async fn check_device(txn: &DatabaseTransaction, p: &Placement) -> Result<(), BookingError> {
    let device =
        devices::Entity::find_by_id(p.device).lock_shared().one(txn).await?.ok_or(BookingError::NotFound("device"))?;
    if device.status != DeviceStatus::Active {
        return Err(BookingError::conflict(
            "device_not_bookable",
            format!("the device is {} and cannot be booked", device.status),
            vec![Conflict {
                start: Some(p.start),
                date: None,
                reason: ConflictReason::DeviceNotBookable,
                booking: None,
            }],
        ));
    }
    let window = device_downtimes::Entity::find()
        .filter(device_downtimes::Column::DeviceId.eq(p.device))
        .filter(device_downtimes::Column::CancelledAt.is_null())
        .filter(device_downtimes::Column::StartsAt.lt(p.blocked_until()))
        .filter(device_downtimes::Column::EndsAt.gt(p.start))
        .one(txn)
        .await?;
    if let Some(w) = window {
        return Err(BookingError::conflict(
            "device_maintenance",
            format!("the device is in maintenance from {} to {}", w.starts_at.to_rfc3339(), w.ends_at.to_rfc3339()),
            vec![Conflict {
                start: Some(p.start),
                date: None,
                reason: ConflictReason::DeviceMaintenance,
                booking: None,
            }],
        ));
    }
    Ok(())
}

/// Serializes the writes that the exclusion constraints compare: one writer at a time per
/// device, then per patient (always in that order). Without it, two transactions inserting
/// conflicting rows into both constraints (same device, different patients, and the reverse)
/// wait for each other's speculative index entries and PostgreSQL aborts one as a deadlock.
/// Transaction-scoped advisory locks: nothing else waits on them, and they end with the commit.
pub async fn serialize_writes(txn: &DatabaseTransaction, device: DeviceId, patient: PatientId) -> Result<(), DbErr> {
    for (class, key) in [(1801, device.as_uuid()), (1802, patient.as_uuid())] {
        txn.execute(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, hashtext($2::text))",
            [sea_orm::Value::from(class), key.into()],
        ))
        .await?;
    }
    Ok(())
}

/// An exclusion-constraint refusal as the booking it collided with.
pub async fn collision(
    txn: &DatabaseTransaction,
    err: DbErr,
    p: &Placement,
    patient: PatientId,
    except: Option<BookingId>,
) -> BookingError {
    let text = err.to_string();
    let (reason, condition) = if text.contains("session_bookings_device_no_overlap_excl") {
        (
            ConflictReason::DeviceBooked,
            Condition::all()
                .add(session_bookings::Column::DeviceId.eq(p.device))
                .add(session_bookings::Column::ScheduledStart.lt(p.blocked_until()))
                .add(session_bookings::Column::BlockedUntil.gt(p.start)),
        )
    } else if text.contains("session_bookings_patient_no_overlap_excl") {
        (
            ConflictReason::PatientBooked,
            Condition::all()
                .add(session_bookings::Column::PatientId.eq(patient))
                .add(session_bookings::Column::ScheduledStart.lt(p.end()))
                .add(session_bookings::Column::ScheduledEnd.gt(p.start)),
        )
    } else {
        return err.into();
    };
    let mut q = session_bookings::Entity::find()
        .select_only()
        .column(session_bookings::Column::Id)
        .filter(condition)
        .filter(session_bookings::Column::Status.is_in(ACTIVE));
    if let Some(id) = except {
        q = q.filter(session_bookings::Column::Id.ne(id));
    }
    let other: Option<BookingId> = match q.into_tuple().one(txn).await {
        Ok(o) => o,
        Err(e) => return e.into(),
    };
    let what = match reason {
        ConflictReason::DeviceBooked => "the device is booked then (including the changeover between sessions)",
        _ => "the patient has another session then",
    };
    let message = match other {
        Some(id) => format!("{what}: booking {id}"),
        None => what.to_owned(),
    };
    BookingError::conflict(
        "booking_conflict",
        message,
        vec![Conflict { start: Some(p.start), date: None, reason, booking: other }],
    )
}

/// A new booking row.
pub fn new_row(
    hospital: HospitalId,
    patient: PatientId,
    p: &Placement,
    notes: Option<String>,
    series: Option<SeriesId>,
    by: UserId,
) -> session_bookings::ActiveModel {
    let now = Utc::now();
    session_bookings::ActiveModel {
        id: Set(BookingId::new()),
        hospital_id: Set(hospital),
        patient_id: Set(patient),
        device_id: Set(p.device),
        scheduled_start: Set(p.start),
        duration_minutes: Set(p.duration_minutes as i32),
        scheduled_end: Set(p.end()),
        blocked_until: Set(p.blocked_until()),
        status: Set(BookingStatus::Scheduled),
        notes: Set(notes),
        created_by: Set(Some(by)),
        created_at: Set(now),
        updated_at: Set(now),
        series_id: Set(series),
        confirmed_at: Set(None),
        confirmed_by: Set(None),
        cancelled_at: Set(None),
        cancelled_by: Set(None),
        cancel_reason: Set(None),
        completed_session_id: Set(None),
    }
}

/// Active bookings (each up to the end of its changeover) and maintenance windows of
/// `devices` overlapping `[from, to)`.
pub async fn device_busy(
    db: &impl ConnectionTrait,
    devices: &[DeviceId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DeviceId, Interval, bool)>, DbErr> {
    let booked = session_bookings::Entity::find()
        .filter(session_bookings::Column::DeviceId.is_in(devices.iter().copied()))
        .filter(session_bookings::Column::Status.is_in(ACTIVE))
        .filter(session_bookings::Column::ScheduledStart.lt(to))
        .filter(session_bookings::Column::BlockedUntil.gt(from))
        .all(db)
        .await?;
    let windows = device_downtimes::Entity::find()
        .filter(device_downtimes::Column::DeviceId.is_in(devices.iter().copied()))
        .filter(device_downtimes::Column::CancelledAt.is_null())
        .filter(device_downtimes::Column::StartsAt.lt(to))
        .filter(device_downtimes::Column::EndsAt.gt(from))
        .all(db)
        .await?;
    let mut out: Vec<(DeviceId, Interval, bool)> = booked
        .into_iter()
        .map(|b| (b.device_id, Interval { start: b.scheduled_start, end: b.blocked_until }, false))
        .chain(windows.into_iter().map(|w| (w.device_id, Interval { start: w.starts_at, end: w.ends_at }, true)))
        .collect();
    out.sort_by_key(|(d, i, _)| (*d, i.start));
    Ok(out)
}

/// A patient's active sessions overlapping `[from, to)`.
pub async fn patient_busy(
    db: &impl ConnectionTrait,
    patient: PatientId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Interval>, DbErr> {
    Ok(session_bookings::Entity::find()
        .filter(session_bookings::Column::PatientId.eq(patient))
        .filter(session_bookings::Column::Status.is_in(ACTIVE))
        .filter(session_bookings::Column::ScheduledStart.lt(to))
        .filter(session_bookings::Column::ScheduledEnd.gt(from))
        .all(db)
        .await?
        .into_iter()
        .map(|b| Interval { start: b.scheduled_start, end: b.scheduled_end })
        .collect())
}

/// Listing filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient: Option<PatientId>,
    pub device: Option<DeviceId>,
    pub status: Option<BookingStatus>,
    pub series: Option<SeriesId>,
    /// Bookings ending after this.
    pub from: Option<DateTime<Utc>>,
    /// Bookings starting before this.
    pub to: Option<DateTime<Utc>>,
}

pub async fn list(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    scope: Option<Condition>,
    f: &Filter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<session_bookings::Model>, u64), DbErr> {
    let mut q = session_bookings::Entity::find().filter(session_bookings::Column::HospitalId.eq(hospital));
    if let Some(scope) = scope {
        q = q.filter(scope);
    }
    if let Some(p) = f.patient {
        q = q.filter(session_bookings::Column::PatientId.eq(p));
    }
    if let Some(d) = f.device {
        q = q.filter(session_bookings::Column::DeviceId.eq(d));
    }
    if let Some(s) = f.status {
        q = q.filter(session_bookings::Column::Status.eq(s));
    }
    if let Some(s) = f.series {
        q = q.filter(session_bookings::Column::SeriesId.eq(s));
    }
    if let Some(from) = f.from {
        q = q.filter(session_bookings::Column::ScheduledEnd.gt(from));
    }
    if let Some(to) = f.to {
        q = q.filter(session_bookings::Column::ScheduledStart.lt(to));
    }
    let total = q.clone().count(db).await?;
    let items = q
        .order_by_asc(session_bookings::Column::ScheduledStart)
        .order_by_asc(session_bookings::Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?;
    Ok((items, total))
}

/// Names of the patients and devices of some bookings.
pub async fn names(
    db: &impl ConnectionTrait,
    rows: &[session_bookings::Model],
) -> Result<(Vec<(PatientId, String)>, Vec<(DeviceId, String)>), DbErr> {
    let patients: Vec<(PatientId, String)> = patients::Entity::find()
        .select_only()
        .columns([patients::Column::Id, patients::Column::Name])
        .filter(patients::Column::Id.is_in(rows.iter().map(|r| r.patient_id)))
        .into_tuple()
        .all(db)
        .await?;
    let devices: Vec<(DeviceId, String)> = devices::Entity::find()
        .select_only()
        .columns([devices::Column::Id, devices::Column::Name])
        .filter(devices::Column::Id.is_in(rows.iter().map(|r| r.device_id)))
        .into_tuple()
        .all(db)
        .await?;
    Ok((patients, devices))
}

/// Who hears of a change: the patient's account and the device's technicians (assigned,
/// or holding a hand-over).
pub async fn audience(db: &impl ConnectionTrait, patient: PatientId, device: DeviceId) -> Result<Vec<UserId>, DbErr> {
    let mut users: Vec<UserId> =
        patients::Entity::find_by_id(patient).one(db).await?.and_then(|p| p.user_id).into_iter().collect();
    let assigned: Vec<UserId> = device_assignments::Entity::find()
        .select_only()
        .column(device_assignments::Column::UserId)
        .filter(device_assignments::Column::DeviceId.eq(device))
        .filter(device_assignments::Column::Role.eq(AssignmentRole::Technician))
        .filter(device_assignments::Column::EndedAt.is_null())
        .into_tuple()
        .all(db)
        .await?;
    let granted: Vec<UserId> = temporary_access_grants::Entity::find()
        .select_only()
        .column(temporary_access_grants::Column::GrantedTo)
        .filter(temporary_access_grants::Column::DeviceId.eq(device))
        .filter(nc_access::policy::active_grant())
        .into_tuple()
        .all(db)
        .await?;
    users.extend(assigned);
    users.extend(granted);
    users.sort();
    users.dedup();
    Ok(users)
}

/// A new maintenance window, unless an active booking is in the way.
pub async fn add_downtime(
    txn: &DatabaseTransaction,
    device: &devices::Model,
    interval: Interval,
    reason: Option<String>,
    by: UserId,
) -> Result<device_downtimes::Model, BookingError> {
    devices::Entity::find_by_id(device.id).lock_exclusive().one(txn).await?;
    let in_the_way = session_bookings::Entity::find()
        .filter(session_bookings::Column::DeviceId.eq(device.id))
        .filter(session_bookings::Column::Status.is_in(ACTIVE))
        .filter(session_bookings::Column::ScheduledStart.lt(interval.end))
        .filter(session_bookings::Column::BlockedUntil.gt(interval.start))
        .order_by_asc(session_bookings::Column::ScheduledStart)
        .limit(50)
        .all(txn)
        .await?;
    if !in_the_way.is_empty() {
        return Err(BookingError::conflict(
            "booking_conflict",
            format!(
                "{} booking(s) of the device fall in this window: reschedule or cancel them first",
                in_the_way.len()
            ),
            in_the_way
                .iter()
                .map(|b| Conflict {
                    start: Some(b.scheduled_start),
                    date: None,
                    reason: ConflictReason::DeviceBooked,
                    booking: Some(b.id),
                })
                .collect(),
        ));
    }
    Ok(device_downtimes::ActiveModel {
        id: Set(DowntimeId::new()),
        hospital_id: Set(device.hospital_id),
        device_id: Set(device.id),
        starts_at: Set(interval.start),
        ends_at: Set(interval.end),
        reason: Set(reason),
        created_by: Set(Some(by)),
        created_at: Set(Utc::now()),
        cancelled_at: Set(None),
    }
    .insert(txn)
    .await?)
}
