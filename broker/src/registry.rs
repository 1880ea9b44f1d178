//! Live connections, and the access-change events that make them re-check their rights.
//!
//! The database fires `pg_notify('nc_access', …)` whenever an assignment, grant, account,
//! login session, device or room membership changes (migration `access_events`); every
//! service instance LISTENs, so this works with several instances. An event reaches the
//! connections it may affect (same user or device, or a subscription under that device,
//! patient or room), which re-check their identity and every subscription and disconnect if any right
//! is gone. If the LISTEN connection drops, every connection re-checks once it is back.
//!
//! The registry also keeps an **access epoch** ([`Registry::epoch`]): a counter that every
//! access event moves on, readable only while the LISTEN connection is up. A decision taken
//! at epoch `e` still holds while the epoch is `e` (nothing that grants or revokes access has
//! changed since), so streams and the chat's room decisions ask the policy again when the
//! epoch moves instead of on every message or every second ([`Watch`]). While the listener
//! is down the epoch is unknown and everything is decided afresh.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nc_access::Subject;
use nc_domain::{DeviceId, PatientId, RoomId, UserId};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "nc_access";

/// Sent to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-check identity and subscriptions.
    Recheck,
    /// A newer connection of the same machine took its session over: end without a word.
    Replaced,
}

struct Entry {
    subject: Subject,
    devices: HashSet<DeviceId>,
    rooms: HashSet<RoomId>,
    patients: HashSet<PatientId>,
    tx: mpsc::Sender<Control>,
}

#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Entry>>,
    /// Moves on with every access event (and when events may have been missed).
    epoch: AtomicU64,
    /// Whether the LISTEN connection is up (the epoch means something).
    listening: AtomicBool,
    /// When the listener last received anything (ms since [`origin`]): a connection that
    /// died without a word (a half-open TCP connection) shows as silence, which the
    /// heartbeats (every [`HEARTBEAT`]) rule out while it is alive.
    heard: AtomicU64,
}

/// How often each instance sends the listeners a heartbeat through the database.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Silence after which the epoch is unknown (events may be being missed).
const SILENCE_MS: u64 = 1000;

fn origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// Milliseconds on a clock that starts at a minute (so that "a while before" is
/// representable from the first moment).
fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64 + 60_000
}

/// An access-change event, as the trigger sends it.
#[derive(Debug, serde::Deserialize, Default)]
pub struct AccessEvent {
    pub user: Option<UserId>,
    pub device: Option<DeviceId>,
    pub room: Option<RoomId>,
    pub patient: Option<PatientId>,
    /// A listener's heartbeat (no access change).
    #[serde(default)]
    pub heartbeat: bool,
}

impl Registry {
    pub fn register(&self, subject: Subject) -> (u64, mpsc::Receiver<Control>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(4);
        self.conns.lock().expect("registry lock").insert(
            id,
            Entry { subject, devices: HashSet::new(), rooms: HashSet::new(), patients: HashSet::new(), tx },
        );
        (id, rx)
    }

    pub fn unregister(&self, id: u64) {
        self.conns.lock().expect("registry lock").remove(&id);
    }

    /// Records what a connection subscribes under, so events about it reach the connection.
    pub fn watch(&self, id: u64, device: Option<DeviceId>, room: Option<RoomId>, patient: Option<PatientId>) {
        if let Some(e) = self.conns.lock().expect("registry lock").get_mut(&id) {
            e.devices.extend(device);
            e.rooms.extend(room);
            e.patients.extend(patient);
        }
    }

    /// How many live connections a device has (a device may briefly have two while it
    /// takes over its own session).
    pub fn device_connections(&self, device: DeviceId) -> usize {
        self.conns
            .lock()
            .expect("registry lock")
            .values()
            .filter(|e| matches!(e.subject, Subject::Device { id, .. } if id == device))
            .count()
    }

    /// Ends the other live connections of `device` than `id` (a machine's session the edge
    /// keeps itself, taken over by its newer connection: see `edge::serve`).
    pub fn replace_device(&self, device: DeviceId, id: u64) {
        let others: Vec<mpsc::Sender<Control>> = self
            .conns
            .lock()
            .expect("registry lock")
            .iter()
            .filter(|(other, e)| **other != id && matches!(e.subject, Subject::Device { id, .. } if id == device))
            .map(|(_, e)| e.tx.clone())
            .collect();
        for tx in others {
            // Never lost behind re-checks that fill the channel.
            tokio::spawn(async move {
                let _ = tx.send(Control::Replaced).await;
            });
        }
    }

