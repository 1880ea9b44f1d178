//! The MQTT component. Machines publish telemetry here and the mobile apps subscribe here
//! directly.
//!
//! rumqttd 0.20 has no per-topic authorization, lets any client take over another's client
//! id, closes bad logins without a CONNACK code, and acknowledges before storing. So this
//! crate owns the edge ([`edge`]): every client connection terminates in our code, which
//! decides identity, permissions and acknowledgement, and relays what is permitted to an
//! embedded rumqttd ([`core`]), reachable only on loopback with a per-process credential,
//! which stays the routing core (topic matching, fan-out, sessions, retained messages, last
//! will). See ARCHITECTURE.md and topics.md.

pub mod acl;
pub mod core;
mod edge;
pub mod presence;
pub mod publisher;
pub mod registry;
pub mod sessions;
pub mod transport;

// The messaging contract the broker implements (see `nc_messaging`), under the names the
// broker's own modules use.
use nc_messaging::bus as cluster;
use nc_messaging::{payload, sink, topic};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nc_access::authn::Authenticator;
use nc_access::Policy;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use presence::Presence;
pub use publisher::ServicePublisher;

use nc_messaging::{PersonSink, Subscribed, TelemetrySink};

/// Where the MQTT listeners are by default (configuration `mqtt.addr`, `mqtt.ws_addr`).
pub const DEFAULT_MQTT_ADDR: &str = "127.0.0.1:1883";
pub const DEFAULT_MQTT_WS_ADDR: &str = "127.0.0.1:8083";
/// The path of MQTT over WebSocket (subprotocol `mqtt`, binary frames).
pub const WS_PATH: &str = "/mqtt";

/// Limits that protect the process.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Machines' connections at once, over both listeners; beyond it CONNACK 3 (server
    /// unavailable). People have a pool of their own, so they can never take a machine's place.
    pub max_connections: usize,
    /// People's (apps') connections at once; beyond it CONNACK 3.
    pub max_people_connections: usize,
    /// CONNECTs being authenticated at once (before the identity, and so the pool, is known).
    pub max_pending_connects: usize,
    /// Largest packet accepted; a larger one ends that connection.
    pub max_packet_size: usize,
    /// Time allowed between accepting a socket and its CONNECT.
    pub connect_timeout: Duration,
    /// PUBLISH packets per second per connection (the edge stops reading beyond it).
    pub messages_per_second: u32,
    /// Unacknowledged QoS 1 publishes per connection waiting for storage; beyond it the
    /// edge stops reading that connection (backpressure).
    pub max_inflight: usize,
    /// Subscription filters per second per connection, after a burst of `subscribe_burst`
    /// (an app subscribing at start-up); beyond it every filter of a SUBSCRIBE is refused
    /// (0x80), logged. A SUBSCRIBE carries at most 128 filters.
    pub subscribes_per_second: u32,
    pub subscribe_burst: u32,
    /// The longest an MQTT 5 session is kept after its connection ends (its Session Expiry
    /// Interval is bounded by it; the CONNACK says so when it is less than asked).
    pub max_session_expiry_secs: u32,
    /// The longest keep-alive an MQTT 5 client may use; a client asking none or longer is
    /// told this one (Server Keep Alive).
    pub max_keep_alive_secs: u16,
    /// Connections and kept sessions per identity (person or device): the core sees at
    /// most this many client ids per identity (see `sessions`). Beyond it CONNACK 3.
    pub sessions_per_identity: usize,
    /// Longest wait for the database while authenticating a CONNECT; then CONNACK 3.
    pub auth_timeout: Duration,
    /// TLS for both listeners (MQTT over TLS, WebSocket over TLS), when configured.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// An external, clustered MQTT core shared with other nodes (`NEPHROCARE_MQTT_CORE_URL`);
    /// `None`: the embedded rumqttd (one node).
    pub external_core: Option<core::Core>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            max_people_connections: 5_000,
            max_pending_connects: 1_000,
            max_packet_size: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            messages_per_second: 1_000,
            max_inflight: 64,
            subscribes_per_second: 20,
            subscribe_burst: 300,
            max_session_expiry_secs: 7 * 24 * 3600,
            max_keep_alive_secs: 1200,
            sessions_per_identity: 8,
            auth_timeout: Duration::from_secs(1),
            tls: None,
            external_core: None,
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    settings: BrokerSettings,
    authn: Authenticator,
    policy: Policy,
    core: core::Core,
    sink: Arc<dyn TelemetrySink>,
    people: Arc<dyn PersonSink>,
    /// Told when a person's subscription holds (their open alarms, …).
    on_subscribed: Arc<dyn Subscribed>,
    publisher: ServicePublisher,
    presence: Presence,
    registry: Arc<registry::Registry>,
    sessions: Arc<sessions::SessionBook>,
    /// Several nodes: the persistent sessions, shared through the database.
    kept: Option<sessions::store::KeptStore>,
    /// Machines' connections.
    connections: Arc<Semaphore>,
    /// People's connections.
    people_connections: Arc<Semaphore>,
    /// CONNECTs being authenticated.
    pending: Arc<Semaphore>,
    /// Refused connections, logged once per reason and window.
    refusals: edge::refusals::Refusals,
    /// For the access audit log.
    db: DatabaseConnection,
}

