//! HTTP, the transport of FHIR `rest-hook` notifications: a body POSTed to a URL with the
//! subscriber's headers, within a timeout. `2xx` is delivered; no answer, `408`, `429` and
//! `5xx` are tried again; any other answer (`3xx`: redirects are not followed; `4xx`: the
//! receiver refuses it) parks the message. `https://` URLs are reached over TLS, the server's
//! certificate verified against the configured CA certificates (or the system's) and the host.

use std::time::Duration;

use crate::{Receipt, SendError};

/// Posts messages; one connection pool for all.
pub struct HttpSender {
    client: reqwest::Client,
}

/// What one POST carries.
pub struct Post<'a> {
    pub url: &'a str,
    pub content_type: &'a str,
    /// `Name: value` lines (the subscriber's own, e.g. its authorization).
    pub headers: &'a [String],
    pub body: String,
    pub timeout: Duration,
}

impl HttpSender {
    /// A sender whose TLS connections trust the PEM certificates in `ca` (default: the
    /// system's).
    pub fn new(ca: Option<&std::path::Path>, setting: &str) -> Result<HttpSender, String> {
        let tls = crate::tls_client_config(ca, setting)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("nephrocare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpSender { client })
    }

    /// POSTs `post.body` to `post.url`.
    pub async fn post(&self, post: Post<'_>) -> Result<Receipt, SendError> {
        let mut request = self
            .client
            .post(post.url)
            .timeout(post.timeout)
            .header(reqwest::header::CONTENT_TYPE, post.content_type)
            .body(post.body);
        for line in post.headers {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| SendError::Refused(format!("a header is not `Name: value`: {line:?}")))?;
            request = request.header(name.trim(), value.trim());
        }
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "no answer within the timeout"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "the exchange failed"
            };
            SendError::Retry(format!("{what}: {}", error_chain(&e)))
        })?;
        let status = response.status();
        let answer = format!("HTTP {}", status.as_u16());
        match status.as_u16() {
            200..=299 => Ok(Receipt(answer)),
            408 | 429 | 500..=599 => Err(SendError::Retry(answer)),
            300..=399 => Err(SendError::Refused(format!("{answer}: redirects are not followed"))),
            _ => Err(SendError::Refused(answer)),
        }
    }
}

/// The error and its causes, for the log and the subscription's status.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
