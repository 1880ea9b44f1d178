//! Patient records: creation, the lists (within the policy's scope), the running
//! treatments shown with them, the trail of changes, the link to the patient's own account,
//! and changing a record ([`changes`]).

pub mod changes;

use chrono::{DateTime, NaiveDate, Utc};
use nc_access::policy::{sessions_in, PatientScope, ReadScope};
use nc_access::Subject;
use nc_domain::*;
use nc_entities::{device_sessions, medical_updates, patients, users};
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

pub use changes::{check_links, check_weight, record, Changes, RecordFields};

use crate::fields::{check_name, like_pattern};
use crate::{fetch_page, CareError, CareResult};

/// A record to create.
pub struct NewPatient {
    /// The hospital's patient number: letters, digits and dashes.
    pub patient_number: String,
    pub name: String,
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub blood_group: Option<BloodGroup>,
    pub user_id: Option<UserId>,
    pub assigned_doctor_id: Option<UserId>,
    pub assigned_device_id: Option<DeviceId>,
    pub dry_weight_kg: Option<f64>,
    pub dialysis_schedule: Option<serde_json::Value>,
    pub diagnosis: Option<String>,
    pub vascular_access: Option<VascularAccess>,
}

/// Creates a record in `hospital`; what it links to must be `subject`'s to see.
pub async fn create(
    db: &impl ConnectionTrait,
    subject: &Subject,
    hospital: HospitalId,
    mut p: NewPatient,
) -> CareResult<patients::Model> {
    let number = p.patient_number.trim().to_owned();
    if number.is_empty() || number.len() > 32 || !number.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(CareError::invalid("patientNumber", "must be 1-32 letters, digits or dashes"));
    }
    p.patient_number = number;
    p.name = check_name("name", &p.name)?;
    check_weight(p.dry_weight_kg)?;
    check_links(db, subject, p.assigned_doctor_id, p.assigned_device_id, p.user_id).await?;
    insert(db, hospital, p).await
}

/// Writes a record as it is given (checked by [`create`]; the simulator's own records).
pub async fn insert(db: &impl ConnectionTrait, hospital: HospitalId, p: NewPatient) -> CareResult<patients::Model> {
    let now = Utc::now();
    Ok(patients::ActiveModel {
        id: Set(PatientId::new()),
        hospital_id: Set(hospital),
        user_id: Set(p.user_id),
        patient_number: Set(p.patient_number),
        name: Set(p.name),
        date_of_birth: Set(p.date_of_birth),
        gender: Set(p.gender.unwrap_or(Gender::Unknown)),
        blood_group: Set(p.blood_group),
        assigned_doctor_id: Set(p.assigned_doctor_id),
        assigned_device_id: Set(p.assigned_device_id),
        dialysis_schedule: Set(p.dialysis_schedule.unwrap_or_else(|| serde_json::json!({}))),
        last_dialysis_at: Set(None),
        dry_weight_kg: Set(p.dry_weight_kg),
        diagnosis: Set(p.diagnosis),
        vascular_access: Set(p.vascular_access),
        allergies: Set(None),
        medications: Set(None),
        notes: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

/// What a list of patients narrows to besides the policy's scope.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Assigned to this device now.
    pub device: Option<DeviceId>,
    /// Whose assigned doctor this is.
    pub doctor: Option<UserId>,
    /// Names containing this text.
    pub name: Option<String>,
}

/// A page of the patients of `hospital` within `scope`, by name, and how many match.
pub async fn list(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    scope: &PatientScope,
    filter: ListFilter,
    limit: u64,
    offset: u64,
) -> CareResult<(Vec<patients::Model>, u64)> {
    let mut query =
        patients::Entity::find().filter(patients::Column::HospitalId.eq(hospital)).filter(scope.condition());
    if let Some(d) = filter.device {
        query = query.filter(patients::Column::AssignedDeviceId.eq(d));
    }
    if let Some(d) = filter.doctor {
        query = query.filter(patients::Column::AssignedDoctorId.eq(d));
    }
    if let Some(pattern) = filter.name.as_deref().and_then(like_pattern) {
        query = query.filter(Expr::col(patients::Column::Name).ilike(pattern));
    }
    let ordered = query.order_by_asc(patients::Column::Name).order_by_asc(patients::Column::Id);
    Ok(fetch_page(db, ordered, limit, offset).await?)
}

/// The starts of the running treatments (active sessions) of these patients within `scope`:
/// (patient, start), one per active session.
pub async fn running_treatments(
    db: &impl ConnectionTrait,
    patients: impl IntoIterator<Item = PatientId>,
    scope: &ReadScope,
) -> CareResult<Vec<(Option<PatientId>, DateTime<Utc>)>> {
    let mut query = device_sessions::Entity::find()
        .select_only()
        .column(device_sessions::Column::PatientId)
        .column(device_sessions::Column::StartedAt)
        .filter(device_sessions::Column::Status.eq(SessionStatus::Active))
        .filter(device_sessions::Column::PatientId.is_in(patients));
    if let ReadScope::Windows(w) = scope {
        query = query.filter(sessions_in(w));
    }
    Ok(query.into_tuple().all(db).await?)
}

/// A page of a patient's treatment sessions within `scope`, newest first.
pub async fn sessions(
    db: &impl ConnectionTrait,
    patient: PatientId,
    scope: &ReadScope,
    limit: u64,
    offset: u64,
) -> CareResult<(Vec<device_sessions::Model>, u64)> {
    let mut query = device_sessions::Entity::find().filter(device_sessions::Column::PatientId.eq(patient));
    if let ReadScope::Windows(w) = scope {
        query = query.filter(sessions_in(w));
    }
    Ok(fetch_page(db, query.order_by_desc(device_sessions::Column::StartedAt), limit, offset).await?)
}

/// The trail of changes to a record, newest first.
pub async fn medical_updates(db: &impl ConnectionTrait, patient: PatientId) -> CareResult<Vec<medical_updates::Model>> {
    Ok(medical_updates::Entity::find()
        .filter(medical_updates::Column::PatientId.eq(patient))
        .order_by_desc(medical_updates::Column::UpdatedAt)
        .all(db)
        .await?)
}

/// Whether `account` can be the own account of the record `record`: a patient's (422), live
/// (409 `account_inactive`) and linked to no other record (409 `user_already_linked`).
pub async fn check_account_link(
    db: &impl ConnectionTrait,
    record: &patients::Model,
    account: &users::Model,
) -> CareResult<()> {
    // Not an access rule: the account a record links to is a patient's (422).
    if account.role != Role::Patient {
        return Err(CareError::invalid("userId", "must be a patient's account, not staff"));
    }
    if !nc_access::authn::is_live(account) {
        return Err(CareError::Conflict {
            code: "account_inactive",
            message: "the account is not active: the patient confirms their e-mail first, or it was deactivated".into(),
        });
    }
    let other = patients::Entity::find()
        .filter(patients::Column::UserId.eq(account.id))
        .filter(patients::Column::Id.ne(record.id))
        .one(db)
        .await?;
    if other.is_some() {
        return Err(CareError::Conflict {
            code: "user_already_linked",
            message: "this account already belongs to another patient record".into(),
        });
    }
    Ok(())
}
