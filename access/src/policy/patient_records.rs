//! Patients as lists and as fields: which patients a subject may list (the same
//! relationships [`decide_patient`] reads for one patient, as a set), how much of each it
//! sees, and which fields of a record each role may change.
//!
//! - [`patient_scope`]: admins list every patient of their hospital; a doctor the patients
//!   assigned to them and those assigned to, or treated (a session) on, their devices; a
//!   technician the patients assigned to, or treated during its windows on, its devices
//!   (see [`Window`]); a patient only themself.
//! - [`patient_view`]: admins administer records but read no clinical data, so they get the
//!   administrative fields only.
//! - [`decide_patient_field`]: doctors change every field (re-pointing the patient stays
//!   [`decide_reassign`]'s); technicians only what they record at the machine (dry weight,
//!   vascular access, last dialysis, notes); admins only who treats the patient and the
//!   account link; patients nothing.

use nc_domain::{DeviceId, PatientId, Role, UserId};
use nc_entities::{device_sessions, patients};
use sea_orm::sea_query::IntoCondition;
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait};

use super::{Decision, Denied, DeviceScope, Policy, Subject, Window};

/// Which patients of its hospital a subject may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientScope {
    /// Every patient of the hospital (admins: see [`PatientView`]).
    Hospital,
    /// The patients with at least one of these relationships to the subject.
    Related(Relations),
}

/// Relationships that make a patient visible to a subject. Empty: none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relations {
    /// Their assigned doctor is this one.
    pub doctor: Option<UserId>,
    /// Assigned now to one of these devices.
    pub assigned_to: Vec<DeviceId>,
    /// Treated (a session, now or in the past) on one of these devices.
    pub treated_on: Vec<DeviceId>,
    /// Treated in a session that overlaps one of these windows on its device.
    pub treated_in: Vec<Window>,
    /// This record (the patient themself).
    pub record: Option<PatientId>,
}

/// What a patient is to the world, for [`PatientScope::includes`]: in memory, as the
/// database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRelations {
    pub id: PatientId,
    pub assigned_doctor: Option<UserId>,
    pub assigned_device: Option<DeviceId>,
    /// (device, started, ended) of each of their sessions.
    pub sessions: Vec<(DeviceId, chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>)>,
}

/// The list rule, over the facts [`Policy::patient_scope`] loads: the devices whose data a
/// doctor reads, a technician's windows, a patient's own record.
pub fn patient_scope(
    subject: &Subject,
    devices: &DeviceScope,
    windows: &[Window],
    own: Option<PatientId>,
) -> PatientScope {
    let Subject::User(user) = subject else { return PatientScope::Related(Relations::default()) };
    match user.role {
        Role::Admin => PatientScope::Hospital,
        Role::Doctor => PatientScope::Related(Relations {
            doctor: Some(user.id),
            assigned_to: devices.ids().to_vec(),
            treated_on: devices.ids().to_vec(),
            ..Default::default()
        }),
        Role::Technician => {
            let mut devices: Vec<DeviceId> = windows.iter().map(|w| w.device).collect();
            devices.sort();
            devices.dedup();
            PatientScope::Related(Relations {
                assigned_to: devices,
                treated_in: windows.to_vec(),
                ..Default::default()
            })
        }
        Role::Patient => PatientScope::Related(Relations { record: own, ..Default::default() }),
    }
}

impl PatientScope {
    /// Whether the scope includes a patient (the rule, in memory).
    pub fn includes(&self, p: &PatientRelations) -> bool {
        let PatientScope::Related(r) = self else { return true };
        r.record == Some(p.id)
            || (r.doctor.is_some() && r.doctor == p.assigned_doctor)
            || p.assigned_device.is_some_and(|d| r.assigned_to.contains(&d))
            || p.sessions.iter().any(|(d, from, to)| {
                r.treated_on.contains(d) || r.treated_in.iter().any(|w| w.device == *d && w.overlaps(*from, *to))
            })
    }

