//! The web dashboard's static files (`dashboard/`), embedded at build time (`build.rs`) and
//! served at `/` (the page, never cached: it names the current assets) and `/assets/{name}`
//! (content-hashed names, cached for a year). The dashboard is a client of the public REST
//! API and MQTT contract like any other; these routes are not API operations and are not in
//! the OpenAPI document.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles, images and fonts
//! only from this origin (no inline code, Trusted Types enforced), connections only to this
//! origin and the MQTT WebSocket listener, no framing, no plugins, no base or form targets.
//! The page learns the broker's address from a `<meta name="nc-mqtt-ws">` the server writes
//! into it: the configured `dashboard.mqtt_ws_url`, or `ws[s]://{host}:{port}/mqtt` with
//! the MQTT WebSocket listener's port (`{host}`: the host the page was loaded from).

use poem::http::{header, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::http::Layered;

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// Where the dashboard finds the broker.
#[derive(Clone, Debug, Default)]
pub struct DashboardSettings {
    /// The MQTT WebSocket URL browsers use (e.g. `wss://mqtt.example.org/mqtt` behind a
    /// proxy); None: the page's host and [`Self::mqtt_ws_port`].
    pub mqtt_ws_url: Option<String>,
    /// The MQTT WebSocket listener's port (as bound).
    pub mqtt_ws_port: u16,
    /// The MQTT listeners use TLS (`wss:`).
    pub mqtt_tls: bool,
}

impl DashboardSettings {
    /// Whether `url` may be the configured MQTT WebSocket URL: `ws://` or `wss://`, and
    /// nothing that would break out of the CSP header or the page's attribute.
    pub fn valid_url(url: &str) -> bool {
        (url.starts_with("ws://") || url.starts_with("wss://"))
            && url.len() <= 200
            && url.chars().all(|c| c.is_ascii_graphic() && !"\"'<>;,\\`".contains(c))
    }

    /// The URL template for the page and the source for `connect-src`, for a request with
    /// this `Host`.
    fn broker(&self, host: Option<&str>) -> (String, Option<String>) {
        if let Some(url) = &self.mqtt_ws_url {
            return (url.clone(), Some(url.clone()));
        }
        let scheme = if self.mqtt_tls { "wss" } else { "ws" };
        let port = self.mqtt_ws_port;
        let source = host.and_then(hostname).map(|h| format!("{scheme}://{h}:{port}"));
        (format!("{scheme}://{{host}}:{port}/mqtt"), source)
    }
}

/// The host part of a `Host` header, if it is a plain name, IPv4 or bracketed IPv6 address.
fn hostname(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..host.find(']')? + 1]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        && (name.starts_with('[') || !name.contains(':'));
    ok.then_some(name)
}

fn csp(connect: Option<&str>) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; \
         connect-src 'self'{}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'; \
         require-trusted-types-for 'script'; trusted-types 'none'",
        connect.map(|c| format!(" {c}")).unwrap_or_default()
    )
}

/// Headers every dashboard answer carries.
fn secured(builder: poem::ResponseBuilder, connect: Option<&str>) -> poem::ResponseBuilder {
    builder
        .header("Content-Security-Policy", csp(connect))
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
        .header("X-Frame-Options", "DENY")
        .header("Cross-Origin-Opener-Policy", "same-origin")
        .header("Cross-Origin-Resource-Policy", "same-origin")
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `GET /`: the page.
fn index(req: &Request, settings: &DashboardSettings) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let (template, connect) = settings.broker(host);
    let page = INDEX.replace("%MQTT_WS%", &escape_attr(&template));
    secured(Response::builder(), connect.as_deref())
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(page)
}

/// `GET /assets/{name}`: a bundled file (404 for any other name).
fn asset(name: &str) -> poem::Result<Response> {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, ..)| *n == name) else {
        return Err(poem::Error::from_status(StatusCode::NOT_FOUND));
    };
    Ok(secured(Response::builder(), None)
        .content_type(*content_type)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .body(*bytes))
}

/// Serves `/` and `/assets/*` (GET and HEAD; other methods 405) in front of the API's
/// router, which nests the OpenAPI service at `/` and so cannot also route `/` itself.
/// Errors go on to the router's error handling like the API's own.
#[derive(Clone)]
pub(crate) struct Pages(pub DashboardSettings);

crate::http::layered_middleware!(Pages);

impl<E: Endpoint> Endpoint for Layered<Pages, E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        let name = path.strip_prefix("/assets/");
        if path != "/" && name.is_none() {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        match name {
            Some(name) => asset(name),
            None => Ok(index(&req, &self.settings.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_address_follows_the_page_host_or_the_setting() {
        let s = DashboardSettings { mqtt_ws_url: None, mqtt_ws_port: 8083, mqtt_tls: false };
        assert_eq!(
            s.broker(Some("unit.example:8080")),
            ("ws://{host}:8083/mqtt".into(), Some("ws://unit.example:8083".into()))
        );
        assert_eq!(s.broker(Some("[::1]:8080")).1.as_deref(), Some("ws://[::1]:8083"));
        assert_eq!(s.broker(Some("10.0.0.5")).1.as_deref(), Some("ws://10.0.0.5:8083"));
        assert_eq!(s.broker(Some("evil; script-src *")).1, None, "a Host that is no host name adds no source");
        assert_eq!(s.broker(None).1, None);
        let tls = DashboardSettings { mqtt_tls: true, ..s.clone() };
        assert_eq!(tls.broker(Some("a.b")).0, "wss://{host}:8083/mqtt");
        let set = DashboardSettings { mqtt_ws_url: Some("wss://mqtt.example/mqtt".into()), ..s };
        assert_eq!(set.broker(Some("x")), ("wss://mqtt.example/mqtt".into(), Some("wss://mqtt.example/mqtt".into())));
    }

    #[test]
    fn only_plain_websocket_urls_may_be_configured() {
        assert!(DashboardSettings::valid_url("wss://mqtt.example.org:443/mqtt"));
        assert!(!DashboardSettings::valid_url("https://mqtt.example.org/mqtt"));
        assert!(!DashboardSettings::valid_url("wss://a.b/mqtt; script-src *"));
        assert!(!DashboardSettings::valid_url("wss://a.b/\"><script>"));
    }

    #[test]
    fn the_page_names_its_assets_and_every_one_is_embedded() {
        for needle in ["%SCRIPT%", "%STYLE%", "%ICON%"] {
            assert!(!INDEX.contains(needle), "index.html still has {needle}: rebuild the dashboard");
        }
        assert!(INDEX.contains("%MQTT_WS%"), "the page takes the broker's address from the server");
        for link in INDEX.split("\"/assets/").skip(1) {
            let name = &link[..link.find('"').expect("a quoted path")];
            assert!(ASSETS.iter().any(|(n, ..)| *n == name), "{name} is linked but not embedded");
        }
    }
}
