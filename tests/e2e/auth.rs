//! Authentication end to end: registration rules and enrollment codes, access-token
//! forgeries, refresh-token rotation and reuse detection, logout, one-time codes and
//! password reset, login throttling, the stored password hashes, and deactivation.
//!
//! Every test runs the whole service on a fresh database and asserts exact statuses and
//! error codes. Throttling is per service instance (5 attempts a minute per account and
//! kind, 30 per client address), so each test keeps its attempts per account within that
//! budget, except the throttling test itself.

use nc_access::token::TokenKeys;
use nephrocare::bootstrap::{bootstrap_hospital, Bootstrapped};
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::support::{test_config, Client, Reply, TestApp};

const HOSPITAL_CODE: &str = "general-1";
const ADMIN_EMAIL: &str = "chief@general.example.org";
const ADMIN_PASSWORD: &str = "Admin-pass-2026!";
/// A password that passes the strength rules for every e-mail used below.
const PASSWORD: &str = "Kidney-care-2026";
const NEW_PASSWORD: &str = "Fresh-Filter-77!";
/// `{"alg":"none","typ":"JWT"}`, base64url without padding.
const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A hospital with an active, verified admin.
async fn hospital(app: &TestApp) -> Bootstrapped {
    bootstrap_hospital(&app.db.db, "General Hospital", HOSPITAL_CODE, ADMIN_EMAIL, "Ada Admin", ADMIN_PASSWORD)
        .await
        .expect("bootstrap a hospital")
}

async fn login(client: &Client, email: &str, password: &str) -> Reply {
    client.post("/api/auth/login", json!({ "email": email, "password": password })).await
}

/// Logs in and insists on success: the body is the token pair.
async fn login_ok(client: &Client, email: &str, password: &str) -> Value {
    let r = login(client, email, password).await;
    assert_eq!(r.status, 200, "login of {email}: {}", r.text);
    assert!(r.body["accessToken"].as_str().is_some_and(|t| !t.is_empty()), "{}", r.text);
    assert!(r.body["refreshToken"].as_str().is_some_and(|t| !t.is_empty()), "{}", r.text);
    r.body
}

/// A client carrying the admin's access token.
async fn admin_client(app: &TestApp) -> Client {
    let pair = login_ok(&app.client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.client.with_token(access(&pair))
}

fn access(pair: &Value) -> &str {
    pair["accessToken"].as_str().expect("accessToken")
}

fn refresh_token(pair: &Value) -> &str {
    pair["refreshToken"].as_str().expect("refreshToken")
}

async fn refresh(client: &Client, token: &str) -> Reply {
    client.post("/api/auth/refresh", json!({ "refreshToken": token })).await
}

async fn profile(client: &Client, token: &str) -> Reply {
    client.with_token(token).get("/api/users/profile").await
}

/// An account created by the admin: active and verified, no code sent.
async fn create_user(admin: &Client, email: &str, role: &str) -> String {
    let r = admin
        .post("/api/users", json!({ "email": email, "name": "Test Person", "role": role, "initialPassword": PASSWORD }))
        .await;
    assert_eq!(r.status, 201, "create {email}: {}", r.text);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn register_patient(client: &Client, email: &str, password: &str) -> Reply {
    client
        .post(
            "/api/auth/register",
            json!({ "email": email, "password": password, "name": "Pat Patient", "hospitalCode": HOSPITAL_CODE }),
        )
        .await
}

/// The six-digit code in the latest message to `recipient`.
async fn latest_code(sql: &mut PgConnection, recipient: &str) -> String {
    let body: String = sqlx::query_scalar(
        "SELECT body FROM outbound_messages WHERE recipient = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(recipient)
    .fetch_optional(&mut *sql)
    .await
    .expect("query the outbox")
    .unwrap_or_else(|| panic!("no message was sent to {recipient}"));
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("no six-digit code in {body:?}"))
        .to_owned()
}

async fn messages_to(sql: &mut PgConnection, recipient: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbound_messages WHERE recipient = $1")
        .bind(recipient)
        .fetch_one(&mut *sql)
        .await
        .expect("count messages")
}

async fn all_messages(sql: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbound_messages").fetch_one(&mut *sql).await.expect("count messages")
}

/// A six-digit code that is not `right`.
fn wrong_code(right: &str) -> &'static str {
    if right == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// Asserts a 422 `validation_failed` whose first field is `field`; returns its message.
fn assert_invalid(r: &Reply, field: &str) -> String {
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.code(), "validation_failed", "{}", r.text);
    assert_eq!(r.body["fields"][0]["field"], field, "{}", r.text);
    r.body["fields"][0]["message"].as_str().unwrap_or_default().to_owned()
}

fn assert_status(r: &Reply, status: u16, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.text);
}

