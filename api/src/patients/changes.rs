//! Changing a patient record, the one way every operation does it (`updatePatient`,
//! `updatePatientMedicalInfo`, `linkPatientAccount`, `unlinkPatientAccount`): the policy
//! decides the record ([`nc_access::PatientAction`]) and each field
//! ([`nc_access::policy::decide_patient_field`]); each changed field is kept in
//! `medical_updates` (old value, new value, who, when) in the transaction that changes it,
//! and the change is audited.

use chrono::Utc;
use nc_access::audit;
use nc_access::policy::{refused_patient_fields, PatientField};
use nc_domain::*;
use nc_entities::{devices, medical_updates, patients, users};
use poem::Request;
use sea_orm::{ActiveModelTrait, EntityTrait, Set, TransactionTrait};

use crate::error::{ApiError, FieldError};
use crate::patients::dto::UpdatePatientRequest;
use crate::security::{client_ip, BearerAuth};
use crate::state::ApiState;
use crate::validate::check_name;

/// A change: the request's fields, and the account link (`Some(None)`: unlink).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub fields: UpdatePatientRequest,
    pub user_id: Option<Option<UserId>>,
}

impl Changes {
    /// The fields this change names.
    fn named(&self) -> Vec<PatientField> {
        use PatientField::*;
        let b = &self.fields;
        [
            (Name, b.name.is_some()),
            (DateOfBirth, b.date_of_birth.is_some()),
            (Gender, b.gender.is_some()),
            (BloodGroup, b.blood_group.is_some()),
            (AssignedDoctor, b.assigned_doctor_id.is_some()),
            (AssignedDevice, b.assigned_device_id.is_some()),
            (Account, self.user_id.is_some()),
            (DryWeight, b.dry_weight_kg.is_some()),
            (DialysisSchedule, b.dialysis_schedule.is_some()),
            (LastDialysisAt, b.last_dialysis_at.is_some()),
            (Diagnosis, b.diagnosis.is_some()),
            (VascularAccess, b.vascular_access.is_some()),
            (Allergies, b.allergies.is_some()),
            (Medications, b.medications.is_some()),
            (Notes, b.notes.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, named)| named.then_some(f))
        .collect()
    }
}

pub(crate) fn check_weight(w: Option<f64>) -> Result<(), ApiError> {
    match w {
        Some(w) if !(2.0..=400.0).contains(&w) => Err(ApiError::field("dryWeightKg", "must be between 2 and 400 kg")),
        _ => Ok(()),
    }
}

/// The accounts and device a record is linked to must be ones `subject` can see (of its
/// hospital) and of the right kind (a doctor, a patient account): 422 naming the field.
pub(crate) async fn check_links(
    state: &ApiState,
    subject: &nc_access::Subject,
    doctor: Option<UserId>,
    device: Option<DeviceId>,
    user: Option<UserId>,
) -> Result<(), ApiError> {
    let visible = |hospital: HospitalId| nc_access::policy::decide_visible(subject, hospital).is_ok();
    // Not an access rule: the kind of account a field names (422).
    let of_kind = |u: &users::Model, role: Role| visible(u.hospital_id) && u.role == role;
    if let Some(d) = doctor {
        let ok = users::Entity::find_by_id(d).one(&state.db).await?.is_some_and(|u| of_kind(&u, Role::Doctor));
        if !ok {
            return Err(ApiError::field("assignedDoctorId", "must be a doctor of your hospital"));
        }
    }
    if let Some(d) = device {
        let ok = devices::Entity::find_by_id(d).one(&state.db).await?.is_some_and(|x| visible(x.hospital_id));
        if !ok {
            return Err(ApiError::field("assignedDeviceId", "must be a device of your hospital"));
        }
    }
    if let Some(u) = user {
        let ok = users::Entity::find_by_id(u).one(&state.db).await?.is_some_and(|x| of_kind(&x, Role::Patient));
        if !ok {
            return Err(ApiError::field("userId", "must be a patient account of your hospital"));
        }
    }
    Ok(())
}

/// Writes one audit row about `patient`.
pub(crate) async fn audit_patient(
    state: &ApiState,
    req: &Request,
    auth: &BearerAuth,
    patient: &patients::Model,
    action: AuditAction,
    resource: &str,
) -> Result<(), ApiError> {
    audit::record(
        &state.db,
        audit::Access {
            subject: &auth.subject(),
            action,
            resource,
            patient: Some(patient.id),
            device: patient.assigned_device_id,
            interface: Interface::Rest,
            client_addr: client_ip(req).map(|ip| ip.to_string()),
        },
    )
    .await?;
    Ok(())
}

