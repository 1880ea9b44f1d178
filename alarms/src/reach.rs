//! Who can be reached now. A notification that reaches no connected person is no
//! notification (IEC 60601-1-8 §6.11: a failure to deliver an alarm must itself be
//! detected), so escalation asks, for each person of a tier, whether they are connected in
//! a way that shows them the alert at once:
//! - an MQTT connection (over TCP or WebSocket) that holds a subscription to their own
//!   `…/u/{user}/notifications` topic (asked of the broker's session book: a persistent
//!   session kept while its client is away does not count), or
//! - a live stream of the alert's device open (`/ws/health-metrics/{deviceId}`, which
//!   carries the device's alerts), counted here by [`Reach::watching`].
//!
//! After a start (this node's: its own connections are gone, the other nodes' snapshots not
//! yet heard) nobody is known to be unreachable: for [`Reach::new`]'s `grace` the answer is
//! [`Reachability::Unknown`] for anyone not seen yet, and escalation waits for the grace to
//! decide (see `escalation::settle`) instead of recording people unreachable whose apps are
//! reconnecting. The same holds while the broker reports its link to the MQTT core settling
//! ([`Connections::link_unsettled_at`]).
//!
//! With several nodes, each node also tells the others, every [`SHARE_EVERY`], whom it
//! reaches (a snapshot on the node bus), and counts a person reachable when any node whose
//! snapshot is younger than [`SNAPSHOT_TTL`] reaches them: a connection made on another
//! node counts within about a second, and a node that died stops counting after the TTL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nc_domain::{DeviceId, HospitalId, UserId};
use nc_messaging::Connections;
use serde::{Deserialize, Serialize};

/// How often a node tells the others whom it reaches.
pub const SHARE_EVERY: Duration = Duration::from_secs(1);
/// How long another node's snapshot counts.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(5);
/// Entries per node event (well under the bus's size limit).
const PER_EVENT: usize = 2_000;

/// Whether a person would see an alert now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Reachable,
    Unreachable,
    /// Not seen, but the service has just started (or its link to the MQTT core has just
    /// come back): their app may be reconnecting.
    Unknown,
}

impl Reachability {
    /// Of a group: reachable if anyone is; unknown if nobody is but someone may be.
    pub fn of_any(all: impl IntoIterator<Item = Reachability>) -> Reachability {
        all.into_iter().fold(Reachability::Unreachable, |acc, r| match (acc, r) {
            (Reachability::Reachable, _) | (_, Reachability::Reachable) => Reachability::Reachable,
            (Reachability::Unknown, _) | (_, Reachability::Unknown) => Reachability::Unknown,
            _ => Reachability::Unreachable,
        })
    }
}

pub struct Reach {
    /// Who listens on MQTT here (the broker's session book).
    mqtt: Arc<dyn Connections>,
    /// Until when reachability is unknown rather than "unreachable" (the start's grace).
    settles_at: Instant,
    grace: Duration,
    live: Arc<Mutex<HashMap<(UserId, DeviceId), usize>>>,
    /// What the other nodes reach, by node.
    others: Mutex<HashMap<String, Remote>>,
}

/// Whom a node reaches.
#[derive(Default)]
struct Reached {
    users: HashSet<UserId>,
    watching: HashSet<(UserId, DeviceId)>,
}

/// Another node's last complete snapshot (and when it came), and the one being received.
#[derive(Default)]
struct Remote {
    at: Option<Instant>,
    reached: Reached,
    next: Option<(u64, Reached)>,
}

/// One part of a node's snapshot of whom it reaches (node event `reach`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    node: String,
    seq: u64,
    last: bool,
    users: Vec<UserId>,
    watching: Vec<(UserId, DeviceId)>,
}

/// A live stream being watched; counted until dropped.
pub struct Watching {
    live: Arc<Mutex<HashMap<(UserId, DeviceId), usize>>>,
    key: (UserId, DeviceId),
}

