//! The rules: pure decision functions over facts, tested exhaustively below. The
//! loader in the parent module gathers the facts from the database.

use nc_domain::{DeviceId, HospitalId, PatientId, Role, RoomId, TokenFamilyId, UserId};
use sea_orm::DbErr;

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
    /// Record a maintenance and switch it between `active` and `maintenance` (its
    /// technicians, assigned or holding a hand-over; admins). See [`decide_device_status`].
    Maintain,
    /// Read its maintenance log (staff of the hospital).
    ViewMaintenance,
    /// Read its performance figures: uptime, treatments, utilization, reading gaps,
    /// alarm counts, maintenance dates; aggregates naming no patient (staff of the hospital).
    ViewPerformance,
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
    /// Link (or unlink) the patient's own account, which lets that account read the record
    /// (admins; the patient's doctors).
    LinkAccount,
    /// Set the patient's own alert limits: a clinical decision (the patient's doctors).
    SetAlertLimits,
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
    /// Set the unit's opening hours and booking rules.
    ConfigureBookings,
    /// Read the escalation policy of alarms (staff).
    ReadAlarmPolicy,
    /// Set the escalation policy of alarms (admins).
    ConfigureAlarms,
    /// Read the unit's alarm-burden analytics (doctors, admins).
    ViewAlarmBurden,
    /// Export data in bulk (FHIR Bulk Data) and list the groups to export (doctors, admins).
    ExportBulk,
    /// Register, change and remove device gateways (IHE PCD-01) and map their codes (admins).
    ManageGateways,
    /// Set where treatment records go (the EMR endpoint; admins).
    ConfigureRecords,
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
        (Role::Admin, View | Manage | Maintain | ViewMaintenance | ViewPerformance) => Ok(()),
        (Role::Admin, ReadClinical) => Err(Denied::Forbidden("admins do not read clinical data")),
        (Role::Admin, GrantAccess) => Err(Denied::Forbidden("admins assign technicians directly")),
        (Role::Doctor | Role::Technician, View | ViewMaintenance | ViewPerformance) => Ok(()),
        (Role::Technician, Maintain) if facts.assigned || facts.granted => Ok(()),
        (Role::Technician, Maintain) => {
            Err(Denied::Forbidden("only a technician assigned to the device (or holding its hand-over) maintains it"))
        }
        (Role::Doctor | Role::Patient, Maintain) => Err(Denied::Forbidden("only the device's technicians maintain it")),
        (Role::Patient, ViewMaintenance) => Err(Denied::Forbidden("the maintenance log is for staff")),
        (Role::Patient, ViewPerformance) => Err(Denied::Forbidden("a machine's performance figures are for staff")),
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
        (Role::Patient, View) if facts.own => Ok(()),
        (Role::Patient, View) => Err(Denied::Forbidden("this is not your device")),
        // A machine treats several patients over time: a patient reads their own treatment
        // (`ClinicalView::OwnTreatment`), never the device's whole record.
        (Role::Patient, ReadClinical) => {
            Err(Denied::Forbidden("patients read their own treatment only, not a device's whole record"))
        }
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
        (Role::Admin, Administer | LinkAccount) => Ok(()),
        (Role::Admin, Read | UpdateMedical | SetAlertLimits) => {
            Err(Denied::Forbidden("admins do not read clinical data"))
        }
        (Role::Doctor, _) if facts.is_assigned_doctor || facts.on_subject_device => Ok(()),
        (Role::Doctor, Administer) => Ok(()),
        (Role::Doctor, _) => Err(Denied::Forbidden("this patient is not under your care")),
        // Which fields a technician may change is `decide_patient_field`'s.
        (Role::Technician, Read | UpdateMedical) if facts.on_subject_device => Ok(()),
        (Role::Technician, Read | UpdateMedical) => {
            Err(Denied::Forbidden("this patient is not on a device you service"))
        }
        (Role::Technician, Administer | LinkAccount) => {
            Err(Denied::Forbidden("technicians do not administer patient records"))
        }
        (Role::Technician, SetAlertLimits) => Err(Denied::Forbidden("a patient's alert limits are their doctors'")),
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
        (
            Role::Doctor,
            ListUsers(_) | ListDevices | AdministerPatients | ReadAlarmPolicy | ViewAlarmBurden | ExportBulk,
        ) => Ok(()),
        (Role::Technician, ListUsers(Role::Doctor | Role::Technician) | ListDevices | ReadAlarmPolicy) => Ok(()),
        (Role::Technician, ListUsers(_)) => Err(Denied::Forbidden("technicians list staff only")),
        (Role::Patient, ListDevices) => Ok(()),
        (_, ManageStaff | ManageDevices) => Err(Denied::Forbidden("only admins manage staff and devices")),
        (_, ConfigureAlarms) => Err(Denied::Forbidden("only admins set the escalation policy")),
        (_, ViewAlarmBurden) => Err(Denied::Forbidden("alarm-burden analytics are for doctors and admins")),
        (_, ExportBulk) => Err(Denied::Forbidden("only admins and doctors export data in bulk")),
        (_, ManageGateways) => Err(Denied::Forbidden("only admins manage device gateways")),
        (_, ConfigureRecords) => Err(Denied::Forbidden("only admins set where treatment records go")),
        (_, _) => Err(Denied::Forbidden("not permitted for your role")),
    }
}

