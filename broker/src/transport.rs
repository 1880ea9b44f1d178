//! Client transports: MQTT over TCP, and MQTT over WebSocket (path `/mqtt`, subprotocol
//! `mqtt`, binary frames), each optionally inside TLS. Both are split into a reading and a
//! writing half so one task can wait on the client and the core at once.

use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client's byte stream: plain TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

pub enum ClientRx {
    Tcp(ReadHalf<Stream>),
    Ws(SplitStream<WebSocketStream<Stream>>),
}

pub enum ClientTx {
    Tcp(WriteHalf<Stream>),
    Ws(SplitSink<WebSocketStream<Stream>, Message>),
}

/// Accepts a connection: TLS first when configured.
pub async fn accept(
    stream: TcpStream,
    tls: Option<&Arc<tokio_rustls::rustls::ServerConfig>>,
) -> std::io::Result<Stream> {
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let tls = tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream).await?;
            Ok(Box::new(tls))
        }
    }
}

/// Loads a PEM certificate chain and private key into a TLS server configuration.
pub fn tls_config(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert_pem.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert_pem.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .map_err(|e| format!("cannot read the private key {}: {e}", key_pem.display()))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    Ok(Arc::new(config))
}

pub fn tcp(stream: Stream) -> (ClientRx, ClientTx) {
    let (r, w) = tokio::io::split(stream);
    (ClientRx::Tcp(r), ClientTx::Tcp(w))
}

/// Completes the WebSocket handshake: path `/mqtt`, subprotocol `mqtt` required.
#[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
pub async fn websocket(stream: Stream) -> Result<(ClientRx, ClientTx), String> {
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode, why: &str| {
            let mut r = ErrorResponse::new(Some(why.to_owned()));
            *r.status_mut() = status;
            r
        };
        if req.uri().path() != crate::WS_PATH {
            return Err(refuse(StatusCode::NOT_FOUND, "MQTT over WebSocket is served at /mqtt"));
        }
        let offers_mqtt = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        if !offers_mqtt {
            return Err(refuse(StatusCode::BAD_REQUEST, "the WebSocket subprotocol must be mqtt"));
        }
        resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await.map_err(|e| e.to_string())?;
    let (w, r) = ws.split();
    Ok((ClientRx::Ws(r), ClientTx::Ws(w)))
}

impl ClientRx {
    /// Appends what arrives to `buf`; `Ok(0)` at the end of the stream. Cancel-safe.
    pub async fn read(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            ClientRx::Tcp(r) => r.read_buf(buf).await,
            ClientRx::Ws(r) => loop {
                match r.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Binary(b))) => {
                        if b.is_empty() {
                            continue;
                        }
                        buf.extend_from_slice(&b);
                        return Ok(b.len());
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "MQTT over WebSocket uses binary frames",
                        ))
                    }
                    Some(Ok(_)) => continue, // ping/pong/frame: handled by tungstenite
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                }
            },
        }
    }
}

impl ClientTx {
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            ClientTx::Tcp(w) => w.write_all(data).await,
            ClientTx::Ws(w) => w.send(Message::Binary(data.to_vec().into())).await.map_err(std::io::Error::other),
        }
    }

    pub async fn close(&mut self) {
        match self {
            ClientTx::Tcp(w) => {
                let _ = w.shutdown().await;
            }
            ClientTx::Ws(w) => {
                let _ = w.close().await;
            }
        }
    }
}