impl Shared {
    /// A person's subscriptions to `topics` hold: the service sends what they should know
    /// now (see [`Subscribed`]).
    pub(crate) fn subscriptions_hold(&self, subject: &nc_access::Subject, topics: Vec<topic::Topic>) {
        if let nc_access::Subject::User(user) = subject {
            for t in topics {
                self.on_subscribed.subscribed(*user, t);
            }
        }
    }

    /// Several nodes: records this connection's persistent session in the shared store
    /// (`released`: its connection is ending), so any node can resume it.
    pub(crate) async fn keep(&self, owner: uuid::Uuid, generation: u64, released: bool) {
        let Some(store) = &self.kept else { return };
        let Some(mut kept) = self.sessions.kept(owner, generation) else { return };
        if released {
            kept.released_at = Some(chrono::Utc::now());
        }
        if let Err(e) = store.put(owner, &kept).await {
            tracing::warn!(error = %e, "could not record a persistent MQTT session for the other nodes");
        }
    }

    /// Several nodes: forgets these client ids' sessions in the shared store.
    pub(crate) async fn unkeep(&self, owner: uuid::Uuid, client_ids: &[String]) {
        let Some(store) = &self.kept else { return };
        if let Err(e) = store.remove(owner, client_ids).await {
            tracing::warn!(error = %e, "could not forget a persistent MQTT session for the other nodes");
        }
    }
}

/// The broker, started: its core runs; [`Broker::run`] serves the listeners.
pub struct Broker {
    shared: Arc<Shared>,
    db: DatabaseConnection,
    bus: cluster::Bus,
}

/// The broker's outbound half, running: the core (embedded, or the external one
/// connected), the service publisher, the node bus, presence and the live-connection
/// registry. What the capabilities need of the transport ([`Connected::outbound`]) exists
/// from here, so they are built with it; [`Connected::serve`] then takes them as its sinks.
pub struct Connected {
    settings: BrokerSettings,
    db: DatabaseConnection,
    core: core::Core,
    bus: cluster::Bus,
    publisher: ServicePublisher,
    presence: Presence,
    registry: Arc<registry::Registry>,
    sessions: Arc<sessions::SessionBook>,
}

/// What the capabilities may ask of live connections: the access epoch and rooms from the
/// registry, notification listeners from the session book.
struct LiveConnections {
    registry: Arc<registry::Registry>,
    sessions: Arc<sessions::SessionBook>,
    link: Arc<publisher::LinkState>,
}

impl nc_messaging::Connections for LiveConnections {
    fn epoch(&self) -> Option<u64> {
        self.registry.epoch()
    }

    fn user_in_room(&self, user: nc_domain::UserId, room: nc_domain::RoomId) -> bool {
        self.registry.user_in_room(user, room)
    }

    fn notified(&self, user: nc_domain::UserId, hospital: nc_domain::HospitalId) -> bool {
        self.sessions.listening(user.as_uuid(), &topic::Topic::Notifications { hospital, user })
    }

    fn notification_listeners(&self) -> Vec<nc_domain::UserId> {
        self.sessions.notification_listeners().into_iter().map(nc_domain::UserId).collect()
    }

    fn link_unsettled_at(&self) -> Option<std::time::Instant> {
        self.link.unsettled_at()
    }
}

impl Broker {
    /// Starts the embedded core (or connects to the external one) and the service publisher.
    pub async fn connect(settings: BrokerSettings, db: DatabaseConnection) -> std::io::Result<Connected> {
        let core = match settings.external_core.clone() {
            Some(external) => external,
            None => {
                core::start(
                    settings.max_connections + settings.max_people_connections,
                    settings.max_packet_size.max(1024 * 1024),
                )
                .await?
            }
        };
        // Other nodes may share an external core: they hear this node's events on the bus.
        let bus = cluster::Bus::new(!core.embedded());
        let publisher = ServicePublisher::start(&core, &bus).await?;
        if !core.embedded() {
            tracing::info!(core = ?core.addrs(), node = %bus.node(), "using the external MQTT core (several nodes)");
        }
        let presence = Presence::new(db.clone(), publisher.clone(), bus.clone());
        // Subscriptions held on other nodes are not in this node's book: with a shared
        // core every committed message goes to the core.
        let sessions = Arc::new(match core.embedded() {
            true => sessions::SessionBook::new(settings.sessions_per_identity, false),
            false => sessions::SessionBook::new(settings.sessions_per_identity, true)
                .on_node(bus.node().simple().to_string()),
        });
        Ok(Connected {
            settings,
            db,
            core,
            bus,
            publisher,
            presence,
            registry: Arc::new(registry::Registry::default()),
            sessions,
        })
    }
}