/// Which role a person may choose when registering themself: patient only. Staff accounts
/// are created by the hospital's admin or with an enrollment code.
pub fn decide_registration_role(role: Role) -> Decision {
    match role {
        Role::Patient => Ok(()),
        Role::Doctor | Role::Technician | Role::Admin => Err(Denied::Forbidden(
            "this role cannot be chosen at registration: staff accounts are created by your hospital's admin or with an enrollment code",
        )),
    }
}

/// What re-pointing a patient (their assigned device or doctor) depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReassignFacts {
    /// A new device is asked for, and it is assigned to the subject (a doctor).
    pub new_device_is_subjects: Option<bool>,
    /// A new doctor is asked for, and it is the subject.
    pub new_doctor_is_subject: Option<bool>,
}

/// Changing who treats a patient changes who sees their data, so it is a staff-assignment
/// action: admins of the hospital re-point a patient to any of its devices and doctors; a
/// doctor only to a device assigned to themself and only to themself as the doctor.
/// (Same hospital and existence are checked before.)
pub fn decide_reassign(subject: &Subject, facts: &ReassignFacts) -> Decision {
    let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices do not change patient records")) };
    match user.role {
        Role::Admin => Ok(()),
        Role::Doctor => {
            if facts.new_device_is_subjects == Some(false) {
                return Err(Denied::Forbidden("doctors may assign a patient only to a device assigned to them"));
            }
            if facts.new_doctor_is_subject == Some(false) {
                return Err(Denied::Forbidden(
                    "doctors may make only themselves a patient's doctor; an admin assigns other doctors",
                ));
            }
            Ok(())
        }
        _ => Err(Denied::Forbidden("only admins and the patient's doctors change who treats a patient")),
    }
}

/// What the room decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomFacts {
    pub room: Option<(RoomId, HospitalId)>,
    /// The subject takes part in the room.
    pub participant: bool,
    /// The relationship the room is about still holds for the subject: for a doctor-patient
    /// room, the subject is the patient or a doctor responsible for them (assigned doctor,
    /// or a doctor of the device the patient is on); for a doctor-technician room, the
    /// subject may read the device's clinical data (assigned, or a current hand-over).
    pub relationship: bool,
}

/// Chat rooms are for their participants while the relationship they are about holds
/// (doctor-patient, doctor-technician). Admins do not read chats. When the relationship
/// ends the participant loses the room (its history stays stored).
pub fn decide_room(subject: &Subject, facts: &RoomFacts) -> Decision {
    let Some((_, hospital)) = facts.room else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    match subject {
        Subject::User(u) if u.role == Role::Admin => Err(Denied::Forbidden("admins do not read chats")),
        Subject::User(_) if !facts.participant => Err(Denied::Forbidden("you do not take part in this conversation")),
        Subject::User(_) if !facts.relationship => {
            Err(Denied::Forbidden("the care relationship this conversation is about has ended"))
        }
        Subject::User(_) => Ok(()),
        Subject::Device { .. } => Err(Denied::NotFound),
    }
}

/// How much of a device's clinical data (readings, sessions, alerts, errors) a subject may
/// receive: asked once by the live streams, the alert endpoints and the MQTT edge, so that
/// a patient on a shared machine never sees another patient's treatment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClinicalView {
    /// Everything about the device (its doctors and technicians).
    Device,
    /// Only what belongs to this patient's own treatment on it (the patient themself).
    OwnTreatment(PatientId),
}

impl ClinicalView {
    /// Whether an item belonging to `patient` (None: no patient) may be shown.
    pub fn shows(&self, patient: Option<PatientId>) -> bool {
        match self {
            ClinicalView::Device => true,
            ClinicalView::OwnTreatment(p) => patient == Some(*p),
        }
    }
}

/// A stretch of one device's data (readings, sessions, alerts) that a subject may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub device: DeviceId,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

impl Window {
    /// Whether `[from, to)` (an open end: `None`) overlaps the window.
    pub fn overlaps(&self, from: chrono::DateTime<chrono::Utc>, to: Option<chrono::DateTime<chrono::Utc>>) -> bool {
        from < self.to && to.is_none_or(|t| t > self.from)
    }
}

