//! Nephrocare's REST API: poem + poem-openapi. Every operation is described in the OpenAPI
//! document (served at `/api/openapi.json`, browsable at `/docs`) with an explicit
//! operationId, so integrators can generate clients from it.
//!
//! The component is a library: [`run`] serves [`routes`] on a listener until `shutdown`
//! completes, then drains in-flight requests.

pub mod error;
mod health;

use std::future::Future;
use std::time::Duration;

use poem::endpoint::{make_sync, BoxEndpoint};
use poem::listener::TcpAcceptor;
use poem::middleware::Tracing;
use poem::{EndpointExt, Route, Server};
use poem_openapi::OpenApiService;
use sea_orm::DatabaseConnection;

pub use error::{ApiError, ErrorBody, ErrorResponse, FieldError};

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub db: DatabaseConnection,
}

type Apis = health::HealthApi;

fn apis() -> Apis {
    health::HealthApi
}

fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(), "Nephrocare API", env!("CARGO_PKG_VERSION"))
        .description(
            "REST API of the Nephrocare renal-care monitoring platform: accounts, devices, \
             patients, telemetry history and trends, alerts, chat and session bookings. \
             Errors always have the JSON body `ErrorBody` (`code`, `message`, `fields`).",
        )
        .server("/")
}

/// The OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi_json() -> String {
    service().spec()
}

/// All HTTP routes: the API, `/healthz`, `/readyz`, `/api/openapi.json` and `/docs`.
pub fn routes(state: ApiState) -> BoxEndpoint<'static> {
    let service = service();
    let docs = service.swagger_ui();
    let spec = service.spec();
    Route::new()
        .nest("/", service)
        .at(
            "/api/openapi.json",
            make_sync(move |_| poem::Response::builder().content_type("application/json").body(spec.clone())),
        )
        .nest("/docs", docs)
        .catch_all_error(error::catch_all)
        .data(state)
        .with(Tracing)
        .boxed()
}

/// Serves the API on `listener` until `shutdown` completes, then gives in-flight requests
/// up to 10 s to finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes(state), shutdown, Some(Duration::from_secs(10)))
        .await
}