impl Connected {
    /// What the capabilities publish through and may ask of live connections.
    pub fn outbound(&self) -> nc_messaging::Outbound {
        nc_messaging::Outbound {
            publisher: self.publisher.handle(),
            bus: self.bus.clone(),
            connections: Arc::new(LiveConnections {
                registry: self.registry.clone(),
                sessions: self.sessions.clone(),
                link: self.publisher.link(),
            }),
        }
    }

    /// Device online/offline events, for the alert engine.
    pub fn presence(&self) -> Presence {
        self.presence.clone()
    }

    /// The broker, handing what devices publish to `sink` and what people publish to
    /// `people`, and telling `on_subscribed` when a person's subscription holds;
    /// [`Broker::run`] serves the listeners.
    pub fn serve(
        self,
        authn: Authenticator,
        sink: Arc<dyn TelemetrySink>,
        people: Arc<dyn PersonSink>,
        on_subscribed: Arc<dyn Subscribed>,
    ) -> Broker {
        let Connected { settings, db, core, bus, publisher, presence, registry, sessions } = self;
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            people_connections: Arc::new(Semaphore::new(settings.max_people_connections)),
            pending: Arc::new(Semaphore::new(settings.max_pending_connects)),
            refusals: Default::default(),
            sessions,
            kept: (!core.embedded())
                .then(|| sessions::store::KeptStore::new(db.get_postgres_connection_pool().clone())),
            db: db.clone(),
            settings,
            authn,
            policy: Policy::new(db.clone()),
            core,
            sink,
            people,
            on_subscribed,
            publisher,
            presence,
            registry,
        });
        Broker { shared, db, bus }
    }
}

impl Broker {
    /// Publishes into the broker as the service (alerts, status, chat, notifications).
    pub fn publisher(&self) -> nc_messaging::Publisher {
        self.shared.publisher.handle()
    }

    /// The node-to-node events (off with the embedded core).
    pub fn bus(&self) -> cluster::Bus {
        self.bus.clone()
    }

    /// Device online/offline events, for the alert engine.
    pub fn presence(&self) -> Presence {
        self.shared.presence.clone()
    }

    /// The live client connections (for metrics).
    pub fn registry(&self) -> Arc<registry::Registry> {
        self.shared.registry.clone()
    }

    /// Serves MQTT on `tcp` and MQTT over WebSocket on `ws` until `shutdown` completes, then
    /// lets every connection drain its pending acknowledgements and close.
    pub async fn run(
        &self,
        tcp: TcpListener,
        ws: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let pool = self.db.get_postgres_connection_pool().clone();
        tasks.spawn(registry::listen(self.shared.registry.clone(), pool, stop.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = tcp.accept() => if let Ok((stream, peer)) = accepted {
                    let shared = self.shared.clone();
                    let stop = stop.clone();
                    tasks.spawn(async move {
                        let tls = shared.settings.tls.as_ref();
                        match tokio::time::timeout(shared.settings.connect_timeout, transport::accept(stream, tls)).await {
                            Ok(Ok(stream)) => {
                                let (rx, tx) = transport::tcp(stream);
                                edge::serve(shared, rx, tx, peer, stop).await;
                            }
                            _ => tracing::debug!(%peer, "TLS handshake failed or timed out"),
                        }
                    });
                },
                accepted = ws.accept() => if let Ok((stream, peer)) = accepted {
                    let shared = self.shared.clone();
                    let stop = stop.clone();
                    tasks.spawn(async move {
                        let handshake = tokio::time::timeout(shared.settings.connect_timeout, async {
                            let stream = transport::accept(stream, shared.settings.tls.as_ref()).await.map_err(|e| e.to_string())?;
                            transport::websocket(stream).await
                        })
                        .await;
                        match handshake {
                            Ok(Ok((rx, tx))) => edge::serve(shared, rx, tx, peer, stop).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "websocket handshake refused"),
                            Err(_) => tracing::debug!(%peer, "websocket handshake timed out"),
                        }
                    });
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        stop.cancel();
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), drain).await.is_err() {
            tasks.shutdown().await;
        }
        Ok(())
    }
}
