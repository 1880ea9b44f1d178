//! The `nephrocare` service: configuration, command line, and the wiring that runs the
//! broker, ingest and API components in one process with one shutdown.

pub mod app;
#[cfg(test)]
mod architecture;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod db;
pub mod logging;
pub mod tools;

pub use app::{App, RunningApp};
pub use config::Config;
