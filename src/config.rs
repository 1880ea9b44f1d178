//! Configuration, layered: built-in defaults → optional TOML file → environment → command
//! line flags. Every setting is documented once, here and in README.md.
//!
//! Secrets (the database password, the JWT signing key) are wrapped in [`Secret`], whose
//! `Debug` and `Display` never show the value, so they cannot leak into logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A value that must never be printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration of `nephrocare serve`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub auth: AuthConfig,
    pub alarms: AlarmsConfig,
    pub ingest: IngestConfig,
    pub log: LogConfig,
    pub email: EmailConfig,
    pub outbox: OutboxConfig,
    pub hl7: Hl7Config,
    pub fhir: FhirConfig,
}

/// FHIR subscriptions' `rest-hook` notifications.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FhirConfig {
    /// `NEPHROCARE_FHIR_REST_HOOK_ALLOW_INTERNAL`: subscriptions may name a receiver inside
    /// the service's networks (plain `http://`, loopback and private addresses); off, only
    /// `https://` endpoints at public addresses.
    pub rest_hook_allow_internal: bool,
    /// `NEPHROCARE_FHIR_REST_HOOK_CA`: PEM certificates that verify `https://` endpoints
    /// (default: the system's).
    pub rest_hook_ca: Option<PathBuf>,
}

/// Device gateways (IHE PCD-01, HL7 v2 over MLLP): off unless `NEPHROCARE_HL7_LISTEN_ADDR`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Hl7Config {
    /// `NEPHROCARE_HL7_LISTEN_ADDR`: where the hospitals' device gateways send their
    /// observations (MLLP); unset, no listener.
    pub listen_addr: Option<SocketAddr>,
    /// `NEPHROCARE_HL7_MAX_MESSAGE_BYTES`: one message, at most.
    pub max_message_bytes: usize,
    /// `NEPHROCARE_HL7_MAX_OBSERVATIONS`: OBX segments in one message, at most.
    pub max_observations: usize,
    /// `NEPHROCARE_HL7_MAX_CONNECTIONS`: connections at once, all gateways together (each
    /// gateway also has its own limit, set when it is registered).
    pub max_connections: usize,
    /// `NEPHROCARE_HL7_TLS_CERT`, `NEPHROCARE_HL7_TLS_KEY`: MLLP over TLS with this identity.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `NEPHROCARE_HL7_TLS_CLIENT_CA`: the CA whose client certificates gateways may connect
    /// with (a gateway registered with its certificate's SHA-256 then needs no MSH-8 secret).
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for Hl7Config {
    fn default() -> Self {
        let d = nc_gateways::GatewaySettings::default();
        Self {
            listen_addr: None,
            max_message_bytes: d.max_message_bytes,
            max_observations: d.max_observations,
            max_connections: d.max_connections,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

impl Hl7Config {
    pub fn settings(&self) -> nc_gateways::GatewaySettings {
        nc_gateways::GatewaySettings {
            max_message_bytes: self.max_message_bytes.clamp(1024, 16 << 20),
            max_observations: self.max_observations.clamp(1, 20_000),
            max_connections: self.max_connections.clamp(1, 10_000),
        }
    }
}

/// Delivery through the outbox (e-mail, the alert manager): how often and how long a
/// message is tried before it is parked.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// `NEPHROCARE_OUTBOX_MAX_ATTEMPTS`: attempts before a message is parked (1 to 100).
    pub max_attempts: u32,
    /// `NEPHROCARE_OUTBOX_RETRY_MIN_SECS`: the first retry's delay, doubling (with jitter)
    /// up to `NEPHROCARE_OUTBOX_RETRY_MAX_SECS`.
    pub retry_min_secs: f64,
    pub retry_max_secs: f64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        let d = nc_outbox::OutboxSettings::default();
        Self {
            max_attempts: d.max_attempts as u32,
            retry_min_secs: d.min_delay.as_secs_f64(),
            retry_max_secs: d.max_delay.as_secs_f64(),
        }
    }
}

impl OutboxConfig {
    pub fn settings(&self) -> nc_outbox::OutboxSettings {
        nc_outbox::OutboxSettings {
            max_attempts: self.max_attempts as i32,
            min_delay: std::time::Duration::from_secs_f64(self.retry_min_secs),
            max_delay: std::time::Duration::from_secs_f64(self.retry_max_secs),
            ..Default::default()
        }
    }
}

/// E-mail (account codes, password resets), through the outbox.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `NEPHROCARE_SMTP_URL`: the SMTP server, `smtp://host:25` (plain),
    /// `smtp://user:password@host:587?tls=required` (STARTTLS) or `smtps://host:465`
    /// (implicit TLS). Unset: e-mails wait in the outbox (`nephrocare_outbox_pending`).
    pub smtp_url: Option<Secret>,
    /// `NEPHROCARE_SMTP_FROM`: the sender, `Name <address>`.
    pub from: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self { smtp_url: None, from: "Nephrocare <no-reply@nephrocare.invalid>".into() }
    }
}

