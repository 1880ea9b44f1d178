//! Response objects shared by several operations, and their conversions from entities.
//! JSON property names are camelCase.

use chrono::{DateTime, NaiveDate, Utc};
use nc_domain::*;
use nc_entities::{
    device_assignments, device_maintenance, device_sessions, devices, patients, temporary_access_grants, users,
};
use poem_openapi::Object;

/// A person's account.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct UserOut {
    pub id: UserId,
    pub hospital_id: HospitalId,
    pub email: String,
    pub phone: Option<String>,
    pub role: Role,
    pub name: String,
    pub ward: Option<String>,
    /// False until verified, and after deactivation.
    pub is_active: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// A patient's own patient record (in `GET /api/users/profile`), e.g. for the MQTT
    /// topics of their own treatment `nc/v1/h/{hospitalId}/p/{patientId}/#`.
    pub patient_id: Option<PatientId>,
}

impl From<users::Model> for UserOut {
    fn from(u: users::Model) -> Self {
        Self {
            id: u.id,
            hospital_id: u.hospital_id,
            email: u.email,
            phone: u.phone,
            role: u.role,
            name: u.name,
            ward: u.ward,
            is_active: u.is_active && u.deactivated_at.is_none(),
            verified_at: u.verified_at,
            deactivated_at: u.deactivated_at,
            created_at: u.created_at,
            patient_id: None,
        }
    }
}

/// A dialysis machine.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct DeviceOut {
    pub id: DeviceId,
    pub hospital_id: HospitalId,
    /// The physical device id printed on the machine (unique within the hospital).
    pub serial: String,
    pub name: String,
    pub model: Option<String>,
    pub location: Option<String>,
    /// The ward the machine stands in (escalation tier 2 of its alarms is that ward's doctors).
    pub ward: Option<String>,
    pub status: DeviceStatus,
    /// Connected to the broker now.
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
    /// When the next maintenance is due (a `maintenance_due` alert is raised once it passes).
    pub maintenance_due_at: Option<DateTime<Utc>>,
    /// When the latest recorded maintenance was done.
    pub last_maintenance_at: Option<DateTime<Utc>>,
    pub secret_rotated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<devices::Model> for DeviceOut {
    fn from(d: devices::Model) -> Self {
        Self {
            id: d.id,
            hospital_id: d.hospital_id,
            serial: d.serial,
            name: d.name,
            model: d.model,
            location: d.location,
            ward: d.ward,
            status: d.status,
            online: d.online,
            last_seen: d.last_seen,
            maintenance_due_at: d.maintenance_due_at,
            last_maintenance_at: d.last_maintenance_at,
            secret_rotated_at: d.secret_rotated_at,
            created_at: d.created_at,
        }
    }
}

