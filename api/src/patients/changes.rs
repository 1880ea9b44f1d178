//! Changing a patient record, the one way every operation does it (`updatePatient`,
//! `updatePatientMedicalInfo`, `linkPatientAccount`, `unlinkPatientAccount`): the policy
//! decides the record ([`nc_access::PatientAction`]) and each field
//! ([`nc_access::policy::decide_patient_field`]); `nc_care::patients::record` writes it,
//! keeping each changed field in `medical_updates` (old value, new value, who, when) in the
//! transaction that changes it; and the change is audited.

use nc_access::audit;
use nc_access::policy::refused_patient_fields;
use nc_care::patients::{check_links, check_weight, record, Changes};
use nc_domain::*;
use nc_entities::patients;
use poem::Request;

use crate::error::{ApiError, FieldError};
use crate::security::{client_ip, BearerAuth};
use crate::state::ApiState;

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
    let before = state.allowed_patient(&subject, patient, action).await?;
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
    check_links(&state.db, &subject, b.assigned_doctor_id, b.assigned_device_id, None).await?;
    let new_device = b.assigned_device_id.filter(|d| before.assigned_device_id != Some(*d));
    let new_doctor = b.assigned_doctor_id.filter(|d| before.assigned_doctor_id != Some(*d));
    if new_device.is_some() || new_doctor.is_some() {
        state
            .policy
            .reassign_patient(&subject, new_device, new_doctor)
            .await
            .map_err(|e| ApiError::policy(e, "patient"))?;
    }
    let after = record(&state.db, auth.0.id, &before, changes).await?;
    if after != before {
        audit_patient(state, req, auth, &after, AuditAction::Update, "patient").await?;
    }
    Ok(after)
}
