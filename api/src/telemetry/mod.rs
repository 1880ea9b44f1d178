//! Readings over HTTP: posting (machines), current values, history, trends and sessions
//! (`routes`), and a device's live WebSocket stream (`live`).

pub mod live;
pub(crate) mod routes;
