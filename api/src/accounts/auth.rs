//! `/api/auth/*`: registration, login, token refresh and logout, account verification and
//! password reset.
//!
//! - Access tokens are short-lived JWTs; refresh tokens are opaque, stored as SHA-256
//!   hashes and rotated on every refresh. Presenting a refresh token that was already
//!   rotated revokes its whole family (RFC 9700): a stolen token is useless once either
//!   party uses it again. Logout revokes the family.
//! - One-time codes are six digits, stored hashed, valid 10 minutes, 5 attempts.
//! - Login, code and reset attempts are throttled per account and per client address.

use chrono::{Duration, Utc};
use nc_access::authn::is_live;
use nc_access::{password, secret};
use nc_domain::*;
use nc_entities::{enrollment_codes, hospitals, one_time_codes, refresh_tokens, users};
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};

use crate::dto::UserOut;
use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::client_ip;
use crate::state::{ApiState, Attempt};
use crate::Tag;

/// One-time codes are valid this long.
const CODE_TTL_MINUTES: i64 = 10;
/// Wrong guesses allowed per code.
const CODE_MAX_ATTEMPTS: i32 = 5;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// Your e-mail: your login, and where codes are sent.
    #[oai(validator(max_length = 254, custom = "crate::validate::NoNul", custom = "crate::validate::Email"))]
    pub email: String,
    /// At least 10 characters mixing three of lowercase, uppercase, digits and symbols.
    #[oai(validator(min_length = 10, max_length = 1024, custom = "crate::validate::NoNul"))]
    pub password: String,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: String,
    #[oai(validator(max_length = 20, custom = "crate::validate::NoNul"))]
    pub phone: Option<String>,
    /// Your hospital's code (from the hospital). Not needed with an enrollment code.
    #[oai(validator(max_length = 64, custom = "crate::validate::NoNul"))]
    pub hospital_code: Option<String>,
    /// Only `patient` may be chosen; staff roles come from an enrollment code.
    pub role: Option<Role>,
    /// An enrollment code issued by your hospital's admin: it sets your role and hospital.
    #[oai(validator(max_length = 128, custom = "crate::validate::NoNul"))]
    pub enrollment_code: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct Registered {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    /// `verification_required`: a code has been sent; confirm it at `/api/auth/verify-otp`.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Account created, inactive until verified.
    #[oai(status = 201)]
    Created(Json<Registered>),
}

#[derive(Object, Debug)]
#[oai(deny_unknown_fields)]
pub struct LoginRequest {
    #[oai(validator(max_length = 254, custom = "crate::validate::NoNul", custom = "crate::validate::Email"))]
    pub email: String,
    #[oai(validator(max_length = 1024, custom = "crate::validate::NoNul"))]
    pub password: String,
}

/// Tokens for an authenticated session.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct TokenPair {
    /// JWT for `Authorization: Bearer …` (and as the MQTT password).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque; single use: exchange it at `/api/auth/refresh` for a new pair.
    pub refresh_token: String,
    pub refresh_expires_at: chrono::DateTime<Utc>,
    pub user: UserOut,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 512, custom = "crate::validate::NoNul"))]
    pub refresh_token: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyOtpRequest {
    #[oai(validator(max_length = 254, custom = "crate::validate::NoNul", custom = "crate::validate::Email"))]
    pub email: String,
    /// The six-digit code that was sent.
    #[oai(validator(max_length = 16, custom = "crate::validate::NoNul"))]
    pub code: String,
}