async fn request_reset(client: &Client, email: &str) -> Reply {
    client.post("/api/auth/reset-password", json!({ "email": email })).await
}

async fn confirm_reset(client: &Client, email: &str, code: &str, new_password: &str) -> Reply {
    client
        .post("/api/auth/reset-password/confirm", json!({ "email": email, "code": code, "newPassword": new_password }))
        .await
}

// ---------------------------------------------------------------------------------------
// 1. Registration
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn patient_registration_verification_and_its_rules() {
    let app = TestApp::spawn().await;
    let h = hospital(&app).await;
    let c = &app.client;
    let mut sql = app.db.sql().await;
    let email = "pat.one@example.org";

    // Register: created, inactive until the e-mailed code is confirmed.
    let r = register_patient(c, email, PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "verification_required");
    assert_eq!(r.body["role"], "patient");
    assert_eq!(r.body["email"], email);
    let user_id = r.body["userId"].as_str().expect("userId").to_owned();
    let subject: String = sqlx::query_scalar("SELECT subject FROM outbound_messages WHERE recipient = $1")
        .bind(email)
        .fetch_one(&mut sql)
        .await
        .expect("exactly one message: the verification code");
    assert_eq!(subject, "Verify your Nephrocare account");
    let code = latest_code(&mut sql, email).await;

    // Not verified yet: the right password is not enough.
    assert_status(&login(c, email, PASSWORD).await, 403, "forbidden");

    // A wrong code is refused and names the field.
    let r = c.post("/api/auth/verify-otp", json!({ "email": email, "code": wrong_code(&code) })).await;
    assert_invalid(&r, "code");

    // The right code verifies the account; then login works.
    let r = c.post("/api/auth/verify-otp", json!({ "email": email, "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "verified");
    let pair = login_ok(c, email, PASSWORD).await;
    assert_eq!(pair["tokenType"], "Bearer");
    assert!(pair["expiresIn"].as_i64().is_some_and(|s| s > 0), "{pair}");
    assert_eq!(pair["user"]["role"], "patient");
    assert_eq!(pair["user"]["id"], user_id.as_str());
    assert_eq!(pair["user"]["hospitalId"], h.hospital_id.to_string());
    assert_eq!(pair["user"]["isActive"], true);
    let me = profile(c, access(&pair)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["email"], email);

    // The same e-mail in another case is taken.
    let r = register_patient(c, "Pat.One@EXAMPLE.org", "Another-pass-99").await;
    assert_status(&r, 409, "email_taken");

    // Nobody chooses a staff role.
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": "would.be.doc@example.org", "password": PASSWORD, "name": "Doc",
                    "hospitalCode": HOSPITAL_CODE, "role": "doctor" }),
        )
        .await;
    assert_status(&r, 403, "forbidden");

    // Weak passwords are explained on the field.
    for weak in ["short1!", "alllowercaseletters", "Pat.two-2026-x"] {
        let r = register_patient(c, "pat.two@example.org", weak).await;
        assert_invalid(&r, "password");
    }

    // Unknown JSON fields are refused outright.
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": "pat.three@example.org", "password": PASSWORD, "name": "Pat",
                    "hospitalCode": HOSPITAL_CODE, "isAdmin": true }),
        )
        .await;
    assert_status(&r, 400, "bad_request");

    // The hospital must exist (and be given).
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": "pat.four@example.org", "password": PASSWORD, "name": "Pat", "hospitalCode": "no-such-hospital" }),
        )
        .await;
    assert_invalid(&r, "hospitalCode");
    let r = c
        .post("/api/auth/register", json!({ "email": "pat.four@example.org", "password": PASSWORD, "name": "Pat" }))
        .await;
    assert_invalid(&r, "hospitalCode");

    // None of the refused registrations created an account or sent a message.
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut sql).await.unwrap();
    assert_eq!(users, 2, "the admin and the one patient");
    assert_eq!(all_messages(&mut sql).await, 1, "only the one verification code");

    app.stop().await;
}

