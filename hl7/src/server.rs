//! A listener for HL7 v2 over MLLP (the PCD-05 status listener now, PCD-01 gateways later):
//! each connection carries messages in sequence, each answered by the handler's
//! acknowledgement before the next is read. A frame that is not HL7 is answered with a
//! negative acknowledgement built from the parse error (the connection stays); broken
//! framing closes the connection with a log line; never a panic. At most
//! `max_connections` at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ack::acknowledge_error;
use crate::message::{Limits, Message};
use crate::mllp::{MllpConnection, MllpError};

/// Serves `listener` until `shutdown`: every message to `handle` (with the peer's address),
/// whose answer is sent back.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    max_connections: usize,
    handle: H,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    H: Fn(Message, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Message> + Send + 'static,
{
    let handle = Arc::new(handle);
    let room = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "MLLP accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "MLLP connection refused: too many at once");
            continue;
        };
        let (handle, limits, stop) = (handle.clone(), limits.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut connection = MllpConnection::new(stream, limits);
            loop {
                let received = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = connection.receive() => r,
                };
                let reply = match received {
                    Ok(None) => return,
                    Ok(Some(message)) => handle(message, peer).await,
                    Err(MllpError::Parse(e)) => {
                        let now = Utc::now().fixed_offset();
                        acknowledge_error(&e, None, &uuid_like(), &now)
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "MLLP connection closed");
                        return;
                    }
                };
                if let Err(e) = connection.send(&reply).await {
                    tracing::warn!(%peer, error = %e, "MLLP connection closed while answering");
                    return;
                }
            }
        });
    }
}

/// A control id for our own acknowledgements: unique enough per process and time.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("NC{}{}", Utc::now().timestamp_micros(), NEXT.fetch_add(1, Ordering::Relaxed))
}
