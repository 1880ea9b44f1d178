//! The one policy module: "may this subject do this action on this object?", asked by every
//! REST handler, the MQTT broker and the live streams, so they cannot disagree.
//!
//! Rules:
//! - hospital isolation: nothing crosses hospitals, ever. An object of another hospital
//!   answers [`Denied::NotFound`], so its existence does not leak;
//! - doctor: the devices assigned to them and the patients on those devices (assigned now,
//!   or in a current or past session), plus the patients assigned to them; hospital-wide
//!   lists of staff, devices and patients of their own hospital;
//! - technician: its assigned devices, plus devices granted to it temporarily while the
//!   grant is active (expiry is checked here, at decision time); the patients on those
//!   devices; it may hand over a device it is assigned to;
//! - patient: itself, its own device, its own data;
//! - admin: manages staff, devices and assignments of its hospital but reads no clinical data;
//! - device: its own device and nothing else.
//!
//! A visible object (same hospital) that the subject may not act on answers
//! [`Denied::Forbidden`]. The decisions themselves are pure functions over facts
//! ([`decide_device`], [`decide_patient`], [`decide_hospital`]), tested exhaustively below;
//! [`Policy`] loads the facts from the database and applies them.

use chrono::Utc;
use nc_domain::{AssignmentRole, DeviceId, HospitalId, PatientId, Role, RoomId, SessionStatus, TokenFamilyId, UserId};
use nc_entities::{
    chat_room_participants, chat_rooms, device_assignments, device_sessions, devices, patients, temporary_access_grants,
};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    User(UserSubject),
    Device { id: DeviceId, hospital: HospitalId },
}

/// An authenticated person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSubject {
    pub id: UserId,
    pub role: Role,
    pub hospital: HospitalId,
    /// The login session (refresh-token family) the credentials belong to.
    pub family: Option<TokenFamilyId>,
}

impl Subject {
    pub fn hospital(&self) -> HospitalId {
        match self {
            Subject::User(u) => u.hospital,
            Subject::Device { hospital, .. } => *hospital,
        }
    }
}

/// What may be done to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    /// Its name, model, location, status and presence.
    View,
    /// Its telemetry, sessions, alerts and the patients on it.
    ReadClinical,
    /// Register, retire, rotate its secret, change its assignments (admins).
    Manage,
    /// Hand it over temporarily to another technician.
    GrantAccess,
}

/// What may be done to a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientAction {
    /// Profile, medical information, readings, sessions, alerts.
    Read,
    /// Change medical information (audited field by field).
    UpdateMedical,
    /// Create the record and set its device and doctor (admins and doctors).
    Administer,
}

/// What may be done hospital-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HospitalAction {
    /// List the accounts of one role.
    ListUsers(Role),
    /// List devices (patients see only their own; the list is filtered accordingly).
    ListDevices,
    /// Create, deactivate and enroll staff; issue enrollment codes.
    ManageStaff,
    /// Register devices and assign them.
    ManageDevices,
    /// Create patient records.
    AdministerPatients,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Does not exist, or is in another hospital.
    #[error("not found")]
    NotFound,
    /// Visible, but not for this subject to act on.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
}

pub type Decision = Result<(), Denied>;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

/// What the device decision depends on, for one subject and one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    pub device: Option<(DeviceId, HospitalId)>,
    /// The subject (doctor or technician) has an active assignment to the device.
    pub assigned: bool,
    /// The subject (technician) holds an active, unexpired temporary grant for it.
    pub granted: bool,
    /// The subject (patient) is on this device: assigned to it or in an active session.
    pub own: bool,
}