#[tokio::test]
async fn enrollment_codes_set_the_role_and_are_single_use() {
    let app = TestApp::spawn().await;
    let h = hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let mut sql = app.db.sql().await;

    let r = admin.post("/api/users/enrollment-codes", json!({ "role": "technician" })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["role"], "technician");
    let code = r.body["code"].as_str().expect("code").to_owned();
    assert!(!code.is_empty());

    // No hospital code needed: the enrollment code sets role and hospital.
    let email = "tech.one@example.org";
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": email, "password": PASSWORD, "name": "Tess Tech", "enrollmentCode": code }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["role"], "technician");
    assert_eq!(r.body["status"], "verification_required");

    // Verified, the account logs in as a technician of the admin's hospital.
    let otp = latest_code(&mut sql, email).await;
    let v = c.post("/api/auth/verify-otp", json!({ "email": email, "code": otp })).await;
    assert_eq!(v.status, 200, "{}", v.text);
    let pair = login_ok(c, email, PASSWORD).await;
    assert_eq!(pair["user"]["role"], "technician");
    assert_eq!(pair["user"]["hospitalId"], h.hospital_id.to_string());

    // Single use.
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": "tech.two@example.org", "password": PASSWORD, "name": "Tom Tech", "enrollmentCode": code }),
        )
        .await;
    assert_invalid(&r, "enrollmentCode");
    // An unknown code likewise.
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": "tech.two@example.org", "password": PASSWORD, "name": "Tom Tech", "enrollmentCode": "made-up" }),
        )
        .await;
    assert_invalid(&r, "enrollmentCode");
    let exists: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'tech.two@example.org'")
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    // Patients cannot issue enrollment codes.
    let patient = register_patient(c, "pat.enrol@example.org", PASSWORD).await;
    assert_eq!(patient.status, 201, "{}", patient.text);
    let otp = latest_code(&mut sql, "pat.enrol@example.org").await;
    let v = c.post("/api/auth/verify-otp", json!({ "email": "pat.enrol@example.org", "code": otp })).await;
    assert_eq!(v.status, 200, "{}", v.text);
    let pat = login_ok(c, "pat.enrol@example.org", PASSWORD).await;
    let r = c.with_token(access(&pat)).post("/api/users/enrollment-codes", json!({ "role": "doctor" })).await;
    assert_status(&r, 403, "forbidden");

    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Access tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_expired_and_tampered_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let h = hospital(&app).await;
    let c = &app.client;
    let pair = login_ok(c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let real = access(&pair).to_owned();
    assert_eq!(profile(c, &real).await.status, 200);

    let mut sql = app.db.sql().await;
    let family: uuid::Uuid = sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE user_id = $1")
        .bind(h.admin_id.as_uuid())
        .fetch_one(&mut sql)
        .await
        .expect("the login's session");

    let secret = test_config("postgres://unused/x").auth.jwt_secret;
    let keys = TokenKeys::new(secret.expose().as_bytes(), 900);
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64| {
        json!({
            "sub": h.admin_id.to_string(), "role": "admin", "hid": h.hospital_id.to_string(),
            "sid": family.to_string(), "jti": uuid::Uuid::new_v4().to_string(),
            "iss": "nephrocare", "aud": "nephrocare", "iat": iat, "exp": exp,
        })
    };
    let hs256 = Default::default();

    // Control: the same claims, correctly signed, are accepted.
    let good = keys.sign_raw(&hs256, &claims(now, now + 600));
    assert_eq!(profile(c, &good).await.status, 200, "a correctly forged token is the control");

    // Correctly signed, but naming a login session that does not exist (a leaked signing key,
    // a deleted session), or another person's: refused on REST, FHIR and the live stream.
    let with_sid = |sid: String| {
        let mut v = claims(now, now + 600);
        v["sid"] = json!(sid);
        keys.sign_raw(&hs256, &v)
    };
    let other = login_ok(c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let other_family: uuid::Uuid =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE user_id = $1 AND family_id <> $2")
            .bind(h.admin_id.as_uuid())
            .bind(family)
            .fetch_one(&mut sql)
            .await
            .expect("a second login session");
    let _ = other;
    // That second session becomes another person's.
    let someone = app
        .db
        .person(h.hospital_id.as_uuid(), "someone@general.example.org", nc_domain::Role::Admin, "Someone", None, "x")
        .await;
    sqlx::query("UPDATE refresh_tokens SET user_id = $1 WHERE family_id = $2")
        .bind(someone)
        .bind(other_family)
        .execute(&mut sql)
        .await
        .unwrap();
    for sid in [uuid::Uuid::new_v4(), other_family] {
        let t = with_sid(sid.to_string());
        assert_status(&profile(c, &t).await, 401, "unauthorized");
        let fhir = c.with_token(&t).get("/fhir/r4/Group").await;
        assert_eq!(fhir.status, 401, "FHIR, session {sid}: {}", fhir.text);
        let device = uuid::Uuid::new_v4();
        let http = c.base.trim_start_matches("http://").parse().unwrap();
        assert_eq!(crate::support::ws_open(http, device, Some(&t)).await.err(), Some(401), "the live stream");
        // The control: the admin's real session passes authentication (then: no such device).
        assert_eq!(crate::support::ws_open(http, device, Some(&good)).await.err(), Some(404));
    }
    let fhir = c.with_token(&good).get("/fhir/r4/Group").await;
    assert_eq!(fhir.status, 200, "FHIR control: {}", fhir.text);

    // No token at all.
    assert_status(&c.get("/api/users/profile").await, 401, "unauthorized");

    // Expired (well beyond the 5 s leeway).
    let expired = keys.sign_raw(&hs256, &claims(now - 1200, now - 300));
    assert_status(&profile(c, &expired).await, 401, "unauthorized");

    // Tampered payload: one character changed, signature kept.
    let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 3);
    let mut payload: Vec<char> = parts[1].chars().collect();
    let i = payload.len() / 2;
    payload[i] = if payload[i] == 'A' { 'B' } else { 'A' };
    parts[1] = payload.into_iter().collect();
    assert_status(&profile(c, &parts.join(".")).await, 401, "unauthorized");

    // HS512 with the very same secret: the algorithm is pinned.
    let hs512 = serde_json::from_value(json!({ "alg": "HS512", "typ": "JWT" })).expect("a JWT header");
    let t = keys.sign_raw(&hs512, &claims(now, now + 600));
    assert_status(&profile(c, &t).await, 401, "unauthorized");

    // Unsigned: alg none, with and without the trailing dot.
    let payload = good.split('.').nth(1).expect("payload").to_owned();
    for unsigned in [format!("{ALG_NONE_HEADER}.{payload}."), format!("{ALG_NONE_HEADER}.{payload}")] {
        assert_status(&profile(c, &unsigned).await, 401, "unauthorized");
    }

    // Another key.
    let other = TokenKeys::new(b"another-secret-another-secret-0123456789", 900);
    let t = other.sign_raw(&hs256, &claims(now, now + 600));
    assert_status(&profile(c, &t).await, 401, "unauthorized");

    // Garbage.
    assert_status(&profile(c, "not-a-jwt").await, 401, "unauthorized");

    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 3. Refresh rotation and logout
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let email = "doc.rotate@example.org";
    create_user(&admin, email, "doctor").await;

    let p1 = login_ok(c, email, PASSWORD).await;
    let r1 = refresh_token(&p1).to_owned();

    let r = refresh(c, &r1).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p2 = r.body;
    let r2 = refresh_token(&p2).to_owned();
    let a2 = access(&p2).to_owned();
    assert_ne!(r2, r1, "the refresh token rotates");
    assert_ne!(a2, access(&p1));
    assert_eq!(p2["user"]["email"], email);
    assert_eq!(profile(c, &a2).await.status, 200, "the new access token works");

    // R1 again: reuse of a rotated token ends the session.
    assert_status(&refresh(c, &r1).await, 401, "unauthorized");
    // The legitimate holder's R2 is now dead too, and so are the session's access tokens.
    assert_status(&refresh(c, &r2).await, 401, "unauthorized");
    assert_status(&profile(c, &a2).await, 401, "unauthorized");
    assert_status(&profile(c, access(&p1)).await, 401, "unauthorized");

    // An unknown refresh token.
    assert_status(&refresh(c, "no-such-refresh-token").await, 401, "unauthorized");

    // Logging in again starts a new, working session.
    let p3 = login_ok(c, email, PASSWORD).await;
    assert_eq!(profile(c, access(&p3)).await.status, 200);

    app.stop().await;
}

