//! The maintenance log of a machine. Recording a maintenance moves the device's
//! `last_maintenance_at` and `maintenance_due_at`, unless one done later is recorded
//! already (one statement: concurrent records agree).

use chrono::{DateTime, Duration, Utc};
use nc_domain::*;
use nc_entities::{device_maintenance, devices};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};

use crate::{fetch_page, CareError, CareResult};

/// How far ahead of the server clock `performed_at` may be (clock skew).
const MAX_AHEAD_MINUTES: i64 = 5;
/// The next maintenance is due at most this long after the one recorded.
const MAX_INTERVAL_DAYS: i64 = 3660;

/// A maintenance done.
pub struct Maintenance {
    /// When it was done (default: now); not in the future.
    pub performed_at: Option<DateTime<Utc>>,
    /// When the next one is due: after `performed_at`, at most 10 years later.
    pub next_due_at: DateTime<Utc>,
    pub notes: Option<String>,
}

/// Records a maintenance of `device` done by `by`, and moves the device's dates.
pub async fn record(
    db: &DatabaseConnection,
    device: &devices::Model,
    by: UserId,
    m: Maintenance,
) -> CareResult<device_maintenance::Model> {
    let now = Utc::now();
    let performed = m.performed_at.unwrap_or(now);
    if performed > now + Duration::minutes(MAX_AHEAD_MINUTES) {
        return Err(CareError::invalid("performedAt", "must not be in the future"));
    }
    if m.next_due_at <= performed {
        return Err(CareError::invalid("nextDueAt", "must be after performedAt"));
    }
    if m.next_due_at > performed + Duration::days(MAX_INTERVAL_DAYS) {
        return Err(CareError::invalid("nextDueAt", "must be at most 10 years after performedAt"));
    }
    let notes = m.notes.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let txn = db.begin().await?;
    let entry = device_maintenance::ActiveModel {
        id: Set(MaintenanceId::new()),
        hospital_id: Set(device.hospital_id),
        device_id: Set(device.id),
        performed_at: Set(performed),
        performed_by: Set(Some(by)),
        next_due_at: Set(m.next_due_at),
        notes: Set(notes),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    devices::Entity::update_many()
        .col_expr(devices::Column::LastMaintenanceAt, Expr::value(performed))
        .col_expr(devices::Column::MaintenanceDueAt, Expr::value(m.next_due_at))
        .col_expr(devices::Column::UpdatedAt, Expr::value(now))
        .filter(devices::Column::Id.eq(device.id))
        .filter(
            Condition::any()
                .add(devices::Column::LastMaintenanceAt.is_null())
                .add(devices::Column::LastMaintenanceAt.lte(performed)),
        )
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(entry)
}

/// A page of a machine's maintenance log, latest first.
pub async fn log(
    db: &impl ConnectionTrait,
    device: DeviceId,
    limit: u64,
    offset: u64,
) -> CareResult<(Vec<device_maintenance::Model>, u64)> {
    let query = device_maintenance::Entity::find()
        .filter(device_maintenance::Column::DeviceId.eq(device))
        .order_by_desc(device_maintenance::Column::PerformedAt)
        .order_by_desc(device_maintenance::Column::Id);
    Ok(fetch_page(db, query, limit, offset).await?)
}