/// The time-series path.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// `NEPHROCARE_INGEST_DERIVE_INTERVAL_MS`: how long committed readings gather before
    /// their latest values, rollups and session counters are applied (10 to 10000 ms).
    pub derive_interval_ms: u64,
    /// `NEPHROCARE_INGEST_WRITERS`: concurrent writers, each its own database connection and
    /// transaction (1 to 16). More writers make smaller, concurrent commits.
    pub writers: usize,
    /// `NEPHROCARE_INGEST_GATHER_MS`: how long a batch of readings waits for more after its
    /// first one (0 to 50 ms; 0 writes as soon as a writer is free).
    pub gather_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let d = nc_ingest::IngestSettings::default();
        Self {
            derive_interval_ms: d.derive_interval.as_millis() as u64,
            writers: d.writers,
            gather_ms: d.gather.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`. Contains the password, hence a secret.
    pub url: Secret,
    /// Connections in the pool shared by the API and the relational side of ingest.
    pub max_connections: u32,
    /// How long startup waits for the database before giving up, in seconds.
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `NEPHROCARE_HTTP_ADDR`: REST API, OpenAPI document, docs, health probes.
    pub addr: SocketAddr,
    /// `NEPHROCARE_HTTP_MAX_BODY_BYTES`: largest request body (413 beyond), with or without
    /// `Content-Length`.
    pub max_body_bytes: u64,
    /// `NEPHROCARE_HTTP_HEADER_TIMEOUT_SECS`: time a client has to send a request's headers
    /// (the connection is closed after it; also the keep-alive idle time).
    pub header_read_timeout_secs: u64,
    /// `NEPHROCARE_HTTP_BODY_TIMEOUT_SECS`: time a client has to send a request's body
    /// after its headers (408 after it).
    pub body_read_timeout_secs: u64,
    /// `NEPHROCARE_PUBLIC_URL`: the base URL clients reach the service at
    /// (`https://nephro.example.org`), for the absolute links the service writes (FHIR
    /// Bundle links, Bulk Data status and file URLs). Unset: `http://` and the HTTP listen
    /// address (an unspecified address, `0.0.0.0` or `::`, as `127.0.0.1`).
    pub public_url: Option<String>,
    /// `NEPHROCARE_TRUSTED_PROXIES`: comma-separated IP addresses of reverse proxies whose
    /// `X-Forwarded-Proto` / `X-Forwarded-Host` are honoured; from anyone else they are ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl HttpConfig {
    /// The base URL people reach the service at (for links in what it sends, e.g. an
    /// alarm's fallback e-mail): [`HttpConfig::public_url`], or `http://` and the listen
    /// address.
    pub fn public_base(&self, bound: SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let ip = match bound.ip() {
                ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            };
            format!("http://{}", SocketAddr::new(ip, bound.port()))
        })
    }

    /// The public base URL ([`HttpConfig::public_url`], or one from the listen address) and
    /// the trusted proxies; `bound`: the address the listener got (port 0 resolved).
    pub fn origin(&self, bound: SocketAddr) -> nc_api::origin::PublicOrigin {
        let url = self.public_base(bound);
        nc_api::origin::PublicOrigin::new(&url, self.trusted_proxies.clone())
            .expect("public_url is validated when the configuration is loaded")
    }

    /// The limits the API enforces.
    pub fn limits(&self) -> nc_api::HttpLimits {
        nc_api::HttpLimits {
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_secs),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `NEPHROCARE_MQTT_ADDR`: MQTT over TCP.
    pub addr: SocketAddr,
    /// `NEPHROCARE_MQTT_WS_ADDR`: MQTT over WebSocket (path `/mqtt`).
    pub ws_addr: SocketAddr,
    /// `NEPHROCARE_MQTT_TLS_CERT`: PEM certificate chain; with `tls_key`, both MQTT
    /// listeners speak TLS (mqtts, wss).
    pub tls_cert: Option<PathBuf>,
    /// `NEPHROCARE_MQTT_TLS_KEY`: PEM private key of that certificate.
    pub tls_key: Option<PathBuf>,
    /// `NEPHROCARE_MQTT_PUBLIC_WS_URL`: the MQTT-over-WebSocket URL browsers (the web
    /// dashboard) connect to, when it is not the page's host and `ws_addr`'s port (a proxy).
    pub public_ws_url: Option<String>,
    /// `NEPHROCARE_MQTT_CORE_URL`: an external, clustered MQTT broker shared by several
    /// nodes, `mqtt://user:password@host:port`, comma-separated for failover (README
    /// "Running several nodes"). Unset: the embedded rumqttd (one node).
    pub core_url: Option<Secret>,
    /// `NEPHROCARE_MQTT_CORE_CA`: PEM certificates that verify an `mqtts://` core (default:
    /// the system's, `/etc/ssl/certs/ca-certificates.crt`).
    pub core_ca: Option<PathBuf>,
    /// `NEPHROCARE_MQTT_MAX_SESSION_EXPIRY_SECS`: the longest an MQTT 5 session is kept
    /// after its connection ends (a longer Session Expiry Interval is reduced to it).
    pub max_session_expiry_secs: u32,
    /// `NEPHROCARE_MQTT_MAX_KEEP_ALIVE_SECS`: the longest keep-alive an MQTT 5 client may
    /// use (Server Keep Alive for one asking none or longer).
    pub max_keep_alive_secs: u16,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `NEPHROCARE_JWT_SECRET`: HMAC key for access tokens, at least 32 bytes. When empty,
    /// `serve` generates a random one (tokens then do not survive a restart, and several
    /// instances would not accept each other's tokens): set it in production.
    pub jwt_secret: Secret,
    /// Access token lifetime in seconds (at most 900).
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Login, code and reset attempts allowed per minute for one account.
    pub attempts_per_account_per_minute: u32,
    /// Login, code and reset attempts allowed per minute from one client address.
    pub attempts_per_address_per_minute: u32,
}

