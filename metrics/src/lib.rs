//! The service's Prometheus metrics: one registry (prefix `nephrocare_`) of typed metrics,
//! recorded where things happen (the broker's edge, ingest, the deriver, the alarm system,
//! the HTTP layer) and encoded by `GET /metrics` in the OpenMetrics text format. Gauges of
//! state (queue depths, pool connections, live connections) are set by the scrape itself,
//! from their owners, just before encoding.
//!
//! Names follow the Prometheus conventions: base units (seconds), `_total` for counters
//! (added by the encoder), a label per dimension with a bounded set of values.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Latency buckets: 0.5 ms to ~16 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Batch sizes: 1 to 4096 readings, doubling.
fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// `machine` or `person`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `committed`, `rejected` (invalid: answered on the errors topic) or `unavailable`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Priority {
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tier {
    pub tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Writer {
    pub writer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolState {
    /// `in_use`, `idle` or `max`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub method: String,
    /// The route's template (`/api/alerts/{alertId}`), `other` outside the API.
    pub route: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Delivery {
    /// `email` or `acm`.
    pub channel: &'static str,
    /// `delivered`, `failed` (tried again) or `parked` (given up).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Hl7Answer {
    /// MSA-1: `AA`, `AE` or `AR`.
    pub answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxChannel {
    pub channel: &'static str,
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// MQTT: from a device's PUBLISH (telemetry or session) to its PUBACK, by outcome.
    pub mqtt_puback_seconds: Histograms<Outcome>,
    /// Live MQTT connections by kind (set at scrape).
    pub mqtt_connections: Family<Kind, Gauge>,
    /// Readings committed (new or resent) and refused.
    pub readings_accepted: Counter,
    pub readings_rejected: Counter,
    /// A writer's batch (insert, identity, backlog: one statement), sent to committed.
    pub ingest_commit_seconds: Histogram,
    /// Readings per written batch.
    pub ingest_batch_readings: Histogram,
    /// Readings waiting in each writer's queue (set at scrape).
    pub ingest_queue_depth: Family<Writer, Gauge>,
    /// Committed readings waiting for alert evaluation, per writer (set at scrape).
    pub alert_evaluation_backlog: Family<Writer, Gauge>,
    /// The deriver: one apply (latest values, rollups, counters of up to 500 batches).
    pub derive_apply_seconds: Histogram,
    /// From a batch's commit to its derived data's commit: how far current values and
    /// trends lag the readings.
    pub derived_lag_seconds: Histogram,
    /// Batches waiting for the deriver (set at scrape).
    pub derived_backlog_batches: Gauge,
    /// Alarms raised, by priority; escalations, by the tier reached.
    pub alarms_raised: Family<Priority, Counter>,
    pub alarms_escalated: Family<Tier, Counter>,
    /// HTTP requests, by method, route and status class.
    pub http_request_seconds: Histograms<Route>,
    /// The database pool's connections (set at scrape).
    pub db_pool_connections: Family<PoolState, Gauge<i64, AtomicI64>>,
    /// Attempts to deliver through a channel outside MQTT, by channel and outcome.
    pub outbox_deliveries: Family<Delivery, Counter>,
    /// Messages waiting in the outbox, per channel.
    pub outbox_pending: Family<OutboxChannel, Gauge>,
    /// The age of the oldest of them, per channel (0 when none).
    pub outbox_oldest_pending_seconds: Family<OutboxChannel, Gauge<f64, AtomicU64>>,
    /// Device gateways (IHE PCD-01): from a message read to its acknowledgement, by answer.
    pub hl7_ack_seconds: Histograms<Hl7Answer>,
    /// Several database hosts: times the service moved to a new primary.
    pub db_primary_switches: Counter,
    /// Standbys confirming the primary's commits synchronously (0: a commit is on the
    /// primary only; -1: unknown).
    pub db_synchronous_standbys: Gauge,
}

/// Registers each metric under its exported name and help text, one line each.
macro_rules! register {
    ($registry:ident, $m:ident; $($name:literal => $field:ident: $help:literal,)+) => {
        $($registry.register($name, $help, $m.$field.clone());)+
    };
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nephrocare");
        let m = Metrics {
            mqtt_puback_seconds: Histograms::new_with_constructor(latency),
            mqtt_connections: Family::default(),
            readings_accepted: Counter::default(),
            readings_rejected: Counter::default(),
            ingest_commit_seconds: latency(),
            ingest_batch_readings: sizes(),
            ingest_queue_depth: Family::default(),
            alert_evaluation_backlog: Family::default(),
            derive_apply_seconds: latency(),
            derived_lag_seconds: latency(),
            derived_backlog_batches: Gauge::default(),
            alarms_raised: Family::default(),
            alarms_escalated: Family::default(),
            http_request_seconds: Histograms::new_with_constructor(latency),
            db_pool_connections: Family::default(),
            outbox_deliveries: Family::default(),
            outbox_pending: Family::default(),
            outbox_oldest_pending_seconds: Family::default(),
            hl7_ack_seconds: Histograms::new_with_constructor(latency),
            db_primary_switches: Counter::default(),
            db_synchronous_standbys: Gauge::default(),
            registry: Registry::default(),
        };
        register!(registry, m;
            "mqtt_puback_seconds" => mqtt_puback_seconds: "From a device's PUBLISH to its PUBACK (telemetry and session messages), by outcome",
            "mqtt_connections" => mqtt_connections: "Live MQTT connections, by kind of client",
            "readings_accepted" => readings_accepted: "Readings committed to storage (new, or sent again)",
            "readings_rejected" => readings_rejected: "Readings refused (invalid or a seq conflict; never stored)",
            "ingest_commit_seconds" => ingest_commit_seconds: "A writer's batch (readings, identity, derived-data backlog: one statement), sent to committed",
            "ingest_batch_readings" => ingest_batch_readings: "Readings per written batch",
            "ingest_queue_depth" => ingest_queue_depth: "Readings waiting in each writer's queue",
            "alert_evaluation_backlog_readings" => alert_evaluation_backlog: "Committed readings waiting for alert evaluation and the live streams, per writer",
            "derive_apply_seconds" => derive_apply_seconds: "One apply of the deriver (latest values, rollups, session counters)",
            "derived_lag_seconds" => derived_lag_seconds: "From a batch's commit to the commit of its derived data (current values and trends lag this much)",
            "derived_backlog_batches" => derived_backlog_batches: "Written batches waiting for the deriver",
            "alarms_raised" => alarms_raised: "Alarms raised, by priority",
            "alarms_escalated" => alarms_escalated: "Alarm escalations, by the tier reached",
            "http_request_seconds" => http_request_seconds: "HTTP requests, by method, route template and status class",
            "db_pool_connections" => db_pool_connections: "The database pool's connections: in use, idle, max",
            "outbox_deliveries" => outbox_deliveries: "Attempts to deliver a message outside MQTT (e-mail, the alert manager), by channel and outcome",
            "outbox_pending" => outbox_pending: "Messages waiting in the outbox, per channel",
            "outbox_oldest_pending_seconds" => outbox_oldest_pending_seconds: "Age of the oldest message waiting in the outbox, per channel (alert on it)",
            "hl7_ack_seconds" => hl7_ack_seconds: "Device gateways (IHE PCD-01 over MLLP): from a message read to its acknowledgement, by MSA-1",
            "db_primary_switches" => db_primary_switches: "Times the service moved to a new database primary (several hosts in DATABASE_URL)",
            "db_synchronous_standbys" => db_synchronous_standbys: "Standbys confirming the primary's commits synchronously (0: commits are on the primary only; -1: unknown)",
        );
        m.db_synchronous_standbys.set(-1);
        // Every series of a bounded label set exists from the start (a 0 is information).
        for channel in ["email", "acm", "emr", "fhir"] {
            for outcome in ["delivered", "failed", "parked"] {
                let _ = m.outbox_deliveries.get_or_create(&Delivery { channel, outcome });
            }
            let _ = m.outbox_pending.get_or_create(&OutboxChannel { channel });
            let _ = m.outbox_oldest_pending_seconds.get_or_create(&OutboxChannel { channel });
        }
        for priority in ["high", "medium", "low"] {
            let _ = m.alarms_raised.get_or_create(&Priority { priority });
        }
        for tier in ["2", "3"] {
            let _ = m.alarms_escalated.get_or_create(&Tier { tier });
        }
        for answer in ["AA", "AE", "AR"] {
            let _ = m.hl7_ack_seconds.get_or_create(&Hl7Answer { answer });
        }
        for outcome in ["committed", "rejected", "unavailable"] {
            let _ = m.mqtt_puback_seconds.get_or_create(&Outcome { outcome });
        }
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A status code's class, as a label value.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_encoded_with_its_prefix_and_the_text_ends_as_openmetrics_requires() {
        let m = get();
        m.readings_accepted.inc();
        m.mqtt_puback_seconds.get_or_create(&Outcome { outcome: "committed" }).observe(0.003);
        let text = m.encode();
        for family in [
            "nephrocare_mqtt_puback_seconds_bucket{",
            "outcome=\"committed\"",
            "nephrocare_readings_accepted_total",
            "nephrocare_ingest_commit_seconds_count",
            "nephrocare_derived_lag_seconds_sum",
            "nephrocare_derived_backlog_batches",
        ] {
            assert!(text.contains(family), "{family} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
