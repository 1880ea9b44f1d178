//! The request bodies of patient records (the medical fields shared by a record change and
//! a medical-information change).

use chrono::{NaiveDate, Utc};
use nc_domain::*;
use poem_openapi::Object;

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

impl From<CreatePatientRequest> for nc_care::patients::NewPatient {
    fn from(b: CreatePatientRequest) -> Self {
        Self {
            patient_number: b.patient_number,
            name: b.name,
            date_of_birth: b.date_of_birth,
            gender: b.gender,
            blood_group: b.blood_group,
            user_id: b.user_id,
            assigned_doctor_id: b.assigned_doctor_id,
            assigned_device_id: b.assigned_device_id,
            dry_weight_kg: b.dry_weight_kg,
            dialysis_schedule: b.dialysis_schedule,
            diagnosis: b.diagnosis,
            vascular_access: b.vascular_access,
        }
    }
}

/// Declares a patient request object with `$fields` and then the medical information
/// fields (their limits stated once for every request that changes them).
macro_rules! with_medical_information {
    ($(#[$meta:meta])* $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        #[derive(Object, Debug, Default)]
        #[oai(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($fields)*
            pub blood_group: Option<BloodGroup>,
            /// Dry (target) weight, kg.
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
    };
}

with_medical_information!(
    /// Fields to change; absent fields stay as they are. Who may change which field:
    /// doctors every field; technicians `dryWeightKg`, `vascularAccess`, `lastDialysisAt`,
    /// `notes`; admins `assignedDoctorId`, `assignedDeviceId` (403 `forbidden` naming any
    /// other field).
    UpdatePatientRequest {
        #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
        pub name: Option<String>,
        #[oai(validator(custom = "crate::validate::Date"))]
        pub date_of_birth: Option<NaiveDate>,
        pub gender: Option<Gender>,
        pub assigned_doctor_id: Option<UserId>,
        pub assigned_device_id: Option<DeviceId>,
    }
);

with_medical_information!(
    /// Medical information to change; absent fields stay as they are. Technicians (of a
    /// device the patient is on) may change `dryWeightKg`, `vascularAccess`,
    /// `lastDialysisAt` and `notes`; the patient's doctors every field; anyone else none
    /// (403 `forbidden`, naming each refused field in `fields`).
    MedicalInfoRequest {}
);

impl From<MedicalInfoRequest> for UpdatePatientRequest {
    fn from(m: MedicalInfoRequest) -> Self {
        UpdatePatientRequest {
            blood_group: m.blood_group,
            dry_weight_kg: m.dry_weight_kg,
            dialysis_schedule: m.dialysis_schedule,
            last_dialysis_at: m.last_dialysis_at,
            diagnosis: m.diagnosis,
            vascular_access: m.vascular_access,
            allergies: m.allergies,
            medications: m.medications,
            notes: m.notes,
            ..Default::default()
        }
    }
}

impl From<UpdatePatientRequest> for nc_care::patients::RecordFields {
    fn from(u: UpdatePatientRequest) -> Self {
        nc_care::patients::RecordFields {
            name: u.name,
            date_of_birth: u.date_of_birth,
            gender: u.gender,
            assigned_doctor_id: u.assigned_doctor_id,
            assigned_device_id: u.assigned_device_id,
            blood_group: u.blood_group,
            dry_weight_kg: u.dry_weight_kg,
            dialysis_schedule: u.dialysis_schedule,
            last_dialysis_at: u.last_dialysis_at,
            diagnosis: u.diagnosis,
            vascular_access: u.vascular_access,
            allergies: u.allergies,
            medications: u.medications,
            notes: u.notes,
        }
    }
}