#[tokio::test]
async fn logout_ends_that_session_only() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let email = "tech.logout@example.org";
    create_user(&admin, email, "technician").await;

    let s1 = login_ok(c, email, PASSWORD).await;
    let s2 = login_ok(c, email, PASSWORD).await;
    assert_eq!(profile(c, access(&s1)).await.status, 200);

    let r = c.post("/api/auth/logout", json!({ "refreshToken": refresh_token(&s1) })).await;
    assert_eq!(r.status, 204, "{}", r.text);

    assert_status(&profile(c, access(&s1)).await, 401, "unauthorized");
    assert_status(&refresh(c, refresh_token(&s1)).await, 401, "unauthorized");

    // The other session of the same user is untouched.
    assert_eq!(profile(c, access(&s2)).await.status, 200);
    let r = refresh(c, refresh_token(&s2)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(profile(c, access(&r.body)).await.status, 200);

    // Logging out again, or with an unknown token, still answers 204.
    let r = c.post("/api/auth/logout", json!({ "refreshToken": refresh_token(&s1) })).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = c.post("/api/auth/logout", json!({ "refreshToken": "no-such-token" })).await;
    assert_eq!(r.status, 204, "{}", r.text);

    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. One-time codes and password reset
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reset_requests_look_the_same_and_wrong_codes_count_down() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let mut sql = app.db.sql().await;
    let email = "pat.reset@example.org";
    create_user(&admin, email, "patient").await;
    assert_eq!(messages_to(&mut sql, email).await, 0, "an initial password means no code");

    // Existing account: 202 and a code is sent.
    let known = request_reset(c, email).await;
    assert_eq!(known.status, 202, "{}", known.text);
    assert_eq!(messages_to(&mut sql, email).await, 1);
    let subject: String = sqlx::query_scalar("SELECT subject FROM outbound_messages WHERE recipient = $1")
        .bind(email)
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert_eq!(subject, "Set your Nephrocare password");
    let code = latest_code(&mut sql, email).await;

    // Unknown account: the very same answer, and nothing is written.
    let before = all_messages(&mut sql).await;
    let unknown = request_reset(c, "nobody@example.org").await;
    assert_eq!(unknown.status, 202, "{}", unknown.text);
    assert_eq!(unknown.body, known.body);
    assert_eq!(all_messages(&mut sql).await, before);

    // Five wrong codes: each refused on `code`, counting down.
    for left in (0..5).rev() {
        let r = confirm_reset(c, email, wrong_code(&code), NEW_PASSWORD).await;
        let message = assert_invalid(&r, "code");
        assert!(message.contains(&format!("{left} attempt(s) left")), "expected {left} left: {message}");
    }
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM one_time_codes c JOIN users u ON u.id = c.user_id
          WHERE u.email = $1 AND c.purpose = 'reset_password' AND c.consumed_at IS NULL",
    )
    .bind(email)
    .fetch_one(&mut sql)
    .await
    .unwrap();
    assert_eq!(attempts, 5);

    // The password did not change.
    login_ok(c, email, PASSWORD).await;

    app.stop().await;
}

