//! Who looks after a machine: assignments of doctors and technicians (ended rather than
//! deleted), and temporary hand-overs of a machine to another technician (expiry checked
//! at every access decision, so it needs no job). Whether the caller may assign or hand
//! over is the policy's; what makes an assignment or a hand-over valid is here.

use chrono::{Duration, Utc};
use nc_access::authn::is_live;
use nc_domain::*;
use nc_entities::{device_assignments, devices, temporary_access_grants, users};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::{CareError, CareResult};

/// Assigns `user` to `device` (by `by`). `only`: the one role the operation assigns.
pub async fn assign(
    db: &impl ConnectionTrait,
    device: &devices::Model,
    user: &users::Model,
    by: UserId,
    only: Option<Role>,
) -> CareResult<device_assignments::Model> {
    // Not an access rule: whom a device can be assigned to (a doctor or technician: 422).
    let role = match user.role {
        Role::Doctor if only.is_none_or(|r| r == Role::Doctor) => AssignmentRole::Doctor,
        Role::Technician if only.is_none_or(|r| r == Role::Technician) => AssignmentRole::Technician,
        _ => {
            let wanted = only.map_or("a doctor or technician".to_owned(), |r| format!("a {r}"));
            return Err(CareError::invalid("userId", format!("must be {wanted}, not a {}", user.role)));
        }
    };
    if !is_live(user) {
        return Err(CareError::invalid("userId", "the account is not active"));
    }
    Ok(device_assignments::ActiveModel {
        id: Set(AssignmentId::new()),
        hospital_id: Set(device.hospital_id),
        device_id: Set(device.id),
        user_id: Set(user.id),
        role: Set(role),
        assigned_by: Set(Some(by)),
        assigned_at: Set(Utc::now()),
        ended_at: Set(None),
        ended_by: Set(None),
    }
    .insert(db)
    .await?)
}

/// Ends the running assignment of `user` to `device` (404 `assignment` when there is none).
pub async fn unassign(db: &impl ConnectionTrait, device: DeviceId, user: UserId, by: UserId) -> CareResult<()> {
    let ended = device_assignments::Entity::update_many()
        .col_expr(device_assignments::Column::EndedAt, Expr::value(Utc::now()))
        .col_expr(device_assignments::Column::EndedBy, Expr::value(by))
        .filter(device_assignments::Column::DeviceId.eq(device))
        .filter(device_assignments::Column::UserId.eq(user))
        .filter(device_assignments::Column::EndedAt.is_null())
        .exec(db)
        .await?;
    if ended.rows_affected == 0 {
        return Err(CareError::NotFound("assignment"));
    }
    Ok(())
}

/// A hand-over asked for: how long, to whom, by whom.
pub struct HandOver {
    pub to: UserId,
    pub by: UserId,
    /// 1 minute to 7 days (10080).
    pub minutes: i64,
    pub reason: Option<String>,
}

impl HandOver {
    /// The hand-over's own rules, before its technician is looked up: a bounded time, not
    /// to oneself.
    pub fn check(&self) -> CareResult<()> {
        if !(1..=10080).contains(&self.minutes) {
            return Err(CareError::invalid("durationMinutes", "must be between 1 and 10080 (7 days)"));
        }
        if self.to == self.by {
            return Err(CareError::invalid("technicianId", "you cannot grant access to yourself"));
        }
        Ok(())
    }
}

/// Hands `device` over to `grantee` (the account `h.to`) until the hand-over's time is up.
pub async fn hand_over(
    db: &impl ConnectionTrait,
    device: &devices::Model,
    grantee: &users::Model,
    h: HandOver,
) -> CareResult<temporary_access_grants::Model> {
    h.check()?;
    // Not an access rule: who may receive a hand-over is the grant's validity (422).
    if grantee.role != Role::Technician || !is_live(grantee) {
        return Err(CareError::invalid("technicianId", "must be an active technician of your hospital"));
    }
    let now = Utc::now();
    Ok(temporary_access_grants::ActiveModel {
        id: Set(GrantId::new()),
        hospital_id: Set(device.hospital_id),
        device_id: Set(device.id),
        granted_to: Set(grantee.id),
        granted_by: Set(h.by),
        granted_at: Set(now),
        expires_at: Set(now + Duration::minutes(h.minutes)),
        revoked_at: Set(None),
        revoked_by: Set(None),
        reason: Set(h.reason),
    }
    .insert(db)
    .await?)
}

/// The hand-over `id` (404 `grant` when there is none).
pub async fn grant(db: &impl ConnectionTrait, id: GrantId) -> CareResult<temporary_access_grants::Model> {
    temporary_access_grants::Entity::find_by_id(id).one(db).await?.ok_or(CareError::NotFound("grant"))
}

/// Ends a hand-over now (one already revoked stays as it was).
pub async fn revoke(db: &impl ConnectionTrait, grant: &temporary_access_grants::Model, by: UserId) -> CareResult<()> {
    if grant.revoked_at.is_none() {
        temporary_access_grants::Entity::update_many()
            .col_expr(temporary_access_grants::Column::RevokedAt, Expr::value(Utc::now()))
            .col_expr(temporary_access_grants::Column::RevokedBy, Expr::value(by))
            .filter(temporary_access_grants::Column::Id.eq(grant.id))
            .exec(db)
            .await?;
    }
    Ok(())
}
