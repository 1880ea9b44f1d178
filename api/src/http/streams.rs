//! What the WebSocket streams share (`/ws/health-metrics`, `/ws/chat`): the access token
//! from `?token=` (browsers cannot set headers on a WebSocket), the refusals before the
//! upgrade, the bound on streams per person, and the upgraded stream's loop ([`Live`]):
//! the token's expiry (4401), the re-checks of access (4403) and the client's frames.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use nc_access::UserSubject;
use nc_broker::registry::Watch;
use nc_domain::UserId;
use poem::http::StatusCode;
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use poem::{IntoResponse, Response};
use serde_json::Value;

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

/// The refusal when a dependency (the database) cannot answer now.
pub(crate) fn unavailable() -> Response {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry later")
}

/// What a stream is opened on: the id in the path parameter `name` (400 when it is not
/// one), the person opening it, from `?token=` (401 otherwise), and when their token
/// expires (the stream closes with 4401 then).
pub(crate) async fn opening<T: FromStr>(
    id: &str,
    name: &str,
    authn: &nc_access::authn::Authenticator,
    query: LiveQuery,
) -> Result<(T, UserSubject, DateTime<Utc>), Response> {
    let Ok(id) = id.parse::<T>() else {
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", &format!("{name} is not a valid id")));
    };
    let Some(token) = query.token else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "unauthorized", "pass the access token as ?token="));
    };
    let (user, expires) =
        authn.user_until(&token).await.map_err(|e| refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()))?;
    Ok((id, user, expires))
}

/// The answer when a person holds [`STREAMS_PER_USER`] streams already.
pub(crate) fn too_many_streams() -> Response {
    poem::web::Json(serde_json::json!({"code": "rate_limited",
        "message": format!("at most {STREAMS_PER_USER} live streams per person at once")}))
    .with_status(StatusCode::TOO_MANY_REQUESTS)
    .with_header("Retry-After", "5")
    .into_response()
}

/// What woke an upgraded stream up (see [`Live::next`]).
pub(crate) enum Wake<T> {
    /// The stream's own events.
    Events(T),
    /// Access must be decided again: then [`Live::decided`] with this epoch, or
    /// [`Live::revoke`].
    Recheck(Option<u64>),
    /// A frame from the client (not a close).
    Frame(Message),
    /// The stream is over: the client went away, or the token expired (closed with 4401).
    Gone,
}

/// An upgraded stream: its socket, its access token's expiry, and when its access must be
/// decided again (the [`Watch`], looked at every second).
pub(crate) struct Live {
    tx: SplitSink<WebSocketStream, Message>,
    rx: SplitStream<WebSocketStream>,
    recheck: tokio::time::Interval,
    expiry: Pin<Box<tokio::time::Sleep>>,
    watch: Watch,
}

impl Live {
    /// The stream on `socket`, for a token that expires at `expires`, with the access
    /// decision `watch` holds.
    pub(crate) fn new(socket: WebSocketStream, expires: DateTime<Utc>, watch: Watch) -> Self {
        let (tx, rx) = socket.split();
        let expiry = tokio::time::sleep((expires - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        Self { tx, rx, recheck: tokio::time::interval(Duration::from_secs(1)), expiry: Box::pin(expiry), watch }
    }

    /// Waits for whichever comes first: `events`, the token's expiry, a re-check that is
    /// due, or a frame from the client. `events` is dropped unfinished when something else
    /// comes first, so it must be cancel-safe (as a broadcast `recv` is).
    pub(crate) async fn next<T>(&mut self, events: impl Future<Output = T>) -> Wake<T> {
        tokio::pin!(events);
        loop {
            tokio::select! {
                e = &mut events => return Wake::Events(e),
                _ = &mut self.expiry => {
                    self.close(4401, "access token expired").await;
                    return Wake::Gone;
                }
                _ = self.recheck.tick() => {
                    if self.watch.due() {
                        return Wake::Recheck(self.watch.begin());
                    }
                }
                incoming = self.rx.next() => return match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Wake::Gone,
                    Some(Ok(frame)) => Wake::Frame(frame),
                },
            }
        }
    }

    /// Records the decision taken after [`Wake::Recheck`] returned `epoch`, resting on a
    /// grant that ends at `until` (if any).
    pub(crate) fn decided(&mut self, epoch: Option<u64>, until: Option<DateTime<Utc>>) {
        self.watch.decided(epoch, until);
    }

    /// Ends the stream because access is gone (4403).
    pub(crate) async fn revoke(&mut self) {
        self.close(4403, "access revoked").await;
    }

    /// Sends the close frame `code` with `reason`.
    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self.tx.send(Message::Close(Some((CloseCode::from(code), reason.into())))).await;
    }

    /// Sends `frames` as JSON text; false when the client is gone.
    pub(crate) async fn send(&mut self, frames: Vec<Value>) -> bool {
        for frame in frames {
            if self.tx.send(Message::Text(frame.to_string())).await.is_err() {
                return false;
            }
        }
        true
    }
}
