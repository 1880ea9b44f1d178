//! The API's one error type and the one place it becomes an HTTP response.
//!
//! Handlers return `Result<T, ErrorResponse>`; anything that can go wrong converts into
//! [`ApiError`] and from there into [`ErrorResponse`], whose every variant carries the same
//! JSON body, [`ErrorBody`]. Internal errors are logged with their context and answered
//! with a generic message: internals never reach the client.

use poem::http::StatusCode;
use poem::IntoResponse;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The body of every error response.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `validation_failed`, `not_found`, `rate_limited`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Per-field problems: for validation errors (422), and the fields a caller may not
    /// change (403).
    #[oai(skip_serializing_if_is_empty, default)]
    pub fields: Vec<FieldError>,
    /// What the request collided with, for conflicts (409) about times: the booking in
    /// the way, or the occurrences of a series that could not be booked.
    #[oai(skip_serializing_if_is_empty, default)]
    pub conflicts: Vec<ConflictOut>,
}

/// One time a request collided with something.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct ConflictOut {
    pub reason: nc_domain::ConflictReason,
    /// The start asked for, if it exists.
    pub scheduled_date: Option<chrono::DateTime<chrono::Utc>>,
    /// The local date (occurrences of a series).
    pub date: Option<chrono::NaiveDate>,
    /// The booking in the way, if any.
    pub booking_id: Option<nc_domain::BookingId>,
}

/// One invalid field of a request.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field, as named in the request (JSON property or parameter name).
    pub field: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into(), fields: Vec::new(), conflicts: Vec::new() }
    }
}

