//! The access audit log: every read or change of a patient's (or device's clinical) data,
//! by whom, when and through which interface (HIPAA 164.312(b): reads too).

use chrono::Utc;
use nc_domain::{ActorRole, AuditAction, AuditId, DeviceId, Interface, PatientId};
use nc_entities::access_audit_log;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set};

use crate::policy::Subject;

/// One audited access.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub subject: &'a Subject,
    pub action: AuditAction,
    /// What was accessed, e.g. `patient`, `device.patients`, `device.sessions`.
    pub resource: &'a str,
    pub patient: Option<PatientId>,
    pub device: Option<DeviceId>,
    pub interface: Interface,
    pub client_addr: Option<String>,
}

/// Writes one audit row.
pub async fn record(db: &impl ConnectionTrait, access: Access<'_>) -> Result<(), DbErr> {
    record_with(db, access, None).await
}

/// Writes one audit row with details (e.g. the old and new value of a changed setting).
pub async fn record_with(
    db: &impl ConnectionTrait,
    access: Access<'_>,
    detail: Option<serde_json::Value>,
) -> Result<(), DbErr> {
    let (patient, device) = (access.patient, access.device);
    row(&access, patient, device, detail).insert(db).await.map(|_| ())
}

/// Writes one audit row per (patient, device) of a list that was read, in one statement;
/// `access.patient` and `access.device` are ignored.
pub async fn record_each(
    db: &impl ConnectionTrait,
    access: Access<'_>,
    items: impl IntoIterator<Item = (Option<PatientId>, Option<DeviceId>)>,
) -> Result<(), DbErr> {
    let rows: Vec<access_audit_log::ActiveModel> = items.into_iter().map(|(p, d)| row(&access, p, d, None)).collect();
    if rows.is_empty() {
        return Ok(());
    }
    access_audit_log::Entity::insert_many(rows).exec(db).await.map(|_| ())
}

fn row(
    access: &Access<'_>,
    patient: Option<PatientId>,
    device: Option<DeviceId>,
    detail: Option<serde_json::Value>,
) -> access_audit_log::ActiveModel {
    let (actor_id, actor_role) = match access.subject {
        Subject::User(u) => (Some(u.id), ActorRole::from(u.role)),
        Subject::Device { .. } => (None, ActorRole::Device),
    };
    access_audit_log::ActiveModel {
        id: Set(AuditId::new()),
        at: Set(Utc::now()),
        actor_id: Set(actor_id),
        actor_role: Set(actor_role),
        hospital_id: Set(access.subject.hospital()),
        patient_id: Set(patient),
        device_id: Set(device),
        action: Set(access.action),
        resource: Set(access.resource.to_owned()),
        interface: Set(access.interface),
        client_addr: Set(access.client_addr.clone()),
        detail: Set(detail),
    }
}
