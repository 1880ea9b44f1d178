//! `fhir_export_jobs`: FHIR Bulk Data export requests, their state and, once planned, the
//! manifest's files (see the migration `fhir_export_jobs`).

use nc_domain::{ExportJobId, HospitalId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "fhir_export_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ExportJobId,
    pub hospital_id: HospitalId,
    pub requested_by: UserId,
    /// The kick-off request's URL (path and query), as the manifest repeats it.
    pub request: String,
    /// The group exported (a hospital or a ward); `None` for `Patient/$export`.
    pub group_id: Option<Uuid>,
    /// FHIR resource types, e.g. `["Patient", "Observation"]`.
    pub types: Vec<String>,
    /// `_since`: only resources changed (or recorded) after it.
    pub since: Option<DateTimeUtc>,
    /// What the export stands at: nothing recorded later is included.
    pub transaction_time: DateTimeUtc,
    /// `in-progress`, `completed` or `failed`.
    pub status: String,
    /// The planned files, once `completed`.
    pub files: Option<Json>,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
