//! HTTP, the transport of FHIR `rest-hook` notifications: a body POSTed to a URL with the
//! subscriber's headers, within a timeout. `2xx` is delivered; no answer, `408`, `429` and
//! `5xx` are tried again; any other answer (`3xx`: redirects are not followed; `4xx`: the
//! receiver refuses it) parks the message. `https://` URLs are reached over TLS, the server's
//! certificate verified against the configured CA certificates (or the system's) and the host.
//!
//! Unless internal receivers are allowed, only **public addresses** are reached: a host that
//! resolves to a loopback, private, link-local, shared, multicast or unspecified address is
//! refused (the check is in the resolver the connection uses, so a name cannot resolve to a
//! public address when checked and an internal one when connected), and so is such an
//! address written as the host. Subscribers choose the URL; the service's own network is not
//! theirs to reach.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::{Receipt, SendError};

/// Whether `ip` is reachable on the public internet (not the service's own networks).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves names to public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(format!("{host} resolves to an internal address ({})", a.ip()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Posts messages; one connection pool for all.
pub struct HttpSender {
    client: reqwest::Client,
    /// Internal (non-public) addresses may be reached.
    internal: bool,
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
    /// system's), reaching internal addresses only if `internal`.
    pub fn new(ca: Option<&std::path::Path>, setting: &str, internal: bool) -> Result<HttpSender, String> {
        let tls = crate::tls_client_config(ca, setting)?;
        let mut builder = reqwest::Client::builder();
        if !internal {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("nephrocare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpSender { client, internal })
    }

    /// POSTs `post.body` to `post.url`.
    pub async fn post(&self, post: Post<'_>) -> Result<Receipt, SendError> {
        let url = reqwest::Url::parse(post.url).map_err(|e| SendError::Refused(format!("not a URL: {e}")))?;
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if !self.internal && literal.is_some_and(|ip| !is_public(ip)) {
            return Err(SendError::Refused("an internal address: not reachable from here".into()));
        }
        let mut request = self
            .client
            .post(url)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
