//! `device_sessions`: treatment sessions, one machine treating one patient from
//! `started_at` to `ended_at`, with the summary written when the session ends.

use nc_domain::{DeviceId, HospitalId, PatientId, SessionId, SessionStatus};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SessionId,
    pub hospital_id: HospitalId,
    pub device_id: DeviceId,
    pub patient_id: Option<PatientId>,
    pub started_at: DateTimeUtc,
    /// `None` exactly while `status` is `active`.
    pub ended_at: Option<DateTimeUtc>,
    pub status: SessionStatus,
    /// The interval at which the machine promised readings, for completeness.
    pub expected_interval_ms: Option<i32>,
    pub readings_received: i64,
    pub readings_expected: Option<i64>,
    /// 0 to 100.
    pub completeness_pct: Option<f64>,
    pub uf_rate_ml_kg_h: Option<f64>,
    pub nadir_systolic: Option<f64>,
    pub summary: Option<Json>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