#[tokio::test]
async fn codes_stop_working_after_too_many_attempts_and_when_expired() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let mut sql = app.db.sql().await;

    // Attempts used up: even the right code is refused. (Five real wrong guesses would hit
    // the per-account throttle before a sixth could be tried, so the count is set in SQL.)
    let email = "pat.attempts@example.org";
    let id: uuid::Uuid = create_user(&admin, email, "patient").await.parse().unwrap();
    assert_eq!(request_reset(c, email).await.status, 202);
    let code = latest_code(&mut sql, email).await;
    let updated = sqlx::query(
        "UPDATE one_time_codes SET attempts = max_attempts WHERE user_id = $1 AND purpose = 'reset_password' AND consumed_at IS NULL",
    )
    .bind(id)
    .execute(&mut sql)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1);
    let r = confirm_reset(c, email, &code, NEW_PASSWORD).await;
    let message = assert_invalid(&r, "code");
    assert!(message.contains("too many wrong attempts"), "{message}");
    login_ok(c, email, PASSWORD).await;
    assert_status(&login(c, email, NEW_PASSWORD).await, 401, "unauthorized");

    // Expired: the right code is refused.
    let email = "pat.expired@example.org";
    let id: uuid::Uuid = create_user(&admin, email, "patient").await.parse().unwrap();
    assert_eq!(request_reset(c, email).await.status, 202);
    let code = latest_code(&mut sql, email).await;
    let updated = sqlx::query(
        "UPDATE one_time_codes SET created_at = now() - interval '20 minutes', expires_at = now() - interval '1 minute'
          WHERE user_id = $1 AND purpose = 'reset_password' AND consumed_at IS NULL",
    )
    .bind(id)
    .execute(&mut sql)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1);
    let r = confirm_reset(c, email, &code, NEW_PASSWORD).await;
    let message = assert_invalid(&r, "code");
    assert!(message.contains("expired"), "{message}");
    login_ok(c, email, PASSWORD).await;

    // An expired verification code likewise.
    let email = "pat.verify.expired@example.org";
    assert_eq!(register_patient(c, email, PASSWORD).await.status, 201);
    let code = latest_code(&mut sql, email).await;
    sqlx::query(
        "UPDATE one_time_codes SET created_at = now() - interval '20 minutes', expires_at = now() - interval '1 minute'
          WHERE user_id = (SELECT id FROM users WHERE email = $1)",
    )
    .bind(email)
    .execute(&mut sql)
    .await
    .unwrap();
    let r = c.post("/api/auth/verify-otp", json!({ "email": email, "code": code })).await;
    let message = assert_invalid(&r, "code");
    assert!(message.contains("expired"), "{message}");
    assert_status(&login(c, email, PASSWORD).await, 403, "forbidden");

    app.stop().await;
}

