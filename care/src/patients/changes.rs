//! Changing a patient record: the fields a change names (for the policy to decide each),
//! the rules of their values, and the one writer of a record's changes, which keeps each
//! changed field in `medical_updates` (old value, new value, who, when) in the transaction
//! that changes it.

use chrono::{DateTime, NaiveDate, Utc};
use nc_access::policy::PatientField;
use nc_access::Subject;
use nc_domain::*;
use nc_entities::{devices, medical_updates, patients, users};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set, TransactionTrait};

use crate::fields::check_name;
use crate::{CareError, CareResult};

/// The fields of a record a change may name; absent fields stay as they are.
#[derive(Debug, Default, Clone)]
pub struct RecordFields {
    pub name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub assigned_doctor_id: Option<UserId>,
    pub assigned_device_id: Option<DeviceId>,
    pub blood_group: Option<BloodGroup>,
    pub dry_weight_kg: Option<f64>,
    pub dialysis_schedule: Option<serde_json::Value>,
    pub last_dialysis_at: Option<DateTime<Utc>>,
    pub diagnosis: Option<String>,
    pub vascular_access: Option<VascularAccess>,
    pub allergies: Option<String>,
    pub medications: Option<String>,
    pub notes: Option<String>,
}

/// A change: the record's fields, and the account link (`Some(None)`: unlink).
#[derive(Debug, Default)]
pub struct Changes {
    pub fields: RecordFields,
    pub user_id: Option<Option<UserId>>,
}

impl Changes {
    /// The fields this change names.
    pub fn named(&self) -> Vec<PatientField> {
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

/// A dry weight, kg: 2 to 400.
pub fn check_weight(w: Option<f64>) -> CareResult<()> {
    match w {
        Some(w) if !(2.0..=400.0).contains(&w) => {
            Err(CareError::invalid("dryWeightKg", "must be between 2 and 400 kg"))
        }
        _ => Ok(()),
    }
}

/// The accounts and device a record is linked to must be ones `subject` can see (of its
/// hospital: the policy's `decide_visible`) and of the right kind (a doctor, a patient
/// account): 422 naming the field.
pub async fn check_links(
    db: &impl ConnectionTrait,
    subject: &Subject,
    doctor: Option<UserId>,
    device: Option<DeviceId>,
    user: Option<UserId>,
) -> CareResult<()> {
    let visible = |hospital: HospitalId| nc_access::policy::decide_visible(subject, hospital).is_ok();
    // Not an access rule: the kind of account a field names (422).
    let of_kind = |u: &users::Model, role: Role| visible(u.hospital_id) && u.role == role;
    if let Some(d) = doctor {
        let ok = users::Entity::find_by_id(d).one(db).await?.is_some_and(|u| of_kind(&u, Role::Doctor));
        if !ok {
            return Err(CareError::invalid("assignedDoctorId", "must be a doctor of your hospital"));
        }
    }
    if let Some(d) = device {
        let ok = devices::Entity::find_by_id(d).one(db).await?.is_some_and(|x| visible(x.hospital_id));
        if !ok {
            return Err(CareError::invalid("assignedDeviceId", "must be a device of your hospital"));
        }
    }
    if let Some(u) = user {
        let ok = users::Entity::find_by_id(u).one(db).await?.is_some_and(|x| of_kind(&x, Role::Patient));
        if !ok {
            return Err(CareError::invalid("userId", "must be a patient account of your hospital"));
        }
    }
    Ok(())
}

/// Writes the fields of `changes` that differ from `before`, and one `medical_updates` row
/// for each, in one transaction. The caller has decided that `by` may. Returns the record
/// as changed (`before` when nothing differs).
pub async fn record(
    db: &DatabaseConnection,
    by: UserId,
    before: &patients::Model,
    changes: Changes,
) -> CareResult<patients::Model> {
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
    let txn = db.begin().await?;
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
