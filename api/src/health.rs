//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::payload::Json;

use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm_migration::MigratorTrait;

use crate::{ApiState, Tag};

/// How long readiness waits for the database: a probe must answer quickly even when the
/// database does not (the pool would wait up to its acquire timeout, 5 s by default).
const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct HealthStatus {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Why the service is not ready, when it is not.
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    /// Readiness: how many standbys confirm the database's commits synchronously. 0: what
    /// the service acknowledges is on the primary only (a single server, or a cluster whose
    /// standby is down: the primary keeps accepting writes); 1 or more: an acknowledged
    /// reading survives the loss of the primary.
    #[oai(skip_serializing_if_is_none)]
    pub synchronous_standbys: Option<i64>,
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
        Json(HealthStatus { status: "ok".into(), reason: None, synchronous_standbys: None })
    }

    /// Readiness: the database is reachable and its schema is current. Answers within a
    /// second: a database that does not answer in 0.8 s counts as unreachable. Says how many
    /// standbys confirm commits synchronously (`synchronousStandbys`).
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&ApiState>) -> ReadyResponse {
        let not_ready = |reason: String| {
            ReadyResponse::NotReady(Json(HealthStatus {
                status: "not_ready".into(),
                reason: Some(reason),
                synchronous_standbys: None,
            }))
        };
        let checks = async {
            // Also what a commit is worth: the standbys the primary waits for (their sync
            // state needs pg_monitor; without it none is counted).
            let synchronous: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")
                    .fetch_one(state.db.get_postgres_connection_pool())
                    .await
                    .map_err(|e| format!("database unreachable: {e}"))?;
            nc_metrics::get().db_synchronous_standbys.set(synchronous);
            let pending = nc_migration::Migrator::get_pending_migrations(&state.db)
                .await
                .map_err(|e| format!("cannot read migration status: {e}"))?;
            Ok::<_, String>((pending, synchronous))
        };
        match tokio::time::timeout(READY_CHECK_TIMEOUT, checks).await {
            Err(_) => {
                not_ready(format!("database unreachable: no answer within {} ms", READY_CHECK_TIMEOUT.as_millis()))
            }
            Ok(Err(reason)) => not_ready(reason),
            Ok(Ok((pending, synchronous))) if pending.is_empty() => ReadyResponse::Ready(Json(HealthStatus {
                status: "ready".into(),
                reason: None,
                synchronous_standbys: Some(synchronous),
            })),
            Ok(Ok((pending, _))) => {
                not_ready(format!("{} migration(s) pending: run `nephrocare migrate up`", pending.len()))
            }
        }
    }
}

/// `GET /metrics`: the service's metrics in the OpenMetrics text format (Prometheus scrapes
/// it), since this process started: publish→PUBACK and commit durations, readings accepted
/// and refused, writer queue depths, the derived data's lag and backlog, alarms raised and
/// escalated, HTTP request durations by route, the database pool, MQTT connections by kind
/// (README.md, section "Metrics"). Outside the OpenAPI document, like the probes of other
/// monitoring systems: its format is OpenMetrics', not a JSON API's.
#[poem::handler]
pub async fn metrics(state: Data<&ApiState>) -> poem::Response {
    let m = nc_metrics::get();
    let (machines, people) = state.mqtt.by_kind();
    m.mqtt_connections.get_or_create(&nc_metrics::Kind { kind: "machine" }).set(machines as i64);
    m.mqtt_connections.get_or_create(&nc_metrics::Kind { kind: "person" }).set(people as i64);
    const WRITERS: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
    for (i, depth) in state.ingest.queue_depths().into_iter().enumerate() {
        let writer = WRITERS.get(i).copied().unwrap_or("other");
        m.ingest_queue_depth.get_or_create(&nc_metrics::Writer { writer }).set(depth as i64);
    }
    for (i, backlog) in state.ingest.evaluation_backlogs().into_iter().enumerate() {
        let writer = WRITERS.get(i).copied().unwrap_or("other");
        m.alert_evaluation_backlog.get_or_create(&nc_metrics::Writer { writer }).set(backlog as i64);
    }
    if let Ok(n) = state.ingest.derived_backlog().await {
        m.derived_backlog_batches.set(n);
    }
    let pool = state.db.get_postgres_connection_pool();
    let (size, idle) = (i64::from(pool.size()), pool.num_idle() as i64);
    for (s, v) in [("in_use", size - idle), ("idle", idle), ("max", i64::from(pool.options().get_max_connections()))] {
        m.db_pool_connections.get_or_create(&nc_metrics::PoolState { state: s }).set(v);
    }
    poem::Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.encode())
}