/// The alarm system: escalation defaults (a hospital's admins set their own with
/// `PUT /api/alerts/escalation-policy`), snoozes, and the connection and treatment rules.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Seconds a high-priority alert may stay unacknowledged before it escalates to the
    /// next tier (ward doctors, then admins); 0: never.
    pub escalate_high_after_secs: u32,
    /// The same for medium priority.
    pub escalate_medium_after_secs: u32,
    /// The same for low priority (default 0: never).
    pub escalate_low_after_secs: u32,
    /// The longest snooze, in minutes.
    pub max_snooze_minutes: u32,
    /// `NEPHROCARE_ALARM_OFFLINE_DELAY_SECS`: an abruptly lost device is reported offline
    /// only if it has not come back within this delay (seconds; decimals allowed).
    pub offline_delay_secs: f64,
    /// This many abrupt drops within `flapping_window_secs` raise one "unstable connection"
    /// alert, open until the link has held for the window.
    pub flapping_drops: u32,
    /// `NEPHROCARE_ALARM_FLAPPING_WINDOW_SECS` (decimals allowed).
    pub flapping_window_secs: f64,
    /// A finished treatment keeps its physiological alerts this long in case the same
    /// patient's treatment resumes (no duplicate alarm across a session restart).
    pub restart_grace_secs: u64,
    /// `NEPHROCARE_ALARM_REACH_GRACE_SECS`: after a start (or the MQTT core's failover),
    /// for this long a person not seen yet is not taken for unreachable: escalation waits
    /// for their app to reconnect (default 30: 1.5 × the apps' 15 s keep-alive, which is
    /// how long a link that died silently takes to be noticed, plus their reconnect).
    pub reach_grace_secs: f64,
    /// `NEPHROCARE_ACM_LISTEN_ADDR`: where the hospitals' alert managers send their IHE
    /// PCD-05 status messages (HL7 v2 over MLLP); unset: not listened for.
    pub acm_listen_addr: Option<SocketAddr>,
    /// `NEPHROCARE_ALARM_CHANNEL_WAIT_SECS`: a tier with nobody on MQTT waits this long for
    /// the hospital's alert manager to accept its report (then its people count as reached
    /// on their pagers and phones) before it counts as unreachable.
    pub channel_wait_secs: f64,
    /// `NEPHROCARE_ACM_CA`: PEM certificates that verify an alert manager reached over TLS
    /// (default: the system's, `/etc/ssl/certs/ca-certificates.crt`).
    pub acm_ca: Option<PathBuf>,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        let conditions = nc_ingest::alerts::ConditionSettings::default();
        Self {
            escalate_high_after_secs: 60,
            escalate_medium_after_secs: 180,
            escalate_low_after_secs: 0,
            max_snooze_minutes: 30,
            offline_delay_secs: conditions.offline_delay.as_secs_f64(),
            flapping_drops: conditions.flapping_drops as u32,
            flapping_window_secs: conditions.flapping_window.as_secs_f64(),
            restart_grace_secs: conditions.restart_grace.as_secs(),
            reach_grace_secs: nc_alarms::AlarmSettings::default().reach_grace.as_secs_f64(),
            acm_listen_addr: None,
            channel_wait_secs: nc_alarms::AlarmSettings::default().channel_wait.as_secs_f64(),
            acm_ca: None,
        }
    }
}

impl AlarmsConfig {
    /// The alarm system's settings.
    pub fn settings(&self) -> nc_alarms::AlarmSettings {
        let rule = |secs: u32| match secs {
            0 => nc_alarms::EscalationRule::never(),
            s => nc_alarms::EscalationRule { after_seconds: Some(s), tiers: vec![2, 3] },
        };
        nc_alarms::AlarmSettings {
            defaults: nc_alarms::EscalationPolicy {
                high: rule(self.escalate_high_after_secs),
                medium: rule(self.escalate_medium_after_secs),
                low: rule(self.escalate_low_after_secs),
                ..Default::default()
            },
            max_snooze: std::time::Duration::from_secs(u64::from(self.max_snooze_minutes) * 60),
            // Bounded by `validate`.
            reach_grace: std::time::Duration::from_secs_f64(self.reach_grace_secs),
            channel_wait: std::time::Duration::from_secs_f64(self.channel_wait_secs),
            ..Default::default()
        }
    }

