//! `/api/patients/*`: patient records and their medical information. Every read and change
//! is written to the access audit log; every change of a field is also kept in
//! `medical_updates` (old value, new value, who, when).

use chrono::Utc;
use nc_access::policy::patient_view;
use nc_access::policy::PatientView;
use nc_access::Subject;
use nc_access::{audit, HospitalAction, PatientAction};
use nc_care::patients::{self, Changes};
use nc_domain::*;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::dto::{page, PatientOut, PatientPage};
use crate::error::{ApiError, ApiResult};
use crate::patients::changes::audit_patient;
use crate::patients::dto::{CreatePatientRequest, MedicalInfoRequest, UpdatePatientRequest};
use crate::security::{client_ip, BearerAuth};
use crate::state::ApiState;
use crate::Tag;

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

/// The records as `subject` sees them (its [`PatientView`]), with the start of each
/// patient's running treatment that `subject` may read (its [`ReadScope`]).
async fn viewed(
    state: &ApiState,
    subject: &Subject,
    records: Vec<nc_entities::patients::Model>,
) -> std::result::Result<Vec<PatientOut>, ApiError> {
    let view = patient_view(subject);
    let mut out: Vec<PatientOut> = records.into_iter().map(|p| PatientOut::viewed(p, view)).collect();
    if view == PatientView::Administrative || out.is_empty() {
        return Ok(out);
    }
    let scope = state.policy.read_scope(subject).await?;
    let running = patients::running_treatments(&state.db, out.iter().map(|p| p.id), &scope).await?;
    for (patient, started) in running {
        if let Some(p) = out.iter_mut().find(|p| Some(p.id) == patient) {
            // One active session per device: a patient on two machines shows the newer.
            p.treatment_started_at = p.treatment_started_at.max(Some(started));
        }
    }
    Ok(out)
}

/// Applies `fields` to the patient's record (see [`crate::patients::changes::update`]) and
/// answers with the record as the caller sees it.
async fn changed(
    state: &ApiState,
    req: &Request,
    auth: &BearerAuth,
    patient: PatientId,
    fields: patients::RecordFields,
) -> ApiResult<Json<PatientOut>> {
    let changes = Changes { fields, user_id: None };
    let after = crate::patients::changes::update(state, req, auth, patient, changes).await?;
    Ok(Json(viewed(state, &auth.subject(), vec![after]).await?.remove(0)))
}

#[derive(ApiResponse)]
pub enum PatientCreated {
    #[oai(status = 201)]
    Created(Json<PatientOut>),
}

pub struct PatientsApi;

#[OpenApi(tag = "Tag::Patients")]
impl PatientsApi {
    /// Create a patient record (admins and doctors of the hospital). Admins get the
    /// administrative view of the record back.
    #[oai(path = "/api/patients", method = "post", operation_id = "createPatient")]
    async fn create(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<CreatePatientRequest>,
    ) -> ApiResult<PatientCreated> {
        let hospital = auth.0.hospital;
        state.policy.hospital(&auth.subject(), hospital, HospitalAction::AdministerPatients)?;
        let patient = patients::create(&state.db, &auth.subject(), hospital, body.0.into()).await?;
        audit_patient(&state, req, &auth, &patient, AuditAction::Create, "patient").await?;
        Ok(PatientCreated::Created(Json(PatientOut::viewed(patient, patient_view(&auth.subject())))))
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
    ) -> ApiResult<Json<PatientOut>> {
        let patient = state.allowed_patient(&auth.subject(), patient_id.0, PatientAction::Read).await?;
        audit_patient(&state, req, &auth, &patient, AuditAction::Read, "patient").await?;
        let subject = auth.subject();
        Ok(Json(viewed(&state, &subject, vec![patient]).await?.remove(0)))
    }