pub fn decide_device(subject: &Subject, facts: &DeviceFacts, action: DeviceAction) -> Decision {
    let Some((device, hospital)) = facts.device else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    use DeviceAction::*;
    let user = match subject {
        Subject::Device { id, .. } => {
            return match (id == &device, action) {
                (true, View | ReadClinical) => Ok(()),
                (true, _) => Err(Denied::Forbidden("devices cannot manage themselves")),
                (false, _) => Err(Denied::NotFound),
            };
        }
        Subject::User(u) => u,
    };
    match (user.role, action) {
        (Role::Admin, View | Manage) => Ok(()),
        (Role::Admin, ReadClinical) => Err(Denied::Forbidden("admins do not read clinical data")),
        (Role::Admin, GrantAccess) => Err(Denied::Forbidden("admins assign technicians directly")),
        (Role::Doctor | Role::Technician, View) => Ok(()),
        (Role::Doctor, ReadClinical) if facts.assigned => Ok(()),
        (Role::Doctor, ReadClinical) => Err(Denied::Forbidden("this device is not assigned to you")),
        (Role::Technician, ReadClinical) if facts.assigned || facts.granted => Ok(()),
        (Role::Technician, ReadClinical) => Err(Denied::Forbidden("this device is not assigned or handed over to you")),
        (Role::Technician, GrantAccess) if facts.assigned => Ok(()),
        (Role::Technician, GrantAccess) => {
            Err(Denied::Forbidden("only a technician assigned to the device may hand it over"))
        }
        (Role::Doctor, GrantAccess) => Err(Denied::Forbidden("only technicians hand devices over")),
        (Role::Doctor | Role::Technician | Role::Patient, Manage) => {
            Err(Denied::Forbidden("only admins manage devices"))
        }
        (Role::Patient, View | ReadClinical) if facts.own => Ok(()),
        (Role::Patient, View | ReadClinical) => Err(Denied::Forbidden("this is not your device")),
        (Role::Patient, GrantAccess) => Err(Denied::Forbidden("only technicians hand devices over")),
    }
}

/// What the patient decision depends on, for one subject and one patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatientFacts {
    pub patient: Option<(PatientId, HospitalId)>,
    /// The subject is this patient.
    pub is_self: bool,
    /// The subject (doctor) is the patient's assigned doctor.
    pub is_assigned_doctor: bool,
    /// The patient is, or was (a session), on a device the subject may read.
    pub on_subject_device: bool,
}

pub fn decide_patient(subject: &Subject, facts: &PatientFacts, action: PatientAction) -> Decision {
    let Some((_, hospital)) = facts.patient else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    let Subject::User(user) = subject else {
        return Err(Denied::Forbidden("devices do not read patient records"));
    };
    use PatientAction::*;
    match (user.role, action) {
        (Role::Admin, Administer) => Ok(()),
        (Role::Admin, Read | UpdateMedical) => Err(Denied::Forbidden("admins do not read clinical data")),
        (Role::Doctor, _) if facts.is_assigned_doctor || facts.on_subject_device => Ok(()),
        (Role::Doctor, Administer) => Ok(()),
        (Role::Doctor, _) => Err(Denied::Forbidden("this patient is not under your care")),
        (Role::Technician, Read) if facts.on_subject_device => Ok(()),
        (Role::Technician, Read) => Err(Denied::Forbidden("this patient is not on a device you service")),
        (Role::Technician, _) => Err(Denied::Forbidden("technicians do not change patient records")),
        (Role::Patient, Read) if facts.is_self => Ok(()),
        (Role::Patient, _) => Err(Denied::Forbidden("patients may read only their own record")),
    }
}

pub fn decide_hospital(subject: &Subject, hospital: HospitalId, action: HospitalAction) -> Decision {
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices have no hospital-wide rights")) };
    use HospitalAction::*;
    match (user.role, action) {
        (Role::Admin, _) => Ok(()),
        (Role::Doctor, ListUsers(_) | ListDevices | AdministerPatients) => Ok(()),
        (Role::Technician, ListUsers(Role::Doctor | Role::Technician) | ListDevices) => Ok(()),
        (Role::Technician, ListUsers(_)) => Err(Denied::Forbidden("technicians list staff only")),
        (Role::Patient, ListDevices) => Ok(()),
        (_, ManageStaff | ManageDevices) => Err(Denied::Forbidden("only admins manage staff and devices")),
        (_, _) => Err(Denied::Forbidden("not permitted for your role")),
    }
}

