//! The MQTT component. Machines publish telemetry here and the mobile apps subscribe here.
//!
//! This is the component's skeleton from the foundation issue: it owns its listeners
//! (MQTT over TCP and over WebSocket) and its shutdown, and answers every CONNECT with
//! CONNACK "server unavailable" (3.1.1 return code 3), so a client gets a clear, standard
//! refusal rather than a hang. The authenticating, authorizing edge in front of the
//! embedded rumqttd routing core replaces it (see ARCHITECTURE.md and topics.md).

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// CONNACK, MQTT 3.1.1 return code 0x03 "Server unavailable".
const CONNACK_SERVER_UNAVAILABLE: [u8; 4] = [0x20, 0x02, 0x00, 0x03];

/// Serves MQTT on `tcp` and MQTT-over-WebSocket on `ws` until `shutdown` completes.
pub async fn run(tcp: TcpListener, ws: TcpListener, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = tcp.accept() => {
                if let Ok((stream, peer)) = accepted {
                    tracing::debug!(%peer, "mqtt connection refused: broker not enabled");
                    connections.spawn(refuse(stream));
                }
            }
            accepted = ws.accept() => {
                // Closing is the only clear answer before the WebSocket handshake exists.
                drop(accepted);
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

async fn refuse(mut stream: TcpStream) {
    let mut first = [0u8; 1];
    // Wait (briefly) for the CONNECT so the client reads the CONNACK rather than a reset.
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut first)).await;
    if matches!(read, Ok(Ok(1))) && first[0] >> 4 == 1 {
        let _ = stream.write_all(&CONNACK_SERVER_UNAVAILABLE).await;
        let _ = stream.shutdown().await;
    }
}
