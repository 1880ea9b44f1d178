//! The database connection, to one server or to the primary of several.
//!
//! `DATABASE_URL` may name several hosts as libpq's multi-host URLs do
//! (`postgres://user:pw@h1:5432,h2:5432/db?target_session_attrs=read-write`, what
//! `pg_autoctl show uri` prints). sqlx connects to one host, so the service finds the
//! primary itself (written by hand because no library does this for sqlx's pool):
//!
//! - at start, the first host that accepts a connection and writes (not in recovery, and
//!   `transaction_read_only` off, as libpq's `read-write` asks) is the pool's target;
//! - a connection to a read-only server is refused when it is opened (`after_connect`): a
//!   standby, or a node pg_auto_failover is still promoting; connections opened before the
//!   pool moved are dropped (below);
//! - [`Primary::run`] looks every second: while the target is a reachable primary nothing
//!   happens; otherwise it probes the hosts and points the pool at the new primary
//!   (`set_connect_options`), and connections opened before the move are dropped when next
//!   acquired (`before_acquire`). In-flight transactions fail at the switch; their callers
//!   retry (a machine without a PUBACK publishes again; readings are idempotent by their
//!   identity, so nothing is stored twice).
//! - It also reads how many standbys confirm the primary's commits synchronously
//!   (`nephrocare_db_synchronous_standbys`).
//!
//! One host without `target_session_attrs`: the pool is sea-orm's, as it always was.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio_util::sync::CancellationToken;

/// The hosts of a multi-host `DATABASE_URL`, with the options they share. Not `Debug`:
/// the options hold the password.
#[derive(Clone)]
pub struct Hosts {
    options: PgConnectOptions,
    hosts: Vec<(String, u16)>,
}

impl Hosts {
    /// `url`'s hosts when it names several, or asks for a read-write session; `None` for an
    /// ordinary one-host URL.
    pub fn parse(url: &str) -> Result<Option<Hosts>, String> {
        let (scheme, rest) = url.split_once("://").ok_or("not a postgres:// URL")?;
        if !["postgres", "postgresql"].contains(&scheme) {
            return Err("not a postgres:// URL".into());
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut attrs = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| match p.split_once('=') {
                Some(("target_session_attrs", v)) => {
                    attrs = Some(v.to_owned());
                    false
                }
                _ => true,
            })
            .collect();
        if let Some(a) = &attrs {
            if !["read-write", "primary", "any"].contains(&a.as_str()) {
                return Err(format!("target_session_attrs={a} is not supported (read-write, primary or any)"));
            }
        }
        if !hostlist.contains(',') && attrs.as_deref().is_none_or(|a| a == "any") {
            // One host (or a socket, or none): sqlx reads it as it always did.
            return Ok(None);
        }
        let hosts: Vec<(String, u16)> = hostlist
            .split(',')
            .enumerate()
            .map(|(i, h)| host_port(h).map_err(|_| format!("host #{} of the URL is not host[:port]", i + 1)))
            .collect::<Result<_, _>>()?;
        let first = &hosts[0];
        let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
        let host = if first.0.contains(':') { format!("[{}]", first.0) } else { first.0.clone() };
        let one = format!("{scheme}://{user}{host}:{}{path}{query}", first.1);
        let options = PgConnectOptions::from_str(&one).map_err(|e| e.to_string())?;
        Ok(Some(Hosts { options, hosts }))
    }

    fn at(&self, (host, port): &(String, u16)) -> PgConnectOptions {
        self.options.clone().host(host).port(*port)
    }

    /// `host:port` of each.
    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect()
    }

    /// The first host that is a writable primary now, each tried within `timeout`; or what
    /// each answered.
    async fn find_primary(&self, timeout: Duration) -> Result<PgConnectOptions, String> {
        let mut answers = Vec::new();
        for h in &self.hosts {
            let options = self.at(h);
            let answer = match tokio::time::timeout(timeout, is_primary(&options)).await {
                Ok(Ok(true)) => return Ok(options),
                Ok(Ok(false)) => "read-only".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} s", timeout.as_secs()),
            };
            answers.push(format!("{}:{}: {answer}", h.0, h.1));
        }
        Err(answers.join("; "))
    }
}

/// `host[:port]` (an IPv6 host in brackets); 5432 when no port is given.
fn host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("`{s}` is not host[:port]");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = port.map_or(Ok(5432), |p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad))?;
    Ok((host.to_owned(), port))
}

/// Whether a session accepts writes: not in recovery, and not read-only by default (as
/// libpq's `target_session_attrs=read-write` asks; a node pg_auto_failover is promoting or
/// demoting is out of recovery but read-only for a few seconds).
const READ_ONLY: &str = "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool";

/// Whether the server at `options` accepts writes.
async fn is_primary(options: &PgConnectOptions) -> Result<bool, sqlx::Error> {
    let mut conn = options.connect().await?;
    let read_only: bool = sqlx::query_scalar(READ_ONLY).fetch_one(&mut conn).await?;
    let _ = conn.close().await;
    Ok(!read_only)
}

/// Follows the primary of several hosts for one pool.
pub struct Primary {
    pool: PgPool,
    hosts: Hosts,
    /// When the pool was last pointed at a new primary.
    moved: Arc<Mutex<Option<Instant>>>,
    /// Looks in a row that found the target not a writable primary.
    misses: std::sync::atomic::AtomicU32,
}

