//! What the handlers share: the database, the policy, authentication, throttling and the
//! message sender.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use nc_access::authn::Authenticator;
use nc_access::{DeviceAction, PatientAction, Policy, Subject};
use nc_domain::{DeviceId, PatientId};
use nc_entities::{devices::Model as Device, patients::Model as Patient};
use sea_orm::DatabaseConnection;

use crate::error::ApiError;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub db: DatabaseConnection,
    pub policy: Policy,
    pub authn: Authenticator,
    pub throttle: Arc<Throttle>,
    pub sender: Arc<dyn nc_care::accounts::Sender>,
    pub refresh_ttl: chrono::Duration,
    /// The telemetry pipeline (HTTP ingest, history, trends, alerts).
    pub ingest: nc_ingest::Ingest,
    /// The alarm system (alerts, escalation, history, burden).
    pub alarms: nc_alarms::Alarms,
    /// Chat: rooms, messages, receipts, typing.
    pub chat: nc_chat::Chat,
    /// Dialysis session bookings and availability.
    pub bookings: nc_bookings::Bookings,
    /// Device gateways (IHE PCD-01): their registry.
    pub gateways: nc_gateways::Gateways,
    /// Treatment records out (the EMR endpoint).
    pub records: nc_records::Records,
    /// Device presence, for the live streams.
    pub presence: nc_broker::Presence,
    /// The broker's live connections, for metrics.
    pub mqtt: Arc<nc_broker::registry::Registry>,
    /// Open live streams per person (bounded).
    pub streams: Arc<crate::http::streams::StreamCounts>,
    /// What a client may send over HTTP (body size, header and body time).
    pub limits: crate::HttpLimits,
    /// Where the web dashboard finds the broker.
    pub dashboard: crate::dashboard::DashboardSettings,
    /// The public base URL of absolute links ([`crate::origin`]).
    pub origin: crate::origin::PublicOrigin,
    /// The broker's service publisher: what arrives over HTTP but belongs on MQTT topics
    /// (a machine's readings posted over HTTP) is published there like the same message
    /// arriving over MQTT.
    pub publisher: nc_messaging::Publisher,
}

/// The capabilities the API serves.
pub struct Services {
    pub ingest: nc_ingest::Ingest,
    pub alarms: nc_alarms::Alarms,
    pub chat: nc_chat::Chat,
    pub bookings: nc_bookings::Bookings,
    pub gateways: nc_gateways::Gateways,
    pub records: nc_records::Records,
}

/// Settings of the API component.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub refresh_ttl_secs: u64,
    pub throttle: ThrottleSettings,
    pub limits: crate::HttpLimits,
    pub dashboard: crate::dashboard::DashboardSettings,
    /// The public base URL of absolute links, and the proxies trusted to say otherwise.
    pub origin: crate::origin::PublicOrigin,
}

impl ApiState {
    pub fn new(
        db: DatabaseConnection,
        settings: &ApiSettings,
        authn: Authenticator,
        services: Services,
        presence: nc_broker::Presence,
        mqtt: Arc<nc_broker::registry::Registry>,
        publisher: nc_messaging::Publisher,
    ) -> Self {
        let Services { ingest, alarms, chat, bookings, gateways, records } = services;
        Self {
            ingest,
            alarms,
            chat,
            bookings,
            gateways,
            records,
            presence,
            mqtt,
            streams: Arc::default(),
            policy: Policy::new(db.clone()),
            authn,
            throttle: Arc::new(Throttle::new(&settings.throttle)),
            sender: Arc::new(nc_care::accounts::OutboxSender { db: db.clone() }),
            refresh_ttl: chrono::Duration::seconds(settings.refresh_ttl_secs as i64),
            limits: settings.limits.clone(),
            dashboard: settings.dashboard.clone(),
            origin: settings.origin.clone(),
            publisher,
            db,
        }
    }
}

/// The policy's object decisions, with its refusals as API errors (404 for an object the
/// caller may not know exists, 403 for one it may not act on).
impl ApiState {
    /// The device, if `who` may do `act` to it.
    pub(crate) async fn allowed_device(&self, who: &Subject, id: DeviceId, act: DeviceAction) -> Allowed<Device> {
        self.policy.device(who, id, act).await.map_err(|e| ApiError::policy(e, "device"))
    }

    /// The patient record, if `who` may do `act` to it.
    pub(crate) async fn allowed_patient(&self, who: &Subject, id: PatientId, act: PatientAction) -> Allowed<Patient> {
        self.policy.patient(who, id, act).await.map_err(|e| ApiError::policy(e, "patient"))
    }
}

/// An object the caller may act on, or why not.
pub(crate) type Allowed<T> = Result<T, ApiError>;

/// Attempt limits for login, one-time codes and password resets.
#[derive(Clone, Debug)]
pub struct ThrottleSettings {
    /// Attempts per minute for one account (also the burst).
    pub per_account_per_minute: u32,
    /// Attempts per minute from one client address (also the burst).
    pub per_address_per_minute: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self { per_account_per_minute: 5, per_address_per_minute: 30 }
    }
}

/// The kinds of attempt counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attempt {
    Login,
    Code,
    Reset,
}

/// Keyed rate limits (GCRA, from governor) per account and per client address.
pub struct Throttle {
    accounts: DefaultKeyedRateLimiter<(Attempt, String)>,
    addresses: DefaultKeyedRateLimiter<(Attempt, IpAddr)>,
    clock: DefaultClock,
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("non-zero"))
}

impl Throttle {
    pub fn new(settings: &ThrottleSettings) -> Self {
        Self {
            accounts: RateLimiter::keyed(quota(settings.per_account_per_minute)),
            addresses: RateLimiter::keyed(quota(settings.per_address_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt; refuses with the seconds to wait when over either limit.
    pub fn check(&self, kind: Attempt, account: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let wait = |e: governor::NotUntil<_>| {
            let secs = e.wait_time_from(self.clock.now()).as_secs_f64().ceil() as u64;
            ApiError::RateLimited { retry_after_secs: secs.max(1) }
        };
        if let Some(ip) = address {
            self.addresses.check_key(&(kind, ip)).map_err(wait)?;
        }
        self.accounts.check_key(&(kind, account.to_lowercase())).map_err(wait)?;
        Ok(())
    }

    /// Forgets keys whose limits have fully replenished (bounded memory).
    pub fn tidy(&self) {
        self.accounts.retain_recent();
        self.addresses.retain_recent();
    }
}
