//! Live connections, and the access-change events that make them re-check their rights.
//!
//! The database fires `pg_notify('nc_access', …)` whenever an assignment, grant, account,
//! login session, device or room membership changes (migration `access_events`); every
//! service instance LISTENs, so this works with several instances. An event reaches the
//! connections it may affect (same user or device, or a subscription under that device,
//! patient or room), which re-check their identity and every subscription and disconnect if any right
//! is gone. If the LISTEN connection drops, every connection re-checks once it is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// An access-change event, as the trigger sends it.
#[derive(Debug, serde::Deserialize, Default)]
pub struct AccessEvent {
    pub user: Option<UserId>,
    pub device: Option<DeviceId>,
    pub room: Option<RoomId>,
    pub patient: Option<PatientId>,
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

    /// Tells the affected connections to re-check (all of them when `event` is `None`).
    pub fn dispatch(&self, event: Option<&AccessEvent>) {
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

/// LISTENs for access events until `shutdown`, reconnecting as needed.
pub async fn listen(registry: Arc<Registry>, pool: PgPool, shutdown: CancellationToken) {
    let mut first = true;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "access events: cannot connect; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "access events: LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !first {
            // Events may have been missed while disconnected.
            registry.dispatch(None);
        }
        first = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(n) => match serde_json::from_str::<AccessEvent>(n.payload()) {
                        Ok(ev) => registry.dispatch(Some(&ev)),
                        Err(e) => {
                            tracing::warn!(error = %e, payload = n.payload(), "access events: unreadable payload; re-checking everyone");
                            registry.dispatch(None);
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "access events: connection lost; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