    /// The same rule as a condition on `patients` (the hospital is filtered separately).
    pub fn condition(&self) -> Condition {
        let PatientScope::Related(r) = self else { return Condition::all() };
        let mut any = Condition::any();
        if let Some(d) = r.doctor {
            any = any.add(patients::Column::AssignedDoctorId.eq(d));
        }
        if !r.assigned_to.is_empty() {
            any = any.add(patients::Column::AssignedDeviceId.is_in(r.assigned_to.clone()));
        }
        if !r.treated_on.is_empty() {
            any = any.add(treated(device_sessions::Column::DeviceId.is_in(r.treated_on.clone()).into_condition()));
        }
        if !r.treated_in.is_empty() {
            any = any.add(treated(sessions_in(&r.treated_in)));
        }
        if let Some(id) = r.record {
            any = any.add(patients::Column::Id.eq(id));
        }
        if any.is_empty() {
            // No relationship: nobody (an empty `any` would match everything).
            any = any.add(patients::Column::Id.is_null());
        }
        any
    }
}

/// Patients with a session matching `sessions`.
fn treated(sessions: Condition) -> Condition {
    let query = device_sessions::Entity::find()
        .select_only()
        .column(device_sessions::Column::PatientId)
        .filter(device_sessions::Column::PatientId.is_not_null())
        .filter(sessions)
        .into_query();
    Condition::all().add(patients::Column::Id.in_subquery(query))
}

/// Sessions that overlap one of the windows on its device (none for no window).
pub fn sessions_in(windows: &[Window]) -> Condition {
    let mut any = Condition::any();
    for w in windows {
        any = any.add(
            Condition::all()
                .add(device_sessions::Column::DeviceId.eq(w.device))
                .add(device_sessions::Column::StartedAt.lt(w.to))
                .add(
                    Condition::any()
                        .add(device_sessions::Column::EndedAt.is_null())
                        .add(device_sessions::Column::EndedAt.gt(w.from)),
                ),
        );
    }
    // No window: no session (an empty `any` would match everything).
    if windows.is_empty() {
        any = any.add(device_sessions::Column::Id.is_null());
    }
    any
}

/// How much of a listed or administered patient record a subject sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientView {
    /// Everything (those who may read the patient).
    Full,
    /// Identity, number, who treats the patient, the account link and the schedule; no
    /// medical information (admins).
    Administrative,
}

pub fn patient_view(subject: &Subject) -> PatientView {
    match subject {
        Subject::User(u) if u.role == Role::Admin => PatientView::Administrative,
        _ => PatientView::Full,
    }
}

/// What changing a patient record is for `subject`: an admin administers it (identity, who
/// treats the patient, the account link), everyone else updates its medical information.
pub fn record_change_action(subject: &Subject) -> super::PatientAction {
    match patient_view(subject) {
        PatientView::Administrative => super::PatientAction::Administer,
        _ => super::PatientAction::UpdateMedical,
    }
}

/// A field of a patient record that a request may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatientField {
    Name,
    DateOfBirth,
    Gender,
    AssignedDoctor,
    AssignedDevice,
    /// The patient's own account (`userId`).
    Account,
    BloodGroup,
    DryWeight,
    DialysisSchedule,
    LastDialysisAt,
    Diagnosis,
    VascularAccess,
    Allergies,
    Medications,
    Notes,
}

impl PatientField {
    pub const ALL: [PatientField; 15] = [
        PatientField::Name,
        PatientField::DateOfBirth,
        PatientField::Gender,
        PatientField::AssignedDoctor,
        PatientField::AssignedDevice,
        PatientField::Account,
        PatientField::BloodGroup,
        PatientField::DryWeight,
        PatientField::DialysisSchedule,
        PatientField::LastDialysisAt,
        PatientField::Diagnosis,
        PatientField::VascularAccess,
        PatientField::Allergies,
        PatientField::Medications,
        PatientField::Notes,
    ];

