//! The telemetry path into TimescaleDB (written with sqlx, on the pool sea-orm owns).
//!
//! Foundation skeleton: the `health_metrics` hypertable and its indexes exist (see the
//! migration crate); the batching, acknowledge-after-commit writer arrives with the
//! telemetry pipeline issue.
