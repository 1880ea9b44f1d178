//! The product's bootstrap: a hospital (created the one way, `nc_care::hospitals::create`)
//! with its first admin (`nephrocare admin bootstrap`), and the clinical defaults every
//! hospital starts with (alert thresholds).

use chrono::Utc;
use nc_domain::*;
use nc_entities::alert_thresholds;
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set, TransactionTrait};

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Hash(#[from] nc_access::password::PasswordError),
}

impl From<nc_care::CareError> for SeedError {
    fn from(e: nc_care::CareError) -> Self {
        match e {
            nc_care::CareError::Db(e) => SeedError::Db(e),
            nc_care::CareError::Password(e) => SeedError::Hash(e),
            nc_care::CareError::Invalid { message, .. } => SeedError::Invalid(message),
            other => SeedError::Invalid(other.to_string()),
        }
    }
}

pub struct Bootstrapped {
    pub hospital_id: HospitalId,
    pub admin_id: UserId,
}

/// A default alert limit (see the shared clinical reference: defaults for a configurable system).
pub struct DefaultThreshold {
    pub metric: &'static str,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub priority: AlertPriority,
    pub delay_seconds: i32,
    pub hysteresis: f64,
}

const fn limit(
    metric: &'static str,
    low: Option<f64>,
    high: Option<f64>,
    priority: AlertPriority,
    delay_seconds: i32,
    hysteresis: f64,
) -> DefaultThreshold {
    DefaultThreshold { metric, low, high, priority, delay_seconds, hysteresis }
}

/// Alert limits every new hospital starts with; admins and doctors adjust them. Delays and
/// hysteresis are tuned against the labelled corpus of `bench alarms` (bench/README.md).
pub const DEFAULT_THRESHOLDS: &[DefaultThreshold] = &[
    limit("heart_rate", Some(50.0), Some(120.0), AlertPriority::Medium, 10, 5.0),
    limit("systolic_bp", Some(90.0), Some(180.0), AlertPriority::High, 30, 5.0),
    limit("spo2", Some(90.0), None, AlertPriority::High, 15, 2.0),
    limit("temperature_f", Some(95.0), Some(100.4), AlertPriority::Medium, 60, 0.4),
    limit("blood_flow_rate", Some(150.0), Some(500.0), AlertPriority::Low, 30, 10.0),
    limit("arterial_pressure", Some(-250.0), None, AlertPriority::Medium, 10, 10.0),
    // Low: a disconnected line or dislodged needle (venous pressure collapses), high
    // priority; 8 s outlasts motion artefacts (bench/README.md, "alarms").
    limit("venous_pressure", Some(50.0), Some(400.0), AlertPriority::High, 8, 10.0),
    limit("dialysate_conductivity", Some(13.0), Some(16.0), AlertPriority::High, 5, 0.2),
    limit("dialysate_temperature_c", Some(33.0), Some(41.0), AlertPriority::High, 5, 0.3),
];

/// Creates a hospital, its default alert limits and its first admin (active, verified).
pub async fn bootstrap_hospital(
    db: &DatabaseConnection,
    name: &str,
    code: &str,
    admin_email: &str,
    admin_name: &str,
    admin_password: &str,
) -> Result<Bootstrapped, SeedError> {
    nc_care::hospitals::check_code(code)?;
    if let Some(problem) = nc_access::password::strength_problem(admin_password, admin_email) {
        return Err(SeedError::Invalid(format!("admin password {problem}")));
    }
    if nc_care::hospitals::find_by_code(db, code).await?.is_some() {
        return Err(SeedError::Invalid(format!("a hospital with code '{code}' already exists")));
    }
    let hash = nc_access::password::hash(admin_password.to_owned()).await?;
    let txn = db.begin().await?;
    let hospital_id = insert_hospital(&txn, name, code).await?;
    let admin_id = insert_user(&txn, hospital_id, admin_email, admin_name, Role::Admin, &hash).await?;
    txn.commit().await?;
    Ok(Bootstrapped { hospital_id, admin_id })
}

pub(crate) async fn insert_hospital(
    db: &impl sea_orm::ConnectionTrait,
    name: &str,
    code: &str,
) -> Result<HospitalId, SeedError> {
    let id = nc_care::hospitals::create(db, name, code).await?;
    let now = Utc::now();
    for t in DEFAULT_THRESHOLDS {
        alert_thresholds::ActiveModel {
            id: Set(ThresholdId::new()),
            hospital_id: Set(id),
            patient_id: Set(None),
            metric: Set(t.metric.to_owned()),
            low: Set(t.low),
            high: Set(t.high),
            priority: Set(t.priority),
            delay_seconds: Set(t.delay_seconds),
            hysteresis: Set(t.hysteresis),
            enabled: Set(true),
            updated_by: Set(None),
            updated_at: Set(now),
        }
        .insert(db)
        .await?;
    }
    Ok(id)
}

pub(crate) async fn insert_user(
    db: &impl sea_orm::ConnectionTrait,
    hospital_id: HospitalId,
    email: &str,
    name: &str,
    role: Role,
    password_hash: &str,
) -> Result<UserId, SeedError> {
    let account = nc_care::accounts::NewAccount {
        email: email.to_lowercase(),
        name: name.to_owned(),
        role,
        phone: None,
        ward: Some("Dialysis unit".into()),
    };
    Ok(nc_care::accounts::create_hashed(db, hospital_id, account, password_hash.to_owned()).await?.id)
}