    /// How ingest judges connection and treatment conditions.
    pub fn conditions(&self) -> nc_ingest::alerts::ConditionSettings {
        use std::time::Duration;
        nc_ingest::alerts::ConditionSettings {
            offline_delay: Duration::from_secs_f64(self.offline_delay_secs),
            flapping_drops: self.flapping_drops as usize,
            flapping_window: Duration::from_secs_f64(self.flapping_window_secs),
            restart_grace: Duration::from_secs(self.restart_grace_secs),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `NEPHROCARE_LOG_FORMAT`: `text` (default) or `json`.
    pub format: LogFormat,
    /// `NEPHROCARE_LOG`: a tracing filter, e.g. `info` or `info,nephrocare_broker=debug`.
    pub filter: String,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://nephrocare:nephrocare@127.0.0.1:5432/nephrocare";

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: Secret::new(DEFAULT_DATABASE_URL), max_connections: 20, connect_timeout_secs: 5 }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let limits = nc_api::HttpLimits::default();
        Self {
            addr: "127.0.0.1:8080".parse().expect("static address"),
            max_body_bytes: limits.max_body_bytes as u64,
            header_read_timeout_secs: limits.header_read_timeout.as_secs(),
            body_read_timeout_secs: limits.body_read_timeout.as_secs(),
            public_url: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            addr: nc_broker::DEFAULT_MQTT_ADDR.parse().expect("static address"),
            ws_addr: nc_broker::DEFAULT_MQTT_WS_ADDR.parse().expect("static address"),
            tls_cert: None,
            tls_key: None,
            public_ws_url: None,
            core_url: None,
            core_ca: None,
            max_session_expiry_secs: nc_broker::BrokerSettings::default().max_session_expiry_secs,
            max_keep_alive_secs: nc_broker::BrokerSettings::default().max_keep_alive_secs,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            attempts_per_account_per_minute: 5,
            attempts_per_address_per_minute: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,sqlx=warn,sea_orm_migration=warn,rumqttd=warn,rumqttd::server::broker=off,rumqttd::router::routing=off".into(),
        }
    }
}

/// A setting that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid setting {setting}: {problem}. {hint}")]
pub struct ConfigError {
    /// Where the setting came from: an environment variable, a flag or a file key.
    pub setting: String,
    pub problem: String,
    pub hint: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { setting: setting.into(), problem: problem.into(), hint: hint.into() }
    }

    /// The first of figment's errors, named after the variable, flag or file key it is about,
    /// with the value given (unless it is a secret).
    fn from_figment(
        e: figment::Error,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Self {
        let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
        let key = e.path.join(".");
        let known = ENVIRONMENT.iter().find(|(name, ..)| *name == source);
        let setting = match (known, file) {
            (Some((name, ..)), _) => (*name).to_owned(),
            _ if source.starts_with("--") => source,
            (None, Some(path)) if key.is_empty() => format!("config file {}", path.display()),
            (None, Some(path)) => format!("config file {} key {key}", path.display()),
            (None, None) => key,
        };
        let hint = match known {
            Some((.., hint)) => *hint,
            None if setting.ends_with("addr") => ADDR_HINT,
            None => "See README.md, section Configuration, for the settings.",
        };
        let given = match known {
            Some((_, _, Read::Secret, _)) => None,
            Some((name, ..)) => env(name),
            None => overrides.flag(&setting).cloned(),
        };
        let problem = match given {
            Some(v) => format!("'{v}': {}", e.kind),
            None => e.kind.to_string(),
        };
        ConfigError::new(setting, problem, hint)
    }
}

/// Command-line overrides (the last layer). `None` leaves the setting as it is.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub http_addr: Option<String>,
    pub mqtt_addr: Option<String>,
    pub mqtt_ws_addr: Option<String>,
    pub log_format: Option<String>,
}

/// How an environment variable's text becomes a value.
#[derive(Clone, Copy)]
enum Read {
    /// As it is (addresses, URLs, paths).
    Text,
    /// As it is, and never repeated in a message (a secret of digits stays a string).
    Secret,
    /// A number (or `true`/`false`), refused by the setting's type otherwise.
    Number,
    /// Comma-separated items.
    List,
}

