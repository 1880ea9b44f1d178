//! Accounts: identity (registration, verification, password reset), login sessions
//! ([`sessions`]), codes ([`codes`]), profiles, staff accounts and wards, and the lists of
//! accounts.

pub mod codes;
pub mod sessions;

use chrono::Utc;
use nc_access::{audit, password, secret, Subject};
use nc_domain::*;
use nc_entities::users;
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};

pub use codes::{OutboxSender, Sender};

use crate::fields::{check_name, check_phone, like_pattern};
use crate::{fetch_page, CareError, CareResult};

/// The account whose e-mail is `email` (case-insensitive).
pub async fn find_by_email(db: &impl ConnectionTrait, email: &str) -> CareResult<Option<users::Model>> {
    let lower = Expr::expr(Func::lower(Expr::col(users::Column::Email)));
    Ok(users::Entity::find().filter(lower.eq(email.to_lowercase())).one(db).await?)
}

/// The account `id` (404 `user` when there is none).
pub async fn get(db: &impl ConnectionTrait, id: UserId) -> CareResult<users::Model> {
    users::Entity::find_by_id(id).one(db).await?.ok_or(CareError::NotFound("user"))
}

/// The account `id`, if it exists.
pub async fn find(db: &impl ConnectionTrait, id: UserId) -> CareResult<Option<users::Model>> {
    Ok(users::Entity::find_by_id(id).one(db).await?)
}

/// A registration, its values already checked (e-mail normalised, name, phone, password).
pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: String,
    pub phone: Option<String>,
    pub hospital_code: Option<String>,
    /// The role asked for (the policy has decided a role asked for without an enrollment
    /// code).
    pub role: Option<Role>,
    pub enrollment_code: Option<String>,
}

