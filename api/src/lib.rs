//! Nephrocare's REST API: poem + poem-openapi. Every operation is described in the OpenAPI
//! document (served at `/api/openapi.json`, browsable at `/docs`) with an explicit
//! operationId, so integrators can generate clients from it.
//!
//! The component is a library: [`run`] serves [`routes`] on a listener until `shutdown`
//! completes, then drains in-flight requests.
//!
//! Robustness: request bodies are limited in size and time ([`limits`]), request headers in
//! time ([`server`]), every field by validators declared in the OpenAPI document
//! ([`validate`]); a panic in a handler is answered with 500 rather than a dropped
//! connection; the request log never shows a query string ([`request_log`]).

mod accounts;
mod alerts;
pub mod asyncapi;
mod bookings;
mod chat;
pub mod dashboard;
mod devices;
pub mod dto;
pub mod fhir;
mod gateways;
mod health;
pub mod http;
#[cfg(test)]
mod layout_test;
mod patients;
#[cfg(test)]
mod policy_lint;
mod records;
pub mod telemetry;
pub mod websockets_doc;

// The cross-cutting modules under their short names (`crate::error`, `nc_api::origin`, …).
pub use http::{contract, error, headers, limits, origin, request_log, security, server, state, strict_json, validate};
pub use telemetry::live;

use std::future::Future;
use std::time::Duration;

use poem::endpoint::{make_sync, BoxEndpoint};
use poem::middleware::CatchPanic;
use poem::{EndpointExt, IntoResponse, Route};
use poem_openapi::{OpenApiService, Tags};

pub use asyncapi::asyncapi_json;
pub use error::{ApiError, ErrorBody, ErrorResponse, FieldError};
pub use limits::HttpLimits;
pub use state::{ApiSettings, ApiState, Services, ThrottleSettings};

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
pub(crate) enum Tag {
    /// Process and dependency health and metrics, for orchestrators and monitoring.
    Health,
    /// Registration, login, tokens, verification and password reset.
    Auth,
    /// Accounts, profiles, staff management and device assignments.
    Users,
    /// Dialysis machines, their patients and sessions, hand-over between technicians.
    Devices,
    /// Patient records and medical information.
    Patients,
    /// Readings: posting (machines), current values, history, trends, sessions.
    Telemetry,
    /// Alarms: alerts, their acknowledgement, snooze, escalation and history, the unit's
    /// alarm burden, and the limits alerts are raised at.
    Alerts,
    /// Conversations between doctors and patients, and doctors and technicians.
    Chat,
    /// Dialysis session bookings: availability, recurring series, the unit's opening hours
    /// and maintenance windows.
    Bookings,
    /// Hospital interfaces: device gateways (machines reporting through HL7 v2, IHE PCD-01
    /// over MLLP) and where treatment records go (the EMR), set by the hospital's admins.
    Gateways,
}

/// Declares the API tuple type and the function building its value from one list, so the
/// two cannot drift apart (an API added to one but not the other).
macro_rules! apis {
    ($($api:path),+ $(,)?) => {
        /// Every group of operations served and described in the OpenAPI document, in order.
        type Apis = ($($api,)+);

        fn apis() -> Apis {
            ($($api,)+)
        }
    };
}

apis!(
    health::HealthApi,
    accounts::auth::AuthApi,
    accounts::users::UsersApi,
    devices::registry::DevicesApi,
    devices::maintenance::MaintenanceApi,
    devices::performance::PerformanceApi,
    patients::routes::PatientsApi,
    patients::account::PatientAccountApi,
    telemetry::routes::TelemetryApi,
    alerts::AlertsApi,
    alerts::ThresholdsApi,
    alerts::AlertManagerApi,
    chat::routes::ChatApi,
    bookings::routes::BookingsApi,
    gateways::GatewaysApi,
    records::RecordsApi,
);

fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(), "Nephrocare API", env!("CARGO_PKG_VERSION"))
        .description(
            "REST API of the Nephrocare renal-care monitoring platform: accounts, devices, \
             patients, telemetry history and trends, alerts, chat and session bookings. \
             Errors always have the JSON body `ErrorBody` (`code`, `message`, `fields`). \
             Request bodies are limited to 1 MiB by default (413 `payload_too_large`) and must \
             arrive within 30 s of their headers (408); every text field has a maximum length \
             and may not contain U+0000, and times lie between 1900 and 9999 (422 \
             `validation_failed`, naming the field). The MQTT contract is described by the \
             AsyncAPI document at `/api/asyncapi.json`. The read-only FHIR R4 API (`/fhir/r4`: \
             Patient, Device, Practitioner, Observation, Procedure, DetectedIssue, Bulk Data \
             `$export`) is described by its CapabilityStatement at `/fhir/r4/metadata` (see \
             `x-fhir`), not here: its resources and errors (OperationOutcome) are FHIR's.",
        )
        .server("/")
}

/// The OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi_json() -> String {
    contract::finish(&service().spec())
}

/// A panic in a handler: logged, and answered like any internal error.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> poem::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ErrorResponse::from(ApiError::Internal(format!("handler panicked: {what}"))).into_response()
}

/// All HTTP routes: the API, `/healthz`, `/readyz`, `/api/openapi.json`, `/api/asyncapi.json`
/// (the MQTT contract), `/docs`, and the web dashboard (`/`, `/assets/{name}`: see
/// [`dashboard`]).
pub fn routes(state: ApiState) -> BoxEndpoint<'static> {
    let service = service();
    let docs = headers::docs(service.swagger_ui_html());
    let spec = contract::finish(&service.spec());
    let methods = contract::Methods::from_spec(
        &spec,
        &[
            ("/api/openapi.json", "GET"),
            ("/api/asyncapi.json", "GET"),
            ("/metrics", "GET"),
            ("/ws/health-metrics/{deviceId}", "GET"),
            ("/ws/chat/{roomId}", "GET"),
            ("/", "GET"),
            ("/assets/{name}", "GET"),
        ]
        .into_iter()
        .chain(fhir::METHODS.iter().copied())
        .collect::<Vec<_>>(),
    );
    let request_schemas = strict_json::RequestSchemas::from_spec(&spec);
    let asyncapi = asyncapi_json();
    let limits = state.limits.clone();
    Route::new()
        .nest("/", service)
        .at(
            "/api/openapi.json",
            make_sync(move |_| poem::Response::builder().content_type("application/json").body(spec.clone())),
        )
        .at(
            "/api/asyncapi.json",
            make_sync(move |_| poem::Response::builder().content_type("application/json").body(asyncapi.clone())),
        )
        .nest("/docs", Route::new().at("/", docs))
        .nest("/fhir/r4", fhir::routes())
        .at("/metrics", poem::get(health::metrics))
        .at("/ws/health-metrics/:deviceId", poem::get(telemetry::live::health_metrics))
        .at("/ws/chat/:roomId", poem::get(chat::ws::chat))
        .with(contract::PathParamNames(methods.clone()))
        .with(dashboard::Pages(state.dashboard.clone()))
        .catch_all_error(error::catch_all)
        .data(state)
        .with(CatchPanic::new().with_handler(panicked))
        .with(strict_json::StrictJson(request_schemas))
        .with(contract::AllowHeader(methods.clone()))
        .with(limits::BodyLimit::new(limits))
        .with(headers::SecurityHeaders)
        .with(request_log::RequestLog(methods))
        .boxed()
}

/// Serves the API on `listener` until `shutdown` completes, then gives in-flight requests
/// up to 10 s to finish. Limits come from the state's [`HttpLimits`].
pub async fn run(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    // Forget throttling keys whose limits have replenished, so memory stays bounded.
    let throttle = state.throttle.clone();
    let chat = state.chat.clone();
    let tidy = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            throttle.tidy();
            chat.tidy();
        }
    });
    let limits = state.limits.clone();
    let result = server::serve(listener, routes(state), limits, shutdown, Duration::from_secs(10)).await;
    tidy.abort();
    result
}