/// Every environment variable, the key it sets (the file's key too) and what to do when its
/// value cannot be used. README.md, section Configuration, lists the same.
const ENVIRONMENT: &[(&str, &str, Read, &str)] = &[
    ("DATABASE_URL", "database.url", Read::Secret, "Use postgres://user:password@host:port/database."),
    ("NEPHROCARE_DB_MAX_CONNECTIONS", "database.max_connections", Read::Number, "Use a whole number, 2 or more."),
    ("NEPHROCARE_HTTP_ADDR", "http.addr", Read::Text, ADDR_HINT),
    ("NEPHROCARE_HTTP_MAX_BODY_BYTES", "http.max_body_bytes", Read::Number, "Give a size in bytes."),
    ("NEPHROCARE_HTTP_HEADER_TIMEOUT_SECS", "http.header_read_timeout_secs", Read::Number, "Give whole seconds."),
    ("NEPHROCARE_HTTP_BODY_TIMEOUT_SECS", "http.body_read_timeout_secs", Read::Number, "Give whole seconds."),
    ("NEPHROCARE_PUBLIC_URL", "http.public_url", Read::Text, "Use e.g. https://nephro.example.org."),
    (
        "NEPHROCARE_TRUSTED_PROXIES",
        "http.trusted_proxies",
        Read::List,
        "Give the proxies' IP addresses, comma-separated, e.g. 10.0.0.5,10.0.0.6.",
    ),
    ("NEPHROCARE_MQTT_ADDR", "mqtt.addr", Read::Text, ADDR_HINT),
    ("NEPHROCARE_MQTT_WS_ADDR", "mqtt.ws_addr", Read::Text, ADDR_HINT),
    ("NEPHROCARE_MQTT_TLS_CERT", "mqtt.tls_cert", Read::Text, "Give the path of a PEM file."),
    ("NEPHROCARE_MQTT_TLS_KEY", "mqtt.tls_key", Read::Text, "Give the path of a PEM file."),
    ("NEPHROCARE_MQTT_PUBLIC_WS_URL", "mqtt.public_ws_url", Read::Text, "Use e.g. wss://nephro.example.org/mqtt."),
    ("NEPHROCARE_MQTT_CORE_URL", "mqtt.core_url", Read::Secret, "Use mqtt://user:password@host:port."),
    ("NEPHROCARE_MQTT_CORE_CA", "mqtt.core_ca", Read::Text, "Give the path of a PEM file."),
    (
        "NEPHROCARE_MQTT_MAX_SESSION_EXPIRY_SECS",
        "mqtt.max_session_expiry_secs",
        Read::Number,
        "Give whole seconds, 1 or more.",
    ),
    (
        "NEPHROCARE_MQTT_MAX_KEEP_ALIVE_SECS",
        "mqtt.max_keep_alive_secs",
        Read::Number,
        "Give whole seconds, 1 to 65535.",
    ),
    ("NEPHROCARE_JWT_SECRET", "auth.jwt_secret", Read::Secret, "Use a random value of at least 32 characters."),
    ("NEPHROCARE_ACCESS_TOKEN_TTL_SECS", "auth.access_token_ttl_secs", Read::Number, "Give whole seconds."),
    ("NEPHROCARE_ALARM_OFFLINE_DELAY_SECS", "alarms.offline_delay_secs", Read::Number, SECONDS_HINT),
    ("NEPHROCARE_ALARM_FLAPPING_WINDOW_SECS", "alarms.flapping_window_secs", Read::Number, SECONDS_HINT),
    ("NEPHROCARE_ALARM_REACH_GRACE_SECS", "alarms.reach_grace_secs", Read::Number, SECONDS_HINT),
    ("NEPHROCARE_ACM_LISTEN_ADDR", "alarms.acm_listen_addr", Read::Text, ADDR_HINT),
    ("NEPHROCARE_ALARM_CHANNEL_WAIT_SECS", "alarms.channel_wait_secs", Read::Number, SECONDS_HINT),
    ("NEPHROCARE_ACM_CA", "alarms.acm_ca", Read::Text, "Give the path of a PEM file."),
    ("NEPHROCARE_INGEST_WRITERS", "ingest.writers", Read::Number, "Use a whole number from 1 to 16."),
    ("NEPHROCARE_INGEST_GATHER_MS", "ingest.gather_ms", Read::Number, "Give whole milliseconds."),
    ("NEPHROCARE_INGEST_DERIVE_INTERVAL_MS", "ingest.derive_interval_ms", Read::Number, "Give whole milliseconds."),
    ("NEPHROCARE_LOG_FORMAT", "log.format", Read::Text, "Use text or json."),
    ("NEPHROCARE_LOG", "log.filter", Read::Text, "Use a tracing filter such as info."),
    (
        "NEPHROCARE_SMTP_URL",
        "email.smtp_url",
        Read::Secret,
        "Use smtp://host:25, smtp://user:password@host:587?tls=required or smtps://host:465.",
    ),
    ("NEPHROCARE_SMTP_FROM", "email.from", Read::Text, "Use Name <address@example.org>."),
    ("NEPHROCARE_OUTBOX_MAX_ATTEMPTS", "outbox.max_attempts", Read::Number, "Use a whole number from 1 to 100."),
    ("NEPHROCARE_OUTBOX_RETRY_MIN_SECS", "outbox.retry_min_secs", Read::Number, SECONDS_HINT),
    ("NEPHROCARE_OUTBOX_RETRY_MAX_SECS", "outbox.retry_max_secs", Read::Number, SECONDS_HINT),
    ("NEPHROCARE_HL7_LISTEN_ADDR", "hl7.listen_addr", Read::Text, ADDR_HINT),
    ("NEPHROCARE_HL7_MAX_MESSAGE_BYTES", "hl7.max_message_bytes", Read::Number, "Give a size in bytes, 1024 or more."),
    ("NEPHROCARE_HL7_MAX_OBSERVATIONS", "hl7.max_observations", Read::Number, "Use a whole number from 1 to 20000."),
    ("NEPHROCARE_HL7_MAX_CONNECTIONS", "hl7.max_connections", Read::Number, "Use a whole number, 1 or more."),
    ("NEPHROCARE_HL7_TLS_CERT", "hl7.tls_cert", Read::Text, "Give the path of a PEM file."),
    ("NEPHROCARE_HL7_TLS_KEY", "hl7.tls_key", Read::Text, "Give the path of a PEM file."),
    ("NEPHROCARE_HL7_TLS_CLIENT_CA", "hl7.tls_client_ca", Read::Text, "Give the path of a PEM file."),
    ("NEPHROCARE_FHIR_REST_HOOK_ALLOW_INTERNAL", "fhir.rest_hook_allow_internal", Read::Number, "Use true or false."),
    ("NEPHROCARE_FHIR_REST_HOOK_CA", "fhir.rest_hook_ca", Read::Text, "Give the path of a PEM file."),
];

const ADDR_HINT: &str = "Use host:port with an IP address, e.g. 127.0.0.1:8080 (port 0 picks a free port).";
const SECONDS_HINT: &str = "Use a number of seconds, e.g. 15 or 0.5.";

/// One setting from the environment or the command line, named after where it came from, so
/// an error names the variable or the flag.
struct Layer {
    name: String,
    data: figment::value::Dict,
}

