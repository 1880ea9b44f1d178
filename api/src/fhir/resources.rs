//! Patient, Device and Practitioner: the people and machines Observations and Procedures
//! refer to. Each read is decided by the policy module exactly as the REST API decides the
//! same object (`getPatient`, `listPatients`, `getDevice`, `listUsersByRole`), and reads of
//! patients are audited.

use nc_access::{DeviceAction, PatientAction};
use nc_domain::{DeviceId, DeviceStatus, Gender, PatientId, Role, UserId};
use nc_entities::{device_sessions, devices, patients, users};
use poem::{Request, Response};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{json, Value};

use super::observations::instant;
use super::search::{self, Params};
use super::{ok, Ctx, FhirError, FhirResult};

/// The system of patients' numbers in a hospital (unique there).
pub fn patient_number_system(hospital: nc_domain::HospitalId) -> String {
    format!("urn:nephrocare:hospital:{hospital}:patient-number")
}

/// The system of devices' serial numbers in a hospital.
fn serial_system(hospital: nc_domain::HospitalId) -> String {
    format!("urn:nephrocare:hospital:{hospital}:device-serial")
}

pub fn patient(p: &patients::Model) -> Value {
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": {"lastUpdated": instant(p.updated_at)},
        "identifier": [{"use": "usual", "system": patient_number_system(p.hospital_id), "value": p.patient_number}],
        "active": true,
        "name": [{"text": p.name}],
        "gender": match p.gender {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        },
    });
    if let Some(b) = p.date_of_birth {
        r["birthDate"] = json!(b.format("%Y-%m-%d").to_string());
    }
    if let Some(d) = p.assigned_doctor_id {
        r["generalPractitioner"] = json!([{"reference": format!("Practitioner/{d}")}]);
    }
    r
}

pub fn device(d: &devices::Model) -> Value {
    let (status, reason) = match (d.status, d.online) {
        (DeviceStatus::Active, true) => ("active", "online"),
        (DeviceStatus::Active, false) => ("active", "offline"),
        (DeviceStatus::Maintenance, _) => ("inactive", "not-ready"),
        (DeviceStatus::Inactive, _) => ("inactive", "off"),
    };
    let mut r = json!({
        "resourceType": "Device",
        "id": d.id.to_string(),
        "meta": {"lastUpdated": instant(d.updated_at)},
        "identifier": [{"system": serial_system(d.hospital_id), "value": d.serial}],
        "status": status,
        "statusReason": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/device-status-reason", "code": reason}]}],
        "deviceName": [{"name": d.name, "type": "user-friendly-name"}],
        "type": {"coding": [{"system": super::codes::SNOMED, "code": "36965003", "display": "Hemodialysis machine, device"}], "text": "Haemodialysis machine"},
    });
    if let Some(m) = &d.model {
        r["modelNumber"] = json!(m);
    }
    if let Some(l) = &d.location {
        r["location"] = json!({"display": l});
    }
    r
}

pub fn practitioner(u: &users::Model) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": u.id.to_string(),
        "meta": {"lastUpdated": instant(u.updated_at)},
        "active": u.is_active,
        "name": [{"text": u.name}],
        // Not an access rule: the qualification a role is shown as.
        "qualification": [{"code": {"text": if u.role == Role::Doctor { "Physician" } else { "Dialysis technician" }}}],
    })
}

/// `GET /Patient/{id}`: as `getPatient` (the patient's doctors and technicians, the
/// patient themself). Audited.
pub async fn read_patient(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: PatientId = search::path_id(&req, "Patient")?;
    let p = ctx.patient(id, PatientAction::Read).await?;
    ctx.audit("fhir.Patient", Some(p.id), None).await?;
    Ok(ok(&patient(&p)))
}

