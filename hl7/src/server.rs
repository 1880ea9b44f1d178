//! A listener for HL7 v2 over MLLP (the PCD-05 status listener now, PCD-01 gateways later):
//! each connection carries messages in sequence, each answered by the handler's
//! acknowledgement before the next is read. A frame that is not HL7 is answered with a
//! negative acknowledgement built from the parse error (the connection stays); broken
//! framing closes the connection with a log line; never a panic. At most
//! `max_connections` at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ack::acknowledge_error;
use crate::message::{Limits, Message};
use crate::mllp::{MllpConnection, MllpError};

/// Who sent a message: the peer's address and which connection (unique in this process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub connection: u64,
}

/// What answers the messages of a listener's connections.
pub trait Handler: Send + Sync + 'static {
    /// The acknowledgement of `message`, sent back before the connection's next message is read.
    fn handle(&self, message: Message, peer: Peer) -> impl Future<Output = Message> + Send;
    /// A connection ended (its peer closed it, its framing broke, or the listener stops).
    fn closed(&self, _peer: Peer) {}
}

/// A closure as a [`Handler`].
struct Answer<H>(H);

impl<H, F> Handler for Answer<H>
where
    H: Fn(Message, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Message> + Send + 'static,
{
    fn handle(&self, message: Message, peer: Peer) -> impl Future<Output = Message> + Send {
        (self.0)(message, peer.addr)
    }
}

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
    serve_with(listener, limits, max_connections, Arc::new(Answer(handle)), shutdown).await
}

/// [`serve`] with a [`Handler`] that knows each connection.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    limits: Limits,
    max_connections: usize,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
    let room = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let (stream, addr) = tokio::select! {
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
            tracing::warn!(peer = %addr, "MLLP connection refused: too many at once");
            continue;
        };
        let peer = Peer { addr, connection: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed) };
        let (handler, limits, stop) = (handler.clone(), limits.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            converse(MllpConnection::new(stream, limits), &*handler, peer, stop).await;
            handler.closed(peer);
        });
    }
}

/// One connection's messages, each answered before the next is read.
async fn converse<S, H>(mut connection: MllpConnection<S>, handler: &H, peer: Peer, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    H: Handler,
{
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = connection.receive() => r,
        };
        let reply = match received {
            Ok(None) => return,
            Ok(Some(message)) => handler.handle(message, peer).await,
            Err(MllpError::Parse(e)) => {
                let now = Utc::now().fixed_offset();
                acknowledge_error(&e, None, &uuid_like(), &now)
            }
            Err(e) => {
                tracing::warn!(peer = %peer.addr, error = %e, "MLLP connection closed");
                return;
            }
        };
        if let Err(e) = connection.send(&reply).await {
            tracing::warn!(peer = %peer.addr, error = %e, "MLLP connection closed while answering");
            return;
        }
    }
}

/// A control id for our own acknowledgements: unique enough per process and time.
pub fn uuid_like() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("NC{}{}", Utc::now().timestamp_micros(), NEXT.fetch_add(1, Ordering::Relaxed))
}
