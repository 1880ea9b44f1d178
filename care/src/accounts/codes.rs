//! Codes: one-time codes (six digits, stored hashed, valid 10 minutes, 5 attempts) that
//! verify an account or reset its password, sent through a [`Sender`]; and single-use
//! enrollment codes with which a doctor or technician registers.

use chrono::{DateTime, Duration, Utc};
use nc_access::secret;
use nc_domain::*;
use nc_entities::{enrollment_codes, one_time_codes, outbound_messages, users};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
};

use crate::{CareError, CareResult};

/// One-time codes are valid this long.
const CODE_TTL_MINUTES: i64 = 10;
/// Wrong guesses allowed per code.
const CODE_MAX_ATTEMPTS: i32 = 5;

/// Delivers messages (codes, notices) to people. Pluggable: the development sender below
/// records them in the `outbound_messages` table, where tests and the demo read them; a
/// production sender would hand them to an e-mail or SMS gateway and set `sent_at`.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, to: &users::Model, subject: &str, body: &str) -> Result<(), DbErr>;
}

/// The development sender: the outbox table only.
pub struct OutboxSender {
    pub db: DatabaseConnection,
}

#[async_trait::async_trait]
impl Sender for OutboxSender {
    async fn send(&self, to: &users::Model, subject: &str, body: &str) -> Result<(), DbErr> {
        outbound_messages::ActiveModel {
            id: Set(OutboundMessageId::new()),
            user_id: Set(Some(to.id)),
            channel: Set(Channel::Email),
            recipient: Set(to.email.clone()),
            subject: Set(subject.to_owned()),
            body: Set(body.to_owned()),
            created_at: Set(Utc::now()),
            sent_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        tracing::info!(user = %to.id, %subject, "message queued in the outbox (development sender)");
        Ok(())
    }
}

/// Creates a code for `user`, replacing any unused one of the same purpose, and sends it.
pub async fn send(
    db: &DatabaseConnection,
    sender: &dyn Sender,
    user: &users::Model,
    purpose: CodePurpose,
) -> CareResult<()> {
    let code = secret::six_digit_code();
    let now = Utc::now();
    let txn = db.begin().await?;
    one_time_codes::Entity::update_many()
        .col_expr(one_time_codes::Column::ConsumedAt, Expr::value(now))
        .filter(one_time_codes::Column::UserId.eq(user.id))
        .filter(one_time_codes::Column::Purpose.eq(purpose))
        .filter(one_time_codes::Column::ConsumedAt.is_null())
        .exec(&txn)
        .await?;
    one_time_codes::ActiveModel {
        id: Set(CodeId::new()),
        user_id: Set(user.id),
        purpose: Set(purpose),
        code_hash: Set(secret::digest(&code)),
        created_at: Set(now),
        expires_at: Set(now + Duration::minutes(CODE_TTL_MINUTES)),
        attempts: Set(0),
        max_attempts: Set(CODE_MAX_ATTEMPTS),
        consumed_at: Set(None),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    let (subject, what) = match purpose {
        CodePurpose::VerifyAccount => ("Verify your Nephrocare account", "verify your account"),
        CodePurpose::ResetPassword => ("Set your Nephrocare password", "set a new password"),
    };
    let body = format!("Your code to {what} is {code}. It expires in {CODE_TTL_MINUTES} minutes.");
    sender.send(user, subject, &body).await?;
    Ok(())
}

/// The answer to a code that is wrong or gone.
pub fn invalid_code() -> CareError {
    CareError::invalid("code", "the code is wrong or has expired; request a new one")
}

/// Checks `code` against the user's latest unused code of `purpose`, counting the attempt.
pub async fn consume(
    db: &impl ConnectionTrait,
    user: &users::Model,
    purpose: CodePurpose,
    code: &str,
) -> CareResult<()> {
    let now = Utc::now();
    let Some(row) = one_time_codes::Entity::find()
        .filter(one_time_codes::Column::UserId.eq(user.id))
        .filter(one_time_codes::Column::Purpose.eq(purpose))
        .filter(one_time_codes::Column::ConsumedAt.is_null())
        .order_by_desc(one_time_codes::Column::CreatedAt)
        .one(db)
        .await?
    else {
        return Err(invalid_code());
    };
    if row.expires_at <= now {
        return Err(CareError::invalid("code", "the code has expired; request a new one"));
    }
    let exhausted = || CareError::invalid("code", "too many wrong attempts for this code; request a new one");
    if row.attempts >= row.max_attempts {
        return Err(exhausted());
    }
    // Conditional updates: concurrent attempts cannot both use a code or undercount.
    if row.code_hash == secret::digest(code.trim()) {
        let used = one_time_codes::Entity::update_many()
            .col_expr(one_time_codes::Column::ConsumedAt, Expr::value(now))
            .filter(one_time_codes::Column::Id.eq(row.id))
            .filter(one_time_codes::Column::ConsumedAt.is_null())
            .filter(Expr::col(one_time_codes::Column::Attempts).lt(Expr::col(one_time_codes::Column::MaxAttempts)))
            .exec(db)
            .await?;
        return if used.rows_affected == 1 { Ok(()) } else { Err(invalid_code()) };
    }
    let counted = one_time_codes::Entity::update_many()
        .col_expr(one_time_codes::Column::Attempts, Expr::col(one_time_codes::Column::Attempts).add(1))
        .filter(one_time_codes::Column::Id.eq(row.id))
        .filter(one_time_codes::Column::ConsumedAt.is_null())
        .filter(Expr::col(one_time_codes::Column::Attempts).lt(Expr::col(one_time_codes::Column::MaxAttempts)))
        .exec_with_returning(db)
        .await?;
    match counted.first() {
        Some(r) => {
            let left = r.max_attempts - r.attempts;
            Err(CareError::invalid("code", format!("the code is wrong; {left} attempt(s) left")))
        }
        None => Err(exhausted()),
    }
}

/// An enrollment code as issued: the code itself is shown once and stored only hashed.
pub struct Enrollment {
    pub code: String,
    pub role: AssignmentRole,
    pub expires_at: DateTime<Utc>,
}

/// Issues a single-use enrollment code for `role` in `hospital`, valid `hours` (1 to 336;
/// default 72).
pub async fn issue_enrollment(
    db: &impl ConnectionTrait,
    hospital: HospitalId,
    role: AssignmentRole,
    hours: Option<i64>,
    by: UserId,
) -> CareResult<Enrollment> {
    let hours = hours.unwrap_or(72);
    if !(1..=336).contains(&hours) {
        return Err(CareError::invalid("validHours", "must be between 1 and 336"));
    }
    let code = secret::random_token();
    let now = Utc::now();
    let row = enrollment_codes::ActiveModel {
        id: Set(CodeId::new()),
        hospital_id: Set(hospital),
        role: Set(role),
        code_hash: Set(secret::digest(&code)),
        created_by: Set(by),
        created_at: Set(now),
        expires_at: Set(now + Duration::hours(hours)),
        used_at: Set(None),
        used_by: Set(None),
    }
    .insert(db)
    .await?;
    Ok(Enrollment { code, role: row.role, expires_at: row.expires_at })
}

fn unusable_enrollment() -> CareError {
    CareError::invalid("enrollmentCode", "unknown, used or expired enrollment code")
}

/// The enrollment code `code`, if it is unused and unexpired.
pub(crate) async fn usable_enrollment(db: &impl ConnectionTrait, code: &str) -> CareResult<enrollment_codes::Model> {
    let found = enrollment_codes::Entity::find()
        .filter(enrollment_codes::Column::CodeHash.eq(secret::digest(code.trim())))
        .one(db)
        .await?;
    found.filter(|c| c.used_at.is_none() && c.expires_at > Utc::now()).ok_or_else(unusable_enrollment)
}

/// Marks the enrollment code used by `user`: single use, the update only succeeds if
/// nobody used the code meanwhile.
pub(crate) async fn use_enrollment(
    db: &impl ConnectionTrait,
    code: CodeId,
    user: UserId,
    at: DateTime<Utc>,
) -> CareResult<()> {
    let used = enrollment_codes::Entity::update_many()
        .col_expr(enrollment_codes::Column::UsedAt, Expr::value(at))
        .col_expr(enrollment_codes::Column::UsedBy, Expr::value(user))
        .filter(enrollment_codes::Column::Id.eq(code))
        .filter(enrollment_codes::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if used.rows_affected != 1 {
        return Err(unusable_enrollment());
    }
    Ok(())
}
