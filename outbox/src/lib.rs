//! The channels outside MQTT, through one mechanism: an **outbox** in the database (table
//! `outbox`, migration 37) that a message enters in the transaction of what caused it, and
//! leaves once a [`Sender`] delivered it.
//!
//! - **Restart-safe**: a row is kept until it is delivered or parked; a node that dies
//!   mid-send leaves it claimed for the lease only, then it is sent again (at least once:
//!   an alert manager recognises a repeat by the message's control id, an e-mail reader by
//!   its content).
//! - **Ordered per key**: a row is sent only when no older row of its `ordering_key` is
//!   pending (an alarm's phases reach the alert manager in order, even across retries), and
//!   a row already attempted stays first (an older row whose transaction committed later
//!   waits behind it).
//! - **Concurrent across keys**: up to `batch` deliveries are under way at once, each on
//!   its own; a receiver that answers slowly holds one slot until its timeout, not the
//!   others. An attempt whose lease ran out before it ended is not recorded (the worker that
//!   claimed it next owns it).
//! - **Cluster-safe**: rows are claimed with `FOR UPDATE SKIP LOCKED`, each node takes
//!   others' leftovers once their lease is over.
//! - **Retried with backoff** (`backon`'s exponential delays with jitter, from the attempt
//!   count stored in the row), **parked** after the last attempt or a refusal that retrying
//!   cannot change; every attempt goes to an [`Attempts`] observer (the alarm system writes
//!   it into the alarm's history) and to the metrics (`nephrocare_outbox_deliveries_total`,
//!   `nephrocare_outbox_oldest_pending_seconds`: an operator alerts on the age).
//!
//! - **Woken at commit**: a node's outbox listens for `NOTIFY nc_outbox` (sent by a trigger
//!   when a transaction that queued something commits, on whichever node), and looks every
//!   `tick` too, in case a notification was lost with its connection.
//!
//! Senders: [`email::SmtpSender`] (lettre), HL7 v2 over MLLP ([`mllp::MllpSender`]: the IHE
//! ACM alert reporter's PCD-04, treatment records' `ORU^R01` through the `records` crate) and
//! HTTP ([`http::HttpSender`]: FHIR subscription notifications, built by the FHIR transport).

pub mod email;
pub mod http;
pub mod mllp;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the `outbox_notify` trigger notifies when a transaction queued something.
const NOTIFY_CHANNEL: &str = "nc_outbox";

/// Waits for a commit that queued something (forever without a listener). The listener
/// reconnects by itself after a lost connection; if it cannot, it is given up (the tick
/// remains). Cancel-safe, as `select!` needs: sqlx's `PgListener::recv` takes a message off
/// its buffer only once it is whole (sqlx-postgres 0.8 `PgStream::recv_unchecked`).
async fn committed(listener: &mut Option<PgListener>) {
    let Some(l) = listener else { return std::future::pending().await };
    if let Err(e) = l.recv().await {
        tracing::warn!(error = %e, "stopped listening for queued messages; looking every tick only");
        *listener = None;
    }
}

/// A way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// E-mail over SMTP: `destination` an address, `payload` `{"subject", "body"}`.
    Email,
    /// The hospital's alert manager (IHE PCD ACM) over MLLP: `destination` `host:port`,
    /// `payload` an HL7 v2 message.
    Acm,
    /// The hospital's record system (EMR) over MLLP: `destination` `host:port` (or
    /// `mllps://host:port`), `payload` what the records sender builds the message from
    /// (`{"session": id}`, queued by a trigger when a treatment ends).
    Emr,
    /// FHIR subscription notifications (`rest-hook`): `destination` `Subscription/{id}`,
    /// `payload` what the FHIR sender builds the notification from (`{"subscription", "type",
    /// "focus"}`, queued by triggers or the subscriptions' heartbeat), ordered per subscription.
    Fhir,
}

/// Every channel.
pub const CHANNELS: [Channel; 4] = [Channel::Email, Channel::Acm, Channel::Emr, Channel::Fhir];

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Acm => "acm",
            Channel::Emr => "emr",
            Channel::Fhir => "fhir",
        }
    }

    fn parse(s: &str) -> Option<Channel> {
        CHANNELS.into_iter().find(|c| c.as_str() == s)
    }
}