/// How much of a readable patient's data a subject may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    /// All of it (the patient, their doctors).
    All,
    /// Only what was recorded on these devices in these windows (technicians: a device's
    /// data while they are responsible for it; never the patient's treatment elsewhere or
    /// before a hand-over).
    Windows(Vec<Window>),
}

impl ReadScope {
    pub fn windows(&self) -> Option<&[Window]> {
        match self {
            ReadScope::All => None,
            ReadScope::Windows(w) => Some(w),
        }
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
    /// The devices, as a slice (none for [`DeviceScope::Nothing`]).
    pub fn ids(&self) -> &[DeviceId] {
        match self {
            DeviceScope::Nothing => &[],
            DeviceScope::Only(ids) => ids,
        }
    }

    pub fn contains(&self, device: DeviceId) -> bool {
        match self {
            DeviceScope::Nothing => false,
            DeviceScope::Only(ids) => ids.contains(&device),
        }
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
            for a in [
                DeviceAction::View,
                DeviceAction::ReadClinical,
                DeviceAction::Manage,
                DeviceAction::GrantAccess,
                DeviceAction::Maintain,
                DeviceAction::ViewMaintenance,
                DeviceAction::ViewPerformance,
            ] {
                assert_eq!(decide_device(&s, &all, a), Err(Denied::NotFound), "{role:?} {a:?}");
            }
            for a in [
                PatientAction::Read,
                PatientAction::UpdateMedical,
                PatientAction::Administer,
                PatientAction::LinkAccount,
                PatientAction::SetAlertLimits,
            ] {
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
            (Role::Patient, own, View, true),
            (Role::Patient, own, ReadClinical, false),
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
            (Role::Technician, on_device, UpdateMedical, true),
            (Role::Technician, base, UpdateMedical, false),
            (Role::Technician, on_device, LinkAccount, false),
            (Role::Admin, base, LinkAccount, true),
            (Role::Doctor, mine, LinkAccount, true),
            (Role::Doctor, base, LinkAccount, false),
            (Role::Patient, me, LinkAccount, false),
            (Role::Doctor, mine, SetAlertLimits, true),
            (Role::Doctor, on_device, SetAlertLimits, true),
            (Role::Doctor, base, SetAlertLimits, false),
            (Role::Technician, on_device, SetAlertLimits, false),
            (Role::Admin, base, SetAlertLimits, false),
            (Role::Patient, me, SetAlertLimits, false),
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
    fn reassigning_a_patient_is_for_admins_and_within_a_doctors_own_assignments() {
        let h = HospitalId::new();
        let mine = ReassignFacts { new_device_is_subjects: Some(true), new_doctor_is_subject: Some(true) };
        let foreign_device = ReassignFacts { new_device_is_subjects: Some(false), ..Default::default() };
        let other_doctor = ReassignFacts { new_doctor_is_subject: Some(false), ..Default::default() };
        assert!(decide_reassign(&user(Role::Admin, h), &foreign_device).is_ok());
        assert!(decide_reassign(&user(Role::Admin, h), &other_doctor).is_ok());
        assert!(decide_reassign(&user(Role::Doctor, h), &mine).is_ok());
        assert!(decide_reassign(&user(Role::Doctor, h), &foreign_device).is_err());
        assert!(decide_reassign(&user(Role::Doctor, h), &other_doctor).is_err());
        for role in [Role::Technician, Role::Patient] {
            assert!(decide_reassign(&user(role, h), &mine).is_err());
        }
    }

    #[test]
    fn rooms_are_for_their_participants() {
        let h = HospitalId::new();
        let room = Some((RoomId::new(), h));
        let member = RoomFacts { room, participant: true, relationship: true };
        assert!(decide_room(&user(Role::Doctor, h), &member).is_ok());
        for facts in [RoomFacts { participant: false, ..member }, RoomFacts { relationship: false, ..member }] {
            assert!(matches!(decide_room(&user(Role::Doctor, h), &facts), Err(Denied::Forbidden(_))), "{facts:?}");
        }
        assert!(decide_room(&user(Role::Admin, h), &member).is_err(), "admins do not read chats");
        assert_eq!(decide_room(&user(Role::Doctor, HospitalId::new()), &member), Err(Denied::NotFound));
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
        for (role, read, configure, burden) in [
            (Role::Admin, true, true, true),
            (Role::Doctor, true, false, true),
            (Role::Technician, true, false, false),
            (Role::Patient, false, false, false),
        ] {
            let s = user(role, h);
            assert_eq!(decide_hospital(&s, h, ReadAlarmPolicy).is_ok(), read, "{role:?}");
            assert_eq!(decide_hospital(&s, h, ConfigureAlarms).is_ok(), configure, "{role:?}");
            assert_eq!(decide_hospital(&s, h, ViewAlarmBurden).is_ok(), burden, "{role:?}");
        }
    }
}
