//! E-mail over SMTP with `lettre`: the server and its security from a URL
//! (`smtp://host:25` plain, `smtp://host:587?tls=required` STARTTLS, `smtps://host:465`
//! implicit TLS; `user:password@` to authenticate), verified against the system's
//! certificates. An item's payload is `{"subject", "body"}`, plain text; no PHI is ever put
//! in one (account codes; for alarms, priority, machine, bay and a link).

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::{Item, Receipt, SendError, SendFuture, Sender};

/// An e-mail's content, as queued.
#[derive(Debug, Deserialize)]
struct Email {
    subject: String,
    body: String,
}

/// Why the e-mail settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("NEPHROCARE_SMTP_URL: {0}")]
    Url(String),
    #[error("NEPHROCARE_SMTP_FROM: {0}")]
    From(String),
}

pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSender {
    /// The server at `url` (see the module documentation), sending as `from`
    /// (`Name <address>` or an address).
    pub fn new(url: &str, from: &str) -> Result<SmtpSender, EmailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| EmailError::Url(e.to_string()))?
            .timeout(Some(std::time::Duration::from_secs(15)))
            .build();
        let from = from.parse().map_err(|e: lettre::address::AddressError| EmailError::From(e.to_string()))?;
        Ok(SmtpSender { transport, from })
    }
}

impl Sender for SmtpSender {
    fn send<'a>(&'a self, item: &'a Item) -> SendFuture<'a> {
        Box::pin(async move {
            let email: Email = serde_json::from_str(&item.payload)
                .map_err(|e| SendError::Refused(format!("not an e-mail payload: {e}")))?;
            let to: Mailbox = item
                .destination
                .parse()
                .map_err(|e| SendError::Refused(format!("'{}' is not an e-mail address: {e}", item.destination)))?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(email.subject)
                .header(ContentType::TEXT_PLAIN)
                .body(email.body)
                .map_err(|e| SendError::Refused(format!("cannot build the e-mail: {e}")))?;
            match self.transport.send(message).await {
                Ok(response) => Ok(Receipt(format!("{} {}", response.code(), response.message().next().unwrap_or("")))),
                // 5xx: the server will not take it (an unknown mailbox, a refused sender).
                Err(e) if e.is_permanent() => Err(SendError::Refused(e.to_string())),
                Err(e) => Err(SendError::Retry(e.to_string())),
            }
        })
    }
}
