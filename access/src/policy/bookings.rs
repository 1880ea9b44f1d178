//! Who books, sees and changes dialysis bookings:
//! - a patient books, reschedules and cancels their own sessions, on their assigned device
//!   (any device of their hospital when the unit allows it), and changes or cancels them
//!   only up to the unit's notice before the start; they see their own bookings only;
//! - a doctor books for the patients they are responsible for (their assigned doctor, or a
//!   doctor of a device the patient is or was on), changes and confirms those bookings, and
//!   sees them and the bookings of their devices;
//! - a technician sees the bookings of its devices (assigned, or handed over while the
//!   hand-over lasts), to prepare the machines, but books nothing;
//! - an admin books, changes, confirms and sees every booking of the hospital;
//! - nothing crosses hospitals (404).
//!
//! The rules are pure functions over facts ([`decide_booking`], [`decide_book`]), tested
//! below; [`Policy`] gathers the facts.

use chrono::{Duration, Utc};
use nc_domain::{AssignmentRole, BookingId, DeviceId, HospitalId, PatientId, Role, UserId};
use nc_entities::{device_sessions, devices, patients, session_bookings};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::{Decision, Denied, DeviceFacts, DeviceScope, Policy, PolicyError, Subject, UserSubject};

/// What may be done to an existing booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingAction {
    View,
    /// Reschedule (time, length, device), change its notes, or cancel it.
    Change,
    /// Confirm it (staff).
    Confirm,
}

/// What the decision on one booking depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BookingFacts {
    pub hospital: Option<HospitalId>,
    /// The subject is the booking's patient.
    pub is_own: bool,
    /// The subject (doctor) is responsible for the booking's patient.
    pub responsible: bool,
    /// The subject (doctor, technician) is assigned to, or holds a hand-over of, the device.
    pub device_staff: bool,
    /// The booking starts within the unit's cancellation notice (or has started).
    pub within_notice: bool,
}

pub fn decide_booking(subject: &Subject, facts: &BookingFacts, action: BookingAction) -> Decision {
    let Some(hospital) = facts.hospital else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices do not book")) };
    use BookingAction::*;
    match (user.role, action) {
        (Role::Admin, _) => Ok(()),
        (Role::Doctor, View) if facts.responsible || facts.device_staff => Ok(()),
        (Role::Doctor, Change | Confirm) if facts.responsible => Ok(()),
        (Role::Doctor, _) => Err(Denied::Forbidden("this patient is not under your care")),
        (Role::Technician, View) if facts.device_staff => Ok(()),
        (Role::Technician, View) => Err(Denied::Forbidden("this booking is not on a device you service")),
        (Role::Technician, _) => Err(Denied::Forbidden("technicians see bookings but do not book")),
        (Role::Patient, _) if !facts.is_own => Err(Denied::Forbidden("patients see only their own bookings")),
        (Role::Patient, View) => Ok(()),
        (Role::Patient, Change) if facts.within_notice => Err(Denied::Forbidden(
            "the unit's notice before the start has passed: ask the unit to change or cancel this booking",
        )),
        (Role::Patient, Change) => Ok(()),
        (Role::Patient, Confirm) => Err(Denied::Forbidden("bookings are confirmed by staff")),
    }
}

/// What booking a patient on a device depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BookFacts {
    pub patient: Option<HospitalId>,
    pub device: Option<HospitalId>,
    /// The subject is this patient.
    pub is_self: bool,
    /// The subject (doctor) is responsible for the patient.
    pub responsible: bool,
    /// The device is the patient's assigned device.
    pub own_device: bool,
    /// The unit lets patients book any of its devices.
    pub any_device_allowed: bool,
}

pub fn decide_book(subject: &Subject, facts: &BookFacts) -> Decision {
    let hospital = subject.hospital();
    if facts.patient != Some(hospital) || facts.device != Some(hospital) {
        return Err(Denied::NotFound);
    }
    let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices do not book")) };
    match user.role {
        Role::Admin => Ok(()),
        Role::Doctor if facts.responsible => Ok(()),
        Role::Doctor => Err(Denied::Forbidden("this patient is not under your care")),
        Role::Technician => Err(Denied::Forbidden("technicians see bookings but do not book")),
        Role::Patient if !facts.is_self => Err(Denied::Forbidden("patients book for themselves only")),
        Role::Patient if facts.own_device || facts.any_device_allowed => Ok(()),
        Role::Patient => {
            Err(Denied::Forbidden("patients book their assigned device (this unit does not let patients choose)"))
        }
    }
}

