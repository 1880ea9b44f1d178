//! `/api/auth/*`: registration, login, token refresh and logout, account verification and
//! password reset.
//!
//! - Access tokens are short-lived JWTs; refresh tokens are opaque and rotated on every
//!   refresh, a reused one ending its session (`nc_care::accounts::sessions`).
//! - One-time codes are six digits, stored hashed, valid 10 minutes, 5 attempts
//!   (`nc_care::accounts::codes`).
//! - Login, code and reset attempts are throttled per account and per client address.

use nc_care::accounts::{self, codes, sessions};
use nc_care::fields::{check_name, check_password, check_phone, normalize_email};
use nc_domain::*;
use nc_entities::users;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::dto::UserOut;
use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::client_ip;
use crate::state::{ApiState, Attempt};
use crate::Tag;

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
    pub refresh_expires_at: chrono::DateTime<chrono::Utc>,
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

/// Creates a code for `user`, replacing any unused one of the same purpose, and sends it.
pub(crate) async fn send_code(state: &ApiState, user: &users::Model, purpose: CodePurpose) -> Result<(), ApiError> {
    Ok(codes::send(&state.db, state.sender.as_ref(), user, purpose).await?)
}

/// Where a request comes from, kept with the session it opens.
fn client(req: &Request) -> sessions::Client {
    sessions::Client {
        addr: client_ip(req).map(|ip| ip.to_string()),
        user_agent: req.header("user-agent").map(str::to_owned),
    }
}

impl AuthApi {
    /// The token pair of a session: an access token naming `family`, and its new refresh token.
    fn pair(state: &ApiState, user: users::Model, family: TokenFamilyId, refresh: sessions::Refresh) -> TokenPair {
        let tokens = state.authn.tokens();
        TokenPair {
            access_token: tokens.issue(user.id, user.role, user.hospital_id, family),
            token_type: "Bearer".into(),
            expires_in: tokens.ttl_secs(),
            refresh_token: refresh.token,
            refresh_expires_at: refresh.expires_at,
            user: user.into(),
        }
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
        if b.enrollment_code.is_none() {
            if let Some(role) = b.role {
                nc_access::policy::decide_registration_role(role).map_err(|e| ApiError::policy(e.into(), "role"))?;
            }
        }
        let registration = accounts::Registration {
            email,
            password: b.password,
            name,
            phone,
            hospital_code: b.hospital_code,
            role: b.role,
            enrollment_code: b.enrollment_code,
        };
        let user = accounts::register(&state.db, registration).await?;
        send_code(&state, &user, CodePurpose::VerifyAccount).await?;
        Ok(RegisterResponse::Created(Json(Registered {
            user_id: user.id,
            email: user.email,
            role: user.role,
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
        let user = accounts::find_by_email(&state.db, &email).await?.ok_or_else(codes::invalid_code)?;
        codes::consume(&state.db, &user, CodePurpose::VerifyAccount, &body.code).await?;
        accounts::verify(&state.db, user).await?;
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
        let user = sessions::login(&state.db, &email, body.password.clone()).await?;
        let family = TokenFamilyId::new();
        let refresh = sessions::issue(&state.db, user.id, family, state.refresh_ttl, &client(req)).await?;
        Ok(Json(Self::pair(&state, user, family, refresh)))
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
        let (user, family, refresh) =
            sessions::refresh(&state.db, &body.refresh_token, state.refresh_ttl, &client(req)).await?;
        Ok(Json(Self::pair(&state, user, family, refresh)))
    }

    /// Log out: ends the login session the refresh token belongs to (its access tokens stop
    /// working too). Always succeeds.
    #[oai(path = "/api/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: poem::web::Data<&ApiState>, body: Json<RefreshRequest>) -> ApiResult<NoContent> {
        sessions::logout(&state.db, &body.refresh_token).await?;
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
        if let Some(user) = accounts::find_by_email(&state.db, &email).await? {
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
        let user = accounts::find_by_email(&state.db, &email)
            .await?
            .filter(|u| u.deactivated_at.is_none())
            .ok_or_else(codes::invalid_code)?;
        codes::consume(&state.db, &user, CodePurpose::ResetPassword, &body.code).await?;
        accounts::reset_password(&state.db, user, body.new_password.clone()).await?;
        Ok(Json(StatusOut { status: "password changed; log in again".into() }))
    }
}