/// What the room decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomFacts {
    pub room: Option<(RoomId, HospitalId)>,
    /// The subject takes part in the room.
    pub participant: bool,
}

/// Chat rooms are visible to their participants only (doctor-patient, doctor-technician).
pub fn decide_room(subject: &Subject, facts: &RoomFacts) -> Decision {
    let Some((_, hospital)) = facts.room else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    match subject {
        Subject::User(_) if facts.participant => Ok(()),
        Subject::User(_) => Err(Denied::Forbidden("you do not take part in this conversation")),
        Subject::Device { .. } => Err(Denied::NotFound),
    }
}

/// Which devices' clinical data a subject may read, within its hospital.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceScope {
    /// None (admins).
    Nothing,
    /// Exactly these.
    Only(Vec<DeviceId>),
}

impl DeviceScope {
    pub fn contains(&self, device: DeviceId) -> bool {
        match self {
            DeviceScope::Nothing => false,
            DeviceScope::Only(ids) => ids.contains(&device),
        }
    }
}

/// Loads facts and applies the rules above.
#[derive(Clone)]
pub struct Policy {
    db: DatabaseConnection,
}

impl Policy {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The device, if `subject` may do `action` to it.
    pub async fn device(
        &self,
        subject: &Subject,
        id: DeviceId,
        action: DeviceAction,
    ) -> Result<devices::Model, PolicyError> {
        let device = devices::Entity::find_by_id(id).one(&self.db).await?;
        let mut facts = DeviceFacts { device: device.as_ref().map(|d| (d.id, d.hospital_id)), ..Default::default() };
        if let (Some(d), Subject::User(u)) = (&device, subject) {
            if d.hospital_id == u.hospital {
                match u.role {
                    Role::Doctor => facts.assigned = self.assigned(u.id, id, AssignmentRole::Doctor).await?,
                    Role::Technician => {
                        facts.assigned = self.assigned(u.id, id, AssignmentRole::Technician).await?;
                        facts.granted = self.granted(u.id, id).await?;
                    }
                    Role::Patient => facts.own = self.patient_devices(u.id).await?.contains(&id),
                    Role::Admin => {}
                }
            }
        }
        decide_device(subject, &facts, action)?;
        Ok(device.expect("decide_device refuses a missing device"))
    }

    /// The patient record, if `subject` may do `action` to it.
    pub async fn patient(
        &self,
        subject: &Subject,
        id: PatientId,
        action: PatientAction,
    ) -> Result<patients::Model, PolicyError> {
        let patient = patients::Entity::find_by_id(id).one(&self.db).await?;
        let mut facts = PatientFacts { patient: patient.as_ref().map(|p| (p.id, p.hospital_id)), ..Default::default() };
        if let (Some(p), Subject::User(u)) = (&patient, subject) {
            if p.hospital_id == u.hospital {
                facts.is_self = p.user_id == Some(u.id);
                facts.is_assigned_doctor = u.role == Role::Doctor && p.assigned_doctor_id == Some(u.id);
                if matches!(u.role, Role::Doctor | Role::Technician) {
                    if let DeviceScope::Only(devices) = self.clinical_devices(subject).await? {
                        facts.on_subject_device = self.patient_on_devices(p, &devices).await?;
                    }
                }
            }
        }
        decide_patient(subject, &facts, action)?;
        Ok(patient.expect("decide_patient refuses a missing patient"))
    }

    /// Whether `subject` takes part in chat room `room`.
    pub async fn room(&self, subject: &Subject, room: RoomId) -> Result<(), PolicyError> {
        let found = chat_rooms::Entity::find_by_id(room).one(&self.db).await?;
        let mut facts = RoomFacts { room: found.as_ref().map(|r| (r.id, r.hospital_id)), participant: false };
        if let Subject::User(u) = subject {
            facts.participant = chat_room_participants::Entity::find()
                .filter(chat_room_participants::Column::RoomId.eq(room))
                .filter(chat_room_participants::Column::UserId.eq(u.id))
                .count(&self.db)
                .await?
                > 0;
        }
        Ok(decide_room(subject, &facts)?)
    }

