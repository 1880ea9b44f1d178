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

/// Who sent a message: the peer's address, which connection (unique in this process) and,
/// over TLS, the SHA-256 of the client certificate it presented (DER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub connection: u64,
    pub certificate: Option<[u8; 32]>,
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// A listener's TLS: its certificate and key (PEM files) and, if given, the CA whose client
/// certificates are verified (a client may still connect without one: whether a peer must
/// present one is the handler's decision, from [`Peer::certificate`]).
pub fn tls_acceptor(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let read_certs = |path: &std::path::Path| {
        CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))
            .and_then(|c| if c.is_empty() { Err(format!("{} holds no certificate", path.display())) } else { Ok(c) })
    };
    let certs = read_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .map_err(|e| format!("cannot read the private key {}: {e}", key_pem.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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
    serve_with(listener, limits, max_connections, Arc::new(Answer(handle)), None, shutdown).await
}

/// [`serve`] with a [`Handler`] that knows each connection, over TLS when `tls` is given.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    limits: Limits,
    max_connections: usize,
    handler: Arc<H>,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
        let mut peer = Peer { addr, connection: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed), certificate: None };
        let (handler, limits, stop, tls) = (handler.clone(), limits.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => converse(MllpConnection::new(stream, limits), &*handler, peer, stop).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::info!(peer = %addr, error = %e, "MLLP TLS handshake failed"),
                        Err(_) => return tracing::info!(peer = %addr, "MLLP TLS handshake timed out"),
                    };
                    peer.certificate = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| {
                        use sha2::Digest;
                        sha2::Sha256::digest(c.as_ref()).into()
                    });
                    converse(MllpConnection::new(stream, limits), &*handler, peer, stop).await;
                }
            }
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
