//! `access_audit_log`: who read or changed which patient's or device's data, when, and
//! through which interface (HIPAA §164.312(b) audit controls: reads as well as writes).

use nc_domain::{ActorRole, AuditAction, AuditId, DeviceId, HospitalId, Interface, PatientId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "access_audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AuditId,
    pub at: DateTimeUtc,
    /// `None` for devices and the system, or once the user is deleted.
    pub actor_id: Option<UserId>,
    pub actor_role: ActorRole,
    pub hospital_id: HospitalId,
    pub patient_id: Option<PatientId>,
    pub device_id: Option<DeviceId>,
    pub action: AuditAction,
    pub resource: String,
    pub interface: Interface,
    pub client_addr: Option<String>,
    pub detail: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