#[tokio::test]
async fn password_reset_changes_the_password_and_ends_every_session() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let mut sql = app.db.sql().await;
    let email = "doc.reset@example.org";
    create_user(&admin, email, "doctor").await;

    let before = login_ok(c, email, PASSWORD).await;
    assert_eq!(profile(c, access(&before)).await.status, 200);

    assert_eq!(request_reset(c, email).await.status, 202);
    let code = latest_code(&mut sql, email).await;

    // A weak new password is refused on its field (and does not use up the code).
    let r = confirm_reset(c, email, &code, "weakpass").await;
    assert_invalid(&r, "newPassword");

    let r = confirm_reset(c, email, &code, NEW_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The code is used up.
    let r = confirm_reset(c, email, &code, "Another-New-Pass-1").await;
    assert_invalid(&r, "code");

    assert_status(&login(c, email, PASSWORD).await, 401, "unauthorized");
    let after = login_ok(c, email, NEW_PASSWORD).await;
    assert_eq!(profile(c, access(&after)).await.status, 200);

    // The session from before the reset is over.
    assert_status(&profile(c, access(&before)).await, 401, "unauthorized");
    assert_status(&refresh(c, refresh_token(&before)).await, 401, "unauthorized");

    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. Throttling
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_passwords_are_throttled_per_account() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let email = "tech.throttle@example.org";
    create_user(&admin, email, "technician").await;
    create_user(&admin, "tech.other@example.org", "technician").await;

    // The limit is 5 a minute with a burst of 5: one more attempt is allowed every 12 s, so
    // six attempts in well under 12 s meet the limit exactly once.
    for attempt in 1..=5 {
        let r = login(c, email, "Wrong-password-1").await;
        assert_eq!((r.status, r.code()), (401, "unauthorized"), "attempt {attempt}: {}", r.text);
    }
    let r = login(c, email, "Wrong-password-1").await;
    assert_status(&r, 429, "rate_limited");
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");

    // Throttled before the password is checked: the right one is refused too, for now.
    assert_status(&login(c, email, PASSWORD).await, 429, "rate_limited");

    // Another account is not affected.
    login_ok(c, "tech.other@example.org", PASSWORD).await;

    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Stored password hashes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn passwords_are_stored_as_argon2id_with_owasp_parameters() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let mut sql = app.db.sql().await;
    let email = "pat.hash@example.org";
    let r = register_patient(&app.client, email, PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains(PASSWORD));

    // The admin's (hashed by the bootstrap) too, and every hash is salted differently.
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT password_hash FROM users ORDER BY email").fetch_all(&mut sql).await.unwrap();
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    }
    assert_ne!(hashes[0], hashes[1]);

    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. Deactivation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deactivation_ends_access_at_once() {
    let app = TestApp::spawn().await;
    hospital(&app).await;
    let admin = admin_client(&app).await;
    let c = &app.client;
    let email = "doc.leaving@example.org";
    let id = create_user(&admin, email, "doctor").await;

    let pair = login_ok(c, email, PASSWORD).await;
    assert_eq!(profile(c, access(&pair)).await.status, 200);

    let r = admin.post(&format!("/api/users/{id}/deactivate"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["isActive"], false);
    assert!(r.body["deactivatedAt"].is_string(), "{}", r.text);

    // The still-unexpired access token no longer works.
    assert_status(&profile(c, access(&pair)).await, 401, "unauthorized");
    // Deactivation revoked every session, so the refresh token is simply invalid (401),
    // before the account's state is even looked at.
    assert_status(&refresh(c, refresh_token(&pair)).await, 401, "unauthorized");
    // The right password no longer logs in.
    assert_status(&login(c, email, PASSWORD).await, 403, "forbidden");
    // Nor can a password reset bring the account back.
    let before = {
        let mut sql = app.db.sql().await;
        all_messages(&mut sql).await
    };
    assert_eq!(request_reset(c, email).await.status, 202);
    let mut sql = app.db.sql().await;
    assert_eq!(all_messages(&mut sql).await, before, "no code for a deactivated account");

    app.stop().await;
}