impl Layer {
    fn new(name: &str, key: &str, read: Read, text: &str) -> Self {
        use figment::value::Value;
        let value = match read {
            Read::Text | Read::Secret => Value::from(text.to_owned()),
            // What is not a number stays a string, which the setting's type then refuses.
            Read::Number => {
                let t = text.trim();
                (t.parse::<u64>().map(Value::from))
                    .or_else(|_| t.parse::<i64>().map(Value::from))
                    .or_else(|_| t.parse::<f64>().map(Value::from))
                    .unwrap_or_else(|_| Value::from(t.to_owned()))
            }
            Read::List => Value::from(
                text.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect::<Vec<_>>(),
            ),
        };
        Self { name: name.to_owned(), data: figment::util::nest(key, value).into_dict().unwrap_or_default() }
    }
}

impl figment::Provider for Layer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name.clone())
    }
    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.data.clone()))
    }
}

impl Overrides {
    /// Each flag with the key it sets and its value.
    fn flags(&self) -> [(&'static str, &'static str, Option<&String>); 5] {
        [
            ("--database-url", "database.url", self.database_url.as_ref()),
            ("--http-addr", "http.addr", self.http_addr.as_ref()),
            ("--mqtt-addr", "mqtt.addr", self.mqtt_addr.as_ref()),
            ("--mqtt-ws-addr", "mqtt.ws_addr", self.mqtt_ws_addr.as_ref()),
            ("--log-format", "log.format", self.log_format.as_ref()),
        ]
    }

    /// The value of `flag`, unless it is a secret.
    fn flag(&self, flag: &str) -> Option<&String> {
        self.flags().into_iter().find(|(f, ..)| *f == flag && *f != "--database-url").and_then(|(.., v)| v)
    }
}

