//! What every operation shares, whatever its capability: the server loop and its limits,
//! authentication extraction, the state, the one error type and its mapping, security
//! headers and the public URL, strict JSON and field validators, the OpenAPI contract's
//! finishing and middlewares, the request log.

pub mod contract;
pub mod error;
pub mod headers;
pub mod limits;
pub mod origin;
pub mod request_log;
pub mod security;
pub mod server;
pub mod state;
pub mod streams;
pub mod strict_json;
pub mod validate;

/// The endpoint each middleware here makes: the inner endpoint with a copy of the
/// middleware's settings. Each middleware implements `Endpoint` for its own
/// `Layered<Settings, E>`; [`layered_middleware!`] makes the settings the middleware.
pub struct Layered<S, E> {
    pub(crate) settings: S,
    pub(crate) inner: E,
}

/// Makes each settings type (`Clone`) a middleware whose endpoint is [`Layered`].
macro_rules! layered_middleware {
    ($($settings:ty),+ $(,)?) => {$(
        impl<E: poem::Endpoint> poem::Middleware<E> for $settings {
            type Output = $crate::http::Layered<$settings, E>;

            fn transform(&self, inner: E) -> Self::Output {
                $crate::http::Layered { settings: self.clone(), inner }
            }
        }
    )+};
}
pub(crate) use layered_middleware;