#[derive(Object, Debug)]
#[oai(deny_unknown_fields)]
pub struct ResetRequest {
    #[oai(validator(max_length = 254, custom = "crate::validate::NoNul", custom = "crate::validate::Email"))]
    pub email: String,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetConfirmRequest {
    #[oai(validator(max_length = 254, custom = "crate::validate::NoNul", custom = "crate::validate::Email"))]
    pub email: String,
    #[oai(validator(max_length = 16, custom = "crate::validate::NoNul"))]
    pub code: String,
    #[oai(validator(min_length = 10, max_length = 1024, custom = "crate::validate::NoNul"))]
    pub new_password: String,
}

#[derive(Object, Debug)]
pub struct StatusOut {
    pub status: String,
}

#[derive(ApiResponse)]
pub enum AcceptedResponse {
    /// Accepted; if the account exists, a code has been sent.
    #[oai(status = 202)]
    Accepted(Json<StatusOut>),
}

pub struct AuthApi;

pub(crate) use crate::validate::{check_name, check_password, check_phone, normalize_email};

/// Creates a code for `user`, replacing any unused one of the same purpose, and sends it.
pub(crate) async fn send_code(
    state: &ApiState,
    user: &users::Model,
    purpose: CodePurpose,
) -> std::result::Result<(), ApiError> {
    let code = secret::six_digit_code();
    let now = Utc::now();
    let txn = state.db.begin().await?;
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
    state.sender.send(user, subject, &body).await?;
    Ok(())
}

/// Checks `code` against the user's latest unused code of `purpose`, counting the attempt.
async fn consume_code(
    state: &ApiState,
    user: &users::Model,
    purpose: CodePurpose,
    code: &str,
) -> std::result::Result<(), ApiError> {
    let now = Utc::now();
    let invalid = || ApiError::field("code", "the code is wrong or has expired; request a new one");
    let Some(row) = one_time_codes::Entity::find()
        .filter(one_time_codes::Column::UserId.eq(user.id))
        .filter(one_time_codes::Column::Purpose.eq(purpose))
        .filter(one_time_codes::Column::ConsumedAt.is_null())
        .order_by_desc(one_time_codes::Column::CreatedAt)
        .one(&state.db)
        .await?
    else {
        return Err(invalid());
    };
    if row.expires_at <= now {
        return Err(ApiError::field("code", "the code has expired; request a new one"));
    }
    if row.attempts >= row.max_attempts {
        return Err(ApiError::field("code", "too many wrong attempts for this code; request a new one"));
    }
    // Conditional updates: concurrent attempts cannot both use a code or undercount.
    if row.code_hash == secret::digest(code.trim()) {
        let used = one_time_codes::Entity::update_many()
            .col_expr(one_time_codes::Column::ConsumedAt, Expr::value(now))
            .filter(one_time_codes::Column::Id.eq(row.id))
            .filter(one_time_codes::Column::ConsumedAt.is_null())
            .filter(Expr::col(one_time_codes::Column::Attempts).lt(Expr::col(one_time_codes::Column::MaxAttempts)))
            .exec(&state.db)
            .await?;
        return if used.rows_affected == 1 { Ok(()) } else { Err(invalid()) };
    }
    let counted = one_time_codes::Entity::update_many()
        .col_expr(one_time_codes::Column::Attempts, Expr::col(one_time_codes::Column::Attempts).add(1))
        .filter(one_time_codes::Column::Id.eq(row.id))
        .filter(one_time_codes::Column::ConsumedAt.is_null())
        .filter(Expr::col(one_time_codes::Column::Attempts).lt(Expr::col(one_time_codes::Column::MaxAttempts)))
        .exec_with_returning(&state.db)
        .await?;
    match counted.first() {
        Some(r) => {
            let left = r.max_attempts - r.attempts;
            Err(ApiError::field("code", format!("the code is wrong; {left} attempt(s) left")))
        }
        None => Err(ApiError::field("code", "too many wrong attempts for this code; request a new one")),
    }
}

async fn find_user(db: &impl ConnectionTrait, email: &str) -> std::result::Result<Option<users::Model>, ApiError> {
    let lower = Expr::expr(Func::lower(Expr::col(users::Column::Email)));
    Ok(users::Entity::find().filter(lower.eq(email.to_lowercase())).one(db).await?)
}

/// Revokes every login session of a user (password reset, deactivation).
pub(crate) async fn revoke_all_sessions(db: &impl ConnectionTrait, user: UserId) -> std::result::Result<(), ApiError> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::UserId.eq(user))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

