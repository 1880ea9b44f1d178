//! Runs the components in one process: binds every listener (port 0 is honoured and the
//! bound address logged), connects to the database, then runs the API and the broker until
//! one shutdown signal stops them all, each draining its in-flight work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{redact_url, Config};

/// Why the service could not start. Each message says which setting and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot connect to the database at {url} (DATABASE_URL): {reason}. \
         Is PostgreSQL running? Run scripts/provision-db.sh, or set DATABASE_URL."
    )]
    Database { url: String, reason: String },
    #[error("the database schema is not current: {pending} migration(s) pending. Run `nephrocare migrate up` (or `serve --migrate`).")]
    MigrationsPending { pending: usize },
    #[error("cannot listen on {addr} ({setting}): {reason}. Choose another address or free the port.")]
    Bind { setting: &'static str, addr: SocketAddr, reason: String },
    #[error("invalid TLS setting: {0}. Give a PEM certificate chain and its PEM private key.")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

/// Settings of every database session the service opens (and the benchmarks', so that they
/// time statements as the service runs them). The service's statements are short and
/// repeated: compiling one with JIT costs more than it saves (300 ms of CPU per run of the
/// session sweep; the ingest statement at 2,000 readings ran at half the rate with it), and
/// PostgreSQL does not keep the compiled code between executions.
pub const SESSION_SETTINGS: [(&str, &str); 1] = [("jit", "off")];

/// Connects to the database named by the configuration, failing fast with a clear message
/// (to the primary, when `DATABASE_URL` names several hosts: see [`crate::db`]).
pub async fn connect(config: &Config) -> Result<DatabaseConnection, StartError> {
    connect_following(config).await.map(|(db, _)| db)
}

/// As [`connect`], with what follows the primary when there are several hosts.
pub async fn connect_following(
    config: &Config,
) -> Result<(DatabaseConnection, Option<Arc<crate::db::Primary>>), StartError> {
    let url = config.database.url.expose();
    let failed =
        |reason: String| StartError::Database { url: redact_url(url), reason: reason.replace(url, &redact_url(url)) };
    if let Some(hosts) = crate::db::Hosts::parse(url).map_err(failed)? {
        let settings = crate::db::PoolSettings {
            max_connections: config.database.max_connections,
            connect_timeout: Duration::from_secs(config.database.connect_timeout_secs),
            session: &SESSION_SETTINGS,
        };
        let (db, primary) = crate::db::connect_primary(hosts, &settings).await.map_err(failed)?;
        return Ok((db, Some(primary)));
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.database.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(config.database.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(config.database.connect_timeout_secs))
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(|o| o.options(SESSION_SETTINGS));
    Database::connect(options).await.map(|db| (db, None)).map_err(|e| failed(e.to_string()))
}

/// The service, configured but not started.
pub struct App {
    config: Config,
    migrate: bool,
    sink: Option<Arc<dyn nc_messaging::TelemetrySink>>,
    broker: nc_broker::BrokerSettings,
    ingest: nc_ingest::IngestSettings,
    chat: nc_chat::ChatSettings,
}

/// A started service: its bound addresses and the handle that stops it.
pub struct RunningApp {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub mqtt_ws_addr: SocketAddr,
    /// The alert managers' status listener (IHE PCD-05 over MLLP), when configured.
    pub acm_addr: Option<SocketAddr>,
    /// The device gateways' listener (IHE PCD-01 over MLLP), when `NEPHROCARE_HL7_LISTEN_ADDR` is set.
    pub hl7_addr: Option<SocketAddr>,
    pub db: DatabaseConnection,
    shutdown: CancellationToken,
    tasks: JoinSet<(&'static str, std::io::Result<()>)>,
}

async fn bind(setting: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind { setting, addr, reason: e.to_string() })
}

impl App {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            migrate: false,
            sink: None,
            broker: nc_broker::BrokerSettings::default(),
            ingest: nc_ingest::IngestSettings::default(),
            chat: nc_chat::ChatSettings::default(),
        }
    }

    /// Stores device messages through `sink` instead of the ingest pipeline (tests of the
    /// broker's acknowledge-after-commit contract).
    pub fn with_sink(mut self, sink: Arc<dyn nc_messaging::TelemetrySink>) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn with_broker_settings(mut self, settings: nc_broker::BrokerSettings) -> Self {
        self.broker = settings;
        self
    }

    pub fn with_chat_settings(mut self, settings: nc_chat::ChatSettings) -> Self {
        self.chat = settings;
        self
    }

    pub fn with_ingest_settings(mut self, settings: nc_ingest::IngestSettings) -> Self {
        self.ingest = settings;
        self
    }

    /// Apply pending migrations at startup instead of refusing to start.
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Connects, checks the schema, binds every listener and starts the components.
    pub async fn start(self) -> Result<RunningApp, StartError> {
        let config = self.config;
        let (db, primary) = connect_following(&config).await?;
        if self.migrate {
            nc_migration::Migrator::up(&db, None)
                .await
                .map_err(|e| StartError::Other(format!("migration failed: {e}")))?;
        }
        let pending = nc_migration::Migrator::get_pending_migrations(&db)
            .await
            .map_err(|e| StartError::Other(format!("cannot read the migration status: {e}")))?
            .len();
        if pending > 0 {
            return Err(StartError::MigrationsPending { pending });
        }

        let http = bind("NEPHROCARE_HTTP_ADDR", config.http.addr).await?;
        let mqtt = bind("NEPHROCARE_MQTT_ADDR", config.mqtt.addr).await?;
        let mqtt_ws = bind("NEPHROCARE_MQTT_WS_ADDR", config.mqtt.ws_addr).await?;
        let local = |l: &TcpListener| l.local_addr().map_err(|e| StartError::Other(e.to_string()));
        let (http_addr, mqtt_addr, mqtt_ws_addr) = (local(&http)?, local(&mqtt)?, local(&mqtt_ws)?);
        let acm = match config.alarms.acm_listen_addr {
            Some(addr) => Some(bind("NEPHROCARE_ACM_LISTEN_ADDR", addr).await?),
            None => None,
        };
        let acm_addr = acm.as_ref().map(local).transpose()?;
        let hl7 = match config.hl7.listen_addr {
            Some(addr) => Some(bind("NEPHROCARE_HL7_LISTEN_ADDR", addr).await?),
            None => None,
        };
        let hl7_addr = hl7.as_ref().map(local).transpose()?;
        let hl7_tls = match (&config.hl7.tls_cert, &config.hl7.tls_key) {
            (Some(cert), Some(key)) => {
                Some(nc_hl7::server::tls_acceptor(cert, key, config.hl7.tls_client_ca.as_deref()).map_err(|e| {
                    StartError::Tls(format!(
                        "{e} (NEPHROCARE_HL7_TLS_CERT / NEPHROCARE_HL7_TLS_KEY / NEPHROCARE_HL7_TLS_CLIENT_CA)"
                    ))
                })?)
            }
            (None, None) if config.hl7.tls_client_ca.is_none() => None,
            _ => {
                return Err(StartError::Tls(
                    "MLLP over TLS needs both NEPHROCARE_HL7_TLS_CERT and NEPHROCARE_HL7_TLS_KEY".into(),
                ))
            }
        };

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        if let Some(primary) = primary {
            // Several database hosts: the pool follows the primary.
            let following = primary.run(Duration::from_secs(1), shutdown.clone());
            tasks.spawn(async move {
                ("database primary", following.await.map_err(|e| std::io::Error::other(e.to_string())))
            });
        }

        let jwt_secret = if config.auth.jwt_secret.is_empty() {
            tracing::warn!(
                "NEPHROCARE_JWT_SECRET is not set: using a random signing key, so tokens end with this process \
                 and other instances will not accept them. Set it in production."
            );
            nc_access::secret::random_token().into_bytes()
        } else {
            config.auth.jwt_secret.expose().as_bytes().to_vec()
        };
        let tokens = nc_access::token::TokenKeys::new(&jwt_secret, config.auth.access_token_ttl_secs);
        let authn = nc_access::authn::Authenticator::new(db.clone(), tokens);

        // The transport's outbound half first (core, service publisher, node bus, presence,
        // live connections): every capability is built with what it publishes through, so
        // nothing is attached later and nothing published before is lost.
        let mut broker_settings = self.broker;
        let broker_tls = config.mqtt.tls_cert.is_some() && config.mqtt.tls_key.is_some();
        if let (Some(cert), Some(key)) = (&config.mqtt.tls_cert, &config.mqtt.tls_key) {
            let tls = nc_broker::transport::tls_config(cert, key)
                .map_err(|e| StartError::Tls(format!("{e} (NEPHROCARE_MQTT_TLS_CERT / NEPHROCARE_MQTT_TLS_KEY)")))?;
            broker_settings.tls = Some(tls);
            tracing::info!("MQTT listeners use TLS");
        }
        broker_settings.max_session_expiry_secs = config.mqtt.max_session_expiry_secs.max(1);
        broker_settings.max_keep_alive_secs = config.mqtt.max_keep_alive_secs.max(1);
        if let Some(url) = &config.mqtt.core_url {
            let core = nc_broker::core::Core::external(url.expose(), config.mqtt.core_ca.as_deref())
                .map_err(|e| StartError::Other(e.to_string()))?;
            broker_settings.external_core = Some(core);
        }
        let connected = nc_broker::Broker::connect(broker_settings, db.clone())
            .await
            .map_err(|e| StartError::Other(format!("cannot start the MQTT broker core: {e}")))?;
        let outbound = connected.outbound();

        let ingest_stop = CancellationToken::new();
        let mut alarm_settings = config.alarms.settings();
        alarm_settings.link_base = config.http.public_base(http_addr).trim_end_matches('/').to_owned();
        let alarms = nc_alarms::Alarms::new(db.clone(), alarm_settings, &outbound);
        let mut ingest_settings = self.ingest;
        ingest_settings.conditions = config.alarms.conditions();
        ingest_settings.derive_interval = std::time::Duration::from_millis(config.ingest.derive_interval_ms);
        ingest_settings.writers = config.ingest.writers;
        ingest_settings.gather = std::time::Duration::from_millis(config.ingest.gather_ms);
        let ingest = nc_ingest::Ingest::start(
            db.get_postgres_connection_pool().clone(),
            ingest_settings,
            alarms.clone(),
            outbound.bus.clone(),
            ingest_stop.clone(),
        );
        ingest.watch_presence(connected.presence().subscribe());

        // The channels outside MQTT (the hospitals' alert managers, e-mail), through the
        // outbox; the alarm system records each attempt of an alarm's message.
        let mllp: Arc<dyn nc_outbox::Sender> =
            Arc::new(nc_outbox::mllp::MllpSender::new(config.alarms.acm_ca.as_deref()).map_err(StartError::Other)?);
        let records =
            nc_records::Records::new(db.get_postgres_connection_pool().clone(), config.fhir.rest_hook_allow_internal);
        let emr = nc_records::emr::EmrSender::new(records.clone(), mllp.clone());
        // FHIR subscriptions' notifications, built by the FHIR transport, over HTTP.
        let http_out = nc_outbox::http::HttpSender::new(
            config.fhir.rest_hook_ca.as_deref(),
            "NEPHROCARE_FHIR_REST_HOOK_CA",
            config.fhir.rest_hook_allow_internal,
        )
        .map_err(StartError::Other)?;
        let rest_hook = nc_api::fhir::subscriptions::notify::RestHookSender::new(
            records.subscriptions().clone(),
            db.clone(),
            alarms.clone(),
            http_out,
            &config.http.public_base(http_addr),
        );
        let mut senders: Vec<(nc_outbox::Channel, Arc<dyn nc_outbox::Sender>)> =
            vec![(nc_outbox::Channel::Acm, mllp), (nc_outbox::Channel::Emr, Arc::new(emr))];
        if let Some(url) = &config.email.smtp_url {
            let smtp = nc_outbox::email::SmtpSender::new(url.expose(), &config.email.from)
                .map_err(|e| StartError::Other(e.to_string()))?;
            senders.push((nc_outbox::Channel::Email, Arc::new(smtp)));
        }
        let alarms_for_status = alarms.clone();
        let heartbeats = records.subscriptions().clone();
        let outbox = nc_outbox::Outbox::new(
            db.get_postgres_connection_pool().clone(),
            config.outbox.settings(),
            senders,
            vec![Arc::new(alarms.clone())],
        );
        // Subscribers' endpoints (anyone's) on a worker of their own: however they answer,
        // the alarms' and the records' deliveries do not wait for them.
        let fhir_outbox = nc_outbox::Outbox::new(
            db.get_postgres_connection_pool().clone(),
            config.outbox.settings(),
            vec![(nc_outbox::Channel::Fhir, Arc::new(rest_hook))],
            vec![Arc::new(records.subscriptions().clone())],
        );
        let chat = nc_chat::Chat::new(db.clone(), &self.chat, &outbound);
        let bookings = nc_bookings::Bookings::new(db.clone(), outbound.publisher.clone());
        let gateways = nc_gateways::Gateways::new(
            db.get_postgres_connection_pool().clone(),
            nc_access::Policy::new(db.clone()),
            ingest.clone(),
            outbound.publisher.clone(),
            config.hl7.settings(),
        );
        let sink: Arc<dyn nc_messaging::TelemetrySink> = match self.sink {
            Some(s) => s,
            None => Arc::new(ingest.clone()),
        };
        let broker = connected.serve(authn.clone(), sink, Arc::new(chat.clone()), Arc::new(alarms.clone()));
        let escalation = alarms.run(shutdown.clone(), config.alarms.conditions().restart_grace);

        let settings = nc_api::ApiSettings {
            refresh_ttl_secs: config.auth.refresh_token_ttl_secs,
            throttle: nc_api::ThrottleSettings {
                per_account_per_minute: config.auth.attempts_per_account_per_minute,
                per_address_per_minute: config.auth.attempts_per_address_per_minute,
            },
            limits: config.http.limits(),
            dashboard: nc_api::dashboard::DashboardSettings {
                mqtt_ws_url: config.mqtt.public_ws_url.clone(),
                mqtt_ws_port: mqtt_ws_addr.port(),
                mqtt_tls: broker_tls,
            },
            origin: config.http.origin(http_addr),
        };
        let api_state = nc_api::ApiState::new(
            db.clone(),
            &settings,
            authn,
            nc_api::Services { ingest: ingest.clone(), alarms, chat, bookings, gateways: gateways.clone(), records },
            broker.presence(),
            broker.registry(),
            broker.publisher(),
        );
        let token = shutdown.clone();
        tasks.spawn(async move { ("api", nc_api::run(http, api_state, token.cancelled_owned()).await) });

        if let Some(listener) = acm {
            let (alarms, token) = (alarms_for_status, shutdown.clone());
            let handle = move |message, peer| {
                let alarms = alarms.clone();
                async move { alarms.from_alert_manager(message, peer).await }
            };
            let limits = nc_hl7::message::Limits::default();
            tasks.spawn(async move { ("acm", nc_hl7::server::serve(listener, limits, 64, handle, token).await) });
        }

        if let Some(listener) = hl7 {
            let token = shutdown.clone();
            tasks.spawn(async move { ("hl7", gateways.run(listener, hl7_tls, token).await) });
        }

        let outbox = outbox.run(shutdown.clone());
        let fhir_outbox = fhir_outbox.run(shutdown.clone());
        tasks
            .spawn(async move { ("fhir outbox", fhir_outbox.await.map_err(|e| std::io::Error::other(e.to_string()))) });
        let heartbeats = heartbeats.run(std::time::Duration::from_secs(2), shutdown.clone());
        tasks.spawn(
            async move { ("fhir heartbeats", heartbeats.await.map_err(|e| std::io::Error::other(e.to_string()))) },
        );
        tasks.spawn(async move { ("outbox", outbox.await.map_err(|e| std::io::Error::other(e.to_string()))) });

        let token = shutdown.clone();
        let ingest_done = ingest.clone();
        tasks.spawn(async move {
            let result = broker.run(mqtt, mqtt_ws, token.cancelled_owned()).await;
            // The broker has drained its acknowledgements: ingest may stop now, and the
            // deriver apply what is left before the pool closes.
            ingest_stop.cancel();
            ingest_done.stopped(std::time::Duration::from_secs(10)).await;
            let _ = escalation.await;
            ("broker", result)
        });

        tracing::info!(%http_addr, "http listening (REST API, /docs, /healthz, /readyz)");
        tracing::info!(%mqtt_addr, "mqtt listening");
        tracing::info!(%mqtt_ws_addr, "mqtt websocket listening");
        tracing::info!(
            http = %http_addr, mqtt = %mqtt_addr, mqtt_ws = %mqtt_ws_addr,
            "nephrocare ready"
        );
        if let Some(addr) = acm_addr {
            tracing::info!(%addr, "alert manager status listening (IHE PCD-05 over MLLP)");
        }
        if let Some(addr) = hl7_addr {
            tracing::info!(%addr, "device gateways listening (IHE PCD-01 over MLLP)");
        }
        Ok(RunningApp { http_addr, mqtt_addr, mqtt_ws_addr, acm_addr, hl7_addr, db, shutdown, tasks })
    }
}

impl RunningApp {
    /// A handle that stops the service when cancelled (e.g. from a signal handler).
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks every component to stop accepting work and drain.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every component has stopped. If one fails, the others are stopped too
    /// and the first error is returned.
    pub async fn wait(mut self) -> Result<(), StartError> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let failure = match joined {
                Ok((_, Ok(()))) => None,
                Ok((name, Err(e))) => Some(format!("{name} failed: {e}")),
                Err(e) => Some(format!("component task failed: {e}")),
            };
            if let Some(message) = failure {
                tracing::error!(%message, "stopping the service");
                self.shutdown.cancel();
                first_error.get_or_insert(StartError::Other(message));
            } else if !self.shutdown.is_cancelled() {
                // A component stopped on its own: stop the rest too.
                self.shutdown.cancel();
            }
        }
        self.db.clone().close().await.ok();
        tracing::info!("nephrocare stopped");
        first_error.map_or(Ok(()), Err)
    }

    /// Shuts down and waits.
    pub async fn stop(self) -> Result<(), StartError> {
        self.shutdown();
        self.wait().await
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}