/// A patient's profile and medical information. Admins get the administrative view: the
/// medical fields are null (see `listPatients`).
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct PatientOut {
    pub id: PatientId,
    pub hospital_id: HospitalId,
    /// The patient's own login, when they use the app.
    pub user_id: Option<UserId>,
    pub patient_number: String,
    pub name: String,
    pub date_of_birth: Option<NaiveDate>,
    /// Whole years, from the date of birth.
    pub age: Option<i32>,
    pub gender: Gender,
    pub blood_group: Option<BloodGroup>,
    pub assigned_doctor_id: Option<UserId>,
    pub assigned_device_id: Option<DeviceId>,
    /// e.g. `{"days": ["mon", "wed", "fri"], "start": "08:00", "durationMinutes": 240}`.
    pub dialysis_schedule: serde_json::Value,
    /// When the last treatment ended (set as a session ends; staff may also record it).
    /// While a treatment runs this is still the one before: see `treatmentStartedAt`.
    pub last_dialysis_at: Option<DateTime<Utc>>,
    /// The start of the patient's treatment running now (their active session), in the
    /// answers of `listPatients`, `getPatient` and the changes of a record; null when none is
    /// running, or the caller may not read it (a technician reads only the sessions on
    /// devices while it is responsible for them), and in the administrative view.
    pub treatment_started_at: Option<DateTime<Utc>>,
    /// Dry (target) weight in kg, used for the ultrafiltration rate in mL/kg/h.
    pub dry_weight_kg: Option<f64>,
    pub diagnosis: Option<String>,
    pub vascular_access: Option<VascularAccess>,
    pub allergies: Option<String>,
    pub medications: Option<String>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PatientOut {
    /// The record as `view` shows it: the administrative view (admins) leaves out the
    /// medical information (blood group, last dialysis, dry weight, diagnosis, vascular
    /// access, allergies, medications, notes).
    pub fn viewed(p: patients::Model, view: nc_access::policy::PatientView) -> Self {
        let mut out = PatientOut::from(p);
        if view == nc_access::policy::PatientView::Administrative {
            out.blood_group = None;
            out.last_dialysis_at = None;
            out.dry_weight_kg = None;
            out.diagnosis = None;
            out.vascular_access = None;
            out.allergies = None;
            out.medications = None;
            out.notes = None;
        }
        out
    }
}

fn age_on(dob: NaiveDate, today: NaiveDate) -> i32 {
    use chrono::Datelike;
    let mut age = today.year() - dob.year();
    if (today.month(), today.day()) < (dob.month(), dob.day()) {
        age -= 1;
    }
    age
}

impl From<patients::Model> for PatientOut {
    fn from(p: patients::Model) -> Self {
        Self {
            id: p.id,
            hospital_id: p.hospital_id,
            user_id: p.user_id,
            patient_number: p.patient_number,
            name: p.name,
            age: p.date_of_birth.map(|d| age_on(d, Utc::now().date_naive())),
            date_of_birth: p.date_of_birth,
            gender: p.gender,
            blood_group: p.blood_group,
            assigned_doctor_id: p.assigned_doctor_id,
            assigned_device_id: p.assigned_device_id,
            dialysis_schedule: p.dialysis_schedule,
            last_dialysis_at: p.last_dialysis_at,
            treatment_started_at: None,
            dry_weight_kg: p.dry_weight_kg,
            diagnosis: p.diagnosis,
            vascular_access: p.vascular_access,
            allergies: p.allergies,
            medications: p.medications,
            notes: p.notes,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// One treatment session on one machine.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct SessionOut {
    pub id: SessionId,
    pub device_id: DeviceId,
    pub patient_id: Option<PatientId>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: SessionStatus,
    pub readings_received: i64,
    pub readings_expected: Option<i64>,
    /// Readings received as a percentage of those expected.
    pub completeness_pct: Option<f64>,
    /// Ultrafiltration rate over the session, mL/kg/h (where the dry weight is known).
    pub uf_rate_ml_kg_h: Option<f64>,
    /// Lowest systolic pressure of the session, mmHg.
    pub nadir_systolic: Option<f64>,
    /// Per-metric min/avg/max and other figures, written when the session ends.
    pub summary: Option<serde_json::Value>,
}

impl From<device_sessions::Model> for SessionOut {
    fn from(s: device_sessions::Model) -> Self {
        Self {
            id: s.id,
            device_id: s.device_id,
            patient_id: s.patient_id,
            started_at: s.started_at,
            ended_at: s.ended_at,
            status: s.status,
            readings_received: s.readings_received,
            readings_expected: s.readings_expected,
            completeness_pct: s.completeness_pct,
            uf_rate_ml_kg_h: s.uf_rate_ml_kg_h,
            nadir_systolic: s.nadir_systolic,
            summary: s.summary,
        }
    }
}

/// A staff member's assignment to a device.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct AssignmentOut {
    pub id: AssignmentId,
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub role: AssignmentRole,
    pub assigned_by: Option<UserId>,
    pub assigned_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<device_assignments::Model> for AssignmentOut {
    fn from(a: device_assignments::Model) -> Self {
        Self {
            id: a.id,
            device_id: a.device_id,
            user_id: a.user_id,
            role: a.role,
            assigned_by: a.assigned_by,
            assigned_at: a.assigned_at,
            ended_at: a.ended_at,
        }
    }
}

/// A device handed over temporarily to another technician.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct GrantOut {
    pub id: GrantId,
    pub device_id: DeviceId,
    pub granted_to: UserId,
    pub granted_by: UserId,
    pub granted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

impl From<temporary_access_grants::Model> for GrantOut {
    fn from(g: temporary_access_grants::Model) -> Self {
        Self {
            id: g.id,
            device_id: g.device_id,
            granted_to: g.granted_to,
            granted_by: g.granted_by,
            granted_at: g.granted_at,
            expires_at: g.expires_at,
            revoked_at: g.revoked_at,
            reason: g.reason,
        }
    }
}

/// A maintenance done on a machine.
#[derive(Object, Debug, Clone)]
#[oai(rename_all = "camelCase")]
pub struct MaintenanceOut {
    pub id: MaintenanceId,
    pub device_id: DeviceId,
    pub performed_at: DateTime<Utc>,
    /// Who recorded it (null once that account is deleted).
    pub performed_by: Option<UserId>,
    pub next_due_at: DateTime<Utc>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<device_maintenance::Model> for MaintenanceOut {
    fn from(m: device_maintenance::Model) -> Self {
        Self {
            id: m.id,
            device_id: m.device_id,
            performed_at: m.performed_at,
            performed_by: m.performed_by,
            next_due_at: m.next_due_at,
            notes: m.notes,
            created_at: m.created_at,
        }
    }
}

/// One page of a list: `items`, and where it sits in the whole (`total` matching items).
macro_rules! page {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Object, Debug, Clone)]
        #[oai(rename_all = "camelCase")]
        pub struct $name {
            pub items: Vec<$item>,
            pub total: u64,
            pub limit: u64,
            pub offset: u64,
        }
    };
}
page!(UserPage, UserOut, "A page of accounts.");
page!(DevicePage, DeviceOut, "A page of devices.");
page!(PatientPage, PatientOut, "A page of patients.");
page!(SessionPage, SessionOut, "A page of treatment sessions.");
page!(MaintenancePage, MaintenanceOut, "A page of a device's maintenance log.");

/// Pagination limits: `limit` 1..=200 (default 50), `offset` ≥ 0.
pub const MAX_PAGE: u64 = 200;
pub const DEFAULT_PAGE: u64 = 50;

/// Validated `limit`/`offset`.
pub(crate) fn page(limit: Option<u64>, offset: Option<u64>) -> Result<(u64, u64), crate::error::ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(crate::error::ApiError::field("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    Ok((limit, offset.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_whole_years() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_on(d("1960-03-14"), d("2026-03-13")), 65);
        assert_eq!(age_on(d("1960-03-14"), d("2026-03-14")), 66);
    }
}