async fn revoke_family(db: &impl ConnectionTrait, family: TokenFamilyId) -> std::result::Result<(), ApiError> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::FamilyId.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

impl AuthApi {
    /// Issues an access token and a new refresh token in `family`.
    async fn issue(
        state: &ApiState,
        db: &impl ConnectionTrait,
        user: users::Model,
        family: TokenFamilyId,
        req: &Request,
    ) -> std::result::Result<TokenPair, ApiError> {
        let refresh = secret::random_token();
        let now = Utc::now();
        let expires = now + state.refresh_ttl;
        refresh_tokens::ActiveModel {
            id: Set(RefreshTokenId::new()),
            user_id: Set(user.id),
            family_id: Set(family),
            token_hash: Set(secret::digest(&refresh)),
            issued_at: Set(now),
            expires_at: Set(expires),
            rotated_at: Set(None),
            revoked_at: Set(None),
            replaced_by: Set(None),
            client_addr: Set(client_ip(req).map(|ip| ip.to_string())),
            user_agent: Set(req.header("user-agent").map(|s| s.chars().take(200).collect())),
        }
        .insert(db)
        .await?;
        let tokens = state.authn.tokens();
        Ok(TokenPair {
            access_token: tokens.issue(user.id, user.role, user.hospital_id, family),
            token_type: "Bearer".into(),
            expires_in: tokens.ttl_secs(),
            refresh_token: refresh,
            refresh_expires_at: expires,
            user: user.into(),
        })
    }
}

