//! Device gateways: machines that reach the hospital through an HL7 v2 device gateway, which
//! reports their observations as IHE PCD-01 (`ORU^R01`) over MLLP.
//!
//! - [`registry`]: the gateways each hospital's admins register (MSH-3/MSH-4, a secret for
//!   MSH-8, code mappings, a connection limit) and the codes they sent that map to nothing;
//! - [`codes`]: observation identifiers (MDC, ours, the gateway's) to measurements, units
//!   converted;
//! - [`receive`]: a message to readings, through the policy (`access::policy`: the gateway's
//!   own hospital's machines and patients) and the one ingest pipeline (the same binding,
//!   validation, storage, alarms, derived data and live streams as MQTT readings), answered
//!   after COMMIT.
//!
//! [`Gateways::run`] serves the MLLP listener (`nc_hl7::server`).

pub mod codes;
pub mod receive;
pub mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nc_domain::GatewayId;
use nc_hl7::message::{Limits, Message};
use nc_hl7::server::{Handler, Peer};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use registry::{Gateway, GatewaySpec, UnknownCode};

/// Distinct unknown codes kept per gateway (more are still reported in the ACK, not kept:
/// a gateway cannot grow the table without bound).
pub const MAX_UNKNOWN_CODES: i64 = 1_000;

/// How long a taken message's control id is kept (`hl7_gateway_messages`): a resend within
/// it is answered from the record; a later one is taken again, and its readings, which
/// carry the same seq, are recognised and stored once.
pub const MESSAGE_RECORD_DAYS: i32 = 7;

/// What the listener takes.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// One message, at most (bytes).
    pub max_message_bytes: usize,
    /// OBX in one message, at most.
    pub max_observations: usize,
    /// Connections at once, all gateways together.
    pub max_connections: usize,
}

impl Default for GatewaySettings {
    /// 256 KiB and 2,000 OBX a message (a gateway of 100 machines × 15 observations is
    /// 1,500), 256 connections.
    fn default() -> Self {
        Self { max_message_bytes: 256 << 10, max_observations: 2_000, max_connections: 256 }
    }
}

/// Why a gateway could not be registered, changed or found.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl GatewayError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_owned(), message: message.into() }
    }

    fn from_db(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Self::Conflict(
                "a gateway with this sending application and facility, or this certificate, is already registered",
            ),
            _ => Self::Db(e),
        }
    }
}

struct Inner {
    policy: nc_access::Policy,
    ingest: nc_ingest::Ingest,
    publisher: nc_messaging::Publisher,
    settings: GatewaySettings,
    /// Which gateway each open connection belongs to (from its first accepted message).
    connections: Mutex<HashMap<u64, GatewayId>>,
}

/// The gateways capability. Cheap to clone.
#[derive(Clone)]
pub struct Gateways {
    inner: Arc<Inner>,
    pool: PgPool,
}

impl Gateways {
    pub fn new(
        pool: PgPool,
        policy: nc_access::Policy,
        ingest: nc_ingest::Ingest,
        publisher: nc_messaging::Publisher,
        settings: GatewaySettings,
    ) -> Self {
        let inner = Inner { policy, ingest, publisher, settings, connections: Mutex::default() };
        Self { inner: Arc::new(inner), pool }
    }

    /// Serves the gateways' MLLP listener until `shutdown`, over TLS when `tls` is given.
    pub async fn run(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let s = &self.inner.settings;
        let limits = Limits {
            max_message_bytes: s.max_message_bytes,
            // Every OBX, plus the header, patients, requests and notes around them.
            max_segments: s.max_observations + 64,
            ..Limits::default()
        };
        let max = s.max_connections;
        let sweeper = tokio::spawn(sweep(self.pool.clone(), shutdown.clone()));
        let served = nc_hl7::server::serve_with(listener, limits, max, Arc::new(self), tls, shutdown).await;
        sweeper.abort();
        served
    }

    /// Ties connection `peer` to `gateway`, unless it is another gateway's or the gateway
    /// already holds `max` connections.
    fn bind(&self, peer: Peer, gateway: GatewayId, max: u16) -> Result<(), &'static str> {
        let mut connections = self.inner.connections.lock().unwrap_or_else(|p| p.into_inner());
        match connections.get(&peer.connection) {
            Some(g) if *g == gateway => Ok(()),
            Some(_) => Err("this connection belongs to another gateway"),
            None if connections.values().filter(|g| **g == gateway).count() >= usize::from(max) => {
                Err("the gateway already holds as many connections as it may (maxConnections)")
            }
            None => {
                connections.insert(peer.connection, gateway);
                Ok(())
            }
        }
    }
}

/// Forgets taken messages' control ids after [`MESSAGE_RECORD_DAYS`], hourly (one node at a
/// time is enough, more are harmless).
async fn sweep(pool: PgPool, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let done =
            sqlx::query("DELETE FROM hl7_gateway_messages WHERE received_at < now() - make_interval(days => $1)")
                .bind(MESSAGE_RECORD_DAYS)
                .execute(&pool)
                .await;
        match done {
            Ok(r) if r.rows_affected() > 0 => {
                tracing::info!(forgotten = r.rows_affected(), "old gateway control ids forgotten")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not forget old gateway control ids; next hour"),
        }
    }
}

impl Handler for Gateways {
    fn handle(&self, message: Message, peer: Peer) -> impl std::future::Future<Output = Message> + Send {
        let this = self.clone();
        async move { this.receive(message, peer).await }
    }

    fn closed(&self, peer: Peer) {
        self.inner.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer.connection);
    }
}
