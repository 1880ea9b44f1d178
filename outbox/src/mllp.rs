//! HL7 v2 over MLLP, the transport of the IHE PCD ACM Alert Reporter (a PCD-04 to the
//! hospital's alert manager) and of treatment records (an `ORU^R01` to its EMR): the item's
//! payload, an HL7 v2 message, sent to its destination (`host:port`), and the acknowledgement
//! read (`ORA^R41` or `ACK`): `AA`/`CA` delivered; `AE`/`CE` an error at the receiver, tried
//! again (and parked after the last attempt); `AR`/`CR` rejected, parked at once. No answer
//! within the timeout is tried again (the receiver recognises a repeat by the message's
//! control id: an alert's identity and phase, a treatment's session). A destination `mllps://host:port`
//! is reached over TLS, the server's certificate verified against the configured CA
//! certificates (or the system's) and the host.

use std::sync::Arc;
use std::time::Duration;

use nc_hl7::ack::{AckCode, Acknowledgement};
use nc_hl7::message::{Limits, Message};
use nc_hl7::mllp::MllpConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConfig;

use crate::{Item, Receipt, SendError, SendFuture, Sender};

/// Sends HL7 v2 messages, one connection per message.
pub struct MllpSender {
    /// Connecting, the TLS handshake and waiting for the acknowledgement, each.
    pub timeout: Duration,
    /// For `mllps://` destinations.
    tls: Arc<ClientConfig>,
}

impl MllpSender {
    /// A sender whose TLS connections trust the PEM certificates in `ca` (default: the
    /// system's, `/etc/ssl/certs/ca-certificates.crt`).
    pub fn new(ca: Option<&std::path::Path>) -> Result<MllpSender, String> {
        let config = crate::tls_client_config(ca, "NEPHROCARE_ACM_CA")?;
        Ok(MllpSender { timeout: Duration::from_secs(10), tls: Arc::new(config) })
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        message: &Message,
        to: &str,
    ) -> Result<Message, SendError> {
        MllpConnection::new(stream, Limits::default())
            .send_and_await_ack(message, self.timeout)
            .await
            .map_err(|e| SendError::Retry(format!("{to}: {e}")))
    }

    async fn deliver(&self, item: &Item) -> Result<Message, SendError> {
        let message = Message::parse(&item.payload, &Limits::default())
            .map_err(|e| SendError::Refused(format!("not an HL7 v2 message: {e}")))?;
        let to = item.destination.as_str();
        let (tls, address) = match to.strip_prefix("mllps://") {
            Some(a) => (true, a),
            None => (false, to),
        };
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(address))
            .await
            .map_err(|_| SendError::Retry(format!("{to}: no connection within {:?}", self.timeout)))?
            .map_err(|e| SendError::Retry(format!("{to}: {e}")))?;
        let _ = stream.set_nodelay(true);
        if !tls {
            return self.exchange(stream, &message, to).await;
        }
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| SendError::Refused(format!("{to}: {e}")))?;
        let connecting = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, stream);
        let stream = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| SendError::Retry(format!("{to}: no TLS handshake within {:?}", self.timeout)))?
            .map_err(|e| SendError::Retry(format!("{to}: TLS: {e}")))?;
        self.exchange(stream, &message, to).await
    }
}

impl Sender for MllpSender {
    fn send<'a>(&'a self, item: &'a Item) -> SendFuture<'a> {
        Box::pin(async move {
            let reply = self.deliver(item).await?;
            let ack = Acknowledgement::from_message(&reply)
                .map_err(|e| SendError::Retry(format!("the receiver's answer is not an acknowledgement: {e}")))?;
            let detail = || {
                let why: Vec<String> = ack.errors.iter().filter_map(|e| e.diagnostic.clone()).collect();
                [ack.text.clone().unwrap_or_default(), why.join("; ")].join(" ").trim().to_owned()
            };
            match ack.code {
                AckCode::Accepted => Ok(Receipt(ack.code.as_str().to_owned())),
                AckCode::Error => Err(SendError::Retry(format!("AE {}", detail()))),
                AckCode::Rejected => Err(SendError::Refused(format!("AR {}", detail()))),
            }
        })
    }
}
