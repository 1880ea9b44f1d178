//! `health_metric_rollups_hourly`: hourly count, sum, minimum and maximum of each metric per
//! patient, maintained by ingest. Long-range trends read these; they outlive the raw-data
//! retention period.

use nc_domain::PatientId;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "health_metric_rollups_hourly")]
pub struct Model {
    /// Not a foreign key: rollups outlive the patient row.
    #[sea_orm(primary_key, auto_increment = false)]
    pub patient_id: PatientId,
    /// A `health_metrics` column name, e.g. `systolic_bp`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: String,
    /// Start of the hour (UTC, truncated to the hour).
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket: DateTimeUtc,
    /// Number of readings (> 0).
    pub n: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
