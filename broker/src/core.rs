//! The embedded rumqttd: the routing core (topic matching, fan-out, sessions, retained
//! messages, last will). It listens on a loopback port that only the edge and the
//! service's own publisher use, protected by a random per-process credential that its auth
//! hook checks; clients never reach it directly.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Where the core listens, and the credential it accepts.
#[derive(Clone)]
pub struct Core {
    pub addr: SocketAddr,
    pub credential: String,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("addr", &self.addr).field("credential", &"***").finish()
    }
}

/// The username the edge and the publisher present to the core.
pub const INTERNAL_USER: &str = "nephrocare-edge";

/// Starts rumqttd on its own threads (it has no shutdown API: it ends with the process).
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
    Ok(Core { addr, credential })
}
