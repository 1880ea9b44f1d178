//! The alarm system: one capability that owns the alerts' storage, their life cycle, their
//! escalation until someone answers, their history and their fan-out. Ingest's condition
//! evaluation raises and clears alerts through [`Alarms`]; the REST API acknowledges,
//! snoozes, clears and reads them through it (after asking the policy module); the broker
//! delivers its notifications.
//!
//! - [`lifecycle`]: raise, acknowledge, snooze, clear (by the service when the condition
//!   ends, by a person only for technical alarms or a value back in range), latching of
//!   high-priority alarms that clear before anyone acknowledged them;
//! - [`escalation`]: the scheduler that escalates unacknowledged alerts tier by tier and
//!   re-alerts snoozed ones, driven from stored state (`next_escalation_at`,
//!   `snoozed_until`) with `FOR UPDATE SKIP LOCKED`, so a restart (or a second node) neither
//!   loses nor repeats a tier; an alert that reaches nobody escalates at once ([`reach`]);
//! - [`policy`]: per-hospital escalation rules;
//! - [`burden`]: alarm-burden analytics in SQL;
//! - every change is a row of `alert_events` (the history), published on MQTT after its
//!   commit, with the row as an outbox so a crash between the two loses no notification.

pub mod acm;
mod acm_status;
pub mod burden;
mod catchup;
mod email;
pub mod escalation;
pub mod fallback;
mod fanout;
pub mod lifecycle;
pub mod model;
mod outgoing;
pub mod policy;
pub mod reach;
pub mod reads;

use std::sync::Arc;
use std::time::Duration;

use nc_access::Policy;
use nc_messaging::Publisher;
use sea_orm::DatabaseConnection;
use sqlx::PgPool;
use tokio::sync::{broadcast, Notify};

pub use lifecycle::{ClearCause, NewAlert, Subject};
pub use model::{Alert, AlertChange, AlertEvent, AlertNote, HistoryEntry, Notified};
pub use policy::{EscalationPolicy, EscalationRule};
pub use reach::{Reach, Reachability};

/// Settings of the alarm system.
#[derive(Debug, Clone)]
pub struct AlarmSettings {
    /// The escalation policy of a hospital that has not set its own.
    pub defaults: EscalationPolicy,
    /// The longest snooze a person may set.
    pub max_snooze: Duration,
    /// How often the scheduler looks for due escalations and expired snoozes (it is also
    /// woken at once when an alert reaches nobody).
    pub tick: Duration,
    /// An event whose notifications were not sent this long after it was stored (the
    /// process died in between) is sent again.
    pub republish_after: Duration,
    /// After a start, how long nobody not seen is taken for unreachable (see [`reach`]).
    pub reach_grace: Duration,
    /// The service's public base URL, for the link in a fallback e-mail (see [`fallback`]).
    pub link_base: String,
    /// How long a tier with nobody on MQTT waits for the hospital's alert manager to accept
    /// its report before it counts as unreachable (the manager reaches pagers and phones).
    pub channel_wait: Duration,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            defaults: EscalationPolicy::default(),
            max_snooze: Duration::from_secs(30 * 60),
            tick: Duration::from_millis(500),
            republish_after: Duration::from_secs(5),
            reach_grace: Duration::from_secs(30),
            link_base: String::new(),
            channel_wait: Duration::from_secs(10),
        }
    }
}

/// Why an action on an alert is refused.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("alert not found")]
    NotFound,
    #[error("the alert is already cleared")]
    AlreadyCleared,
    /// A physiological alarm whose condition persists is acknowledged, not cleared.
    #[error(
        "the value is still outside its limit: a physiological alarm whose condition persists cannot be cleared by \
         hand; acknowledge or snooze it"
    )]
    ConditionPersists,
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// A tier whose reach is decided later (see [`escalation`]'s `settle_undecided`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Undecided {
    pub alert: uuid::Uuid,
    pub tier: u8,
    /// Not before then.
    pub at: std::time::Instant,
    /// Waiting for the alert manager to accept the tier's report (otherwise: for the start's
    /// grace to end).
    pub channel: bool,
}

/// The node event that carries alert changes to the other nodes' live streams.
pub(crate) const ALERTS_EVENT: &str = "alerts";
/// The node event that tells the other nodes whom this node reaches.
const REACH_EVENT: &str = "reach";

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    /// The same database through sea-orm, for the lists the policy scopes.
    pub(crate) db: DatabaseConnection,
    pub(crate) policy: Policy,
    pub(crate) settings: AlarmSettings,
    pub(crate) publisher: Publisher,
    pub(crate) events: broadcast::Sender<AlertEvent>,
    /// Other nodes (an external MQTT core; off with one node).
    pub(crate) bus: nc_messaging::Bus,
    pub(crate) reach: Reach,
    /// Wakes the scheduler (an alert reached nobody: escalate now).
    pub(crate) wake: Notify,
    /// Tiers whose reach is decided later: people not seen during the start's grace, or
    /// nobody on MQTT but a report on its way to the hospital's alert manager.
    pub(crate) undecided: std::sync::Mutex<Vec<Undecided>>,
}

/// The alarm system. Cheap to clone.
#[derive(Clone)]
pub struct Alarms {
    pub(crate) inner: Arc<Inner>,
}

impl Alarms {
    /// The alarm system, publishing through `outbound` (and sharing alert changes and
    /// reachability with the other nodes on its bus).
    pub fn new(db: DatabaseConnection, settings: AlarmSettings, outbound: &nc_messaging::Outbound) -> Alarms {
        let (events, _) = broadcast::channel(1024);
        let alarms = Alarms {
            inner: Arc::new(Inner {
                pool: db.get_postgres_connection_pool().clone(),
                policy: Policy::new(db.clone()),
                db,
                publisher: outbound.publisher.clone(),
                events,
                bus: outbound.bus.clone(),
                reach: Reach::new(outbound.connections.clone(), settings.reach_grace),
                settings,
                wake: Notify::new(),
                undecided: Default::default(),
            }),
        };
        alarms.share_with_other_nodes();
        alarms
    }

    /// Shares alert changes with the other nodes' live streams, and theirs with ours; and
    /// whom each node reaches, for escalation (see [`reach`]).
    fn share_with_other_nodes(&self) {
        let bus = &self.inner.bus;
        if !bus.enabled() {
            return;
        }
        let events = self.inner.events.clone();
        bus.on(ALERTS_EVENT, move |e: AlertEvent| {
            let _ = events.send(e);
        });
        // Reachability across nodes: whom each node reaches, every second.
        let inner = Arc::downgrade(&self.inner);
        bus.on(REACH_EVENT, move |part: reach::Snapshot| {
            if let Some(inner) = inner.upgrade() {
                inner.reach.heard(part);
            }
        });
        let (inner, bus) = (Arc::downgrade(&self.inner), bus.clone());
        tokio::spawn(async move {
            let node = bus.node().simple().to_string();
            let mut every = tokio::time::interval(reach::SHARE_EVERY);
            for seq in 1.. {
                every.tick().await;
                let Some(inner) = inner.upgrade() else { break };
                for part in inner.reach.snapshot(&node, seq) {
                    bus.send(REACH_EVENT, &part).await;
                }
            }
        });
    }

    /// Who can be reached now (the broker and the live streams tell it).
    pub fn reach(&self) -> &Reach {
        &self.inner.reach
    }

    /// Every change of every alert, for the live streams.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.inner.events.subscribe()
    }

    pub fn settings(&self) -> &AlarmSettings {
        &self.inner.settings
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}