    /// Change a patient's record.
    ///
    /// Which fields each role may change is the policy's: doctors of the patient every field; technicians of a device the patient is on the
    /// treatment data (`dryWeightKg`, `vascularAccess`, `lastDialysisAt`, `notes`); admins
    /// who treats the patient (`assignedDeviceId`, `assignedDoctorId`, which decide who sees
    /// their data). A field the caller may not change answers 403 `forbidden` naming it in
    /// `fields`, and nothing is changed. Re-pointing: admins to any device and doctor of the
    /// hospital, a doctor only to a device assigned to them and only to themself. Each
    /// changed field is recorded in the medical-updates trail and the change is audited;
    /// live access that no longer holds ends within a second. Admins get the administrative
    /// view of the record.
    #[oai(path = "/api/patients/:patientId", method = "put", operation_id = "updatePatient")]
    async fn update(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        body: Json<UpdatePatientRequest>,
    ) -> ApiResult<Json<PatientOut>> {
        changed(&state, req, &auth, patient_id.0, body.0.into()).await
    }

    /// Change a patient's medical information.
    ///
    /// The patient's doctors change every field, technicians of a device the patient is on (within their responsibility, as for
    /// reading) the treatment data they record at the machine: `dryWeightKg`,
    /// `vascularAccess`, `lastDialysisAt`, `notes`. A field the caller may not change
    /// answers 403 `forbidden` naming it in `fields`, and nothing is changed. Each changed
    /// field is recorded in the medical-updates trail (old, new, who, when); audited.
    #[oai(path = "/api/patients/:patientId/medical-info", method = "put", operation_id = "updatePatientMedicalInfo")]
    async fn medical_info(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        body: Json<MedicalInfoRequest>,
    ) -> ApiResult<Json<PatientOut>> {
        changed(&state, req, &auth, patient_id.0, UpdatePatientRequest::from(body.0).into()).await
    }

    /// The patients you may see, by name.
    ///
    /// Admins: every patient of the hospital, in the
    /// administrative view (medical fields null: admins read no clinical data); a doctor
    /// the patients assigned to them and those assigned to, or treated on, their devices;
    /// a technician the patients assigned to, or treated while it is responsible on, its
    /// devices; a patient themself. Filters narrow that set. Each listed patient is audited.
    #[oai(path = "/api/patients", method = "get", operation_id = "listPatients")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        /// Only patients assigned to this device now.
        #[oai(name = "deviceId")]
        device_id: Query<Option<DeviceId>>,
        /// Only patients whose assigned doctor this is.
        #[oai(name = "doctorId")]
        doctor_id: Query<Option<UserId>>,
        /// Only names containing this text (case-insensitive).
        #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
        name: Query<Option<String>>,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
    ) -> ApiResult<Json<PatientPage>> {
        let subject = auth.subject();
        let (limit, offset) = page(limit.0, offset.0)?;
        let scope = state.policy.patient_scope(&subject).await?;
        let filter = patients::ListFilter { device: device_id.0, doctor: doctor_id.0, name: name.0 };
        let (items, total) = patients::list(&state.db, auth.0.hospital, &scope, filter, limit, offset).await?;
        audit::record_each(
            &state.db,
            audit::Access {
                subject: &subject,
                action: AuditAction::Read,
                resource: "patients.list",
                patient: None,
                device: None,
                interface: Interface::Rest,
                client_addr: client_ip(req).map(|ip| ip.to_string()),
            },
            items.iter().map(|p| (Some(p.id), p.assigned_device_id)),
        )
        .await?;
        Ok(Json(PatientPage { items: viewed(&state, &subject, items).await?, total, limit, offset }))
    }

    /// The trail of changes to a patient's record, newest first. Audited.
    #[oai(path = "/api/patients/:patientId/medical-updates", method = "get", operation_id = "listMedicalUpdates")]
    async fn updates(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
    ) -> ApiResult<Json<Vec<MedicalUpdateOut>>> {
        let patient = state.allowed_patient(&auth.subject(), patient_id.0, PatientAction::Read).await?;
        let rows = patients::medical_updates(&state.db, patient.id).await?;
        audit_patient(&state, req, &auth, &patient, AuditAction::Read, "patient").await?;
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