impl Policy {
    /// Whom `subject` books for: a patient only themself (their own record; naming another
    /// patient is refused), staff the patient they name (who may book whom on which device is
    /// [`decide_book`]), technicians nobody (they see bookings to prepare the machines).
    /// `None`: staff named no patient.
    pub async fn booking_patient(
        &self,
        subject: &Subject,
        named: Option<PatientId>,
    ) -> Result<Option<PatientId>, PolicyError> {
        let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices do not book").into()) };
        match user.role {
            Role::Patient => {
                let own = self
                    .patient_of_user(user.id)
                    .await?
                    .ok_or(Denied::Forbidden("no patient record is linked to your account"))?;
                match named {
                    Some(p) if p != own => Err(Denied::Forbidden("patients book for themselves only").into()),
                    _ => Ok(Some(own)),
                }
            }
            Role::Technician if named.is_some() => {
                Err(Denied::Forbidden("technicians see bookings but do not book").into())
            }
            Role::Technician | Role::Doctor | Role::Admin => Ok(named),
        }
    }
}

/// Who plans a device's maintenance windows (when it cannot be booked): admins, and the
/// technicians responsible for it (assigned, or holding a hand-over).
pub fn decide_plan_maintenance(subject: &Subject, facts: &DeviceFacts) -> Decision {
    let Some((_, hospital)) = facts.device else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices do not plan maintenance")) };
    match user.role {
        Role::Admin => Ok(()),
        Role::Technician if facts.assigned || facts.granted => Ok(()),
        Role::Technician => Err(Denied::Forbidden("this device is not assigned or handed over to you")),
        Role::Doctor | Role::Patient => Err(Denied::Forbidden("maintenance is planned by technicians and admins")),
    }
}

/// The bookings a subject may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingScope {
    /// Every booking of the hospital.
    Hospital,
    /// Bookings of these patients or on these devices.
    Only { patients: Vec<PatientId>, devices: Vec<DeviceId> },
}

impl Policy {
    /// The booking, if `subject` may do `action` to it; `notice` is the unit's cancellation
    /// notice (patients change a booking only before it).
    pub async fn booking(
        &self,
        subject: &Subject,
        id: BookingId,
        action: BookingAction,
        notice: Duration,
    ) -> Result<session_bookings::Model, PolicyError> {
        let booking = session_bookings::Entity::find_by_id(id).one(&self.db).await?;
        let mut facts = BookingFacts { hospital: booking.as_ref().map(|b| b.hospital_id), ..Default::default() };
        if let (Some(b), Subject::User(u)) = (&booking, subject) {
            if b.hospital_id == u.hospital {
                facts.within_notice = b.scheduled_start <= Utc::now() + notice;
                match u.role {
                    Role::Patient => facts.is_own = self.patient_of_user(u.id).await? == Some(b.patient_id),
                    Role::Doctor => {
                        facts.device_staff = self.assigned(u.id, b.device_id, AssignmentRole::Doctor).await?;
                        facts.responsible = self.responsible_for(u, b.patient_id).await?;
                    }
                    Role::Technician => {
                        facts.device_staff = self.assigned(u.id, b.device_id, AssignmentRole::Technician).await?
                            || self.granted(u.id, b.device_id).await?;
                    }
                    Role::Admin => {}
                }
            }
        }
        decide_booking(subject, &facts, action)?;
        Ok(booking.expect("decide_booking refuses a missing booking"))
    }

    /// The patient and the device, if `subject` may book the patient on the device.
    pub async fn book(
        &self,
        subject: &Subject,
        patient: PatientId,
        device: DeviceId,
        any_device_allowed: bool,
    ) -> Result<(patients::Model, devices::Model), PolicyError> {
        let p = patients::Entity::find_by_id(patient).one(&self.db).await?;
        let d = devices::Entity::find_by_id(device).one(&self.db).await?;
        let mut facts = BookFacts {
            patient: p.as_ref().map(|p| p.hospital_id),
            device: d.as_ref().map(|d| d.hospital_id),
            any_device_allowed,
            ..Default::default()
        };
        if let (Some(p), Subject::User(u)) = (&p, subject) {
            if p.hospital_id == u.hospital {
                facts.is_self = p.user_id == Some(u.id);
                facts.own_device = p.assigned_device_id == Some(device);
                if u.role == Role::Doctor {
                    facts.responsible = self.responsible_for(u, p.id).await?;
                }
            }
        }
        decide_book(subject, &facts)?;
        Ok((p.expect("decide_book refuses a missing patient"), d.expect("decide_book refuses a missing device")))
    }

