//! `/api/patients/*`: patient records and their medical information. Every read and change
//! is written to the access audit log; every change of a field is also kept in
//! `medical_updates` (old value, new value, who, when).

use chrono::{NaiveDate, Utc};
use nc_access::{audit, HospitalAction, PatientAction};
use nc_domain::*;
use nc_entities::{devices, medical_updates, patients, users};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};

use crate::auth_api::check_name;
use crate::dto::PatientOut;
use crate::error::{ApiError, ErrorResponse};
use crate::security::{client_ip, BearerAuth};
use crate::state::ApiState;
use crate::Tag;

type Result<T> = std::result::Result<T, ErrorResponse>;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePatientRequest {
    /// The hospital's patient number: letters, digits and dashes.
    #[oai(validator(max_length = 32, custom = "crate::validate::NoNul"))]
    pub patient_number: String,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: String,
    #[oai(validator(custom = "crate::validate::Date"))]
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub blood_group: Option<BloodGroup>,
    /// The patient's own account (role patient, same hospital), if they use the app.
    pub user_id: Option<UserId>,
    pub assigned_doctor_id: Option<UserId>,
    pub assigned_device_id: Option<DeviceId>,
    #[oai(validator(minimum(value = "2"), maximum(value = "400")))]
    pub dry_weight_kg: Option<f64>,
    #[oai(validator(custom = "crate::validate::SmallJson"))]
    pub dialysis_schedule: Option<serde_json::Value>,
    #[oai(validator(max_length = 4000, custom = "crate::validate::NoNul"))]
    pub diagnosis: Option<String>,
    pub vascular_access: Option<VascularAccess>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePatientRequest {
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: Option<String>,
    #[oai(validator(custom = "crate::validate::Date"))]
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub blood_group: Option<BloodGroup>,
    pub assigned_doctor_id: Option<UserId>,
    pub assigned_device_id: Option<DeviceId>,
    #[oai(validator(minimum(value = "2"), maximum(value = "400")))]
    pub dry_weight_kg: Option<f64>,
    #[oai(validator(custom = "crate::validate::SmallJson"))]
    pub dialysis_schedule: Option<serde_json::Value>,
    #[oai(validator(custom = "crate::validate::Time"))]
    pub last_dialysis_at: Option<chrono::DateTime<Utc>>,
    #[oai(validator(max_length = 4000, custom = "crate::validate::NoNul"))]
    pub diagnosis: Option<String>,
    pub vascular_access: Option<VascularAccess>,
    #[oai(validator(max_length = 4000, custom = "crate::validate::NoNul"))]
    pub allergies: Option<String>,
    #[oai(validator(max_length = 4000, custom = "crate::validate::NoNul"))]
    pub medications: Option<String>,
    #[oai(validator(max_length = 4000, custom = "crate::validate::NoNul"))]
    pub notes: Option<String>,
}

/// One change of one field of a patient's record.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MedicalUpdateOut {
    pub id: MedicalUpdateId,
    pub field: String,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub updated_by: Option<UserId>,
    pub updated_at: chrono::DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum PatientCreated {
    #[oai(status = 201)]
    Created(Json<PatientOut>),
}

pub struct PatientsApi;

fn check_weight(w: Option<f64>) -> std::result::Result<(), ApiError> {
    match w {
        Some(w) if !(2.0..=400.0).contains(&w) => Err(ApiError::field("dryWeightKg", "must be between 2 and 400 kg")),
        _ => Ok(()),
    }
}

async fn check_links(
    state: &ApiState,
    hospital: HospitalId,
    doctor: Option<UserId>,
    device: Option<DeviceId>,
    user: Option<UserId>,
) -> std::result::Result<(), ApiError> {
    if let Some(d) = doctor {
        let ok = users::Entity::find_by_id(d)
            .one(&state.db)
            .await?
            .is_some_and(|u| u.hospital_id == hospital && u.role == Role::Doctor);
        if !ok {
            return Err(ApiError::field("assignedDoctorId", "must be a doctor of your hospital"));
        }
    }
    if let Some(d) = device {
        let ok = devices::Entity::find_by_id(d).one(&state.db).await?.is_some_and(|x| x.hospital_id == hospital);
        if !ok {
            return Err(ApiError::field("assignedDeviceId", "must be a device of your hospital"));
        }
    }
    if let Some(u) = user {
        let ok = users::Entity::find_by_id(u)
            .one(&state.db)
            .await?
            .is_some_and(|x| x.hospital_id == hospital && x.role == Role::Patient);
        if !ok {
            return Err(ApiError::field("userId", "must be a patient account of your hospital"));
        }
    }
    Ok(())
}

async fn audit_patient(
    state: &ApiState,
    req: &Request,
    auth: &BearerAuth,
    patient: &patients::Model,
    action: AuditAction,
) -> std::result::Result<(), ApiError> {
    audit::record(
        &state.db,
        audit::Access {
            subject: &auth.subject(),
            action,
            resource: "patient",
            patient: Some(patient.id),
            device: patient.assigned_device_id,
            interface: Interface::Rest,
            client_addr: client_ip(req).map(|ip| ip.to_string()),
        },
    )
    .await?;
    Ok(())
}

#[OpenApi(tag = "Tag::Patients")]
impl PatientsApi {
    /// Create a patient record (admins and doctors of the hospital).
    #[oai(path = "/api/patients", method = "post", operation_id = "createPatient")]
    async fn create(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<CreatePatientRequest>,
    ) -> Result<PatientCreated> {
        let hospital = auth.0.hospital;
        state.policy.hospital(&auth.subject(), hospital, HospitalAction::AdministerPatients)?;
        let b = body.0;
        let number = b.patient_number.trim().to_owned();
        if number.is_empty() || number.len() > 32 || !number.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ApiError::field("patientNumber", "must be 1-32 letters, digits or dashes").into());
        }
        let name = check_name("name", &b.name)?;
        check_weight(b.dry_weight_kg)?;
        check_links(&state, hospital, b.assigned_doctor_id, b.assigned_device_id, b.user_id).await?;
        let now = Utc::now();
        let patient = patients::ActiveModel {
            id: Set(PatientId::new()),
            hospital_id: Set(hospital),
            user_id: Set(b.user_id),
            patient_number: Set(number),
            name: Set(name),
            date_of_birth: Set(b.date_of_birth),
            gender: Set(b.gender.unwrap_or(Gender::Unknown)),
            blood_group: Set(b.blood_group),
            assigned_doctor_id: Set(b.assigned_doctor_id),
            assigned_device_id: Set(b.assigned_device_id),
            dialysis_schedule: Set(b.dialysis_schedule.unwrap_or_else(|| serde_json::json!({}))),
            last_dialysis_at: Set(None),
            dry_weight_kg: Set(b.dry_weight_kg),
            diagnosis: Set(b.diagnosis),
            vascular_access: Set(b.vascular_access),
            allergies: Set(None),
            medications: Set(None),
            notes: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&state.db)
        .await?;
        audit_patient(&state, req, &auth, &patient, AuditAction::Create).await?;
        Ok(PatientCreated::Created(Json(patient.into())))
    }

    /// A patient's profile and medical information (their doctors and technicians, and the
    /// patient themself). Audited.
    #[oai(path = "/api/patients/:patientId", method = "get", operation_id = "getPatient")]
    async fn get(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
    ) -> Result<Json<PatientOut>> {
        let patient = state
            .policy
            .patient(&auth.subject(), patient_id.0, PatientAction::Read)
            .await
            .map_err(|e| ApiError::policy(e, "patient"))?;
        audit_patient(&state, req, &auth, &patient, AuditAction::Read).await?;
        Ok(Json(patient.into()))
    }

    /// Change a patient's record. Medical information: the patient's doctors. Who treats the
    /// patient (`assignedDeviceId`, `assignedDoctorId`, which decide who sees their data):
    /// admins of the hospital, or a doctor only to a device assigned to them and only to
    /// themself as the doctor. Each changed field is recorded in the medical-updates trail
    /// and the change is audited; live access that no longer holds ends within a second.
    #[oai(path = "/api/patients/:patientId", method = "put", operation_id = "updatePatient")]
    async fn update(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        body: Json<UpdatePatientRequest>,
    ) -> Result<Json<PatientOut>> {
        let b = body.0;
        let subject = auth.subject();
        // Re-pointing a patient (device, doctor) is a staff-assignment action; everything
        // else is a change of medical information.
        let medical = b.name.is_some()
            || b.date_of_birth.is_some()
            || b.gender.is_some()
            || b.blood_group.is_some()
            || b.dry_weight_kg.is_some()
            || b.dialysis_schedule.is_some()
            || b.last_dialysis_at.is_some()
            || b.diagnosis.is_some()
            || b.vascular_access.is_some()
            || b.allergies.is_some()
            || b.medications.is_some()
            || b.notes.is_some();
        // Admins administer records without reading them; anyone else must be responsible
        // for the patient (a doctor of theirs) to change anything, re-pointing included.
        let action = if auth.0.role == Role::Admin && !medical {
            PatientAction::Administer
        } else {
            PatientAction::UpdateMedical
        };
        let before =
            state.policy.patient(&subject, patient_id.0, action).await.map_err(|e| ApiError::policy(e, "patient"))?;
        check_weight(b.dry_weight_kg)?;
        check_links(&state, before.hospital_id, b.assigned_doctor_id, b.assigned_device_id, None).await?;
        let new_device = b.assigned_device_id.filter(|d| before.assigned_device_id != Some(*d));
        let new_doctor = b.assigned_doctor_id.filter(|d| before.assigned_doctor_id != Some(*d));
        if new_device.is_some() || new_doctor.is_some() {
            state
                .policy
                .reassign_patient(&subject, new_device, new_doctor)
                .await
                .map_err(|e| ApiError::policy(e, "patient"))?;
        }
        let mut active: patients::ActiveModel = before.clone().into();
        let mut changes: Vec<(&'static str, serde_json::Value, serde_json::Value)> = Vec::new();
        macro_rules! change {
            ($field:ident, $json:literal, $value:expr) => {
                if let Some(v) = $value {
                    let old = serde_json::to_value(&before.$field).unwrap_or_default();
                    let new_json = serde_json::to_value(&v).unwrap_or_default();
                    if old != new_json {
                        changes.push(($json, old, new_json));
                        active.$field = Set(v.into());
                    }
                }
            };
        }
        change!(name, "name", b.name.map(|n| check_name("name", &n)).transpose()?);
        change!(date_of_birth, "dateOfBirth", b.date_of_birth.map(Some));
        change!(gender, "gender", b.gender);
        change!(blood_group, "bloodGroup", b.blood_group.map(Some));
        change!(assigned_doctor_id, "assignedDoctorId", b.assigned_doctor_id.map(Some));
        change!(assigned_device_id, "assignedDeviceId", b.assigned_device_id.map(Some));
        change!(dry_weight_kg, "dryWeightKg", b.dry_weight_kg.map(Some));
        change!(dialysis_schedule, "dialysisSchedule", b.dialysis_schedule);
        change!(last_dialysis_at, "lastDialysisAt", b.last_dialysis_at.map(Some));
        change!(diagnosis, "diagnosis", b.diagnosis.map(Some));
        change!(vascular_access, "vascularAccess", b.vascular_access.map(Some));
        change!(allergies, "allergies", b.allergies.map(Some));
        change!(medications, "medications", b.medications.map(Some));
        change!(notes, "notes", b.notes.map(Some));
        if changes.is_empty() {
            return Ok(Json(before.into()));
        }
        let now = Utc::now();
        active.updated_at = Set(now);
        let txn = state.db.begin().await?;
        let after = active.update(&txn).await?;
        for (field, old, new) in changes {
            medical_updates::ActiveModel {
                id: Set(MedicalUpdateId::new()),
                hospital_id: Set(after.hospital_id),
                patient_id: Set(after.id),
                field: Set(field.to_owned()),
                old_value: Set(Some(old)),
                new_value: Set(Some(new)),
                updated_by: Set(Some(auth.0.id)),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        audit_patient(&state, req, &auth, &after, AuditAction::Update).await?;
        Ok(Json(after.into()))
    }

    /// The trail of changes to a patient's record, newest first. Audited.
    #[oai(path = "/api/patients/:patientId/medical-updates", method = "get", operation_id = "listMedicalUpdates")]
    async fn updates(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
    ) -> Result<Json<Vec<MedicalUpdateOut>>> {
        let patient = state
            .policy
            .patient(&auth.subject(), patient_id.0, PatientAction::Read)
            .await
            .map_err(|e| ApiError::policy(e, "patient"))?;
        let rows = medical_updates::Entity::find()
            .filter(medical_updates::Column::PatientId.eq(patient.id))
            .order_by_desc(medical_updates::Column::UpdatedAt)
            .all(&state.db)
            .await?;
        audit_patient(&state, req, &auth, &patient, AuditAction::Read).await?;
        Ok(Json(
            rows.into_iter()
                .map(|r| MedicalUpdateOut {
                    id: r.id,
                    field: r.field,
                    old_value: r.old_value,
                    new_value: r.new_value,
                    updated_by: r.updated_by,
                    updated_at: r.updated_at,
                })
                .collect(),
        ))
    }
}