/// Error responses of every operation.
#[derive(ApiResponse, Debug)]
pub enum ErrorResponse {
    /// The request is malformed: unparsable JSON, a wrong type, an unknown field.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The request's body was not received in time (`http.body_read_timeout_secs`).
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// Authenticated, but this caller may not do this to this object.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such object (or one the caller may not know exists).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state (duplicate, overlapping booking...).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request's body is larger than the limit (`http.max_body_bytes`, 1 MiB by default).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Well-formed, but a value breaks a rule (too long, out of range, a NUL character...);
    /// `fields` names each offending field.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many attempts; retry after the number of seconds in `Retry-After`.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// An unexpected failure; it has been logged.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (the database) is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// What every operation returns.
pub type ApiResult<T> = std::result::Result<T, ErrorResponse>;

/// The answer of an operation that returns nothing.
#[derive(ApiResponse, Debug)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// What can go wrong in a handler, by meaning rather than by HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Fields of the request the caller may not change (403, naming each in `fields`).
    #[error("forbidden fields")]
    ForbiddenFields(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    /// A conflict about times, naming what is in the way.
    #[error("conflict: {message}")]
    Collision { code: &'static str, message: String, conflicts: Vec<ConflictOut> },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body not received within {0:?}")]
    RequestTimeout(std::time::Duration),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    pub fn internal(context: impl std::fmt::Display) -> Self {
        ApiError::Internal(context.to_string())
    }
}

impl ApiError {
    /// A policy refusal about a `what` (e.g. "device"): 404 across hospitals, else 403.
    pub fn policy(e: nc_access::PolicyError, what: &'static str) -> Self {
        match e {
            nc_access::PolicyError::Denied(nc_access::Denied::NotFound) => ApiError::NotFound(what),
            nc_access::PolicyError::Denied(nc_access::Denied::Forbidden(why)) => ApiError::Forbidden(why.to_owned()),
            nc_access::PolicyError::Db(db) => db.into(),
        }
    }
}

impl From<nc_chat::ChatError> for ApiError {
    fn from(e: nc_chat::ChatError) -> Self {
        use nc_chat::ChatError;
        match e {
            ChatError::NotFound(what) => ApiError::NotFound(what),
            ChatError::Forbidden(why) => ApiError::Forbidden(why),
            ChatError::Invalid { field, message } => ApiError::field(field, message),
            ChatError::RateLimited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            ChatError::Db(e) => e.into(),
        }
    }
}

impl From<nc_bookings::BookingError> for ApiError {
    fn from(e: nc_bookings::BookingError) -> Self {
        use nc_bookings::BookingError;
        match e {
            BookingError::NotFound(what) => ApiError::NotFound(what),
            BookingError::Forbidden(why) => ApiError::Forbidden(why),
            BookingError::Invalid { field, message } => ApiError::field(field, message),
            BookingError::Conflict { code, message, conflicts } => {
                ApiError::Collision { code, message, conflicts: conflicts_out(conflicts) }
            }
            BookingError::Db(e) => e.into(),
        }
    }
}

impl From<nc_gateways::GatewayError> for ApiError {
    fn from(e: nc_gateways::GatewayError) -> Self {
        use nc_gateways::GatewayError;
        match e {
            GatewayError::NotFound => ApiError::NotFound("gateway"),
            GatewayError::Conflict(why) => ApiError::Conflict { code: "gateway_exists", message: why.to_owned() },
            GatewayError::Invalid { field, message } => ApiError::field(&field, message),
            GatewayError::Db(e) => e.into(),
        }
    }
}

impl From<nc_records::RecordsError> for ApiError {
    fn from(e: nc_records::RecordsError) -> Self {
        match e {
            nc_records::RecordsError::Invalid { field, message } => ApiError::field(field, message),
            nc_records::RecordsError::Db(e) => e.into(),
        }
    }
}

impl From<nc_care::CareError> for ApiError {
    fn from(e: nc_care::CareError) -> Self {
        use nc_care::CareError;
        match e {
            CareError::NotFound(what) => ApiError::NotFound(what),
            CareError::Invalid { field, message } => ApiError::field(field, message),
            CareError::Conflict { code, message } => ApiError::Conflict { code, message },
            CareError::Unauthenticated(why) => ApiError::Unauthorized(why),
            CareError::AccountRefused(why) => ApiError::Forbidden(why),
            CareError::Db(e) => e.into(),
            CareError::Password(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from_sqlx(&e)
    }
}

impl ApiError {
    /// The one mapping of a database failure, whichever path (sqlx, or sea-orm over sqlx)
    /// it came through: unreachable or busy is 503; an error PostgreSQL reported is
    /// classified by its SQLSTATE and constraint name ([`ApiError::from_database`]).
    fn from_sqlx(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                ApiError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) => ApiError::from_database(db.as_ref()),
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// An error PostgreSQL reported, by SQLSTATE (appendix A of its manual) and, for
    /// constraints, by the constraint's name (named in the migrations so this can match):
    /// - a unique or exclusion violation is the caller's conflict (409): a known constraint
    ///   with its own code ([`CONFLICTS`]), any other as `conflict`;
    /// - a CHECK, NOT NULL or foreign-key violation, a value too long or out of range, or
    ///   text PostgreSQL cannot store (U+0000) is a rule about the input that a handler failed
    ///   to check first: still the client's 422, never a 500;
    /// - a serialization failure or deadlock, too many connections, a server shutting down
    ///   or in recovery (read-only) is 503: retry later;
    /// - anything else is ours (500, logged).
    pub fn from_database(db: &dyn sqlx::error::DatabaseError) -> Self {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let constraint = db.constraint().unwrap_or("");
        match code.as_str() {
            "23505" | "23P01" => match CONFLICTS.iter().find(|(name, ..)| *name == constraint) {
                Some((_, code, message)) => ApiError::Conflict { code, message: (*message).to_owned() },
                None => ApiError::Conflict {
                    code: "conflict",
                    message: format!("conflicts with an existing record ({constraint})"),
                },
            },
            "23514" => ApiError::field("request", format!("breaks the rule {constraint}")),
            "23502" => ApiError::field("request", "a required value is missing"),
            "23503" => ApiError::field("request", format!("refers to something that does not exist ({constraint})")),
            "22021" | "22P05" => ApiError::field("request", "text must not contain the NUL character (\\u0000)"),
            "22001" => ApiError::field("request", "a value is longer than its limit"),
            "22003" => ApiError::field("request", "a number is out of range"),
            "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" | "25006" => {
                ApiError::Unavailable(db.message().to_owned())
            }
            c if c.starts_with("08") => ApiError::Unavailable(db.message().to_owned()),
            _ => ApiError::Internal(format!("{code}: {}", db.message())),
        }
    }
}

impl From<nc_alarms::AlarmError> for ApiError {
    fn from(e: nc_alarms::AlarmError) -> Self {
        use nc_alarms::AlarmError;
        match e {
            AlarmError::NotFound => ApiError::NotFound("alert"),
            AlarmError::AlreadyCleared => {
                ApiError::Conflict { code: "already_cleared", message: AlarmError::AlreadyCleared.to_string() }
            }
            AlarmError::ConditionPersists => {
                ApiError::Conflict { code: "condition_persists", message: AlarmError::ConditionPersists.to_string() }
            }
            AlarmError::Invalid { field, message } => ApiError::field(field, message),
            AlarmError::Db(e) => e.into(),
        }
    }
}

/// Booking conflicts as the API shows them.
pub(crate) fn conflicts_out(conflicts: Vec<nc_bookings::Conflict>) -> Vec<ConflictOut> {
    conflicts
        .into_iter()
        .map(|c| ConflictOut { reason: c.reason, scheduled_date: c.start, date: c.date, booking_id: c.booking })
        .collect()
}

/// Unique constraints whose violation is the caller's conflict (409) with a code of its own:
/// (constraint, code, message). Constraints are named in the migrations so this can match.
const CONFLICTS: &[(&str, &str, &str)] = &[
    ("users_email_key", "email_taken", "an account with this e-mail exists"),
    ("devices_hospital_serial_key", "serial_taken", "a device with this serial exists in your hospital"),
    ("patients_hospital_number_key", "patient_number_taken", "this patient number exists in your hospital"),
    ("patients_user_key", "user_already_linked", "this account already belongs to a patient record"),
    ("device_assignments_active_key", "already_assigned", "this user is already assigned to this device"),
];

impl From<nc_access::Denied> for ApiError {
    fn from(d: nc_access::Denied) -> Self {
        match d {
            nc_access::Denied::NotFound => ApiError::NotFound("resource"),
            nc_access::Denied::Forbidden(why) => ApiError::Forbidden(why.to_owned()),
        }
    }
}

impl From<nc_access::password::PasswordError> for ApiError {
    fn from(e: nc_access::password::PasswordError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::{DbErr, RuntimeErr};
        match &e {
            DbErr::ConnectionAcquire(_) => ApiError::Unavailable(e.to_string()),
            DbErr::Conn(RuntimeErr::SqlxError(inner))
            | DbErr::Exec(RuntimeErr::SqlxError(inner))
            | DbErr::Query(RuntimeErr::SqlxError(inner)) => ApiError::from_sqlx(inner),
            DbErr::Conn(_) => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized(m) => {
                ErrorResponse::Unauthorized(Json(ErrorBody::new("unauthorized", m)), "Bearer".to_owned())
            }
            ApiError::Forbidden(m) => ErrorResponse::Forbidden(Json(ErrorBody::new("forbidden", m))),
            ApiError::ForbiddenFields(fields) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                let message = format!("you may not change {}", names.join(", "));
                ErrorResponse::Forbidden(Json(ErrorBody { fields, ..ErrorBody::new("forbidden", message) }))
            }
            ApiError::NotFound(what) => {
                ErrorResponse::NotFound(Json(ErrorBody::new("not_found", format!("{what} not found"))))
            }
            ApiError::Conflict { code, message } => ErrorResponse::Conflict(Json(ErrorBody::new(code, message))),
            ApiError::Collision { code, message, conflicts } => {
                ErrorResponse::Conflict(Json(ErrorBody { conflicts, ..ErrorBody::new(code, message) }))
            }
            ApiError::Validation(fields) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                let message = format!("invalid value for {}", names.join(", "));
                ErrorResponse::Unprocessable(Json(ErrorBody { fields, ..ErrorBody::new("validation_failed", message) }))
            }
            ApiError::PayloadTooLarge { limit } => ErrorResponse::PayloadTooLarge(Json(ErrorBody::new(
                "payload_too_large",
                format!("the request body is larger than the limit of {limit} bytes"),
            ))),
            ApiError::RequestTimeout(after) => ErrorResponse::RequestTimeout(Json(ErrorBody::new(
                "request_timeout",
                format!("the request body was not received within {} s", after.as_secs_f64()),
            ))),
            ApiError::RateLimited { retry_after_secs } => ErrorResponse::TooManyRequests(
                Json(ErrorBody::new("rate_limited", format!("too many attempts; retry in {retry_after_secs} s"))),
                retry_after_secs,
            ),
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "dependency unavailable");
                ErrorResponse::Unavailable(Json(ErrorBody::new(
                    "unavailable",
                    "the service is temporarily unavailable; retry later",
                )))
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ErrorResponse::Internal(Json(ErrorBody::new("internal", "internal error; it has been logged")))
            }
        }
    }
}

