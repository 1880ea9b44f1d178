//! The service's public base URL, for the absolute URLs it writes into answers (FHIR
//! `fullUrl`s and Bundle links, the Bulk Data status and file URLs): a setting
//! (`http.public_url`, `NEPHROCARE_PUBLIC_URL`), never the request's `Host`, so a client
//! cannot make the service hand out links (which Bulk Data clients follow with their access
//! token) to a host of its choosing. `X-Forwarded-Proto` and `X-Forwarded-Host` are honoured
//! only from the configured trusted proxies (`http.trusted_proxies`), where a proxy that
//! serves the service under several names says which one a request came through.

use std::net::IpAddr;

use poem::Request;

/// The public base URL and who may override its scheme and host.
#[derive(Clone, Debug)]
pub struct PublicOrigin {
    /// `scheme://host[:port]`, no trailing slash.
    base: String,
    trusted: Vec<IpAddr>,
}

impl PublicOrigin {
    /// `url`: an `http://` or `https://` origin (a trailing `/` is dropped); `None` if it is
    /// not one (see [`PublicOrigin::valid`]).
    pub fn new(url: &str, trusted_proxies: Vec<IpAddr>) -> Option<PublicOrigin> {
        let base = url.trim_end_matches('/');
        Self::valid(base).then(|| PublicOrigin { base: base.to_owned(), trusted: trusted_proxies })
    }

    /// Whether `url` is a plain origin: `http://` or `https://` and a host (name, IPv4 or
    /// bracketed IPv6) with an optional port, and no path, query or credentials.
    pub fn valid(url: &str) -> bool {
        let url = url.trim_end_matches('/');
        let Some(host) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else { return false };
        valid_host(host)
    }

    /// The base URL as this request should see it.
    pub fn base(&self, req: &Request) -> String {
        let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
        let from_proxy = peer.is_some_and(|ip| self.trusted.contains(&ip));
        if !from_proxy {
            return self.base.clone();
        }
        let header = |name: &str| {
            // A proxy chain appends: the first value is what the client asked for.
            req.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim)
        };
        let (scheme, host) = self.base.split_once("://").expect("validated");
        let scheme = match header("x-forwarded-proto") {
            Some("https") => "https",
            Some("http") => "http",
            _ => scheme,
        };
        let host = header("x-forwarded-host").filter(|h| valid_host(h)).unwrap_or(host);
        format!("{scheme}://{host}")
    }
}

/// `host[:port]`: a DNS name, IPv4 or bracketed IPv6 address, and digits after a colon.
fn valid_host(s: &str) -> bool {
    let (host, port) = if s.starts_with('[') {
        match s.split_once("]:") {
            Some((h, p)) => (&s[..=h.len()], Some(p)),
            None => (s, None),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !host.starts_with(['.', '-'])
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origins_are_public_urls() {
        for ok in
            ["http://127.0.0.1:8080", "https://nephro.example.org", "https://nephro.example.org/", "http://[::1]:80"]
        {
            assert!(PublicOrigin::valid(ok), "{ok}");
        }
        for bad in [
            "nephro.example.org",
            "ftp://x",
            "https://",
            "https://user:pw@host",
            "https://host/path",
            "https://host?q",
            "https://host:port",
            "https://::1",
            "https://evil.example\"",
        ] {
            assert!(!PublicOrigin::valid(bad), "{bad}");
        }
    }
}