    /// The field's JSON name (requests, `medical_updates.field`).
    pub fn json_name(self) -> &'static str {
        match self {
            PatientField::Name => "name",
            PatientField::DateOfBirth => "dateOfBirth",
            PatientField::Gender => "gender",
            PatientField::AssignedDoctor => "assignedDoctorId",
            PatientField::AssignedDevice => "assignedDeviceId",
            PatientField::Account => "userId",
            PatientField::BloodGroup => "bloodGroup",
            PatientField::DryWeight => "dryWeightKg",
            PatientField::DialysisSchedule => "dialysisSchedule",
            PatientField::LastDialysisAt => "lastDialysisAt",
            PatientField::Diagnosis => "diagnosis",
            PatientField::VascularAccess => "vascularAccess",
            PatientField::Allergies => "allergies",
            PatientField::Medications => "medications",
            PatientField::Notes => "notes",
        }
    }
}

/// Whether `subject` may change `field` of a record it may update (the record itself is
/// [`decide_patient`]'s: `UpdateMedical`, or `Administer` for admins).
pub fn decide_patient_field(subject: &Subject, field: PatientField) -> Decision {
    use PatientField::*;
    let Subject::User(user) = subject else { return Err(Denied::Forbidden("devices do not change patient records")) };
    match (user.role, field) {
        (Role::Doctor, _) => Ok(()),
        (Role::Technician, DryWeight | VascularAccess | LastDialysisAt | Notes) => Ok(()),
        (Role::Technician, Name | DateOfBirth | Gender) => {
            Err(Denied::Forbidden("technicians do not change a patient's identity"))
        }
        (Role::Technician, AssignedDoctor | AssignedDevice | Account) => {
            Err(Denied::Forbidden("technicians do not change who treats a patient"))
        }
        (Role::Technician, BloodGroup | DialysisSchedule | Diagnosis | Allergies | Medications) => {
            Err(Denied::Forbidden(
                "technicians record treatment data; diagnosis, prescription and allergies are the doctors'",
            ))
        }
        (Role::Admin, AssignedDoctor | AssignedDevice | Account) => Ok(()),
        (Role::Admin, _) => Err(Denied::Forbidden("admins do not read or change clinical data")),
        (Role::Patient, _) => Err(Denied::Forbidden("patients do not change their record")),
    }
}

/// Every field of `fields` that `subject` may not change, with the reason.
pub fn refused_patient_fields(subject: &Subject, fields: &[PatientField]) -> Vec<(PatientField, &'static str)> {
    fields
        .iter()
        .filter_map(|f| match decide_patient_field(subject, *f) {
            Err(Denied::Forbidden(why)) => Some((*f, why)),
            _ => None,
        })
        .collect()
}

impl Policy {
    /// Which patients `subject` may list (see [`patient_scope`]).
    pub async fn patient_scope(&self, subject: &Subject) -> Result<PatientScope, DbErr> {
        let (mut devices, mut windows, mut own) = (DeviceScope::Nothing, Vec::new(), None);
        if let Subject::User(u) = subject {
            match u.role {
                Role::Doctor => devices = self.clinical_devices(subject).await?,
                Role::Technician => windows = self.technician_windows(u.id).await?,
                Role::Patient => own = self.patient_of_user(u.id).await?,
                Role::Admin => {}
            }
        }
        Ok(patient_scope(subject, &devices, &windows, own))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decide_patient, PatientAction, PatientFacts, UserSubject};
    use super::*;
    use chrono::{Duration, Utc};
    use nc_domain::HospitalId;

    fn user(role: Role, hospital: HospitalId) -> Subject {
        Subject::User(UserSubject { id: UserId::new(), role, hospital, family: None })
    }

