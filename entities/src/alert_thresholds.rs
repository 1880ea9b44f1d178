//! `alert_thresholds`: alert limits per metric, a hospital default (`patient_id` `None`)
//! and optional per-patient overrides, with IEC 60601-1-8 priority, delay and hysteresis.

use nc_domain::{AlertPriority, HospitalId, PatientId, ThresholdId, UserId};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_thresholds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ThresholdId,
    pub hospital_id: HospitalId,
    /// `None` for the hospital default.
    pub patient_id: Option<PatientId>,
    /// A `health_metrics` column name (CHECK-constrained list).
    pub metric: String,
    /// At least one of `low` and `high` is set, and `low < high`.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub priority: AlertPriority,
    /// How long the condition must persist before an alert is raised (0 to 3600).
    pub delay_seconds: i32,
    /// Margin by which the value must come back inside the limits before the alert clears.
    pub hysteresis: f64,
    pub enabled: bool,
    pub updated_by: Option<UserId>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
