//! The test harness: fresh databases, the in-process service, the real binary, an HTTP
//! client, the seeded world of people and machines, MQTT clients (raw packets, rumqttc read
//! as events, rumqttc read as JSON messages), the live WebSocket stream, and [`eventually`].

#![allow(dead_code)]

mod app;
mod db;
mod event_client;
mod json_client;
mod live;
mod paho;
mod peers;
mod raw_client;
mod seed;
mod service;
mod world;

use std::time::Duration;

pub use app::*;
pub use db::*;
pub use event_client::*;
pub use json_client::*;
pub use live::*;
pub use paho::*;
pub use peers::*;
pub use raw_client::*;
pub use seed::*;
pub use service::*;
pub use world::*;

/// How long anything that must happen may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long we watch for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(400);

/// Polls `probe` until it yields a value (every 50 ms, for at most `within`), or fails the
/// test naming `what`: the one way the tests wait for something that happens
/// asynchronously (an alert stored, a job done, a figure updated), instead of a fixed sleep.
pub async fn eventually<T, Fut>(what: &str, within: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