/// A message to deliver.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub channel: Channel,
    pub hospital: Option<Uuid>,
    pub alert: Option<Uuid>,
    /// Delivered after every older pending item of the same key (`None`: its own).
    pub ordering_key: Option<Uuid>,
    pub destination: String,
    pub payload: String,
}

/// Queues `item` in the caller's transaction; a [`Outbox::wake`] after the commit sends it
/// at once (otherwise within a tick).
pub async fn enqueue(conn: &mut PgConnection, item: NewItem) -> Result<Uuid, sqlx::Error> {
    let ids = enqueue_all(conn, std::slice::from_ref(&item)).await?;
    Ok(ids[0])
}

/// Queues `items` in the caller's transaction with one statement (one round trip, however
/// many), in their order (ids are time-ordered). Returns their ids.
pub async fn enqueue_all(conn: &mut PgConnection, items: &[NewItem]) -> Result<Vec<Uuid>, sqlx::Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::now_v7()).collect();
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO outbox (id, channel, hospital_id, alert_id, ordering_key, destination, payload) ",
    );
    q.push_values(items.iter().zip(&ids), |mut row, (item, id)| {
        row.push_bind(*id)
            .push_bind(item.channel.as_str())
            .push_bind(item.hospital)
            .push_bind(item.alert)
            .push_bind(item.ordering_key.unwrap_or(*id))
            .push_bind(item.destination.as_str())
            .push_bind(item.payload.as_str());
    });
    q.build().execute(conn).await?;
    Ok(ids)
}

/// Gives up the pending items of `ordering_key` (what they were for is gone: a deleted
/// subscription), in the caller's transaction. Returns how many.
pub async fn cancel(conn: &mut PgConnection, ordering_key: Uuid, reason: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE outbox SET state = 'parked', last_error = $2 WHERE ordering_key = $1 AND state = 'pending'",
    )
    .bind(ordering_key)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A rustls client configuration (our ring provider) trusting the PEM certificates in `ca`
/// (default: the system's, `/etc/ssl/certs/ca-certificates.crt`); `setting` names where
/// `ca` came from, for the error.
pub fn tls_client_config(
    ca: Option<&std::path::Path>,
    setting: &str,
) -> Result<tokio_rustls::rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let path = ca.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the CA certificates {}: {e} ({setting})", path.display()))?;
    roots.add_parsable_certificates(certs);
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    Ok(tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A message being delivered.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Item {
    pub id: Uuid,
    /// `email`, `acm`, `emr` or `fhir` (see [`Item::channel`]).
    channel: String,
    pub hospital_id: Option<Uuid>,
    pub alert_id: Option<Uuid>,
    pub ordering_key: Uuid,
    pub destination: String,
    pub payload: String,
    /// This one included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

impl Item {
    pub fn channel(&self) -> Option<Channel> {
        Channel::parse(&self.channel)
    }
}

/// What the receiving end answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// May pass (unreachable, a timeout, a temporary refusal): tried again later.
    #[error("{0}")]
    Retry(String),
    /// Will not pass (an address that does not exist, a message the other end rejects):
    /// parked at once.
    #[error("{0}")]
    Refused(String),
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Receipt, SendError>> + Send + 'a>>;

/// Delivers the items of one channel.
pub trait Sender: Send + Sync + 'static {
    fn send<'a>(&'a self, item: &'a Item) -> SendFuture<'a>;
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered(Receipt),
    /// Tried again after `retry_in`.
    Failed {
        error: String,
        retry_in: Duration,
    },
    /// Given up: the last attempt, or a refusal.
    Parked {
        error: String,
    },
}

/// Told of every attempt (the alarm system records an alarm's in its history).
pub trait Attempts: Send + Sync + 'static {
    fn attempted<'a>(&'a self, item: &'a Item, outcome: &'a Outcome) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// How the outbox works.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// How long a claimed item is someone's: a node that dies mid-send leaves it this long.
    pub lease: Duration,
    /// Attempts before an item is parked.
    pub max_attempts: i32,
    /// The first retry's delay, doubling (with jitter) up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// How often due items are looked for (also at once after a [`Outbox::wake`]).
    pub tick: Duration,
    /// Items claimed at once.
    pub batch: i64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            lease: Duration::from_secs(60),
            max_attempts: 10,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            tick: Duration::from_millis(250),
            batch: 32,
        }
    }
}