impl Reach {
    /// Reachability through `mqtt`'s connections, the live streams counted here and the
    /// other nodes' snapshots.
    /// other nodes' snapshots; for `grace` from now, nobody not seen is unreachable yet.
    pub fn new(mqtt: Arc<dyn Connections>, grace: Duration) -> Reach {
        Reach { mqtt, settles_at: Instant::now() + grace, grace, live: Arc::default(), others: Mutex::default() }
    }

    /// Whether nobody unseen is taken for unreachable yet (the start's grace, or the
    /// broker's link to its core settling).
    pub fn settling(&self) -> bool {
        Instant::now() < self.settles_at || self.mqtt.link_unsettled_at().is_some_and(|t| t.elapsed() < self.grace)
    }

    /// When the start's grace ends (`None` once it has).
    pub fn settles_in(&self) -> Option<Duration> {
        self.settles_at.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Whether `user` would see an alert of `device` now ([`Reachability::Unknown`] while
    /// [`Reach::settling`]).
    pub fn reachability(&self, user: UserId, hospital: HospitalId, device: DeviceId) -> Reachability {
        if self.reachable(user, hospital, device) {
            Reachability::Reachable
        } else if self.settling() {
            Reachability::Unknown
        } else {
            Reachability::Unreachable
        }
    }

    /// Counts a person's live stream of a device while the guard lives.
    pub fn watching(&self, user: UserId, device: DeviceId) -> Watching {
        *self.live.lock().expect("reach").entry((user, device)).or_default() += 1;
        Watching { live: self.live.clone(), key: (user, device) }
    }

    /// Whether `user` would see an alert of `device` now, through this node or another.
    pub fn reachable(&self, user: UserId, hospital: HospitalId, device: DeviceId) -> bool {
        self.mqtt.notified(user, hospital)
            || self.live.lock().expect("reach").contains_key(&(user, device))
            || self.others.lock().expect("reach").values().any(|r| {
                r.at.is_some_and(|at| at.elapsed() < SNAPSHOT_TTL)
                    && (r.reached.users.contains(&user) || r.reached.watching.contains(&(user, device)))
            })
    }

    /// This node's snapshot `seq`, in parts.
    pub(crate) fn snapshot(&self, node: &str, seq: u64) -> Vec<Snapshot> {
        let users: Vec<UserId> = self.mqtt.notification_listeners();
        let watching: Vec<(UserId, DeviceId)> = self.live.lock().expect("reach").keys().copied().collect();
        let mut parts = Vec::new();
        let (mut u, mut w) = (users.chunks(PER_EVENT), watching.chunks(PER_EVENT));
        loop {
            let (users, watching) = (u.next().unwrap_or_default(), w.next().unwrap_or_default());
            parts.push(Snapshot {
                node: node.to_owned(),
                seq,
                last: false,
                users: users.to_vec(),
                watching: watching.to_vec(),
            });
            if u.len() == 0 && w.len() == 0 {
                break;
            }
        }
        if let Some(p) = parts.last_mut() {
            p.last = true;
        }
        parts
    }

    /// A part of another node's snapshot: the snapshot counts once its last part is in.
    pub(crate) fn heard(&self, part: Snapshot) {
        let mut others = self.others.lock().expect("reach");
        // Nodes not heard of for a while (stopped or dead) are dropped.
        others.retain(|_, r| r.at.is_none_or(|at| at.elapsed() < SNAPSHOT_TTL * 4));
        let remote = others.entry(part.node).or_default();
        if remote.next.as_ref().is_none_or(|(seq, _)| *seq != part.seq) {
            remote.next = Some((part.seq, Reached::default()));
        }
        if let Some((_, next)) = remote.next.as_mut() {
            next.users.extend(part.users);
            next.watching.extend(part.watching);
        }
        if part.last {
            if let Some((_, reached)) = remote.next.take() {
                remote.reached = reached;
                remote.at = Some(Instant::now());
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut live = self.live.lock().expect("reach");
        if let Some(n) = live.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc_domain::RoomId;

    /// People listening to their notifications on MQTT, as a broker would report them.
    struct Listening(Vec<UserId>);

    impl Connections for Listening {
        fn epoch(&self) -> Option<u64> {
            None
        }
        fn user_in_room(&self, _: UserId, _: RoomId) -> bool {
            false
        }
        fn notified(&self, user: UserId, _: HospitalId) -> bool {
            self.0.contains(&user)
        }
        fn notification_listeners(&self) -> Vec<UserId> {
            self.0.clone()
        }
    }

    fn reach(listening: Vec<UserId>) -> Reach {
        Reach::new(Arc::new(Listening(listening)), Duration::ZERO)
    }

    #[test]
    fn another_nodes_snapshot_counts_once_complete_and_while_fresh() {
        let users: Vec<UserId> = (0..PER_EVENT * 2 + 1).map(|_| UserId::new()).collect();
        let (here, there) = (reach(Vec::new()), reach(users.clone()));
        let (h, d) = (HospitalId::new(), DeviceId::new());
        let _w = there.watching(users[0], d);
        let parts = there.snapshot("b", 1);
        assert_eq!(parts.len(), 3, "in parts under the bus's limit");
        let last = users[PER_EVENT * 2];
        for p in parts[..2].iter().cloned() {
            here.heard(p);
        }
        assert!(!here.reachable(last, h, d), "an incomplete snapshot does not count");
        here.heard(parts[2].clone());
        assert!(here.reachable(last, h, d) && here.reachable(users[0], h, DeviceId::new()));
        // The next snapshot replaces it.
        here.heard(Snapshot { node: "b".into(), seq: 2, last: true, users: vec![], watching: vec![(users[0], d)] });
        assert!(!here.reachable(last, h, d));
        assert!(here.reachable(users[0], h, d), "watching the device's live stream");
        assert!(!here.reachable(users[0], h, DeviceId::new()));
    }

    #[test]
    fn after_a_start_nobody_unseen_is_unreachable_until_the_grace_ends() {
        let (u, h, d) = (UserId::new(), HospitalId::new(), DeviceId::new());
        let starting = Reach::new(Arc::new(Listening(Vec::new())), Duration::from_secs(60));
        assert_eq!(starting.reachability(u, h, d), Reachability::Unknown);
        let _w = starting.watching(u, d);
        assert_eq!(starting.reachability(u, h, d), Reachability::Reachable, "seen: reachable at once");
        let settled = reach(Vec::new());
        assert_eq!(settled.reachability(u, h, d), Reachability::Unreachable);
        use Reachability::*;
        assert_eq!(Reachability::of_any([Unreachable, Unknown]), Unknown);
        assert_eq!(Reachability::of_any([Unknown, Reachable, Unreachable]), Reachable);
        assert_eq!(Reachability::of_any([]), Unreachable);
    }

    #[test]
    fn a_live_stream_counts_while_open_and_mqtt_while_subscribed() {
        let (u, h, d) = (UserId::new(), HospitalId::new(), DeviceId::new());
        let listening = reach(vec![u]);
        let reach = super::Reach::new(Arc::new(Listening(Vec::new())), Duration::ZERO);
        assert!(!reach.reachable(u, h, d));
        let a = reach.watching(u, d);
        let b = reach.watching(u, d);
        assert!(reach.reachable(u, h, d));
        assert!(!reach.reachable(u, h, DeviceId::new()), "a stream shows its own device's alerts only");
        drop(a);
        assert!(reach.reachable(u, h, d));
        drop(b);
        assert!(!reach.reachable(u, h, d));
        assert!(listening.reachable(u, h, d), "subscribed to their notifications");
        assert!(!listening.reachable(UserId::new(), h, d));
    }
}
