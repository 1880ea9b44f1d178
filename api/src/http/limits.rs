//! Limits on what a client may send over HTTP: the size of a request body and how long its
//! headers and body may take. (The length and content of each field are declared with
//! validators, see [`crate::validate`].)
//!
//! The body limit holds for every request, with or without `Content-Length`, and never
//! buffers: a declared length over the limit is refused before a byte of the body is read;
//! a chunked (or lying) body is counted as it streams and refused as soon as it passes the
//! limit. A body that is still incomplete when its time is up is refused with 408. Both
//! answers carry the usual [`ErrorBody`](crate::ErrorBody) and `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use poem::http::header::{CONNECTION, CONTENT_LENGTH};
use poem::http::HeaderValue;
use poem::{Body, Endpoint, IntoResponse, Request, Response, Result};
use tokio::time::Sleep;

use crate::error::{ApiError, ErrorResponse};
use crate::http::Layered;

/// Default largest request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default time a client has to send a request's headers (also how long an idle
/// keep-alive connection stays open).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's body, from the end of its headers.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client may send over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Time allowed for a request's headers; the connection is closed after it.
    pub header_read_timeout: Duration,
    /// Time allowed for a request's body, from the end of its headers (408 after it).
    pub body_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// The middleware that enforces the body size and time limits.
#[derive(Clone)]
pub struct BodyLimit {
    limits: HttpLimits,
}

impl BodyLimit {
    pub fn new(limits: HttpLimits) -> Self {
        Self { limits }
    }
}

crate::http::layered_middleware!(BodyLimit);

/// How reading the body ended, when it ended badly.
const READING: u8 = 0;
const TOO_LARGE: u8 = 1;
const TIMED_OUT: u8 = 2;

fn refusal(e: ApiError) -> Response {
    let mut resp = ErrorResponse::from(e).into_response();
    // The rest of the body is not read: this connection cannot carry another request.
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

impl<E: Endpoint> Endpoint for Layered<BodyLimit, E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let max = self.settings.limits.max_body_bytes;
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Ok(refusal(ApiError::PayloadTooLarge { limit: max }));
        }
        let body = req.take_body();
        if body.is_empty() {
            req.set_body(body);
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let outcome = Arc::new(AtomicU8::new(READING));
        req.set_body(Body::from_bytes_stream(Limited {
            inner: body.into_bytes_stream().boxed(),
            remaining: max,
            deadline: Box::pin(tokio::time::sleep(self.settings.limits.body_read_timeout)),
            outcome: outcome.clone(),
        }));
        let result = self.inner.call(req).await;
        // Whatever the handler made of the failed read (a parse error, most likely), the
        // client is told what really happened.
        match outcome.load(Ordering::Acquire) {
            TOO_LARGE => Ok(refusal(ApiError::PayloadTooLarge { limit: max })),
            TIMED_OUT => Ok(refusal(ApiError::RequestTimeout(self.settings.limits.body_read_timeout))),
            _ => result.map(IntoResponse::into_response),
        }
    }
}

/// A body stream that fails once more than `remaining` bytes have come, or when the
/// deadline passes before its end.
struct Limited {
    inner: BoxStream<'static, std::io::Result<bytes::Bytes>>,
    remaining: usize,
    deadline: Pin<Box<Sleep>>,
    outcome: Arc<AtomicU8>,
}

impl Limited {
    fn fail(&mut self, outcome: u8, message: &str) -> Poll<Option<std::io::Result<bytes::Bytes>>> {
        self.outcome.store(outcome, Ordering::Release);
        self.remaining = 0;
        Poll::Ready(Some(Err(std::io::Error::other(message.to_owned()))))
    }
}

impl Stream for Limited {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.outcome.load(Ordering::Acquire) {
            READING => {}
            _ => return Poll::Ready(None),
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(TIMED_OUT, "request body not received in time");
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if chunk.len() > self.remaining {
                    return self.fail(TOO_LARGE, "request body too large");
                }
                self.remaining -= chunk.len();
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}