#[OpenApi(tag = "Tag::Auth")]
impl AuthApi {
    /// Register an account. Patients may register themselves (inactive until the e-mailed
    /// code is confirmed); doctors and technicians register with an enrollment code from
    /// their hospital's admin, which sets their role. Nobody can choose a staff role.
    #[oai(path = "/api/auth/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: poem::web::Data<&ApiState>,
        body: Json<RegisterRequest>,
    ) -> ApiResult<RegisterResponse> {
        let b = body.0;
        let email = normalize_email(&b.email)?;
        let name = check_name("name", &b.name)?;
        let phone = check_phone(b.phone)?;
        check_password(&b.password, &email, "password")?;

        let (hospital, role, enrollment) = match &b.enrollment_code {
            Some(code) => {
                let found = enrollment_codes::Entity::find()
                    .filter(enrollment_codes::Column::CodeHash.eq(secret::digest(code.trim())))
                    .one(&state.db)
                    .await?;
                let Some(found) = found.filter(|c| c.used_at.is_none() && c.expires_at > Utc::now()) else {
                    return Err(ApiError::field("enrollmentCode", "unknown, used or expired enrollment code").into());
                };
                let role = match found.role {
                    AssignmentRole::Doctor => Role::Doctor,
                    AssignmentRole::Technician => Role::Technician,
                };
                if b.role.is_some_and(|r| r != role) {
                    return Err(ApiError::field("role", "differs from the role of the enrollment code").into());
                }
                (found.hospital_id, role, Some(found))
            }
            None => {
                if let Some(role) = b.role {
                    nc_access::policy::decide_registration_role(role)
                        .map_err(|e| ApiError::policy(e.into(), "role"))?;
                }
                let Some(code) = b.hospital_code else {
                    return Err(ApiError::field("hospitalCode", "is required (or an enrollment code)").into());
                };
                let hospital = hospitals::Entity::find()
                    .filter(hospitals::Column::Code.eq(code.trim().to_lowercase()))
                    .one(&state.db)
                    .await?
                    .ok_or_else(|| ApiError::field("hospitalCode", "no hospital has this code"))?;
                (hospital.id, Role::Patient, None)
            }
        };

        let hash = password::hash(b.password).await?;
        let now = Utc::now();
        let txn = state.db.begin().await?;
        let user = users::ActiveModel {
            id: Set(UserId::new()),
            hospital_id: Set(hospital),
            email: Set(email.clone()),
            phone: Set(phone),
            password_hash: Set(hash),
            role: Set(role),
            name: Set(name),
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
            // Single use: the update only succeeds if nobody used the code meanwhile.
            let used = enrollment_codes::Entity::update_many()
                .col_expr(enrollment_codes::Column::UsedAt, Expr::value(now))
                .col_expr(enrollment_codes::Column::UsedBy, Expr::value(user.id))
                .filter(enrollment_codes::Column::Id.eq(code.id))
                .filter(enrollment_codes::Column::UsedAt.is_null())
                .exec(&txn)
                .await?;
            if used.rows_affected != 1 {
                return Err(ApiError::field("enrollmentCode", "unknown, used or expired enrollment code").into());
            }
        }
        txn.commit().await?;
        send_code(&state, &user, CodePurpose::VerifyAccount).await?;
        Ok(RegisterResponse::Created(Json(Registered {
            user_id: user.id,
            email,
            role,
            status: "verification_required".into(),
        })))
    }

    /// Confirm an account with the six-digit code sent at registration; the account
    /// becomes active.
    #[oai(path = "/api/auth/verify-otp", method = "post", operation_id = "verifyOtp")]
    async fn verify_otp(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        body: Json<VerifyOtpRequest>,
    ) -> ApiResult<Json<StatusOut>> {
        let email = normalize_email(&body.email)?;
        state.throttle.check(Attempt::Code, &email, client_ip(req))?;
        let invalid = || ApiError::field("code", "the code is wrong or has expired; request a new one");
        let user = find_user(&state.db, &email).await?.ok_or_else(invalid)?;
        consume_code(&state, &user, CodePurpose::VerifyAccount, &body.code).await?;
        let now = Utc::now();
        let mut active: users::ActiveModel = user.clone().into();
        active.verified_at = Set(Some(user.verified_at.unwrap_or(now)));
        if user.deactivated_at.is_none() {
            active.is_active = Set(true);
        }
        active.updated_at = Set(now);
        active.update(&state.db).await?;
        Ok(Json(StatusOut { status: "verified".into() }))
    }

    /// Log in with e-mail and password. Returns a short-lived access token and a single-use
    /// refresh token.
    #[oai(path = "/api/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> ApiResult<Json<TokenPair>> {
        let email = body.email.trim().to_lowercase();
        state.throttle.check(Attempt::Login, &email, client_ip(req))?;
        let user = find_user(&state.db, &email).await?;
        let stored = user.as_ref().map_or_else(|| password::dummy_hash().to_owned(), |u| u.password_hash.clone());
        let ok = password::verify(body.password.clone(), stored).await?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(ApiError::Unauthorized("wrong e-mail or password".into()).into());
        };
        if user.deactivated_at.is_some() {
            return Err(ApiError::Forbidden("this account has been deactivated".into()).into());
        }
        if user.verified_at.is_none() || !user.is_active {
            return Err(ApiError::Forbidden(
                "this account is not verified yet: confirm the code sent to your e-mail".into(),
            )
            .into());
        }
        let pair = Self::issue(&state, &state.db, user, TokenFamilyId::new(), req).await?;
        Ok(Json(pair))
    }

    /// Exchange a refresh token for a new token pair. Each refresh token works once;
    /// presenting one that was already used ends the whole login session.
    #[oai(path = "/api/auth/refresh", method = "post", operation_id = "refreshToken")]
    async fn refresh(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        body: Json<RefreshRequest>,
    ) -> ApiResult<Json<TokenPair>> {
        let hash = secret::digest(body.refresh_token.trim());
        let invalid = || ApiError::Unauthorized("invalid or expired refresh token; log in again".into());
        let txn = state.db.begin().await?;
        let row = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(hash))
            .one(&txn)
            .await?
            .ok_or_else(invalid)?;
        let now = Utc::now();
        if row.revoked_at.is_some() || row.expires_at <= now {
            return Err(invalid().into());
        }
        if row.rotated_at.is_some() {
            // Reuse of a rotated token: someone else has (or had) it. End the session.
            revoke_family(&txn, row.family_id).await?;
            txn.commit().await?;
            tracing::warn!(user = %row.user_id, family = %row.family_id, "refresh token reuse: session revoked");
            return Err(ApiError::Unauthorized(
                "this refresh token was already used; the session has been ended for safety".into(),
            )
            .into());
        }
        let user = users::Entity::find_by_id(row.user_id).one(&txn).await?.ok_or_else(invalid)?;
        if !is_live(&user) {
            return Err(ApiError::Forbidden("this account is deactivated or not verified".into()).into());
        }
        // Rotate: only one concurrent refresh of the same token can win.
        let rotated = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::RotatedAt, Expr::value(now))
            .filter(refresh_tokens::Column::Id.eq(row.id))
            .filter(refresh_tokens::Column::RotatedAt.is_null())
            .exec(&txn)
            .await?;
        if rotated.rows_affected != 1 {
            return Err(invalid().into());
        }
        let pair = Self::issue(&state, &txn, user, row.family_id, req).await?;
        txn.commit().await?;
        Ok(Json(pair))
    }

    /// Log out: ends the login session the refresh token belongs to (its access tokens stop
    /// working too). Always succeeds.
    #[oai(path = "/api/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: poem::web::Data<&ApiState>, body: Json<RefreshRequest>) -> ApiResult<NoContent> {
        let hash = secret::digest(body.refresh_token.trim());
        if let Some(row) =
            refresh_tokens::Entity::find().filter(refresh_tokens::Column::TokenHash.eq(hash)).one(&state.db).await?
        {
            revoke_family(&state.db, row.family_id).await?;
        }
        Ok(NoContent::Done)
    }

    /// Request a password reset: if the account exists, a six-digit code is sent to it.
    /// The answer is the same either way, so it does not reveal which e-mails have accounts.
    #[oai(path = "/api/auth/reset-password", method = "post", operation_id = "requestPasswordReset")]
    async fn reset_request(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        body: Json<ResetRequest>,
    ) -> ApiResult<AcceptedResponse> {
        let email = normalize_email(&body.email)?;
        state.throttle.check(Attempt::Reset, &email, client_ip(req))?;
        if let Some(user) = find_user(&state.db, &email).await? {
            if user.deactivated_at.is_none() {
                send_code(&state, &user, CodePurpose::ResetPassword).await?;
            }
        }
        Ok(AcceptedResponse::Accepted(Json(StatusOut { status: "if the account exists, a code has been sent".into() })))
    }

    /// Set a new password with the code from `/api/auth/reset-password`. Every login
    /// session of the account ends. Proves the e-mail, so it also verifies the account.
    #[oai(path = "/api/auth/reset-password/confirm", method = "post", operation_id = "confirmPasswordReset")]
    async fn reset_confirm(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        body: Json<ResetConfirmRequest>,
    ) -> ApiResult<Json<StatusOut>> {
        let email = normalize_email(&body.email)?;
        state.throttle.check(Attempt::Code, &email, client_ip(req))?;
        check_password(&body.new_password, &email, "newPassword")?;
        let user = find_user(&state.db, &email)
            .await?
            .filter(|u| u.deactivated_at.is_none())
            .ok_or_else(|| ApiError::field("code", "the code is wrong or has expired; request a new one"))?;
        consume_code(&state, &user, CodePurpose::ResetPassword, &body.code).await?;
        let hash = password::hash(body.new_password.clone()).await?;
        let now = Utc::now();
        let txn = state.db.begin().await?;
        let mut active: users::ActiveModel = user.clone().into();
        active.password_hash = Set(hash);
        active.verified_at = Set(Some(user.verified_at.unwrap_or(now)));
        active.is_active = Set(true);
        active.updated_at = Set(now);
        active.update(&txn).await?;
        revoke_all_sessions(&txn, user.id).await?;
        txn.commit().await?;
        Ok(Json(StatusOut { status: "password changed; log in again".into() }))
    }
}
