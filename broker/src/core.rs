//! The routing core (topic matching, fan-out, sessions, retained messages, last will) the
//! edge relays to. Two kinds, one protocol (MQTT 3.1.1):
//!
//! - **embedded** (the default): a rumqttd on its own threads, listening on a loopback port
//!   that only the edge and the service's own publisher use, protected by a random
//!   per-process credential that its auth hook checks; clients never reach it directly.
//! - **external** (`NEPHROCARE_MQTT_CORE_URL`, `mqtt://` or `mqtts://`): a clustered MQTT
//!   broker shared by several nodes (NATS server with its MQTT listener and JetStream; see ARCHITECTURE.md "Several
//!   nodes"). Every node connects with the nodes' credential from the URL; the broker's
//!   cluster carries routing, persistent sessions, queued QoS 1 messages and retained
//!   status across nodes. Several URLs are tried in turn (failover).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConfig;

/// The reading half of a connection to the core (TCP or TLS).
pub type CoreRx = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection to the core.
pub type CoreTx = Box<dyn AsyncWrite + Send + Unpin>;

/// One address of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreAddr {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS, the server's certificate verified against the configured roots.
    pub tls: bool,
}

impl std::fmt::Display for CoreAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where the core is, and the credential it accepts.
#[derive(Clone)]
pub struct Core {
    addrs: Arc<Vec<CoreAddr>>,
    /// The address that answered last (tried first next time).
    current: Arc<AtomicUsize>,
    pub user: String,
    pub credential: String,
    embedded: bool,
    /// The TLS client configuration for `mqtts://` addresses.
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("addrs", &self.addrs)
            .field("user", &self.user)
            .field("credential", &"***")
            .field("embedded", &self.embedded)
            .finish()
    }
}

/// Why `NEPHROCARE_MQTT_CORE_URL` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NEPHROCARE_MQTT_CORE_URL: {0}")]
pub struct CoreUrlError(String);

/// The username the edge and the publisher present to the embedded core.
pub const INTERNAL_USER: &str = "nephrocare-edge";

