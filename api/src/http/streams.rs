//! What the WebSocket streams share (`/ws/health-metrics`, `/ws/chat`): the access token
//! from `?token=` (browsers cannot set headers on a WebSocket), the refusals before the
//! upgrade, and the bound on streams per person.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nc_domain::UserId;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};

/// Live streams one person may hold open at once.
pub const STREAMS_PER_USER: usize = 8;

/// Open streams per person.
#[derive(Default)]
pub struct StreamCounts(Mutex<HashMap<UserId, usize>>);

/// One open stream, counted until dropped.
pub struct StreamSlot {
    counts: Arc<StreamCounts>,
    user: UserId,
}

impl StreamCounts {
    pub fn take(self: &Arc<Self>, user: UserId) -> Option<StreamSlot> {
        let mut counts = self.0.lock().expect("stream counts");
        let n = counts.entry(user).or_default();
        if *n >= STREAMS_PER_USER {
            return None;
        }
        *n += 1;
        Some(StreamSlot { counts: self.clone(), user })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("stream counts");
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LiveQuery {
    pub(crate) token: Option<String>,
}

pub(crate) fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    poem::web::Json(serde_json::json!({"code": code, "message": message})).with_status(status).into_response()
}

/// The person opening a live stream, from `?token=` (401 otherwise), and when the token
/// expires (the stream closes with 4401 then).
pub(crate) async fn viewer(
    authn: &nc_access::authn::Authenticator,
    query: LiveQuery,
) -> Result<(nc_access::UserSubject, chrono::DateTime<chrono::Utc>), Response> {
    let Some(token) = query.token else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "unauthorized", "pass the access token as ?token="));
    };
    authn.user_until(&token).await.map_err(|e| refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()))
}

/// The answer when a person holds [`STREAMS_PER_USER`] streams already.
pub(crate) fn too_many_streams() -> Response {
    poem::web::Json(serde_json::json!({"code": "rate_limited",
        "message": format!("at most {STREAMS_PER_USER} live streams per person at once")}))
    .with_status(StatusCode::TOO_MANY_REQUESTS)
    .with_header("Retry-After", "5")
    .into_response()
}