/// Applies `changes` to the patient: the policy decides the record (admins administer it,
/// anyone else must be responsible for the patient) and every named field; re-pointing the
/// patient is also [`nc_access::Policy::reassign_patient`]'s. Returns the record as changed.
pub(crate) async fn update(
    state: &ApiState,
    req: &Request,
    auth: &BearerAuth,
    patient: PatientId,
    changes: Changes,
) -> Result<patients::Model, ApiError> {
    let subject = auth.subject();
    let action = nc_access::policy::record_change_action(&subject);
    let before = state.policy.patient(&subject, patient, action).await.map_err(|e| ApiError::policy(e, "patient"))?;
    let refused = refused_patient_fields(&subject, &changes.named());
    if !refused.is_empty() {
        return Err(ApiError::ForbiddenFields(
            refused
                .into_iter()
                .map(|(f, why)| FieldError { field: f.json_name().to_owned(), message: why.to_owned() })
                .collect(),
        ));
    }
    let b = &changes.fields;
    check_weight(b.dry_weight_kg)?;
    check_links(state, &subject, b.assigned_doctor_id, b.assigned_device_id, None).await?;
    let new_device = b.assigned_device_id.filter(|d| before.assigned_device_id != Some(*d));
    let new_doctor = b.assigned_doctor_id.filter(|d| before.assigned_doctor_id != Some(*d));
    if new_device.is_some() || new_doctor.is_some() {
        state
            .policy
            .reassign_patient(&subject, new_device, new_doctor)
            .await
            .map_err(|e| ApiError::policy(e, "patient"))?;
    }
    let after = record(state, auth.0.id, &before, changes).await?;
    if after != before {
        audit_patient(state, req, auth, &after, AuditAction::Update, "patient").await?;
    }
    Ok(after)
}

/// Writes the fields of `changes` that differ from `before`, and one `medical_updates` row
/// for each, in one transaction. The caller has decided that `by` may.
pub(crate) async fn record(
    state: &ApiState,
    by: UserId,
    before: &patients::Model,
    changes: Changes,
) -> Result<patients::Model, ApiError> {
    let b = changes.fields;
    let mut active: patients::ActiveModel = before.clone().into();
    let mut trail: Vec<(PatientField, serde_json::Value, serde_json::Value)> = Vec::new();
    macro_rules! change {
        ($column:ident, $field:expr, $value:expr) => {
            if let Some(v) = $value {
                let old = serde_json::to_value(&before.$column).unwrap_or_default();
                let new_json = serde_json::to_value(&v).unwrap_or_default();
                if old != new_json {
                    trail.push(($field, old, new_json));
                    active.$column = Set(v.into());
                }
            }
        };
    }
    use PatientField as F;
    change!(name, F::Name, b.name.map(|n| check_name("name", &n)).transpose()?);
    change!(date_of_birth, F::DateOfBirth, b.date_of_birth.map(Some));
    change!(gender, F::Gender, b.gender);
    change!(blood_group, F::BloodGroup, b.blood_group.map(Some));
    change!(assigned_doctor_id, F::AssignedDoctor, b.assigned_doctor_id.map(Some));
    change!(assigned_device_id, F::AssignedDevice, b.assigned_device_id.map(Some));
    change!(user_id, F::Account, changes.user_id);
    change!(dry_weight_kg, F::DryWeight, b.dry_weight_kg.map(Some));
    change!(dialysis_schedule, F::DialysisSchedule, b.dialysis_schedule);
    change!(last_dialysis_at, F::LastDialysisAt, b.last_dialysis_at.map(Some));
    change!(diagnosis, F::Diagnosis, b.diagnosis.map(Some));
    change!(vascular_access, F::VascularAccess, b.vascular_access.map(Some));
    change!(allergies, F::Allergies, b.allergies.map(Some));
    change!(medications, F::Medications, b.medications.map(Some));
    change!(notes, F::Notes, b.notes.map(Some));
    if trail.is_empty() {
        return Ok(before.clone());
    }
    let now = Utc::now();
    active.updated_at = Set(now);
    let txn = state.db.begin().await?;
    let after = active.update(&txn).await?;
    for (field, old, new) in trail {
        medical_updates::ActiveModel {
            id: Set(MedicalUpdateId::new()),
            hospital_id: Set(after.hospital_id),
            patient_id: Set(after.id),
            field: Set(field.json_name().to_owned()),
            old_value: Set(Some(old)),
            new_value: Set(Some(new)),
            updated_by: Set(Some(by)),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(after)
}