/// `?` in handlers: every error that converts into an [`ApiError`] converts into a response.
macro_rules! via_api_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ErrorResponse {
            fn from(e: $t) -> Self {
                ApiError::from(e).into()
            }
        }
    )*};
}
via_api_error!(
    sea_orm::DbErr,
    nc_records::RecordsError,
    nc_gateways::GatewayError,
    sqlx::Error,
    nc_access::Denied,
    nc_access::password::PasswordError,
    nc_bookings::BookingError,
    nc_alarms::AlarmError,
    nc_care::CareError
);

/// A path parameter that does not parse, named as the document names it (poem-openapi
/// itself says `param0`; see `contract::PathParamNames`).
#[derive(Debug, thiserror::Error)]
#[error("failed to parse path parameter `{name}`: {reason}")]
pub struct PathParamError {
    pub name: String,
    pub reason: String,
}

impl poem::error::ResponseError for PathParamError {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// poem-openapi says e.g. `failed to parse "..." : ... (occurred while parsing "age")` or
/// `Failed to parse parameter "limit"`: pull the quoted name out.
fn field_from_message(message: &str) -> Option<String> {
    for marker in ["while parsing \"", "parameter `", "parameter \"", "field `", "field \""] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start + marker.len()..];
            let end = rest.find(['"', '`'])?;
            return Some(rest[..end].to_owned());
        }
    }
    None
}