    /// The device, if `subject` may plan its maintenance windows.
    pub async fn plan_maintenance(&self, subject: &Subject, device: DeviceId) -> Result<devices::Model, PolicyError> {
        let d = devices::Entity::find_by_id(device).one(&self.db).await?;
        let mut facts = DeviceFacts { device: d.as_ref().map(|d| (d.id, d.hospital_id)), ..Default::default() };
        if let (Some(d), Subject::User(u)) = (&d, subject) {
            if d.hospital_id == u.hospital && u.role == Role::Technician {
                facts.assigned = self.assigned(u.id, device, AssignmentRole::Technician).await?;
                facts.granted = self.granted(u.id, device).await?;
            }
        }
        decide_plan_maintenance(subject, &facts)?;
        Ok(d.expect("decide_plan_maintenance refuses a missing device"))
    }

    /// The bookings `subject` may list.
    pub async fn booking_scope(&self, subject: &Subject) -> Result<BookingScope, DbErr> {
        let Subject::User(u) = subject else {
            return Ok(BookingScope::Only { patients: Vec::new(), devices: Vec::new() });
        };
        let devices = match self.clinical_devices(subject).await? {
            DeviceScope::Only(d) => d,
            DeviceScope::Nothing => Vec::new(),
        };
        Ok(match u.role {
            Role::Admin => BookingScope::Hospital,
            Role::Patient => BookingScope::Only {
                patients: self.patient_of_user(u.id).await?.into_iter().collect(),
                devices: Vec::new(),
            },
            Role::Technician => BookingScope::Only { patients: Vec::new(), devices },
            Role::Doctor => BookingScope::Only { patients: self.doctor_patients(u.id, &devices).await?, devices },
        })
    }

    /// Whether doctor `u` is responsible for the patient: their assigned doctor, or a doctor
    /// of a device the patient is assigned to or had a session on.
    async fn responsible_for(&self, u: &UserSubject, patient: PatientId) -> Result<bool, DbErr> {
        let Some(p) = patients::Entity::find_by_id(patient).one(&self.db).await? else { return Ok(false) };
        if p.hospital_id != u.hospital {
            return Ok(false);
        }
        if p.assigned_doctor_id == Some(u.id) {
            return Ok(true);
        }
        match self.clinical_devices(&Subject::User(*u)).await? {
            DeviceScope::Only(devices) => self.patient_on_devices(&p, &devices).await,
            DeviceScope::Nothing => Ok(false),
        }
    }