/// How the pool is sized and waits.
pub struct PoolSettings {
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub session: &'static [(&'static str, &'static str)],
}

/// A pool on the primary among `hosts`, waiting for one up to `settings.connect_timeout`,
/// and what follows it.
pub async fn connect_primary(
    hosts: Hosts,
    settings: &PoolSettings,
) -> Result<(DatabaseConnection, Arc<Primary>), String> {
    // Every host's connections carry the session settings.
    let hosts = Hosts { options: hosts.options.clone().options(settings.session.iter().copied()), ..hosts };
    let deadline = Instant::now() + settings.connect_timeout;
    let options = loop {
        let answers = match hosts.find_primary(Duration::from_secs(2)).await {
            Ok(o) => break o,
            Err(answers) => answers,
        };
        if Instant::now() >= deadline {
            return Err(format!("no writable primary among the hosts ({answers})"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let moved: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let since = moved.clone();
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(1)
        .acquire_timeout(settings.connect_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let read_only: bool = sqlx::query_scalar(READ_ONLY).fetch_one(&mut *conn).await?;
                if read_only {
                    return Err(sqlx::Error::Protocol("a read-only server: the primary has moved".into()));
                }
                Ok(())
            })
        })
        .before_acquire(move |_, meta| {
            // A connection opened before the pool moved is to the old primary.
            let fresh = since.lock().map(|m| m.is_none_or(|at| meta.age < at.elapsed())).unwrap_or(true);
            Box::pin(async move { Ok(fresh) })
        })
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    let db = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
    Ok((db, Arc::new(Primary { pool, hosts, moved, misses: std::sync::atomic::AtomicU32::new(0) })))
}

impl Primary {
    /// Follows the primary until `shutdown`, looking every `tick`.
    pub fn run(self: Arc<Self>, tick: Duration, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                }
                self.look().await;
            }
        })
    }

    async fn look(&self) {
        let current = self.pool.connect_options();
        let ok = tokio::time::timeout(Duration::from_secs(2), is_primary(&current)).await;
        if matches!(ok, Ok(Ok(true))) {
            self.misses.store(0, std::sync::atomic::Ordering::Relaxed);
            self.measure().await;
            return;
        }
        // Twice in a row before moving: one slow answer on a busy server is not a failover.
        if self.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1 {
            return;
        }
        let next = match self.hosts.find_primary(Duration::from_secs(2)).await {
            Ok(next) => next,
            Err(answers) => {
                nc_metrics::get().db_synchronous_standbys.set(-1);
                tracing::warn!(%answers, "no writable database primary; looking again");
                return;
            }
        };
        let (from, to) = (
            format!("{}:{}", current.get_host(), current.get_port()),
            format!("{}:{}", next.get_host(), next.get_port()),
        );
        if from == to {
            // It was only unreachable for a moment.
            return;
        }
        // Switched first, then stamped: a connection to the old host that completes after
        // the stamp cannot exist (sqlx stamps a connection when its connect completes).
        self.pool.set_connect_options(next);
        if let Ok(mut m) = self.moved.lock() {
            *m = Some(Instant::now());
        }
        self.misses.store(0, std::sync::atomic::Ordering::Relaxed);
        nc_metrics::get().db_primary_switches.inc();
        tracing::warn!(%from, %to, "the database primary moved; the pool follows it");
        self.measure().await;
    }

    /// Sets `db_synchronous_standbys` from the primary's view of its standbys.
    async fn measure(&self) {
        // Bounded: a busy pool must not hold up the next look.
        let query = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')",
        )
        .fetch_one(&self.pool);
        let n = tokio::time::timeout(Duration::from_secs(1), query).await;
        nc_metrics::get().db_synchronous_standbys.set(match n {
            Ok(Ok(n)) => n,
            _ => -1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_names_each_host() {
        let h =
            Hosts::parse("postgres://u:p%40w@a:5441,b:5442,[::1]/db?target_session_attrs=read-write&sslmode=disable")
                .unwrap()
                .expect("several hosts");
        assert_eq!(h.names(), ["a:5441", "b:5442", "::1:5432"]);
        assert_eq!(h.options.get_database(), Some("db"));
        assert_eq!(h.options.get_username(), "u");
        let one = Hosts::parse("postgres://u@a:5441/db?target_session_attrs=read-write").unwrap().expect("read-write");
        assert_eq!(one.names(), ["a:5441"]);
        assert!(Hosts::parse("postgres://u:p@a:5432/db").unwrap().is_none(), "one host: sea-orm's pool as always");
        assert!(Hosts::parse("postgres:///db?host=/run/postgresql").unwrap().is_none(), "a socket: as always");
        let e = Hosts::parse("postgres://u:s3cr/t@a,b/db?target_session_attrs=read-write").err().expect("refused");
        assert!(!e.contains("s3cr"), "the password is not repeated: {e}");
        assert!(Hosts::parse("postgres://u@a,b/db?target_session_attrs=standby").is_err());
        assert!(Hosts::parse("postgres://u@a:0,b/db").is_err());
        assert!(Hosts::parse("mysql://a,b/db").is_err());
    }
}
