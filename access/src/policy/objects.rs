//! The objects that hang off the device and patient rules, decided here like every other
//! read or change: another hospital's object does not exist for a subject; a hand-over is
//! revoked by those involved or an admin; the device list's scope; a treatment session (its
//! patient's right and the technician's windows); a person's record; the resources a Bulk
//! export may hold.

use nc_domain::{HospitalId, PatientId, Role, SessionId, UserId};
use nc_entities::{device_sessions, users};
use sea_orm::EntityTrait;

use super::{
    decide_hospital, patient_view, Decision, Denied, DeviceScope, HospitalAction, PatientAction, PatientView, Policy,
    PolicyError, ReadScope, Subject,
};

/// Nothing crosses hospitals: an object of another hospital does not exist for `subject`
/// (404, so its existence does not leak). The first rule of every decision here.
pub fn decide_visible(subject: &Subject, hospital: HospitalId) -> Decision {
    if hospital == subject.hospital() {
        Ok(())
    } else {
        Err(Denied::NotFound)
    }
}

/// Who may revoke a hand-over (a temporary grant of a device): the technician who granted
/// it, the one who holds it, or an admin of the hospital.
pub fn decide_revoke_grant(
    subject: &Subject,
    hospital: HospitalId,
    granted_by: UserId,
    granted_to: UserId,
) -> Decision {
    decide_visible(subject, hospital)?;
    match subject {
        Subject::User(u) if u.id == granted_by || u.id == granted_to || u.role == Role::Admin => Ok(()),
        _ => Err(Denied::Forbidden("only the technicians involved or an admin may revoke this grant")),
    }
}

/// Which of its hospital's devices a list shows a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceListScope {
    /// All of them (staff).
    Hospital,
    /// Only these (a patient's own; anyone asking for "mine": those whose clinical data it reads).
    Only(Vec<nc_domain::DeviceId>),
}

/// What a Bulk Data export may hold for a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportView {
    /// Clinical resources of the patients it may read.
    Clinical,
    /// The administrative resources only (admins read no clinical data).
    Administrative,
}

/// The export view of [`patient_view`]: what a subject sees of a patient, it may export.
pub fn export_view(subject: &Subject) -> ExportView {
    match patient_view(subject) {
        PatientView::Administrative => ExportView::Administrative,
        _ => ExportView::Clinical,
    }
}

impl Policy {
    /// The accounts of `role` that `subject` may list: `None` for all of its hospital's;
    /// patient accounts carry contact details, so a doctor lists only those of the patients
    /// it may read (admins all, to link accounts to records).
    pub async fn listable_accounts(&self, subject: &Subject, role: Role) -> Result<Option<Vec<UserId>>, PolicyError> {
        decide_hospital(subject, subject.hospital(), HospitalAction::ListUsers(role))?;
        match role {
            Role::Patient => Ok(self.listable_patient_accounts(subject).await?),
            Role::Doctor | Role::Technician | Role::Admin => Ok(None),
        }
    }

    /// The devices `subject` may list (`mine`: only those whose clinical data it may read;
    /// a patient always sees only their own).
    pub async fn device_list_scope(&self, subject: &Subject, mine: bool) -> Result<DeviceListScope, PolicyError> {
        decide_hospital(subject, subject.hospital(), HospitalAction::ListDevices)?;
        let own_only = matches!(subject, Subject::User(u) if u.role == Role::Patient);
        if !(own_only || mine) {
            return Ok(DeviceListScope::Hospital);
        }
        Ok(DeviceListScope::Only(match self.clinical_devices(subject).await? {
            DeviceScope::Only(ids) => ids,
            DeviceScope::Nothing => Vec::new(),
        }))
    }

    /// A treatment session and its patient, if `subject` may read it: the right to read the
    /// patient, and for a technician a session inside its windows.
    pub async fn session(
        &self,
        subject: &Subject,
        id: SessionId,
    ) -> Result<(device_sessions::Model, PatientId), PolicyError> {
        let s = device_sessions::Entity::find_by_id(id).one(&self.db).await?.ok_or(Denied::NotFound)?;
        decide_visible(subject, s.hospital_id)?;
        let patient = s.patient_id.ok_or(Denied::NotFound)?;
        self.patient(subject, patient, PatientAction::Read).await?;
        if let ReadScope::Windows(w) = self.read_scope(subject).await? {
            if !w.iter().any(|w| w.device == s.device_id && w.overlaps(s.started_at, s.ended_at)) {
                return Err(Denied::Forbidden("this session lies outside the windows you are responsible for").into());
            }
        }
        Ok((s, patient))
    }

    /// A person's account of the subject's hospital, if the subject may see accounts of
    /// that role (`HospitalAction::ListUsers`).
    pub async fn person(&self, subject: &Subject, id: UserId) -> Result<users::Model, PolicyError> {
        let u = users::Entity::find_by_id(id).one(&self.db).await?.ok_or(Denied::NotFound)?;
        decide_visible(subject, u.hospital_id)?;
        decide_hospital(subject, u.hospital_id, HospitalAction::ListUsers(u.role))?;
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::UserSubject;

    fn user(role: Role, hospital: HospitalId) -> (UserId, Subject) {
        let id = UserId::new();
        (id, Subject::User(UserSubject { id, role, hospital, family: None }))
    }

    #[test]
    fn a_hand_over_is_revoked_by_those_involved_or_an_admin_of_its_hospital() {
        let (h, other) = (HospitalId::new(), HospitalId::new());
        let (granter, granter_s) = user(Role::Technician, h);
        let (holder, holder_s) = user(Role::Technician, h);
        for (s, ok) in [
            (granter_s, true),
            (holder_s, true),
            (user(Role::Admin, h).1, true),
            (user(Role::Technician, h).1, false),
            (user(Role::Doctor, h).1, false),
            (user(Role::Patient, h).1, false),
        ] {
            assert_eq!(decide_revoke_grant(&s, h, granter, holder).is_ok(), ok, "{s:?}");
        }
        assert_eq!(decide_revoke_grant(&user(Role::Admin, other).1, h, granter, holder), Err(Denied::NotFound));
    }

    #[test]
    fn admins_export_administrative_resources_only() {
        let h = HospitalId::new();
        assert_eq!(export_view(&user(Role::Admin, h).1), ExportView::Administrative);
        for role in [Role::Doctor, Role::Technician, Role::Patient] {
            assert_eq!(export_view(&user(role, h).1), ExportView::Clinical);
        }
    }
}