    /// The patients a doctor is responsible for (see [`Policy::responsible_for`]).
    async fn doctor_patients(&self, doctor: UserId, devices: &[DeviceId]) -> Result<Vec<PatientId>, DbErr> {
        let mut condition = sea_orm::Condition::any().add(patients::Column::AssignedDoctorId.eq(doctor));
        if !devices.is_empty() {
            condition = condition.add(patients::Column::AssignedDeviceId.is_in(devices.iter().copied()));
        }
        let mut ids: Vec<PatientId> = patients::Entity::find()
            .select_only()
            .column(patients::Column::Id)
            .filter(condition)
            .into_tuple()
            .all(&self.db)
            .await?;
        if !devices.is_empty() {
            let treated: Vec<Option<PatientId>> = device_sessions::Entity::find()
                .select_only()
                .column(device_sessions::Column::PatientId)
                .filter(device_sessions::Column::DeviceId.is_in(devices.iter().copied()))
                .filter(device_sessions::Column::PatientId.is_not_null())
                .distinct()
                .into_tuple()
                .all(&self.db)
                .await?;
            ids.extend(treated.into_iter().flatten());
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, hospital: HospitalId) -> Subject {
        Subject::User(UserSubject { id: UserId::new(), role, hospital, family: None })
    }

    #[test]
    fn bookings_follow_role_ownership_and_hospital() {
        let h = HospitalId::new();
        let other = HospitalId::new();
        let base = BookingFacts { hospital: Some(h), ..Default::default() };
        use BookingAction::*;
        for role in [Role::Admin, Role::Doctor, Role::Technician, Role::Patient] {
            for action in [View, Change, Confirm] {
                // Other hospital, or no such booking: 404 for everyone.
                let far = BookingFacts { hospital: Some(other), ..base };
                assert_eq!(decide_booking(&user(role, h), &far, action), Err(Denied::NotFound));
                assert_eq!(decide_booking(&user(role, h), &BookingFacts::default(), action), Err(Denied::NotFound));
            }
        }
        let admin = user(Role::Admin, h);
        for action in [View, Change, Confirm] {
            assert_eq!(decide_booking(&admin, &base, action), Ok(()));
        }
        let doctor = user(Role::Doctor, h);
        let responsible = BookingFacts { responsible: true, ..base };
        let on_device = BookingFacts { device_staff: true, ..base };
        for action in [View, Change, Confirm] {
            assert_eq!(decide_booking(&doctor, &responsible, action), Ok(()));
            assert!(decide_booking(&doctor, &base, action).is_err());
        }
        assert_eq!(decide_booking(&doctor, &on_device, View), Ok(()));
        assert!(decide_booking(&doctor, &on_device, Change).is_err());
        let tech = user(Role::Technician, h);
        assert_eq!(decide_booking(&tech, &on_device, View), Ok(()));
        assert!(decide_booking(&tech, &base, View).is_err());
        for action in [Change, Confirm] {
            assert!(decide_booking(&tech, &on_device, action).is_err());
        }
        let patient = user(Role::Patient, h);
        let own = BookingFacts { is_own: true, ..base };
        assert_eq!(decide_booking(&patient, &own, View), Ok(()));
        assert_eq!(decide_booking(&patient, &own, Change), Ok(()));
        assert!(decide_booking(&patient, &own, Confirm).is_err());
        assert!(decide_booking(&patient, &BookingFacts { within_notice: true, ..own }, Change).is_err());
        assert_eq!(decide_booking(&patient, &BookingFacts { within_notice: true, ..own }, View), Ok(()));
        for action in [View, Change, Confirm] {
            assert!(decide_booking(&patient, &base, action).is_err());
        }
        // Staff are not bound by the notice.
        assert_eq!(decide_booking(&doctor, &BookingFacts { within_notice: true, ..responsible }, Change), Ok(()));
        let device = Subject::Device { id: DeviceId::new(), hospital: h };
        assert!(decide_booking(&device, &base, View).is_err());
    }

    #[test]
    fn maintenance_is_planned_by_admins_and_the_device_technicians() {
        let h = HospitalId::new();
        let d = DeviceId::new();
        let base = DeviceFacts { device: Some((d, h)), ..Default::default() };
        assert_eq!(decide_plan_maintenance(&user(Role::Admin, h), &base), Ok(()));
        assert!(decide_plan_maintenance(&user(Role::Technician, h), &base).is_err());
        for facts in [DeviceFacts { assigned: true, ..base }, DeviceFacts { granted: true, ..base }] {
            assert_eq!(decide_plan_maintenance(&user(Role::Technician, h), &facts), Ok(()));
            assert!(decide_plan_maintenance(&user(Role::Doctor, h), &facts).is_err());
            assert!(decide_plan_maintenance(&user(Role::Patient, h), &facts).is_err());
        }
        let far = DeviceFacts { device: Some((d, HospitalId::new())), assigned: true, ..base };
        assert_eq!(decide_plan_maintenance(&user(Role::Technician, h), &far), Err(Denied::NotFound));
    }

    #[test]
    fn booking_a_patient_on_a_device() {
        let h = HospitalId::new();
        let base = BookFacts { patient: Some(h), device: Some(h), ..Default::default() };
        for role in [Role::Admin, Role::Doctor, Role::Technician, Role::Patient] {
            let s = user(role, h);
            assert_eq!(decide_book(&s, &BookFacts { device: Some(HospitalId::new()), ..base }), Err(Denied::NotFound));
            assert_eq!(decide_book(&s, &BookFacts { patient: None, ..base }), Err(Denied::NotFound));
        }
        assert_eq!(decide_book(&user(Role::Admin, h), &base), Ok(()));
        assert!(decide_book(&user(Role::Doctor, h), &base).is_err());
        assert_eq!(decide_book(&user(Role::Doctor, h), &BookFacts { responsible: true, ..base }), Ok(()));
        assert!(decide_book(&user(Role::Technician, h), &BookFacts { responsible: true, ..base }).is_err());
        let patient = user(Role::Patient, h);
        assert!(decide_book(&patient, &BookFacts { own_device: true, ..base }).is_err(), "someone else");
        let me = BookFacts { is_self: true, ..base };
        assert!(decide_book(&patient, &me).is_err(), "not my device");
        assert_eq!(decide_book(&patient, &BookFacts { own_device: true, ..me }), Ok(()));
        assert_eq!(decide_book(&patient, &BookFacts { any_device_allowed: true, ..me }), Ok(()));
    }
}