    /// Whether `user` has a live connection subscribed under `room`.
    pub fn user_in_room(&self, user: UserId, room: RoomId) -> bool {
        self.conns
            .lock()
            .expect("registry lock")
            .values()
            .any(|e| matches!(e.subject, Subject::User(u) if u.id == user) && e.rooms.contains(&room))
    }

    /// Live connections of machines and of people.
    pub fn by_kind(&self) -> (usize, usize) {
        let conns = self.conns.lock().expect("registry lock");
        let machines = conns.values().filter(|e| matches!(e.subject, Subject::Device { .. })).count();
        (machines, conns.len() - machines)
    }

    pub fn len(&self) -> usize {
        self.conns.lock().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The access epoch, while access events are being received: a decision taken when it
    /// read `Some(e)` holds as long as it still reads `Some(e)`. Read it *before* asking
    /// the policy.
    pub fn epoch(&self) -> Option<u64> {
        // The listener going down or up also moves the epoch on, so a reading taken across
        // that change never matches a later one.
        let listening = self.listening.load(Ordering::SeqCst);
        let recent = now_ms().saturating_sub(self.heard.load(Ordering::SeqCst)) <= SILENCE_MS;
        (listening && recent).then(|| self.epoch.load(Ordering::SeqCst))
    }

    fn set_listening(&self, up: bool) {
        self.heard.store(now_ms(), Ordering::SeqCst);
        self.listening.store(up, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The listener heard something (an event or a heartbeat). After a silence, the epoch
    /// moves on: what was decided before it cannot be trusted.
    fn heard(&self) {
        let before = self.heard.swap(now_ms(), Ordering::SeqCst);
        if now_ms().saturating_sub(before) > SILENCE_MS {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Tells the affected connections to re-check (all of them when `event` is `None`).
    pub fn dispatch(&self, event: Option<&AccessEvent>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let conns = self.conns.lock().expect("registry lock");
        for entry in conns.values() {
            let affected = match event {
                None => true,
                Some(ev) => {
                    let subject_hit = match entry.subject {
                        Subject::User(u) => ev.user == Some(u.id),
                        Subject::Device { id, .. } => ev.device == Some(id),
                    };
                    subject_hit
                        || ev.device.is_some_and(|d| entry.devices.contains(&d))
                        || ev.room.is_some_and(|r| entry.rooms.contains(&r))
                        || ev.patient.is_some_and(|p| entry.patients.contains(&p))
                }
            };
            if affected {
                // A full queue already holds a Recheck: nothing is lost.
                let _ = entry.tx.try_send(Control::Recheck);
            }
        }
    }
}

/// Marks the listener down and stops its heartbeats however `listen` ends (a panic or an
/// abort included: the heartbeats hold a pool, which must not outlive the listener).
struct Down(Arc<Registry>, tokio::task::JoinHandle<()>);

impl Drop for Down {
    fn drop(&mut self) {
        self.1.abort();
        self.0.set_listening(false);
    }
}

/// LISTENs for access events until `shutdown`, reconnecting as needed, and sends the
/// heartbeats that show the listeners (this instance's and the others') alive.
pub async fn listen(registry: Arc<Registry>, pool: PgPool, shutdown: CancellationToken) {
    let _down = Down(registry.clone(), tokio::spawn(heartbeats(pool.clone(), shutdown.clone())));
    let mut first = true;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "access events: cannot connect; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // A lost connection is reported at once (not after reconnecting, which can wait
        // for the pool): the epoch must stop counting while events may be missed.
        listener.eager_reconnect(false);
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "access events: LISTEN failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        registry.set_listening(true);
        if !first {
            // Events may have been missed while disconnected.
            registry.dispatch(None);
        }
        first = false;
        let lost = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break false,
                // `try_recv`, not `recv`: `recv` reconnects silently and loses what was
                // sent meanwhile; a lost connection must make everyone re-check.
                received = listener.try_recv() => match received {
                    Ok(Some(n)) => {
                        registry.heard();
                        match serde_json::from_str::<AccessEvent>(n.payload()) {
                            Ok(ev) if ev.heartbeat => {}
                            Ok(ev) => registry.dispatch(Some(&ev)),
                            Err(e) => {
                                tracing::warn!(error = %e, payload = n.payload(), "access events: unreadable payload; re-checking everyone");
                                registry.dispatch(None);
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("access events: connection lost; reconnecting");
                        break true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "access events: connection lost; reconnecting");
                        break true;
                    }
                }
            }
        };
        registry.set_listening(false);
        if !lost {
            break;
        }
    }
}

/// Sends a heartbeat on the access channel every [`HEARTBEAT`] (every listener of this
/// database hears it; a listener that hears nothing for [`SILENCE_MS`] stops vouching for
/// the epoch). On a connection of its own, not the pool's: a pool busy with the load would
/// delay the heartbeats, the silence would make every kept decision be asked again, and
/// that would load the pool further.
async fn heartbeats(pool: PgPool, shutdown: CancellationToken) {
    use sqlx::{ConnectOptions, Connection};
    let options = (*pool.connect_options()).clone();
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<sqlx::PgConnection> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => {
                if conn.is_none() {
                    conn = tokio::time::timeout(HEARTBEAT * 4, options.connect()).await.ok().and_then(Result::ok);
                }
                let Some(c) = conn.as_mut() else { continue };
                let sent = sqlx::query("SELECT pg_notify($1, '{\"heartbeat\": true}')").bind(CHANNEL).execute(&mut *c);
                // A database that does not answer in time: the silence says so.
                if !matches!(tokio::time::timeout(HEARTBEAT * 2, sent).await, Ok(Ok(_))) {
                    conn = None;
                }
            }
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

/// When a long-lived stream (a WebSocket) must ask the policy again: when an access event
/// has moved the epoch on since its last decision, whenever events are not being received,
/// and when the temporary grant its decision rests on ends. Between those, nothing its
/// decision depends on has changed.
pub struct Watch {
    registry: Arc<Registry>,
    decided: Option<u64>,
    until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Watch {
    /// A watch with no decision yet (due at once).
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry, decided: None, until: None }
    }

    /// The epoch to read before asking the policy.
    pub fn begin(&self) -> Option<u64> {
        self.registry.epoch()
    }

    /// Records a decision taken after [`Watch::begin`] returned `epoch`, resting on a grant
    /// that ends at `until` (if any).
    pub fn decided(&mut self, epoch: Option<u64>, until: Option<chrono::DateTime<chrono::Utc>>) {
        self.decided = epoch;
        self.until = until;
    }

    /// Whether the decision must be taken again now.
    pub fn due(&self) -> bool {
        self.decided.is_none()
            || self.registry.epoch() != self.decided
            || self.until.is_some_and(|u| u <= chrono::Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_moves_with_every_event_and_means_nothing_while_events_are_not_received() {
        let r = Arc::new(Registry::default());
        assert_eq!(r.epoch(), None, "not listening yet");
        r.set_listening(true);
        let e = r.epoch().expect("listening");
        let mut watch = Watch::new(r.clone());
        assert!(watch.due(), "no decision yet");
        watch.decided(watch.begin(), None);
        assert!(!watch.due(), "nothing changed");
        r.dispatch(Some(&AccessEvent { user: Some(UserId::new()), ..Default::default() }));
        assert_ne!(r.epoch(), Some(e), "any event moves it on");
        assert!(watch.due(), "an access event");
        watch.decided(watch.begin(), Some(chrono::Utc::now() - chrono::Duration::milliseconds(1)));
        assert!(watch.due(), "the grant it rested on has ended");
        watch.decided(watch.begin(), None);
        r.set_listening(false);
        assert_eq!(r.epoch(), None);
        assert!(watch.due(), "events may be missed");
        let seen = watch.begin();
        watch.decided(seen, None);
        assert!(watch.due(), "a decision taken while events were not received is not kept");
        r.set_listening(true);
        assert!(watch.due(), "and not after they are received again either");
    }

    #[test]
    fn a_silent_listener_vouches_for_nothing() {
        let r = Registry::default();
        r.set_listening(true);
        let e = r.epoch().expect("listening");
        // A half-open connection: no error, only silence past the heartbeats.
        r.heard.store(now_ms().saturating_sub(SILENCE_MS + 500), Ordering::SeqCst);
        assert_eq!(r.epoch(), None, "silence: events may be being missed");
        r.heard();
        assert!(r.epoch().is_some_and(|now| now != e), "heard again: what was decided before the silence is not kept");
    }
}
