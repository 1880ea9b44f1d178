//! Chat over REST (`routes`) and its WebSocket stream (`ws`).

pub(crate) mod routes;
pub(crate) mod ws;
