//! The FHIR API's one error type, [`FhirError`], and the one place it becomes a response: an
//! `OperationOutcome` with the HTTP status FHIR's RESTful API gives it. Errors raised outside
//! the handlers under `/fhir/r4` (unknown paths, wrong methods) get the same body
//! ([`catch_all`]). Internal errors are logged and answered with a generic message.

use poem::http::{header, HeaderValue, StatusCode};
use poem::{IntoResponse, Response};
use serde_json::{json, Value};

/// The media type of every FHIR answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// What can go wrong under `/fhir/r4`, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// A search parameter, id or value that cannot be used (400, issue `invalid`).
    #[error("{0}")]
    Invalid(String),
    /// A search parameter or interaction this server does not offer (400, `not-supported`).
    #[error("{0}")]
    NotSupported(String),
    /// No valid access token (401, `login`).
    #[error("{0}")]
    Unauthorized(String),
    /// Visible, but not for this caller (403, `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource, or one the caller may not know exists (404, `not-found`).
    #[error("{0}")]
    NotFound(String),
    /// The database is unavailable (503, `transient`).
    #[error("{0}")]
    Unavailable(String),
    /// An unexpected failure (500, `exception`); logged.
    #[error("{0}")]
    Internal(String),
}

impl FhirError {
    pub fn internal(context: impl std::fmt::Display) -> Self {
        FhirError::Internal(context.to_string())
    }

    /// A policy refusal about a `what` (e.g. "Patient"): 404 across hospitals, else 403.
    pub fn policy(e: nc_access::PolicyError, what: &str) -> Self {
        match e {
            nc_access::PolicyError::Denied(d) => FhirError::denied(d, what),
            nc_access::PolicyError::Db(db) => db.into(),
        }
    }

    pub fn denied(d: nc_access::Denied, what: &str) -> Self {
        match d {
            nc_access::Denied::NotFound => FhirError::NotFound(format!("{what} not found")),
            nc_access::Denied::Forbidden(why) => FhirError::Forbidden(why.to_owned()),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            FhirError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            FhirError::NotSupported(_) => (StatusCode::BAD_REQUEST, "not-supported"),
            FhirError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "login"),
            FhirError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            FhirError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            FhirError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
            FhirError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
        }
    }
}

impl From<sea_orm::DbErr> for FhirError {
    fn from(e: sea_orm::DbErr) -> Self {
        match e {
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => FhirError::Unavailable(e.to_string()),
            other => FhirError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for FhirError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                FhirError::Unavailable(e.to_string())
            }
            other => FhirError::Internal(other.to_string()),
        }
    }
}

/// An `OperationOutcome` with one issue.
pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    })
}

/// A FHIR JSON answer.
pub fn fhir_response(status: StatusCode, body: &Value) -> Response {
    Response::builder().status(status).content_type(FHIR_JSON).body(body.to_string())
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let diagnostics = match &self {
            FhirError::Internal(detail) => {
                tracing::error!(%detail, "FHIR: internal error");
                "internal error; it has been logged".to_owned()
            }
            FhirError::Unavailable(detail) => {
                tracing::warn!(%detail, "FHIR: dependency unavailable");
                "the service is temporarily unavailable; retry later".to_owned()
            }
            other => other.to_string(),
        };
        let mut resp = fhir_response(status, &operation_outcome("error", code, &diagnostics));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

/// Errors raised outside the handlers (an unknown path, a wrong method, a body too large):
/// the same `OperationOutcome`.
pub(crate) async fn catch_all(err: poem::Error) -> Response {
    let status = err.status();
    let e = match status {
        StatusCode::NOT_FOUND => FhirError::NotFound("no such FHIR endpoint; see /fhir/r4/metadata".into()),
        // `contract::AllowHeader` adds `Allow`.
        StatusCode::METHOD_NOT_ALLOWED => {
            return fhir_response(
                status,
                &operation_outcome(
                    "error",
                    "not-supported",
                    "this interaction is not supported; see /fhir/r4/metadata",
                ),
            );
        }
        s if s.is_server_error() => FhirError::Internal(err.to_string()),
        _ => {
            return fhir_response(status, &operation_outcome("error", "invalid", &err.to_string()));
        }
    };
    e.into_response()
}