/// poem-openapi's text for a value that fails a declared validator.
const VERIFICATION_FAILED: &str = "verification failed. ";

/// A validator's rule, as poem-openapi prints it (`maxLength(200)`, `maximum(200, exclusive:
/// false)`...), as words for the client. Our own validators already print words.
fn describe(rule: &str) -> String {
    let rule = rule.split(" (occurred while parsing").next().unwrap_or(rule).trim();
    let arg = |name: &str| rule.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')');
    let bound = |args: &str| match args.split_once(", exclusive: ") {
        Some((n, "true")) => (n.to_owned(), true),
        Some((n, _)) => (n.to_owned(), false),
        None => (args.to_owned(), false),
    };
    if let Some(n) = arg("maxLength") {
        format!("must be at most {n} characters")
    } else if let Some(n) = arg("minLength") {
        format!("must be at least {n} characters")
    } else if let Some(n) = arg("maxItems") {
        format!("must have at most {n} items")
    } else if let Some(args) = arg("maximum") {
        match bound(args) {
            (n, true) => format!("must be less than {n}"),
            (n, false) => format!("must be at most {n}"),
        }
    } else if let Some(args) = arg("minimum") {
        match bound(args) {
            (n, true) => format!("must be greater than {n}"),
            (n, false) => format!("must be at least {n}"),
        }
    } else if let Some(p) = arg("pattern") {
        format!("must match the pattern {p}")
    } else {
        rule.to_owned()
    }
}

