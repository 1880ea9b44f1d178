//! The IHE PCD ACM Alert Reporter's transport: a PCD-04 (an HL7 v2 message, the item's
//! payload) sent over MLLP to the hospital's alert manager (`host:port`, the item's
//! destination), and its acknowledgement read (`ORA^R41` or `ACK`): `AA`/`CA` delivered;
//! `AE`/`CE` an error at the manager, tried again (and parked after the last attempt); `AR`/`CR`
//! rejected, parked at once. No answer within the timeout is tried again (the manager
//! recognises a repeat by the alert's identity and phase).

use std::time::Duration;

use nc_hl7::ack::{AckCode, Acknowledgement};
use nc_hl7::message::{Limits, Message};
use nc_hl7::mllp::MllpConnection;
use tokio::net::TcpStream;

use crate::{Item, Receipt, SendError, SendFuture, Sender};

/// Sends PCD-04s, one connection per message.
pub struct AcmSender {
    /// Connecting and waiting for the acknowledgement, each.
    pub timeout: Duration,
}

impl Default for AcmSender {
    fn default() -> Self {
        AcmSender { timeout: Duration::from_secs(10) }
    }
}

impl Sender for AcmSender {
    fn send<'a>(&'a self, item: &'a Item) -> SendFuture<'a> {
        Box::pin(async move {
            let limits = Limits::default();
            let message = Message::parse(&item.payload, &limits)
                .map_err(|e| SendError::Refused(format!("not an HL7 v2 message: {e}")))?;
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect(item.destination.as_str()))
                .await
                .map_err(|_| {
                    SendError::Retry(format!("{}: no connection within {:?}", item.destination, self.timeout))
                })?
                .map_err(|e| SendError::Retry(format!("{}: {e}", item.destination)))?;
            let _ = stream.set_nodelay(true);
            let mut connection = MllpConnection::new(stream, limits);
            let reply = connection
                .send_and_await_ack(&message, self.timeout)
                .await
                .map_err(|e| SendError::Retry(format!("{}: {e}", item.destination)))?;
            let ack = Acknowledgement::from_message(&reply)
                .map_err(|e| SendError::Retry(format!("the alert manager's answer is not an acknowledgement: {e}")))?;
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