impl Config {
    /// Loads the configuration (with `figment`): defaults, then `file` (or
    /// `NEPHROCARE_CONFIG`) if given, then the environment `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = figment::Figment::new();
        let file: Option<PathBuf> = file.map(Path::to_path_buf).or_else(|| env("NEPHROCARE_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    format!("config file {}", path.display()),
                    format!("cannot read it ({e})"),
                    "Check the path given with --config or NEPHROCARE_CONFIG.",
                )
            })?;
            figment = figment.merge(<figment::providers::Toml as figment::providers::Format>::string(&text));
        }
        for (name, key, read, _) in ENVIRONMENT {
            if let Some(v) = env(name) {
                figment = figment.merge(Layer::new(name, key, *read, &v));
            }
        }
        for (flag, key, value) in overrides.flags() {
            if let Some(v) = value {
                figment = figment.merge(Layer::new(flag, key, Read::Text, v));
            }
        }
        let config: Config =
            figment.extract().map_err(|e| ConfigError::from_figment(e, file.as_deref(), env, overrides))?;
        config.validate()?;
        Ok(config)
    }

    /// Rules that span settings or that the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("'{}' is not a PostgreSQL URL", redact_url(url)),
                "Use postgres://user:password@host:port/database.",
            ));
        }
        for (setting, secs) in [
            ("NEPHROCARE_ALARM_OFFLINE_DELAY_SECS", self.alarms.offline_delay_secs),
            ("NEPHROCARE_ALARM_FLAPPING_WINDOW_SECS", self.alarms.flapping_window_secs),
            ("NEPHROCARE_ALARM_REACH_GRACE_SECS", self.alarms.reach_grace_secs),
            ("NEPHROCARE_ALARM_CHANNEL_WAIT_SECS", self.alarms.channel_wait_secs),
        ] {
            if !(0.0..=3600.0).contains(&secs) {
                return Err(ConfigError::new(setting, format!("{secs} is outside 0..=3600"), SECONDS_HINT));
            }
        }
        if !(1..=100).contains(&self.outbox.max_attempts) {
            return Err(ConfigError::new(
                "NEPHROCARE_OUTBOX_MAX_ATTEMPTS",
                format!("{} is outside 1..=100", self.outbox.max_attempts),
                "The default is 10.",
            ));
        }
        let (min, max) = (self.outbox.retry_min_secs, self.outbox.retry_max_secs);
        if !(0.01..=86_400.0).contains(&min) {
            return Err(ConfigError::new(
                "NEPHROCARE_OUTBOX_RETRY_MIN_SECS",
                format!("{min} is outside 0.01..=86400"),
                SECONDS_HINT,
            ));
        }
        if !(min..=86_400.0).contains(&max) {
            return Err(ConfigError::new(
                "NEPHROCARE_OUTBOX_RETRY_MAX_SECS",
                format!("{max} is outside {min}..=86400 (at least the first retry's delay)"),
                SECONDS_HINT,
            ));
        }
        if self.mqtt.max_session_expiry_secs == 0 {
            return Err(ConfigError::new(
                "NEPHROCARE_MQTT_MAX_SESSION_EXPIRY_SECS",
                "must be at least 1",
                SECONDS_HINT,
            ));
        }
        if self.mqtt.max_keep_alive_secs == 0 {
            return Err(ConfigError::new("NEPHROCARE_MQTT_MAX_KEEP_ALIVE_SECS", "must be at least 1", SECONDS_HINT));
        }
        if self.database.max_connections < 2 {
            return Err(ConfigError::new("NEPHROCARE_DB_MAX_CONNECTIONS", "must be at least 2", "Use 2 or more."));
        }
        if !(1024..=1 << 30).contains(&self.http.max_body_bytes) {
            return Err(ConfigError::new(
                "NEPHROCARE_HTTP_MAX_BODY_BYTES",
                format!("{} is outside 1024..=1073741824", self.http.max_body_bytes),
                "Give a size in bytes, e.g. 1048576 (1 MiB, the default).",
            ));
        }
        for (setting, secs) in [
            ("NEPHROCARE_HTTP_HEADER_TIMEOUT_SECS", self.http.header_read_timeout_secs),
            ("NEPHROCARE_HTTP_BODY_TIMEOUT_SECS", self.http.body_read_timeout_secs),
        ] {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::new(
                    setting,
                    format!("{secs} is outside 1..=3600"),
                    "Give whole seconds (defaults: 10 for headers, 30 for bodies).",
                ));
            }
        }
        let secret = &self.auth.jwt_secret;
        if !secret.is_empty() && secret.expose().len() < 32 {
            return Err(ConfigError::new(
                "NEPHROCARE_JWT_SECRET",
                "is shorter than 32 bytes",
                "Use a random value of at least 32 characters, e.g. `openssl rand -base64 48`.",
            ));
        }
        if !(1..=16).contains(&self.ingest.writers) {
            return Err(ConfigError::new(
                "NEPHROCARE_INGEST_WRITERS",
                format!("{} is outside 1..=16", self.ingest.writers),
                "The default is 3; each writer holds one of the pool's connections (NEPHROCARE_DB_MAX_CONNECTIONS).",
            ));
        }
        if self.ingest.gather_ms > 50 {
            return Err(ConfigError::new(
                "NEPHROCARE_INGEST_GATHER_MS",
                format!("{} is outside 0..=50", self.ingest.gather_ms),
                "Give milliseconds; the default is 0 (a batch is written as soon as a writer is free).",
            ));
        }
        if !(10..=10_000).contains(&self.ingest.derive_interval_ms) {
            return Err(ConfigError::new(
                "NEPHROCARE_INGEST_DERIVE_INTERVAL_MS",
                format!("{} is outside 10..=10000", self.ingest.derive_interval_ms),
                "Give milliseconds; the default is 200.",
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.access_token_ttl_secs > 900 {
            return Err(ConfigError::new(
                "NEPHROCARE_ACCESS_TOKEN_TTL_SECS",
                format!("{} is outside 1..=900", self.auth.access_token_ttl_secs),
                "Access tokens are short-lived: at most 15 minutes.",
            ));
        }
        if let Some(url) = &self.mqtt.core_url {
            if let Err(e) = nc_broker::core::Core::external(url.expose(), self.mqtt.core_ca.as_deref()) {
                return Err(ConfigError::new(
                    "NEPHROCARE_MQTT_CORE_URL",
                    e.to_string(),
                    "Give the clustered MQTT broker as mqtt://user:password@host:port (mqtts:// for TLS), several separated by commas.",
                ));
            }
        }
        if self.mqtt.tls_cert.is_some() != self.mqtt.tls_key.is_some() {
            return Err(ConfigError::new(
                "NEPHROCARE_MQTT_TLS_CERT/NEPHROCARE_MQTT_TLS_KEY",
                "only one of the two is set",
                "Set both (PEM certificate chain and its private key) to enable TLS, or neither.",
            ));
        }
        let a = &self.alarms;
        for (setting, secs) in [
            ("alarms.escalate_high_after_secs", a.escalate_high_after_secs),
            ("alarms.escalate_medium_after_secs", a.escalate_medium_after_secs),
            ("alarms.escalate_low_after_secs", a.escalate_low_after_secs),
        ] {
            if secs > 3600 {
                return Err(ConfigError::new(
                    setting,
                    format!("{secs} is outside 0..=3600"),
                    "Give whole seconds; 0 never escalates.",
                ));
            }
        }
        if !(1..=240).contains(&a.max_snooze_minutes) {
            return Err(ConfigError::new(
                "alarms.max_snooze_minutes",
                "must be between 1 and 240",
                "The default is 30.",
            ));
        }
        let secs_ok = |s: f64| (0.0..=3600.0).contains(&s);
        if !secs_ok(a.offline_delay_secs)
            || !secs_ok(a.flapping_window_secs)
            || a.restart_grace_secs > 86_400
            || a.flapping_drops < 2
        {
            return Err(ConfigError::new(
                "alarms",
                "offline_delay_secs and flapping_window_secs are at most 3600, restart_grace_secs at most 86400, flapping_drops at least 2",
                "See README.md, section Configuration.",
            ));
        }
        if let Some(url) = &self.http.public_url {
            if !nc_api::origin::PublicOrigin::valid(url) {
                return Err(ConfigError::new(
                    "NEPHROCARE_PUBLIC_URL",
                    format!("'{url}' is not a plain http:// or https:// origin"),
                    "Give the scheme, host and port clients use, e.g. https://nephro.example.org (no path).",
                ));
            }
        }
        if let Some(url) = &self.mqtt.public_ws_url {
            if !nc_api::dashboard::DashboardSettings::valid_url(url) {
                return Err(ConfigError::new(
                    "NEPHROCARE_MQTT_PUBLIC_WS_URL",
                    format!("'{url}' is not a plain ws:// or wss:// URL"),
                    "Give the URL browsers use for MQTT over WebSocket, e.g. wss://mqtt.example.org/mqtt (no quotes, spaces, ';' or ',').",
                ));
            }
        }
        let ports = [
            ("NEPHROCARE_HTTP_ADDR", self.http.addr),
            ("NEPHROCARE_MQTT_ADDR", self.mqtt.addr),
            ("NEPHROCARE_MQTT_WS_ADDR", self.mqtt.ws_addr),
        ];
        for (i, (name, a)) in ports.iter().enumerate() {
            for (other, b) in &ports[i + 1..] {
                if a.port() != 0 && a == b {
                    return Err(ConfigError::new(
                        *name,
                        format!("{a} is also used by {other}"),
                        "Give each listener its own port.",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The URL with its password replaced by `***`, for messages and logs; `***` for what is not
/// a URL (it may be one with a typo, password included).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], overrides: Overrides) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(None, &|k| env.get(k).cloned(), &overrides)
    }

    #[test]
    fn layers_apply_in_order() {
        let c = load(&[("NEPHROCARE_HTTP_ADDR", "127.0.0.1:9000")], Overrides::default()).unwrap();
        assert_eq!(c.http.addr.port(), 9000);
        let c = load(
            &[("NEPHROCARE_HTTP_ADDR", "127.0.0.1:9000")],
            Overrides { http_addr: Some("127.0.0.1:0".into()), ..Default::default() },
        )
        .unwrap();
        assert_eq!(c.http.addr.port(), 0, "the flag wins over the environment");
    }

    #[test]
    fn file_layer_is_read_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("nc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[http]\naddr = \"127.0.0.1:7000\"\n").unwrap();
        let c = Config::load(Some(&good), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(c.http.addr.port(), 7000);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[http]\nadress = \"x\"\n").unwrap();
        let e = Config::load(Some(&bad), &|_| None, &Overrides::default()).unwrap_err();
        assert!(e.problem.contains("adress"), "{e}");
    }

    #[test]
    fn http_limits_are_configurable_and_checked() {
        let c = load(&[], Overrides::default()).unwrap();
        assert_eq!(c.http.limits(), nc_api::HttpLimits::default());
        assert_eq!(c.http.max_body_bytes, 1024 * 1024);
        let c = load(
            &[("NEPHROCARE_HTTP_MAX_BODY_BYTES", "65536"), ("NEPHROCARE_HTTP_HEADER_TIMEOUT_SECS", "3")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!((c.http.limits().max_body_bytes, c.http.limits().header_read_timeout.as_secs()), (65536, 3));
        let e = load(&[("NEPHROCARE_HTTP_MAX_BODY_BYTES", "10")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_HTTP_MAX_BODY_BYTES");
        let e = load(&[("NEPHROCARE_HTTP_BODY_TIMEOUT_SECS", "0")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_HTTP_BODY_TIMEOUT_SECS");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let e = load(&[("NEPHROCARE_MQTT_ADDR", "localhost")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_MQTT_ADDR");
        let e = load(&[("NEPHROCARE_JWT_SECRET", "short")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_JWT_SECRET");
        let e = load(&[("NEPHROCARE_INGEST_GATHER_MS", "51")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_INGEST_GATHER_MS");
        let c = load(&[("NEPHROCARE_INGEST_GATHER_MS", "5")], Overrides::default()).unwrap();
        assert_eq!(c.ingest.gather_ms, 5);
        let e = load(&[("DATABASE_URL", "mysql://u:p@h/d")], Overrides::default()).unwrap_err();
        assert!(!e.to_string().contains(":p@"), "the password is redacted: {e}");
    }

    #[test]
    fn numbers_are_checked_by_their_type_not_truncated() {
        let e = load(&[("NEPHROCARE_DB_MAX_CONNECTIONS", "4294967298")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_DB_MAX_CONNECTIONS", "{e}");
        let e = load(&[("NEPHROCARE_ALARM_OFFLINE_DELAY_SECS", "1e300")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_ALARM_OFFLINE_DELAY_SECS", "{e}");
        let e = load(&[("NEPHROCARE_ALARM_FLAPPING_WINDOW_SECS", "NaN")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_ALARM_FLAPPING_WINDOW_SECS", "{e}");
        let e = load(&[("NEPHROCARE_INGEST_WRITERS", "three")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_INGEST_WRITERS", "{e}");
        let e = load(&[], Overrides { http_addr: Some("nowhere".into()), ..Default::default() }).unwrap_err();
        assert_eq!(e.setting, "--http-addr", "{e}");
        let c = load(
            &[
                ("NEPHROCARE_JWT_SECRET", "01234567890123456789012345678901234"),
                ("NEPHROCARE_TRUSTED_PROXIES", " 10.0.0.5, ::1 "),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.auth.jwt_secret.expose(), "01234567890123456789012345678901234", "digits stay text");
        assert_eq!(c.http.trusted_proxies.len(), 2);
        let e = load(&[("NEPHROCARE_TRUSTED_PROXIES", "10.0.0.5,proxy")], Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "NEPHROCARE_TRUSTED_PROXIES", "{e}");
    }

    #[test]
    fn the_readme_lists_every_variable_with_its_key() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for (name, key, ..) in ENVIRONMENT {
            assert!(readme.contains(&format!("| `{name}` | `{key}` |")), "README.md, Configuration: {name} → {key}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = load(&[("NEPHROCARE_JWT_SECRET", "0123456789abcdef0123456789abcdef-top-secret")], Overrides::default())
            .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("top-secret"));
        assert!(!printed.contains("nephrocare:nephrocare@"));
        assert_eq!(redact_url("postgres://u:pw@h:5432/d"), "postgres://u:***@h:5432/d");
    }
}
