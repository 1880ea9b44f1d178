//! The care records and the rules about them that are not access: hospitals, accounts
//! (identity, login sessions, one-time and enrollment codes; profiles, staff, wards),
//! devices (the registry, assignments, hand-overs, maintenance) and patients (records and
//! their `medical_updates` trail).
//!
//! Who may do what is never decided here: the caller asks `nc_access::policy` first and
//! passes what it decided (a scope, a record it may change). What is decided here is what
//! makes a value or a change valid (a serial's characters, a due date after the
//! maintenance, an assignment to a doctor or technician), answered as [`CareError`].

pub mod accounts;
pub mod devices;
pub mod fields;
pub mod hospitals;
pub mod patients;

use sea_orm::DbErr;

/// What can go wrong in a care operation, by meaning (the API maps each to its status).
#[derive(Debug, thiserror::Error)]
pub enum CareError {
    /// No such object (`what`: "user", "grant", …).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A value breaks a rule; `field` is named as the request names it.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The change conflicts with the current state (`code`: machine-readable).
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    /// Credentials that prove no identity (a wrong password, an unknown refresh token).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// An identity that is proven but whose account may not log in now (deactivated, not
    /// verified).
    #[error("account refused: {0}")]
    AccountRefused(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Password(#[from] nc_access::password::PasswordError),
}

impl CareError {
    /// One invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        CareError::Invalid { field, message: message.into() }
    }
}

pub type CareResult<T> = Result<T, CareError>;

/// One page of an ordered query, and how many items match in all.
pub async fn fetch_page<E>(
    db: &impl sea_orm::ConnectionTrait,
    query: sea_orm::Select<E>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<E::Model>, u64), DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: Send + Sync,
{
    use sea_orm::{PaginatorTrait, QuerySelect};
    let total = query.clone().count(db).await?;
    let items = query.limit(limit).offset(offset).all(db).await?;
    Ok((items, total))
}
