//! The `nephrocare` service: configuration, command line, and the wiring that runs the
//! broker, ingest and API components in one process with one shutdown.

pub mod app;
#[cfg(test)]
mod architecture;
pub mod bench;
pub mod bench_alarms;
pub mod bench_chat;
pub mod bench_connections;
pub mod bench_fhir;
pub mod bench_ingest;
pub mod bench_queries;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod demo;
pub mod logging;
pub mod simulate;

pub use app::{App, RunningApp};
pub use config::Config;