    /// When a technician's access to `device` ends if it rests only on temporary grants:
    /// the latest expiry among its active grants. `None` when it does not rest on a grant
    /// (an assignment, or another role).
    pub async fn grant_expiry(
        &self,
        subject: &Subject,
        device: DeviceId,
    ) -> Result<Option<chrono::DateTime<Utc>>, DbErr> {
        let Subject::User(u) = subject else { return Ok(None) };
        if u.role != Role::Technician || self.assigned(u.id, device, AssignmentRole::Technician).await? {
            return Ok(None);
        }
        let grants = temporary_access_grants::Entity::find()
            .filter(temporary_access_grants::Column::GrantedTo.eq(u.id))
            .filter(temporary_access_grants::Column::DeviceId.eq(device))
            .filter(temporary_access_grants::Column::RevokedAt.is_null())
            .filter(temporary_access_grants::Column::ExpiresAt.gt(Utc::now()))
            .all(&self.db)
            .await?;
        Ok(grants.into_iter().map(|g| g.expires_at).max())
    }

    /// Hospital-wide actions need no facts beyond the subject.
    pub fn hospital(&self, subject: &Subject, hospital: HospitalId, action: HospitalAction) -> Decision {
        decide_hospital(subject, hospital, action)
    }

    /// The devices whose clinical data `subject` may read now.
    pub async fn clinical_devices(&self, subject: &Subject) -> Result<DeviceScope, DbErr> {
        let user = match subject {
            Subject::Device { id, .. } => return Ok(DeviceScope::Only(vec![*id])),
            Subject::User(u) => u,
        };
        let mut ids = match user.role {
            Role::Admin => return Ok(DeviceScope::Nothing),
            Role::Patient => self.patient_devices(user.id).await?,
            Role::Doctor | Role::Technician => {
                let role = if user.role == Role::Doctor { AssignmentRole::Doctor } else { AssignmentRole::Technician };
                let mut ids: Vec<DeviceId> = device_assignments::Entity::find()
                    .select_only()
                    .column(device_assignments::Column::DeviceId)
                    .filter(device_assignments::Column::UserId.eq(user.id))
                    .filter(device_assignments::Column::Role.eq(role))
                    .filter(device_assignments::Column::EndedAt.is_null())
                    .filter(device_assignments::Column::HospitalId.eq(user.hospital))
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                if user.role == Role::Technician {
                    let granted: Vec<DeviceId> = temporary_access_grants::Entity::find()
                        .select_only()
                        .column(temporary_access_grants::Column::DeviceId)
                        .filter(temporary_access_grants::Column::GrantedTo.eq(user.id))
                        .filter(temporary_access_grants::Column::RevokedAt.is_null())
                        .filter(temporary_access_grants::Column::ExpiresAt.gt(Utc::now()))
                        .filter(temporary_access_grants::Column::HospitalId.eq(user.hospital))
                        .into_tuple()
                        .all(&self.db)
                        .await?;
                    ids.extend(granted);
                }
                ids
            }
        };
        ids.sort();
        ids.dedup();
        Ok(DeviceScope::Only(ids))
    }

    async fn assigned(&self, user: UserId, device: DeviceId, role: AssignmentRole) -> Result<bool, DbErr> {
        Ok(device_assignments::Entity::find()
            .filter(device_assignments::Column::UserId.eq(user))
            .filter(device_assignments::Column::DeviceId.eq(device))
            .filter(device_assignments::Column::Role.eq(role))
            .filter(device_assignments::Column::EndedAt.is_null())
            .count(&self.db)
            .await?
            > 0)
    }