/// `GET /Patient?identifier=&_id=&_count=`: as `listPatients`, the patients the caller may
/// list (admins: the hospital's, whose Patient resources carry no medical information).
/// Audited per patient.
pub async fn search_patients(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["identifier", "_id", "_count", "_offset"])?;
    let count = params.count()?;
    let offset = params.offset()?;
    let scope = ctx.state.policy.patient_scope(&ctx.subject).await?;
    let mut query = patients::Entity::find()
        .filter(patients::Column::HospitalId.eq(ctx.subject.hospital()))
        .filter(scope.condition());
    if let Some(id) = params.one("_id")? {
        match uuid::Uuid::parse_str(id) {
            Ok(u) => query = query.filter(patients::Column::Id.eq(PatientId(u))),
            Err(_) => query = query.filter(patients::Column::Id.is_null()),
        }
    }
    if let Some(ident) = params.one("identifier")? {
        let (system, value) = ident.split_once('|').unwrap_or(("", ident));
        if !system.is_empty() && system != patient_number_system(ctx.subject.hospital()) {
            query = query.filter(patients::Column::Id.is_null());
        }
        query = query.filter(patients::Column::PatientNumber.eq(value));
    }
    let query = query.order_by_asc(patients::Column::Name).order_by_asc(patients::Column::Id);
    let (rows, more) = search::offset_page(&ctx.state.db, query, offset, count).await?;
    ctx.audit_each("fhir.Patient.search", rows.iter().map(|p| (Some(p.id), p.assigned_device_id))).await?;
    let entries = rows.iter().map(|p| (patient(p), "match")).collect();
    Ok(ok(&params.offset_bundle(&ctx.base, "Patient", entries, count, more)?))
}

/// `GET /Device/{id}`: as `getDevice` (the hospital's staff; a patient their own machine).
pub async fn read_device(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: DeviceId = search::path_id(&req, "Device")?;
    let d = ctx.device(id, DeviceAction::View).await?;
    Ok(ok(&device(&d)))
}

/// `GET /Device?patient=`: the machines the patient is assigned to or was treated on, each
/// one the caller may see (as `getDevice`), for a patient the caller may read. Audited.
pub async fn search_devices(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["patient"])?;
    let patient_ref = params.one("patient")?.ok_or_else(|| FhirError::Invalid("`patient` is required".into()))?;
    let id: PatientId = search::reference_id(patient_ref, "Patient", "patient")?;
    let p = ctx.patient(id, PatientAction::Read).await?;
    let mut ids: Vec<DeviceId> = device_sessions::Entity::find()
        .select_only()
        .column(device_sessions::Column::DeviceId)
        .distinct()
        .filter(device_sessions::Column::PatientId.eq(p.id))
        .into_tuple()
        .all(&ctx.state.db)
        .await?;
    ids.extend(p.assigned_device_id);
    ids.sort();
    ids.dedup();
    let mut found = Vec::new();
    for d in ids {
        match ctx.state.policy.device(&ctx.subject, d, DeviceAction::View).await {
            Ok(model) => found.push(model),
            Err(nc_access::PolicyError::Denied(_)) => {}
            Err(nc_access::PolicyError::Db(e)) => return Err(e.into()),
        }
    }
    ctx.audit("fhir.Device.search", Some(p.id), None).await?;
    let self_url = search::url(&ctx.base, "Device", &params.without(&[]));
    let entries = found.iter().map(|d| (device(d), "match")).collect();
    Ok(ok(&search::bundle(&ctx.base, self_url, entries, None)))
}

/// Which accounts FHIR calls a Practitioner: the clinicians (a resource mapping, not an
/// access rule: who may read one is `Policy::person`).
pub(crate) fn is_practitioner(role: Role) -> bool {
    // Not an access rule: a resource mapping.
    matches!(role, Role::Doctor | Role::Technician)
}

/// `GET /Practitioner/{id}`: a doctor or technician of the caller's hospital, for those who
/// may list that role (`listUsersByRole`: staff; admins).
pub async fn read_practitioner(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: UserId = search::path_id(&req, "Practitioner")?;
    let not_found = || FhirError::NotFound(format!("Practitioner/{id} not found"));
    let u = match ctx.state.policy.person(&ctx.subject, id).await {
        Err(nc_access::PolicyError::Denied(nc_access::Denied::NotFound)) => return Err(not_found()),
        other => other.map_err(|e| FhirError::policy(e, "Practitioner"))?,
    };
    if !is_practitioner(u.role) {
        return Err(not_found());
    }
    Ok(ok(&practitioner(&u)))
}
