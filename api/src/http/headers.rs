//! Security headers, set in one place for every response the HTTP listener sends (the API,
//! FHIR, errors, the documents, `/docs`, the dashboard):
//! - `X-Content-Type-Options: nosniff` on everything;
//! - `Cache-Control: no-store` wherever a response does not say how it may be cached (API
//!   and FHIR answers carry patient data: no browser or proxy keeps them); the dashboard's
//!   own files say `no-cache` or `immutable` themselves;
//! - framing refused (`X-Frame-Options: DENY`), no referrer, and a Content-Security-Policy
//!   wherever a response has none of its own: `default-src 'none'` for data, which no browser
//!   should run anything from; the Swagger UI at `/docs` gets one that allows exactly its
//!   inline scripts (by hash) and styles, and connections to this origin only.

use base64::Engine;
use poem::http::{header, HeaderValue};
use poem::web::Html;
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::Digest;

use crate::http::Layered;

/// The policy of responses that are data (JSON, FHIR, errors): nothing runs, nothing frames.
const DATA_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the headers above to every response.
#[derive(Clone)]
pub struct SecurityHeaders;

crate::http::layered_middleware!(SecurityHeaders);

impl<E: Endpoint> Endpoint for Layered<SecurityHeaders, E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        let h = resp.headers_mut();
        let mut default = |name: header::HeaderName, value: &'static str| {
            if !h.contains_key(&name) {
                h.insert(name, HeaderValue::from_static(value));
            }
        };
        default(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        default(header::CACHE_CONTROL, "no-store");
        default(header::X_FRAME_OPTIONS, "DENY");
        default(header::REFERRER_POLICY, "no-referrer");
        default(header::CONTENT_SECURITY_POLICY, DATA_CSP);
        Ok(resp)
    }
}

/// The Swagger UI page (`/docs`) with a Content-Security-Policy that allows its own inline
/// scripts by their SHA-256 and nothing else to run.
pub fn docs(html: String) -> impl Endpoint {
    let csp = docs_csp(&html);
    poem::endpoint::make_sync(move |_| {
        Html(html.clone()).with_header(header::CONTENT_SECURITY_POLICY, csp.clone()).into_response()
    })
}

/// `script-src` by the hashes of the page's inline scripts; inline styles (Swagger UI sets
/// style attributes as it renders); images from this origin or data URLs; fetches (the
/// document is inline, "try it out" calls the API) to this origin only.
fn docs_csp(html: &str) -> String {
    let hashes: Vec<String> = inline_scripts(html)
        .into_iter()
        .map(|s| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s))))
        .collect();
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hashes.join(" ")
    )
}

/// The text of each inline `<script>` element of `html`, as an HTML parser delimits it: from
/// the end of the start tag to the first `</script>` (a script may well contain `<script` in
/// a string, as Swagger UI's bundle does).
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after_tag = &rest[start..];
        let Some(open_end) = after_tag.find('>') else { break };
        let body = &after_tag[open_end + 1..];
        let Some(close) = body.find("</script>") else { break };
        scripts.push(&body[..close]);
        rest = &body[close + "</script>".len()..];
    }
    scripts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inline_script_is_hashed() {
        let html =
            "<head><script charset=\"UTF-8\">var a = '<script';</script></head><body><script>go()</script></body>";
        assert_eq!(inline_scripts(html), vec!["var a = '<script';", "go()"]);
        let csp = docs_csp(html);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s));
        assert!(csp.contains(&format!("'sha256-{}' 'sha256-{}'", b64("var a = '<script';"), b64("go()"))), "{csp}");
        assert!(!csp.contains("unsafe-eval") && csp.contains("frame-ancestors 'none'"));
    }
}
