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