    async fn granted(&self, user: UserId, device: DeviceId) -> Result<bool, DbErr> {
        Ok(temporary_access_grants::Entity::find()
            .filter(temporary_access_grants::Column::GrantedTo.eq(user))
            .filter(temporary_access_grants::Column::DeviceId.eq(device))
            .filter(temporary_access_grants::Column::RevokedAt.is_null())
            .filter(temporary_access_grants::Column::ExpiresAt.gt(Utc::now()))
            .count(&self.db)
            .await?
            > 0)
    }

    /// A patient user's devices: the one assigned to their record, and any in an active
    /// session with them.
    async fn patient_devices(&self, user: UserId) -> Result<Vec<DeviceId>, DbErr> {
        let Some(record) = patients::Entity::find().filter(patients::Column::UserId.eq(user)).one(&self.db).await?
        else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<DeviceId> = device_sessions::Entity::find()
            .select_only()
            .column(device_sessions::Column::DeviceId)
            .filter(device_sessions::Column::PatientId.eq(record.id))
            .filter(device_sessions::Column::Status.eq(SessionStatus::Active))
            .into_tuple()
            .all(&self.db)
            .await?;
        ids.extend(record.assigned_device_id);
        Ok(ids)
    }

    /// Whether the patient is assigned to, or has had a session on, one of `devices`.
    async fn patient_on_devices(&self, p: &patients::Model, devices: &[DeviceId]) -> Result<bool, DbErr> {
        if p.assigned_device_id.is_some_and(|d| devices.contains(&d)) {
            return Ok(true);
        }
        if devices.is_empty() {
            return Ok(false);
        }
        Ok(device_sessions::Entity::find()
            .filter(device_sessions::Column::PatientId.eq(p.id))
            .filter(device_sessions::Column::DeviceId.is_in(devices.iter().copied()))
            .count(&self.db)
            .await?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, hospital: HospitalId) -> Subject {
        Subject::User(UserSubject { id: UserId::new(), role, hospital, family: None })
    }

    #[test]
    fn nothing_crosses_hospitals() {
        let (h1, h2) = (HospitalId::new(), HospitalId::new());
        let all = DeviceFacts { device: Some((DeviceId::new(), h2)), assigned: true, granted: true, own: true };
        let patient = PatientFacts {
            patient: Some((PatientId::new(), h2)),
            is_self: true,
            is_assigned_doctor: true,
            on_subject_device: true,
        };
        for role in Role::ALL {
            let s = user(*role, h1);
            for a in [DeviceAction::View, DeviceAction::ReadClinical, DeviceAction::Manage, DeviceAction::GrantAccess] {
                assert_eq!(decide_device(&s, &all, a), Err(Denied::NotFound), "{role:?} {a:?}");
            }
            for a in [PatientAction::Read, PatientAction::UpdateMedical, PatientAction::Administer] {
                assert_eq!(decide_patient(&s, &patient, a), Err(Denied::NotFound), "{role:?} {a:?}");
            }
            assert_eq!(decide_hospital(&s, h2, HospitalAction::ListDevices), Err(Denied::NotFound));
        }
        let device = Subject::Device { id: DeviceId::new(), hospital: h1 };
        assert_eq!(decide_device(&device, &all, DeviceAction::View), Err(Denied::NotFound));
    }

    #[test]
    fn device_rules_by_role() {
        let h = HospitalId::new();
        let d = Some((DeviceId::new(), h));
        let none = DeviceFacts { device: d, ..Default::default() };
        let assigned = DeviceFacts { device: d, assigned: true, ..Default::default() };
        let granted = DeviceFacts { device: d, granted: true, ..Default::default() };
        let own = DeviceFacts { device: d, own: true, ..Default::default() };
        use DeviceAction::*;
        let ok = Ok(());
        let cases: &[(Role, DeviceFacts, DeviceAction, bool)] = &[
            (Role::Admin, none, View, true),
            (Role::Admin, none, Manage, true),
            (Role::Admin, assigned, ReadClinical, false),
            (Role::Doctor, none, View, true),
            (Role::Doctor, none, ReadClinical, false),
            (Role::Doctor, assigned, ReadClinical, true),
            (Role::Doctor, assigned, Manage, false),
            (Role::Doctor, assigned, GrantAccess, false),
            (Role::Technician, none, ReadClinical, false),
            (Role::Technician, assigned, ReadClinical, true),
            (Role::Technician, granted, ReadClinical, true),
            (Role::Technician, assigned, GrantAccess, true),
            (Role::Technician, granted, GrantAccess, false),
            (Role::Patient, none, View, false),
            (Role::Patient, own, ReadClinical, true),
            (Role::Patient, own, Manage, false),
        ];
        for (role, facts, action, allowed) in cases {
            let got = decide_device(&user(*role, h), facts, *action);
            assert_eq!(got.is_ok(), *allowed, "{role:?} {facts:?} {action:?}: {got:?}");
            if !allowed {
                assert!(matches!(got, Err(Denied::Forbidden(_))), "same hospital answers 403");
            }
        }
        assert_eq!(decide_device(&user(Role::Doctor, h), &DeviceFacts::default(), View), Err(Denied::NotFound));
        let me = Subject::Device { id: d.map(|x| x.0).unwrap_or_default(), hospital: h };
        assert_eq!(decide_device(&me, &none, ReadClinical), ok);
        let other = Subject::Device { id: DeviceId::new(), hospital: h };
        assert_eq!(decide_device(&other, &none, View), Err(Denied::NotFound));
    }

    #[test]
    fn patient_rules_by_role() {
        let h = HospitalId::new();
        let p = Some((PatientId::new(), h));
        let base = PatientFacts { patient: p, ..Default::default() };
        let on_device = PatientFacts { on_subject_device: true, ..base };
        let mine = PatientFacts { is_assigned_doctor: true, ..base };
        let me = PatientFacts { is_self: true, ..base };
        use PatientAction::*;
        let cases: &[(Role, PatientFacts, PatientAction, bool)] = &[
            (Role::Admin, on_device, Read, false),
            (Role::Admin, base, Administer, true),
            (Role::Doctor, base, Read, false),
            (Role::Doctor, mine, Read, true),
            (Role::Doctor, on_device, UpdateMedical, true),
            (Role::Technician, on_device, Read, true),
            (Role::Technician, on_device, UpdateMedical, false),
            (Role::Technician, base, Read, false),
            (Role::Patient, me, Read, true),
            (Role::Patient, me, UpdateMedical, false),
            (Role::Patient, base, Read, false),
        ];
        for (role, facts, action, allowed) in cases {
            let got = decide_patient(&user(*role, h), facts, *action);
            assert_eq!(got.is_ok(), *allowed, "{role:?} {facts:?} {action:?}: {got:?}");
        }
    }

    #[test]
    fn rooms_are_for_their_participants() {
        let h = HospitalId::new();
        let room = Some((RoomId::new(), h));
        assert!(decide_room(&user(Role::Doctor, h), &RoomFacts { room, participant: true }).is_ok());
        assert!(matches!(
            decide_room(&user(Role::Doctor, h), &RoomFacts { room, participant: false }),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            decide_room(&user(Role::Doctor, HospitalId::new()), &RoomFacts { room, participant: true }),
            Err(Denied::NotFound)
        );
    }

    #[test]
    fn hospital_rules_by_role() {
        let h = HospitalId::new();
        use HospitalAction::*;
        assert!(decide_hospital(&user(Role::Admin, h), h, ManageStaff).is_ok());
        assert!(decide_hospital(&user(Role::Doctor, h), h, ManageStaff).is_err());
        assert!(decide_hospital(&user(Role::Doctor, h), h, ListUsers(Role::Patient)).is_ok());
        assert!(decide_hospital(&user(Role::Technician, h), h, ListUsers(Role::Patient)).is_err());
        assert!(decide_hospital(&user(Role::Technician, h), h, ListUsers(Role::Doctor)).is_ok());
        assert!(decide_hospital(&user(Role::Patient, h), h, ListUsers(Role::Doctor)).is_err());
    }
}