/// A value that parsed but broke a declared validator (too long, out of range, a NUL
/// character...): the field and what is wrong with it.
fn validation_failure(err: &poem::Error) -> Option<FieldError> {
    use poem_openapi::error::{ParseParamError, ParseRequestPayloadError};
    if let Some(p) = err.downcast_ref::<ParseParamError>() {
        let rule = p.reason.strip_prefix(VERIFICATION_FAILED)?;
        return Some(FieldError { field: p.name.to_owned(), message: describe(rule) });
    }
    let p = err.downcast_ref::<ParseRequestPayloadError>()?;
    let at = p.reason.find(VERIFICATION_FAILED)?;
    let field = field_from_message(&p.reason[..at])?;
    Some(FieldError { field, message: describe(&p.reason[at + VERIFICATION_FAILED.len()..]) })
}

/// Errors raised outside the operations' own code get the same JSON body: request parsing
/// (bad JSON, a wrong type, a missing or unknown field, a bad parameter: 400 naming the
/// field; a value breaking a declared validator: 422 naming the field), authentication
/// (401), unknown paths (404), wrong methods (405), unsupported media types (415).
pub(crate) async fn catch_all(err: poem::Error) -> poem::Response {
    // An `ErrorResponse` returned by an operation is already a complete response.
    if err.is_from_response() {
        return err.into_response();
    }
    if let Some(field) = validation_failure(&err) {
        return ErrorResponse::from(ApiError::Validation(vec![field])).into_response();
    }
    let status = err.status();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(error = %err, "dependency unavailable");
        "the service is temporarily unavailable; retry later".to_owned()
    } else if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "internal error; it has been logged".to_owned()
    } else {
        err.to_string()
    };
    let mut body = serde_json::json!({ "code": code, "message": message });
    if status == StatusCode::BAD_REQUEST {
        // A parameter's own error knows its name; the message may also name a type.
        let param = err
            .downcast_ref::<poem_openapi::error::ParseParamError>()
            .map(|p| p.name.to_owned())
            .or_else(|| err.downcast_ref::<PathParamError>().map(|p| p.name.clone()))
            .or_else(|| err.downcast_ref::<poem_openapi::error::ParsePathError>().map(|p| p.name.to_owned()));
        if let Some(field) = param.or_else(|| field_from_message(&message)) {
            body["fields"] = serde_json::json!([{ "field": field, "message": message }]);
        }
    }
    let mut response = poem::web::Json(body).with_status(status).into_response();
    if status == StatusCode::UNAUTHORIZED {
        // RFC 9110 §11.6.1: a 401 names the scheme to authenticate with.
        response
            .headers_mut()
            .insert(poem::http::header::WWW_AUTHENTICATE, poem::http::HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_pulled_from_poem_messages() {
        assert_eq!(
            field_from_message(
                r#"parse request payload error: failed to parse "X": Expected input type "integer" (occurred while parsing "age")"#
            ),
            Some("age".into())
        );
        assert_eq!(field_from_message("no field here"), None);
    }

    #[test]
    fn validator_rules_read_as_words() {
        assert_eq!(describe("maxLength(200)"), "must be at most 200 characters");
        assert_eq!(describe("maximum(200, exclusive: false)"), "must be at most 200");
        assert_eq!(describe("minimum(0, exclusive: true)"), "must be greater than 0");
        assert_eq!(describe(r#"maxLength(4000) (occurred while parsing "X")"#), "must be at most 4000 characters");
        assert_eq!(describe("must not contain the NUL character"), "must not contain the NUL character");
    }
}
