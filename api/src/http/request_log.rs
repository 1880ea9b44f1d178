//! The request log: one line per request with the method, the path, the status and the
//! duration. Never the query string: the live WebSocket takes its access token in
//! `?token=`, and a query may carry personal data (`?q=` searches by name). Only the names
//! of the query's parameters are logged, never their values.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response, Result};

use crate::http::Layered;

/// Logs every request (target `nephrocare_api::request`): 5xx at warn, the rest at info;
/// and times it by route template (`nephrocare_http_request_seconds`).
#[derive(Clone)]
pub struct RequestLog(pub crate::contract::Methods);

crate::http::layered_middleware!(RequestLog);

/// The names of a query's parameters, without their values: `token=…&q=…` → `token,q`.
/// A "name" that does not look like one (a bare value such as `?eyJhbGciOi…`) is replaced
/// by `*`; at most 16 names are listed.
pub(crate) fn query_names(query: &str) -> String {
    let looks_like_a_name =
        |n: &str| n.len() <= 32 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b));
    let mut names: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
        .map(|n| if looks_like_a_name(n) { n } else { "*" })
        .take(16)
        .collect();
    names.dedup();
    names.join(",")
}

impl<E: Endpoint> Endpoint for Layered<RequestLog, E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.original_uri();
        let path = uri.path().to_owned();
        let query = uri.query().map(query_names).unwrap_or_default();
        let remote = req.remote_addr().to_string();
        let resp = self.inner.call(req).await.map(IntoResponse::into_response);
        let status = match &resp {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let duration_ms = elapsed * 1000.0;
        let route = nc_metrics::Route {
            // A bounded set: any other method is `other`.
            method: match method.as_str() {
                m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_owned(),
                _ => "other".to_owned(),
            },
            route: self.settings.0.route(&path).unwrap_or_else(|| "other".to_owned()),
            status: nc_metrics::status_class(status.as_u16()),
        };
        nc_metrics::get().http_request_seconds.get_or_create(&route).observe(elapsed);
        if status.is_server_error() {
            tracing::warn!(target: "nephrocare_api::request", %method, %path, query_params = %query, status = status.as_u16(), duration_ms, %remote, "request");
        } else {
            tracing::info!(target: "nephrocare_api::request", %method, %path, query_params = %query, status = status.as_u16(), duration_ms, %remote, "request");
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::query_names;

    #[test]
    fn only_parameter_names_are_kept() {
        assert_eq!(query_names("token=eyJhbGciOi.secret&x=1"), "token,x");
        assert_eq!(query_names("flag&&q=Ann%20Smith"), "flag,q");
        assert_eq!(query_names("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"), "*");
        assert_eq!(query_names(""), "");
    }
}
