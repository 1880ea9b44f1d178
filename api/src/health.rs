//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::payload::Json;
use std::sync::atomic::Ordering;

use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::ConnectionTrait;
use sea_orm_migration::MigratorTrait;

use crate::{ApiState, Tag};

/// How long readiness waits for the database: a probe must answer quickly even when the
/// database does not (the pool would wait up to its acquire timeout, 5 s by default).
const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

#[derive(Object)]
pub struct HealthStatus {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Why the service is not ready, when it is not.
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database is reachable and every migration is applied.
    #[oai(status = 200)]
    Ready(Json<HealthStatus>),
    /// Not ready; `reason` says which check failed.
    #[oai(status = 503)]
    NotReady(Json<HealthStatus>),
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Liveness: the process is up and serving HTTP.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<HealthStatus> {
        Json(HealthStatus { status: "ok".into(), reason: None })
    }

    /// Counters in the Prometheus text format: readings accepted and rejected by ingest
    /// (over MQTT and HTTP, since this process started) and live MQTT connections.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&ApiState>) -> PlainText<String> {
        let counters = state.ingest.counters();
        PlainText(format!(
            "# HELP nephrocare_readings_accepted_total Readings committed to storage.\n\
             # TYPE nephrocare_readings_accepted_total counter\n\
             nephrocare_readings_accepted_total {}\n\
             # HELP nephrocare_readings_rejected_total Readings refused (invalid, or a seq already taken by another reading; never stored).\n\
             # TYPE nephrocare_readings_rejected_total counter\n\
             nephrocare_readings_rejected_total {}\n\
             # HELP nephrocare_mqtt_connections Live MQTT client connections.\n\
             # TYPE nephrocare_mqtt_connections gauge\n\
             nephrocare_mqtt_connections {}\n",
            counters.accepted.load(Ordering::Relaxed),
            counters.rejected.load(Ordering::Relaxed),
            state.mqtt.len()
        ))
    }

    /// Readiness: the database is reachable and its schema is current. Answers within a
    /// second: a database that does not answer in 0.8 s counts as unreachable.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&ApiState>) -> ReadyResponse {
        let not_ready = |reason: String| {
            ReadyResponse::NotReady(Json(HealthStatus { status: "not_ready".into(), reason: Some(reason) }))
        };
        let checks = async {
            state.db.execute_unprepared("SELECT 1").await.map_err(|e| format!("database unreachable: {e}"))?;
            nc_migration::Migrator::get_pending_migrations(&state.db)
                .await
                .map_err(|e| format!("cannot read migration status: {e}"))
        };
        match tokio::time::timeout(READY_CHECK_TIMEOUT, checks).await {
            Err(_) => {
                not_ready(format!("database unreachable: no answer within {} ms", READY_CHECK_TIMEOUT.as_millis()))
            }
            Ok(Err(reason)) => not_ready(reason),
            Ok(Ok(pending)) if pending.is_empty() => {
                ReadyResponse::Ready(Json(HealthStatus { status: "ready".into(), reason: None }))
            }
            Ok(Ok(pending)) => {
                not_ready(format!("{} migration(s) pending: run `nephrocare migrate up`", pending.len()))
            }
        }
    }
}