impl Core {
    /// The external core at `urls`: one or more `mqtt://user:password@host:port` (or
    /// `mqtts://`, TLS), separated by commas, all with the same credential (tried in turn:
    /// failover). A TLS server's certificate is verified against the PEM certificates in
    /// `ca` (default: the system's, `/etc/ssl/certs/ca-certificates.crt`) and the URL's host.
    pub fn external(urls: &str, ca: Option<&std::path::Path>) -> Result<Core, CoreUrlError> {
        let mut addrs = Vec::new();
        let mut login: Option<(String, String)> = None;
        for (n, raw) in urls.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
            // Not echoed, only its scheme: the rest may carry the credential.
            let url = url::Url::parse(raw).map_err(|e| {
                let scheme = raw.split_once("://").map_or("", |(s, _)| s);
                CoreUrlError(format!("URL {} of the list ({scheme}://…) is not a URL: {e}", n + 1))
            })?;
            let tls = match url.scheme() {
                "mqtt" | "tcp" => false,
                "mqtts" | "ssl" => true,
                other => return Err(CoreUrlError(format!("scheme '{other}' is not mqtt:// or mqtts://"))),
            };
            let host =
                url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| CoreUrlError("a URL has no host".into()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| CoreUrlError("the user or password is not UTF-8 once percent-decoded".into()))
            };
            let this = (decode(url.username())?, decode(url.password().unwrap_or(""))?);
            if this.0.is_empty() {
                return Err(CoreUrlError("give the nodes' credential: mqtt://user:password@host:port".into()));
            }
            match &login {
                None => login = Some(this),
                Some(l) if *l == this => {}
                Some(_) => return Err(CoreUrlError("every URL must carry the same credential".into())),
            }
            addrs.push(CoreAddr { host, port, tls });
        }
        let Some((user, credential)) = login else {
            return Err(CoreUrlError("no URL given".into()));
        };
        let tls = if addrs.iter().any(|a| a.tls) { Some(client_tls(ca)?) } else { None };
        Ok(Core { addrs: Arc::new(addrs), current: Arc::default(), user, credential, embedded: false, tls })
    }

    /// The TLS client configuration for `mqtts://` addresses (the service publisher's too).
    pub fn tls(&self) -> Option<Arc<ClientConfig>> {
        self.tls.clone()
    }

    /// Whether this is the embedded rumqttd (one node) rather than a shared cluster.
    pub fn embedded(&self) -> bool {
        self.embedded
    }

    /// The addresses, in failover order.
    pub fn addrs(&self) -> &[CoreAddr] {
        &self.addrs
    }

    /// The embedded core's loopback address (benchmarks compare it with the edge).
    pub fn addr(&self) -> CoreAddr {
        self.addrs[self.current.load(Ordering::Relaxed) % self.addrs.len()].clone()
    }

    /// Opens a connection to the core (TCP, or TLS for `mqtts://`): the address that
    /// answered last first, then the others in turn.
    pub async fn connect(&self) -> std::io::Result<(CoreRx, CoreTx)> {
        let n = self.addrs.len();
        let start = self.current.load(Ordering::Relaxed);
        // With somewhere else to go, a server that does not answer soon is given up on; a
        // single core (the embedded one) may be slow to accept under a burst of connections.
        let patience = if n > 1 { Duration::from_secs(3) } else { Duration::from_secs(10) };
        let mut last = None;
        for i in 0..n {
            let at = (start + i) % n;
            let a = &self.addrs[at];
            match tokio::time::timeout(patience, self.open(a)).await {
                Ok(Ok(s)) => {
                    if at != start % n {
                        self.current.store(at, Ordering::Relaxed);
                        tracing::warn!(core = %a, "the MQTT core's first address did not answer; using another");
                    }
                    return Ok(s);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{a} timed out"))),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the core has no address")))
    }

    async fn open(&self, a: &CoreAddr) -> std::io::Result<(CoreRx, CoreTx)> {
        let tcp = TcpStream::connect((a.host.as_str(), a.port)).await?;
        let _ = tcp.set_nodelay(true);
        match (&self.tls, a.tls) {
            (Some(config), true) => {
                let name = rustls_pki_types::ServerName::try_from(a.host.clone())
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", a.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
                let (rx, tx) = tokio::io::split(tls);
                Ok((Box::new(rx), Box::new(tx)))
            }
            _ => {
                let (rx, tx) = tcp.into_split();
                Ok((Box::new(rx), Box::new(tx)))
            }
        }
    }

    /// After a failure at the current address: try the next one first from now on.
    pub fn rotate(&self) {
        if self.addrs.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// TLS to the core: the certificates of `ca` (PEM) as roots, or the system's.
fn client_tls(ca: Option<&std::path::Path>) -> Result<Arc<ClientConfig>, CoreUrlError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let path = ca.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).and_then(|i| i.collect::<Result<Vec<_>, _>>()).map_err(|e| {
        CoreUrlError(format!("cannot read the CA certificates {}: {e} (NEPHROCARE_MQTT_CORE_CA)", path.display()))
    })?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CoreUrlError(format!("{} holds no CA certificate (NEPHROCARE_MQTT_CORE_CA)", path.display())));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| CoreUrlError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Starts the embedded rumqttd on its own threads (it has no shutdown API: it ends with
/// the process).
pub async fn start(max_connections: usize, max_packet_size: usize) -> std::io::Result<Core> {
    // rumqttd binds by itself: find a free loopback port first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let credential = nc_access::secret::random_token();

    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: max_packet_size,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let expected = credential.clone();
    connections.set_auth_handler(move |_client_id, user, pass| {
        let ok = user == INTERNAL_USER && pass == expected;
        async move { ok }
    });
    let server =
        ServerSettings { name: "internal".into(), listen: addr, tls: None, next_connection_delay_ms: 0, connections };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: max_connections + 16,
            max_outgoing_packet_count: 500,
            // Per-filter in-memory log: 4 segments of 1 MiB (bounded memory; see ARCHITECTURE.md).
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("internal".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new().name("rumqttd".into()).spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "embedded rumqttd stopped");
        }
    })?;
    // Ready when the service publisher's session is accepted (see `Publisher::start`).
    Ok(Core {
        addrs: Arc::new(vec![CoreAddr { host: "127.0.0.1".into(), port: addr.port(), tls: false }]),
        current: Arc::default(),
        user: INTERNAL_USER.into(),
        credential,
        embedded: true,
        tls: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_urls_are_parsed_with_their_credential() {
        let c = Core::external("mqtt://nc:p%40ss@127.0.0.1:14883, mqtt://nc:p%40ss@node2:14884", None).unwrap();
        assert_eq!(c.user, "nc");
        assert_eq!(c.credential, "p@ss");
        assert_eq!(c.addrs().len(), 2);
        assert_eq!(c.addrs()[1], CoreAddr { host: "node2".into(), port: 14884, tls: false });
        assert!(!c.embedded() && c.tls().is_none());
        assert_eq!(Core::external("mqtt://nc:x@h", None).unwrap().addrs()[0].port, 1883);
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls/core-ca.pem");
        let tls = Core::external("mqtts://nc:x@localhost", Some(&fixture)).unwrap();
        assert_eq!(tls.addrs()[0], CoreAddr { host: "localhost".into(), port: 8883, tls: true });
        assert!(tls.tls().is_some());
        let missing = Core::external("mqtts://nc:x@h", Some(std::path::Path::new("/nonexistent.pem"))).unwrap_err();
        assert!(missing.to_string().contains("NEPHROCARE_MQTT_CORE_CA"), "{missing}");
    }

    #[test]
    fn bad_core_urls_are_refused_without_showing_the_password() {
        for bad in ["", "http://nc:x@h:1", "mqtt://h:1", "mqtt://a:b@h:1,mqtt://a:c@h:2"] {
            let e = Core::external(bad, None).unwrap_err().to_string();
            assert!(!e.contains(":b@") && !e.contains(":c@"), "{e}");
        }
        assert!(Core::external("nonsense://a:secret@", None).unwrap_err().to_string().contains("nonsense"));
    }
}