/// Creates the account of a registration, inactive until verified: an enrollment code sets
/// its hospital and role (and is used up), otherwise it is a patient of the hospital whose
/// code is given.
pub async fn register(db: &DatabaseConnection, r: Registration) -> CareResult<users::Model> {
    let (hospital, role, enrollment) = match &r.enrollment_code {
        Some(code) => {
            let found = codes::usable_enrollment(db, code).await?;
            let role = match found.role {
                AssignmentRole::Doctor => Role::Doctor,
                AssignmentRole::Technician => Role::Technician,
            };
            if r.role.is_some_and(|asked| asked != role) {
                return Err(CareError::invalid("role", "differs from the role of the enrollment code"));
            }
            (found.hospital_id, role, Some(found))
        }
        None => {
            let Some(code) = r.hospital_code else {
                return Err(CareError::invalid("hospitalCode", "is required (or an enrollment code)"));
            };
            let hospital = crate::hospitals::find_by_code(db, &code)
                .await?
                .ok_or_else(|| CareError::invalid("hospitalCode", "no hospital has this code"))?;
            (hospital.id, Role::Patient, None)
        }
    };
    let hash = password::hash(r.password).await?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let user = users::ActiveModel {
        id: Set(UserId::new()),
        hospital_id: Set(hospital),
        email: Set(r.email),
        phone: Set(r.phone),
        password_hash: Set(hash),
        role: Set(role),
        name: Set(r.name),
        ward: Set(None),
        is_active: Set(false),
        verified_at: Set(None),
        deactivated_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    if let Some(code) = enrollment {
        codes::use_enrollment(&txn, code.id, user.id, now).await?;
    }
    txn.commit().await?;
    Ok(user)
}

/// The account is verified (its e-mail proven) and, unless deactivated, active.
pub async fn verify(db: &impl ConnectionTrait, user: users::Model) -> CareResult<users::Model> {
    let now = Utc::now();
    let mut active: users::ActiveModel = user.clone().into();
    active.verified_at = Set(Some(user.verified_at.unwrap_or(now)));
    if user.deactivated_at.is_none() {
        active.is_active = Set(true);
    }
    active.updated_at = Set(now);
    Ok(active.update(db).await?)
}

/// Sets a new password (which proves the e-mail: the account is verified and active) and
/// ends every login session of the account, together.
pub async fn reset_password(db: &DatabaseConnection, user: users::Model, new_password: String) -> CareResult<()> {
    let hash = password::hash(new_password).await?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let mut active: users::ActiveModel = user.clone().into();
    active.password_hash = Set(hash);
    active.verified_at = Set(Some(user.verified_at.unwrap_or(now)));
    active.is_active = Set(true);
    active.updated_at = Set(now);
    active.update(&txn).await?;
    sessions::revoke_all(&txn, user.id).await?;
    txn.commit().await?;
    Ok(())
}

/// Changes one's own name or phone (absent: unchanged).
pub async fn update_profile(
    db: &impl ConnectionTrait,
    id: UserId,
    name: Option<&str>,
    phone: Option<Option<String>>,
) -> CareResult<users::Model> {
    let mut active: users::ActiveModel = get(db, id).await?.into();
    if let Some(name) = name {
        active.name = Set(check_name("name", name)?);
    }
    if let Some(phone) = phone {
        active.phone = Set(check_phone(phone)?);
    }
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// Puts `user` in `ward` (or none), audited with the old and the new ward in the same
/// transaction. `by` has been allowed to.
pub async fn set_ward(
    db: &DatabaseConnection,
    by: &Subject,
    user: users::Model,
    ward: Option<String>,
) -> CareResult<users::Model> {
    let before = user.ward.clone();
    let mut active: users::ActiveModel = user.into();
    active.ward = Set(ward.clone());
    active.updated_at = Set(Utc::now());
    let tx = db.begin().await?;
    let user = active.update(&tx).await?;
    audit::record_with(
        &tx,
        audit::Access {
            subject: by,
            action: AuditAction::Update,
            resource: "user_ward",
            patient: None,
            device: None,
            interface: Interface::Rest,
            client_addr: None,
        },
        Some(serde_json::json!({"userId": user.id, "before": before, "after": ward})),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// What a list of accounts narrows to.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Only these accounts (the policy's `listable_accounts`); `None`: any.
    pub only: Option<Vec<UserId>>,
    /// Only names or e-mails containing this text.
    pub text: Option<String>,
    /// Only active (true) or inactive (false) accounts.
    pub active: Option<bool>,
}

/// A page of the accounts of one role in `hospital`, by name, and how many match.
pub async fn list(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    role: Role,
    filter: ListFilter,
    limit: u64,
    offset: u64,
) -> CareResult<(Vec<users::Model>, u64)> {
    let mut query =
        users::Entity::find().filter(users::Column::HospitalId.eq(hospital)).filter(users::Column::Role.eq(role));
    if let Some(ids) = filter.only {
        query = query.filter(users::Column::Id.is_in(ids));
    }
    if let Some(pattern) = filter.text.as_deref().and_then(like_pattern) {
        query = query.filter(
            Condition::any()
                .add(Expr::col(users::Column::Name).ilike(pattern.clone()))
                .add(Expr::col(users::Column::Email).ilike(pattern)),
        );
    }
    if let Some(a) = filter.active {
        query = if a {
            query.filter(users::Column::IsActive.eq(true)).filter(users::Column::DeactivatedAt.is_null())
        } else {
            query.filter(
                Condition::any().add(users::Column::IsActive.eq(false)).add(users::Column::DeactivatedAt.is_not_null()),
            )
        };
    }
    let ordered = query.order_by_asc(users::Column::Name).order_by_asc(users::Column::Id);
    Ok(fetch_page(db, ordered, limit, offset).await?)
}

/// An account an admin creates, its values already checked.
pub struct NewAccount {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub phone: Option<String>,
    pub ward: Option<String>,
}

/// Creates an account in `hospital`, active and verified (vouched for by the admin). Without
/// a password, a random one nobody knows (a reset code sets the real one).
pub async fn create(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    a: NewAccount,
    password: Option<String>,
) -> CareResult<users::Model> {
    let hash = password::hash(password.unwrap_or_else(secret::random_token)).await?;
    create_hashed(db, hospital, a, hash).await
}

/// [`create`] with the password's hash (the bootstrap and the demo hash one for many).
pub async fn create_hashed(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    a: NewAccount,
    password_hash: String,
) -> CareResult<users::Model> {
    let now = Utc::now();
    Ok(users::ActiveModel {
        id: Set(UserId::new()),
        hospital_id: Set(hospital),
        email: Set(a.email),
        phone: Set(a.phone),
        password_hash: Set(password_hash),
        role: Set(a.role),
        name: Set(a.name),
        ward: Set(a.ward),
        is_active: Set(true),
        verified_at: Set(Some(now)),
        deactivated_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

/// Deactivates an account and ends its sessions. Nobody deactivates themself (`by`).
pub async fn deactivate(db: &impl ConnectionTrait, by: UserId, user: users::Model) -> CareResult<users::Model> {
    if user.id == by {
        return Err(CareError::invalid("userId", "you cannot deactivate yourself"));
    }
    let now = Utc::now();
    let mut active: users::ActiveModel = user.into();
    active.is_active = Set(false);
    active.deactivated_at = Set(Some(now));
    active.updated_at = Set(now);
    let user = active.update(db).await?;
    sessions::revoke_all(db, user.id).await?;
    Ok(user)
}

/// Reactivates a deactivated account.
pub async fn activate(db: &impl ConnectionTrait, user: users::Model) -> CareResult<users::Model> {
    let mut active: users::ActiveModel = user.into();
    active.is_active = Set(true);
    active.deactivated_at = Set(None);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}