    /// The list agrees with the one-patient decision for every role and relationship.
    #[test]
    fn the_list_is_exactly_the_readable_patients() {
        let h = HospitalId::new();
        let now = Utc::now();
        let (mine, other) = (DeviceId::new(), DeviceId::new());
        // The technician's window on `mine`: since an hour ago.
        let windows = [Window { device: mine, from: now - Duration::hours(1), to: now + Duration::days(1) }];
        let doctor = user(Role::Doctor, h);
        let Subject::User(doctor_user) = doctor else { unreachable!() };
        let patient = user(Role::Patient, h);
        let own = PatientId::new();
        let p = |doctor: Option<UserId>, device: Option<DeviceId>, sessions: Vec<_>| PatientRelations {
            id: PatientId::new(),
            assigned_doctor: doctor,
            assigned_device: device,
            sessions,
        };
        let candidates = [
            p(Some(doctor_user.id), None, vec![]),
            p(None, Some(mine), vec![]),
            p(None, Some(other), vec![]),
            p(None, None, vec![(mine, now - Duration::hours(5), Some(now - Duration::hours(4)))]),
            p(None, None, vec![(mine, now - Duration::minutes(30), None)]),
            p(None, None, vec![(other, now - Duration::minutes(30), None)]),
            p(None, None, vec![]),
            PatientRelations { id: own, assigned_doctor: None, assigned_device: None, sessions: vec![] },
        ];
        let devices = DeviceScope::Only(vec![mine]);
        for subject in [user(Role::Admin, h), doctor, user(Role::Technician, h), patient] {
            let Subject::User(u) = subject else { unreachable!() };
            let scope = patient_scope(&subject, &devices, &windows, Some(own));
            for c in &candidates {
                // The facts `Policy::patient` gathers for this subject and patient.
                let on_subject_device = match u.role {
                    Role::Doctor => c.assigned_device == Some(mine) || c.sessions.iter().any(|(d, ..)| *d == mine),
                    Role::Technician => {
                        c.assigned_device == Some(mine)
                            || c.sessions
                                .iter()
                                .any(|(d, f, t)| windows.iter().any(|w| w.device == *d && w.overlaps(*f, *t)))
                    }
                    _ => false,
                };
                let facts = PatientFacts {
                    patient: Some((c.id, h)),
                    is_self: u.role == Role::Patient && c.id == own,
                    is_assigned_doctor: u.role == Role::Doctor && c.assigned_doctor == Some(u.id),
                    on_subject_device,
                };
                let readable = decide_patient(&subject, &facts, PatientAction::Read).is_ok();
                let expected = readable || u.role == Role::Admin;
                assert_eq!(scope.includes(c), expected, "{:?} {c:?}", u.role);
            }
        }
        // A technician's list: the patient treated on its device before its window is not in it.
        let tech = patient_scope(&user(Role::Technician, h), &DeviceScope::Nothing, &windows, None);
        assert!(!tech.includes(&candidates[3]) && tech.includes(&candidates[4]));
        // Devices list nobody.
        let device = Subject::Device { id: mine, hospital: h };
        assert_eq!(patient_scope(&device, &devices, &windows, None), PatientScope::Related(Relations::default()));
        assert!(!patient_scope(&device, &devices, &windows, None).includes(&candidates[1]));
    }

    #[test]
    fn admins_see_the_administrative_view_only() {
        let h = HospitalId::new();
        assert_eq!(patient_view(&user(Role::Admin, h)), PatientView::Administrative);
        for role in [Role::Doctor, Role::Technician, Role::Patient] {
            assert_eq!(patient_view(&user(role, h)), PatientView::Full);
        }
    }

    #[test]
    fn field_rights_by_role() {
        use PatientField::*;
        let h = HospitalId::new();
        let may = |role: Role, f: PatientField| decide_patient_field(&user(role, h), f).is_ok();
        for f in PatientField::ALL {
            assert!(may(Role::Doctor, f), "doctors change {f:?}");
            assert!(!may(Role::Patient, f), "patients do not change {f:?}");
            assert_eq!(
                may(Role::Technician, f),
                matches!(f, DryWeight | VascularAccess | LastDialysisAt | Notes),
                "{f:?}"
            );
            assert_eq!(may(Role::Admin, f), matches!(f, AssignedDoctor | AssignedDevice | Account), "{f:?}");
        }
        let refused = refused_patient_fields(&user(Role::Technician, h), &[Notes, Diagnosis, Name]);
        assert_eq!(refused.iter().map(|(f, _)| f.json_name()).collect::<Vec<_>>(), ["diagnosis", "name"]);
        let device = Subject::Device { id: DeviceId::new(), hospital: h };
        assert!(decide_patient_field(&device, Notes).is_err());
        // JSON names are distinct.
        let mut names: Vec<_> = PatientField::ALL.iter().map(|f| f.json_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PatientField::ALL.len());
    }
}