/// The outbox's worker and its senders.
pub struct Outbox {
    pool: PgPool,
    settings: OutboxSettings,
    senders: HashMap<Channel, Arc<dyn Sender>>,
    attempts: Vec<Arc<dyn Attempts>>,
    wake: Notify,
}

impl Outbox {
    /// The outbox of `pool`, sending through `senders` (a channel without one keeps its
    /// items pending: visible in the queue-age metric) and telling `attempts` of each try.
    pub fn new(
        pool: PgPool,
        settings: OutboxSettings,
        senders: Vec<(Channel, Arc<dyn Sender>)>,
        attempts: Vec<Arc<dyn Attempts>>,
    ) -> Arc<Outbox> {
        Arc::new(Outbox { pool, settings, senders: senders.into_iter().collect(), attempts, wake: Notify::new() })
    }

    /// Something was queued: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers until `shutdown`.
    pub fn run(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for channel in [Channel::Email] {
                if !self.senders.contains_key(&channel) {
                    tracing::info!(channel = channel.as_str(), "no sender configured: its messages wait in the outbox");
                }
            }
            let mut listener = self.listen().await;
            let mut gauge = tokio::time::interval(Duration::from_secs(5));
            // Deliveries under way: a slow receiver holds one of `batch` slots until its
            // timeout, never the others (each is claimed, its lease taken, and sent on its own).
            let mut inflight: tokio::task::JoinSet<Result<(), sqlx::Error>> = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = committed(&mut listener) => {}
                    _ = tokio::time::sleep(self.settings.tick) => {}
                    Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                        if let Ok(Err(e)) = done {
                            tracing::warn!(error = %e, "could not record an outbox attempt; it is tried again after its lease");
                        }
                    }
                    _ = gauge.tick() => {
                        if let Err(e) = self.measure().await {
                            tracing::warn!(error = %e, "could not measure the outbox");
                        }
                    }
                }
                // Claims what is due while there is room (a full claim may have more behind it).
                loop {
                    let room = self.settings.batch - inflight.len() as i64;
                    if room <= 0 {
                        break;
                    }
                    match self.claim(room).await {
                        Ok(items) => {
                            let n = items.len() as i64;
                            for item in items {
                                let this = self.clone();
                                inflight.spawn(async move { this.deliver(item).await });
                            }
                            if n < room {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox round failed; trying again");
                            break;
                        }
                    }
                }
            }
            // What is still under way is claimed: it is sent again after its lease.
            inflight.abort_all();
        })
    }

    /// A connection listening for commits that queued something; none (the tick only) if
    /// it cannot be had.
    async fn listen(&self) -> Option<PgListener> {
        let listening = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for queued messages; looking every tick only");
                None
            }
        }
    }

    /// Claims (takes the lease of) up to `limit` items that are due, each key's head only:
    /// an item is due when no other pending item of its key comes first, and one that was
    /// already attempted comes first (it may carry what a receiver saw: an older item that
    /// committed after it was claimed waits behind it); otherwise the older one does.
    async fn claim(&self, limit: i64) -> Result<Vec<Item>, sqlx::Error> {
        let channels: Vec<&str> = self.senders.keys().map(|c| c.as_str()).collect();
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "UPDATE outbox SET due_at = clock_timestamp() + make_interval(secs => $2), attempts = attempts + 1
              WHERE id IN (
                SELECT o.id FROM outbox o
                 WHERE o.state = 'pending' AND o.due_at <= clock_timestamp() AND o.channel = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM outbox p
                                    WHERE p.ordering_key = o.ordering_key AND p.state = 'pending' AND p.id <> o.id
                                      AND ((p.attempts > 0 AND o.attempts = 0)
                                           OR ((p.attempts > 0) = (o.attempts > 0)
                                               AND (p.created_at, p.id) < (o.created_at, o.id))))
                 ORDER BY o.due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
              RETURNING id, channel, hospital_id, alert_id, ordering_key, destination, payload, attempts, created_at",
        )
        .bind(&channels)
        .bind(self.settings.lease.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn deliver(&self, item: Item) -> Result<(), sqlx::Error> {
        let Some(channel) = item.channel() else { return Ok(()) };
        let Some(sender) = self.senders.get(&channel) else { return Ok(()) };
        let outcome = match sender.send(&item).await {
            Ok(receipt) => Outcome::Delivered(receipt),
            Err(SendError::Retry(error)) if item.attempts < self.settings.max_attempts => {
                Outcome::Failed { error, retry_in: self.delay(item.attempts) }
            }
            Err(SendError::Retry(error) | SendError::Refused(error)) => Outcome::Parked { error },
        };
        let channel = channel.as_str();
        let counted = |outcome: &'static str| {
            nc_metrics::get().outbox_deliveries.get_or_create(&nc_metrics::Delivery { channel, outcome }).inc();
        };
        let recorded = match &outcome {
            Outcome::Delivered(receipt) => {
                counted("delivered");
                tracing::info!(channel, item = %item.id, receipt = %receipt.0, "delivered");
                sqlx::query(
                    "UPDATE outbox SET state = 'sent', sent_at = clock_timestamp(), last_error = NULL
                      WHERE id = $1 AND state = 'pending' AND attempts = $2",
                )
                .bind(item.id)
                .bind(item.attempts)
                .execute(&self.pool)
                .await?
            }
            Outcome::Failed { error, retry_in } => {
                counted("failed");
                tracing::warn!(channel, item = %item.id, attempt = item.attempts, %error, retry_in_s = retry_in.as_secs_f64(), "delivery failed; retrying");
                sqlx::query(
                    "UPDATE outbox SET due_at = clock_timestamp() + make_interval(secs => $2), last_error = $3
                      WHERE id = $1 AND state = 'pending' AND attempts = $4",
                )
                .bind(item.id)
                .bind(retry_in.as_secs_f64())
                .bind(error)
                .bind(item.attempts)
                .execute(&self.pool)
                .await?
            }
            Outcome::Parked { error } => {
                counted("parked");
                tracing::error!(channel, item = %item.id, attempts = item.attempts, %error, "delivery given up (parked)");
                sqlx::query(
                    "UPDATE outbox SET state = 'parked', last_error = $2 WHERE id = $1 AND state = 'pending' AND attempts = $3",
                )
                .bind(item.id)
                .bind(error)
                .bind(item.attempts)
                .execute(&self.pool)
                .await?
            }
        };
        if recorded.rows_affected() == 0 {
            // Its lease ran out and another worker claimed it meanwhile: that worker's
            // attempt is the one recorded.
            tracing::warn!(channel, item = %item.id, "an attempt outlived its lease; its outcome is not recorded");
            return Ok(());
        }
        for observer in &self.attempts {
            observer.attempted(&item, &outcome).await;
        }
        Ok(())
    }

    /// The delay before attempt `attempts + 1`.
    fn delay(&self, attempts: i32) -> Duration {
        let n = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
        backon::ExponentialBuilder::default()
            .with_min_delay(self.settings.min_delay)
            .with_max_delay(self.settings.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(n)
            .unwrap_or(self.settings.max_delay)
    }

    /// Sets the queue gauges: pending items and the oldest one's age, per channel.
    async fn measure(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT channel, count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8
               FROM outbox WHERE state = 'pending' GROUP BY channel",
        )
        .fetch_all(&self.pool)
        .await?;
        let m = nc_metrics::get();
        for channel in CHANNELS {
            let row = rows.iter().find(|(c, ..)| c == channel.as_str());
            let label = nc_metrics::OutboxChannel { channel: channel.as_str() };
            m.outbox_pending.get_or_create(&label).set(row.map_or(0, |r| r.1));
            m.outbox_oldest_pending_seconds.get_or_create(&label).set(row.map_or(0.0, |r| r.2));
        }
        Ok(())
    }
}
