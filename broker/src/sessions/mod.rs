//! The edge's book of the sessions it keeps in the core.
//!
//! rumqttd keeps a persistent session (`clean_session = false`) by client id: on
//! reconnect it restores the subscriptions and resumes delivery, with no SUBSCRIBE the
//! edge could authorize. It also keeps a record of every client id it has ever seen. So
//! the edge never lets a client choose the core's client id: each identity (user or
//! device) has at most `per_identity` *slots*, and a slot's core id is
//! `{identity}~{n}`. The book remembers, per slot, which client id uses it, for which
//! login session (refresh-token family), whether the core keeps it after a disconnect,
//! and which subscriptions the core holds for it. On reconnect the edge re-authorizes
//! every carried subscription with the current rights before anything is relayed (see
//! `edge::relay`), and a persistent session belongs to the login session that created it:
//! after a logout, a new login starts afresh.
//!
//! Bounds: the core sees at most `per_identity` client ids per identity; an identity has
//! at most that many connections at once; a new client id takes the least recently used
//! idle slot (its session is forgotten), and when every slot is connected the CONNECT is
//! refused with code 3. The book lives in memory, exactly as long as the core's sessions;
//! with an external core shared by several nodes, persistent sessions are also written
//! through to the database ([`store`]) and adopted from it at CONNECT
//! ([`SessionBook::adopt`]), so that any node resumes them.
//!
//! The book also counts, per device and per patient, the subscriptions the core holds for
//! every session it keeps (connected or not) whose filter names them: the edge forwards a
//! device's message to the core only when one may match ([`SessionBook::may_be_wanted`]);
//! otherwise the core would route it to no one. A subscription is counted before the
//! SUBSCRIBE reaches the core and until the core no longer holds it.

pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use nc_domain::TokenFamilyId;
use rumqttc::QoS;
use uuid::Uuid;

use crate::topic::{DeviceChannel, Filter, Topic};

/// What a subscription names, as far as forwarding to the core is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Device(nc_domain::DeviceId),
    Patient(nc_domain::PatientId),
}

impl Scope {
    fn of_filter(f: &Filter) -> Option<Scope> {
        match f {
            // Only a device's telemetry and session messages are held back when unwanted: a
            // subscription to exactly another of its channels (a machine's own errors topic,
            // its status) wants none of them.
            Filter::Exact(Topic::Device {
                channel: DeviceChannel::Status | DeviceChannel::Alerts | DeviceChannel::Errors,
                ..
            }) => None,
            Filter::Exact(t) => Scope::of_topic(t),
            Filter::AnyDeviceChannel { device, .. } => Some(Scope::Device(*device)),
            Filter::AnyPatientChannel { patient, .. } => Some(Scope::Patient(*patient)),
            Filter::AnyRoomChannel { .. } => None,
        }
    }

    fn of_topic(t: &Topic) -> Option<Scope> {
        match t {
            Topic::Device { device, .. } => Some(Scope::Device(*device)),
            Topic::Patient { patient, .. } => Some(Scope::Patient(*patient)),
            _ => None,
        }
    }
}

/// Subscriptions per scope (only scopes with at least one).
#[derive(Default)]
struct Interest(HashMap<Scope, usize>);

impl Interest {
    fn add(&mut self, f: &Filter) {
        if let Some(s) = Scope::of_filter(f) {
            *self.0.entry(s).or_default() += 1;
        }
    }

    fn remove(&mut self, f: &Filter) {
        if let Some(s) = Scope::of_filter(f) {
            if let std::collections::hash_map::Entry::Occupied(mut e) = self.0.entry(s) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }
}

/// A subscription the core holds for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub path: String,
    pub filter: Filter,
    pub qos: QoS,
}

/// How long a session outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// It ends with the connection (MQTT 3.1.1 clean session; MQTT 5 Session Expiry 0).
    AtDisconnect,
    /// Kept this many seconds after the connection ends (MQTT 5 Session Expiry Interval,
    /// bounded by the server's maximum).
    After(u32),
    /// Kept until taken over (an MQTT 3.1.1 persistent session).
    UntilTakenOver,
}

/// What a CONNECT asks of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAsk {
    /// Discard any session of this client id (3.1.1 clean session, 5 Clean Start).
    pub clean_start: bool,
    pub expiry: Expiry,
}

impl SessionAsk {
    /// MQTT 3.1.1: a clean session ends with its connection, another is kept until taken over.
    pub fn v4(clean_session: bool) -> SessionAsk {
        let expiry = if clean_session { Expiry::AtDisconnect } else { Expiry::UntilTakenOver };
        SessionAsk { clean_start: clean_session, expiry }
    }
}

struct Slot {
    index: usize,
    client_id: String,
    family: Option<TokenFamilyId>,
    /// How long the session is kept after a disconnect.
    expiry: Expiry,
    /// The core was asked to keep its session (a CONNECT with `clean_session = false`):
    /// when the book does not keep it, it must be discarded before it could resume.
    core_keeps: bool,
    filters: BTreeMap<String, Carried>,
    /// Filters sent to the core in a SUBSCRIBE not yet answered (counted in the interest).
    asked: Vec<Filter>,
    /// The connection using the slot now (0: none).
    holder: u64,
    last_used: Instant,
    /// When the last connection left (wall clock), for a session kept meanwhile.
    released_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The core may still hold a session under this slot's id that must not be resumed:
    /// set when a reset is asked for, cleared once the new session is open.
    reset_pending: bool,
}

impl Slot {
    fn persistent(&self) -> bool {
        self.expiry != Expiry::AtDisconnect
    }

    /// Idle longer than its session expiry.
    fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        match (self.expiry, self.released_at) {
            (Expiry::After(secs), Some(left)) if self.holder == 0 => {
                now - left >= chrono::Duration::seconds(i64::from(secs))
            }
            _ => false,
        }
    }
}

/// A slot taken by a connection.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The client id the edge uses in the core.
    pub upstream_id: String,
    /// Identifies this connection's hold on the slot.
    pub generation: u64,
    /// The subscriptions a resumed session carries (empty for a fresh one).
    pub carried: Vec<Carried>,
    /// The core may hold a session under `upstream_id` that must not be resumed: the edge
    /// makes the core forget it before connecting.
    pub reset: bool,
    /// When the session was left, for a resumed one.
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The client id whose idle slot was taken for this one (its session is forgotten).
    pub evicted: Option<String>,
    /// A persistent session of this client id resumes (the book's own answer, for the
    /// sessions the edge keeps itself: see `edge::serve`).
    pub resumed: bool,
    /// The `clean_session` flag of the edge's CONNECT to the core: `false` to resume the
    /// core's session or to have it kept.
    pub core_clean: bool,
}

/// Every slot of the identity is in use by a live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections for this identity")]
pub struct Full;

pub struct SessionBook {
    per_identity: usize,
    /// Other nodes' sessions are not in this book (an external core): every message may be wanted.
    everything_wanted: bool,
    /// Several nodes: this node's tag in the core ids of clean sessions (see [`SessionBook::on_node`]).
    node: Option<String>,
    next: AtomicU64,
    slots: Mutex<HashMap<Uuid, Vec<Slot>>>,
    /// Taken with `slots` held (in that order) when it changes; alone to read it.
    interest: Mutex<Interest>,
}

impl SessionBook {
    pub fn new(per_identity: usize, everything_wanted: bool) -> SessionBook {
        SessionBook {
            per_identity: per_identity.max(1),
            everything_wanted,
            node: None,
            next: AtomicU64::new(1),
            slots: Mutex::new(HashMap::new()),
            interest: Mutex::new(Interest::default()),
        }
    }

    /// Several nodes share the core: a clean session's core id carries this node's tag
    /// (`{identity}~{node}-{slot}`), so two clean connections of one person on two nodes never
    /// share a core id (the core would end one for the other); persistent sessions keep
    /// `{identity}~{slot}`, their slot agreed through the shared store, so any node resumes
    /// them.
    pub fn on_node(mut self, tag: String) -> SessionBook {
        self.node = Some(tag);
        self
    }

    fn core_id(&self, owner: Uuid, index: usize, clean: bool) -> String {
        match (&self.node, clean) {
            (Some(node), true) => format!("{owner}~{node}-{index}"),
            _ => upstream_id(owner, index),
        }
    }

    /// Takes the slot of `client_id` for a new MQTT 3.1.1 connection of `owner`.
    pub fn claim(
        &self,
        owner: Uuid,
        client_id: &str,
        clean: bool,
        family: Option<TokenFamilyId>,
    ) -> Result<Claim, Full> {
        self.claim_with(owner, client_id, SessionAsk::v4(clean), family)
    }

    /// Takes the slot of `client_id` for a new connection of `owner` that asks `ask`. A
    /// session resumes when it is kept, not expired, of the same login session, and the
    /// CONNECT does not ask for a clean start.
    pub fn claim_with(
        &self,
        owner: Uuid,
        client_id: &str,
        ask: SessionAsk,
        family: Option<TokenFamilyId>,
    ) -> Result<Claim, Full> {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let mut all = self.slots.lock().expect("session book");
        let slots = all.entry(owner).or_default();
        let now = Instant::now();
        let keep = ask.expiry != Expiry::AtDisconnect;
        if let Some(slot) = slots.iter_mut().find(|s| s.client_id == client_id) {
            let alive = slot.persistent() && !slot.expired(chrono::Utc::now());
            let resumable = alive && !ask.clean_start && slot.family == family && !slot.reset_pending;
            // The core resumes a session only under `clean_session = false`, and keeps one
            // only so; a clean CONNECT makes it discard the session by itself.
            let clean = !keep && !resumable;
            // A session the core keeps that must not resume (a clean start, another login
            // session's, an expired one, or one a failed reset left) is discarded first.
            let reset = !clean && (slot.reset_pending || ((slot.persistent() || slot.core_keeps) && !resumable));
            let carried = if resumable { slot.filters.values().cloned().collect() } else { Vec::new() };
            if !resumable {
                if slot.holder == 0 {
                    self.forget(slot);
                } else {
                    // Taken over from a live connection: until the core accepts the new one,
                    // the old one goes on, so its subscriptions stay counted (for good: when
                    // in doubt the interest over-counts, it never under-counts).
                    slot.filters.clear();
                    slot.asked.clear();
                }
            }
            slot.family = family;
            slot.expiry = ask.expiry;
            slot.core_keeps = !clean;
            slot.holder = generation;
            slot.last_used = now;
            slot.reset_pending = reset;
            let released_at = if resumable { slot.released_at } else { None };
            return Ok(Claim {
                upstream_id: self.core_id(owner, slot.index, clean),
                generation,
                carried,
                reset,
                released_at,
                evicted: None,
                resumed: resumable,
                core_clean: clean,
            });
        }
        let mut evicted_id = None;
        if slots.len() >= self.per_identity {
            let idle = slots.iter().enumerate().filter(|(_, s)| s.holder == 0).min_by_key(|(_, s)| s.last_used);
            match idle {
                Some((i, _)) => {
                    let mut evicted = slots.swap_remove(i);
                    self.forget(&mut evicted);
                    evicted_id = Some(evicted.client_id);
                }
                None => return Err(Full),
            }
        }
        let clean = !keep;
        let index = (0..).find(|i| slots.iter().all(|s| s.index != *i)).expect("a free index");
        slots.push(Slot {
            index,
            client_id: client_id.to_owned(),
            family,
            expiry: ask.expiry,
            core_keeps: keep,
            filters: BTreeMap::new(),
            asked: Vec::new(),
            holder: generation,
            last_used: now,
            released_at: None,
            reset_pending: !clean,
        });
        // A slot index may have served another client id whose session the core still
        // keeps (evicted above, or before this client id was seen).
        Ok(Claim {
            upstream_id: self.core_id(owner, index, clean),
            generation,
            carried: Vec::new(),
            reset: !clean,
            released_at: None,
            evicted: evicted_id,
            resumed: false,
            core_clean: clean,
        })
    }

    /// Runs `f` on the slot this connection holds; `false` when it holds none any more
    /// (taken over).
    fn with_slot(&self, owner: Uuid, generation: u64, f: impl FnOnce(&mut Slot)) -> bool {
        let mut all = self.slots.lock().expect("session book");
        match all.get_mut(&owner).and_then(|s| s.iter_mut().find(|s| s.holder == generation)) {
            Some(slot) => {
                f(slot);
                true
            }
            None => false,
        }
    }

    /// The session in the core is open as claimed (any reset done).
    pub fn confirm(&self, owner: Uuid, generation: u64) {
        self.with_slot(owner, generation, |slot| slot.reset_pending = false);
    }

    /// Drops a slot's subscriptions (the core discards its session), and their interest.
    fn forget(&self, slot: &mut Slot) {
        let mut interest = self.interest.lock().expect("interest");
        for c in std::mem::take(&mut slot.filters).values() {
            interest.remove(&c.filter);
        }
        for f in slot.asked.drain(..) {
            interest.remove(&f);
        }
    }

    /// These filters are about to be asked of the core in a SUBSCRIBE: counted from now
    /// on, so nothing the core would route is held back meanwhile. Every one is answered
    /// by [`SessionBook::subscribed`].
    pub fn subscribing<'a>(&self, owner: Uuid, generation: u64, filters: impl IntoIterator<Item = &'a Filter>) {
        let filters: Vec<Filter> = filters.into_iter().copied().collect();
        let held = self.with_slot(owner, generation, |slot| {
            let mut interest = self.interest.lock().expect("interest");
            for f in &filters {
                interest.add(f);
                slot.asked.push(*f);
            }
        });
        if !held {
            // A connection whose slot was taken over may still be the core's: counted, and
            // never uncounted (over, never under).
            let mut interest = self.interest.lock().expect("interest");
            for f in &filters {
                interest.add(f);
            }
        }
    }

    /// The core answered a SUBSCRIBE of `asked` filters; it granted `granted`.
    pub fn subscribed(
        &self,
        owner: Uuid,
        generation: u64,
        asked: impl IntoIterator<Item = Filter>,
        granted: impl IntoIterator<Item = Carried>,
    ) {
        self.with_slot(owner, generation, |slot| {
            let mut interest = self.interest.lock().expect("interest");
            for f in asked {
                if let Some(i) = slot.asked.iter().position(|a| *a == f) {
                    slot.asked.swap_remove(i);
                    interest.remove(&f);
                }
            }
            for c in granted {
                interest.add(&c.filter);
                if let Some(old) = slot.filters.insert(c.path.clone(), c) {
                    interest.remove(&old.filter);
                }
            }
        });
    }

    /// The core no longer holds these subscriptions.
    pub fn unsubscribed<'a>(&self, owner: Uuid, generation: u64, paths: impl IntoIterator<Item = &'a String>) {
        self.with_slot(owner, generation, |slot| {
            let mut interest = self.interest.lock().expect("interest");
            for p in paths {
                if let Some(old) = slot.filters.remove(p) {
                    interest.remove(&old.filter);
                }
            }
        });
    }

    /// Whether a subscription the core holds may match `topic`: false only for a device's
    /// or patient's topic no kept session subscribes to.
    pub fn may_be_wanted(&self, topic: &Topic) -> bool {
        if self.everything_wanted {
            return true;
        }
        match Scope::of_topic(topic) {
            Some(scope) => self.interest.lock().expect("interest").0.contains_key(&scope),
            None => true,
        }
    }

    /// Whether `owner` has a live connection holding a subscription that matches `topic`
    /// (a session kept while its client is away does not count): for the alarm system's
    /// reachability (`nc_alarms::reach`).
    pub fn listening(&self, owner: Uuid, topic: &Topic) -> bool {
        let all = self.slots.lock().expect("session book");
        all.get(&owner).is_some_and(|slots| {
            slots.iter().any(|s| s.holder != 0 && s.filters.values().any(|c| c.filter.matches(topic)))
        })
    }

    /// Everyone with a live connection holding a subscription to their own notifications
    /// (what [`SessionBook::listening`] answers, for every person at once): for the other
    /// nodes' reachability.
    pub fn notification_listeners(&self) -> Vec<Uuid> {
        let all = self.slots.lock().expect("session book");
        all.iter()
            .filter(|(owner, slots)| {
                slots.iter().any(|s| {
                    s.holder != 0
                        && s.filters.values().any(
                            |c| matches!(c.filter, Filter::Exact(Topic::Notifications { user, .. }) if user.as_uuid() == **owner),
                        )
                })
            })
            .map(|(owner, _)| *owner)
            .collect()
    }

    /// The connection ended; the slot stays (with its session, if persistent).
    pub fn release(&self, owner: Uuid, generation: u64) {
        self.with_slot(owner, generation, |slot| {
            slot.holder = 0;
            slot.last_used = Instant::now();
            slot.released_at = Some(chrono::Utc::now());
            if !slot.persistent() {
                self.forget(slot);
                // Resumed in the core but not to be kept (MQTT 5 Session Expiry 0): the
                // core still holds it, so it must not resume later.
                slot.reset_pending |= slot.core_keeps;
            }
        });
    }

    /// Makes `owner`'s idle slots what the shared store says (several nodes: see
    /// [`store`]): a session this node kept but another node has changed, reset or
    /// forgotten since takes the store's state; a session another node kept becomes an idle
    /// slot here, so a claim resumes it (its subscriptions decided again before it resumes).
    /// Slots held by this node's connections are left alone; a kept session whose slot
    /// index this node uses for another client id is not adopted (it starts clean here).
    pub fn adopt(&self, owner: Uuid, kept: Vec<Kept>) {
        let mut all = self.slots.lock().expect("session book");
        let slots = all.entry(owner).or_default();
        let mut i = 0;
        while i < slots.len() {
            let idle = slots[i].holder == 0;
            let same = kept.iter().find(|k| k.client_id == slots[i].client_id && k.slot == slots[i].index);
            match (idle, same) {
                (false, _) => i += 1,
                (true, Some(k)) => {
                    let slot = &mut slots[i];
                    self.forget(slot);
                    self.carry(slot, k);
                    i += 1;
                }
                (true, None) => {
                    let mut gone = slots.swap_remove(i);
                    self.forget(&mut gone);
                }
            }
        }
        for k in kept {
            if slots.iter().any(|s| s.client_id == k.client_id || s.index == k.slot) {
                continue;
            }
            let mut slot = Slot {
                index: k.slot,
                client_id: k.client_id.clone(),
                family: None,
                expiry: Expiry::UntilTakenOver,
                core_keeps: true,
                filters: BTreeMap::new(),
                asked: Vec::new(),
                holder: 0,
                last_used: Instant::now(),
                released_at: None,
                reset_pending: false,
            };
            self.carry(&mut slot, &k);
            slots.push(slot);
        }
    }

    /// Gives an idle slot the kept session's state (its filters counted in the interest).
    fn carry(&self, slot: &mut Slot, k: &Kept) {
        slot.family = k.family;
        slot.expiry = k.expiry.map_or(Expiry::UntilTakenOver, Expiry::After);
        slot.core_keeps = true;
        slot.released_at = k.released_at;
        slot.reset_pending = false;
        let mut interest = self.interest.lock().expect("interest");
        for c in &k.subscriptions {
            interest.add(&c.filter);
            slot.filters.insert(c.path.clone(), c.clone());
        }
    }

    /// The persistent session this connection holds, as the shared store keeps it (`None`:
    /// not persistent, or no longer held).
    pub fn kept(&self, owner: Uuid, generation: u64) -> Option<Kept> {
        let mut kept = None;
        self.with_slot(owner, generation, |slot| {
            if slot.persistent() {
                kept = Some(Kept {
                    client_id: slot.client_id.clone(),
                    slot: slot.index,
                    family: slot.family,
                    subscriptions: slot.filters.values().cloned().collect(),
                    released_at: None,
                    expiry: match slot.expiry {
                        Expiry::After(secs) => Some(secs),
                        _ => None,
                    },
                });
            }
        });
        kept
    }

    /// Slots in use or kept, over all identities (for metrics).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("session book").values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A persistent session as the shared store keeps it (several nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub client_id: String,
    pub slot: usize,
    pub family: Option<TokenFamilyId>,
    pub subscriptions: Vec<Carried>,
    /// When its last connection left (`None` while connected).
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its session expiry, seconds (`None`: kept until taken over).
    pub expiry: Option<u32>,
}

fn upstream_id(owner: Uuid, index: usize) -> String {
    format!("{owner}~{index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc_domain::{DeviceId, HospitalId};

    fn carried() -> Carried {
        let (h, d) = (HospitalId::new(), DeviceId::new());
        let filter = Filter::AnyDeviceChannel { hospital: h, device: d };
        Carried { path: format!("nc/v1/h/{h}/d/{d}/#"), filter, qos: QoS::AtLeastOnce }
    }

    /// Makes `owner`'s idle sessions `secs` older (their connections left that much earlier).
    fn age(book: &SessionBook, owner: Uuid, secs: i64) {
        for slot in book.slots.lock().unwrap().get_mut(&owner).unwrap() {
            slot.released_at = slot.released_at.map(|t| t - chrono::Duration::seconds(secs));
        }
    }

    #[test]
    fn an_mqtt5_session_resumes_within_its_expiry_and_is_discarded_after_it() {
        let book = SessionBook::new(4, false);
        let owner = Uuid::new_v4();
        let keep = |clean_start| SessionAsk { clean_start, expiry: Expiry::After(10) };
        let first = book.claim_with(owner, "app", keep(true), None).unwrap();
        assert!(!first.core_clean, "the core keeps it");
        let c = carried();
        book.subscribing(owner, first.generation, [&c.filter]);
        book.subscribed(owner, first.generation, [c.filter], [c]);
        book.confirm(owner, first.generation);
        book.release(owner, first.generation);

        age(&book, owner, 9);
        let within = book.claim_with(owner, "app", keep(false), None).unwrap();
        assert!(within.resumed && within.carried.len() == 1 && !within.reset, "{within:?}");
        book.confirm(owner, within.generation);
        book.release(owner, within.generation);

        age(&book, owner, 10);
        let after = book.claim_with(owner, "app", keep(false), None).unwrap();
        assert!(!after.resumed && after.carried.is_empty(), "expired: {after:?}");
        assert!(after.reset, "the core's session is discarded before the new one opens");
        book.confirm(owner, after.generation);
        book.release(owner, after.generation);

        // Expiry 0, resumed: the core resumes it, and must discard it before it could resume again.
        let once = SessionAsk { clean_start: false, expiry: Expiry::AtDisconnect };
        let last = book.claim_with(owner, "app", once, None).unwrap();
        assert!(last.resumed && !last.core_clean, "{last:?}");
        book.confirm(owner, last.generation);
        book.release(owner, last.generation);
        let next = book.claim(owner, "app", false, None).unwrap();
        assert!(!next.resumed && next.reset, "{next:?}");
    }

    #[test]
    fn a_persistent_session_carries_its_subscriptions_for_the_same_login_only() {
        let book = SessionBook::new(4, false);
        let (owner, login, other) = (Uuid::new_v4(), Some(TokenFamilyId::new()), Some(TokenFamilyId::new()));
        let first = book.claim(owner, "app", false, login).unwrap();
        assert!(first.reset, "a new slot may hide an old core session");
        book.confirm(owner, first.generation);
        let c = carried();
        book.subscribing(owner, first.generation, [&c.filter]);
        book.subscribed(owner, first.generation, [c.filter], [c]);
        book.release(owner, first.generation);

        let again = book.claim(owner, "app", false, login).unwrap();
        assert_eq!(
            (again.upstream_id.as_str(), again.carried.len(), again.reset),
            (first.upstream_id.as_str(), 1, false)
        );
        book.release(owner, again.generation);

        let relogin = book.claim(owner, "app", false, other).unwrap();
        assert!(relogin.carried.is_empty() && relogin.reset, "another login starts afresh");
        book.release(owner, relogin.generation);
        // That reset never happened (the core was unreachable): the next try resets again.
        let retry = book.claim(owner, "app", false, other).unwrap();
        assert!(retry.carried.is_empty() && retry.reset, "a pending reset is not forgotten");
        book.confirm(owner, retry.generation);
        book.release(owner, retry.generation);

        let clean = book.claim(owner, "app", true, other).unwrap();
        assert!(clean.carried.is_empty() && !clean.reset);
    }

    #[test]
    fn slots_are_bounded_and_the_least_recently_used_idle_one_is_reused() {
        let book = SessionBook::new(2, false);
        let owner = Uuid::new_v4();
        let a = book.claim(owner, "a", false, None).unwrap();
        let b = book.claim(owner, "b", false, None).unwrap();
        assert_eq!(book.claim(owner, "c", false, None).unwrap_err(), Full);
        book.release(owner, a.generation);
        let c = book.claim(owner, "c", false, None).unwrap();
        assert_eq!(c.upstream_id, a.upstream_id, "c reuses a's slot");
        assert!(c.reset && c.carried.is_empty());
        assert_eq!(book.len(), 2);
        // A takeover of the same client id keeps the slot; the old holder's release is void.
        let b2 = book.claim(owner, "b", false, None).unwrap();
        book.release(owner, b.generation);
        assert_eq!(book.claim(owner, "d", false, None).unwrap_err(), Full, "b is still held by b2");
        book.release(owner, b2.generation);
    }

    fn device_topic(c: &Carried) -> Topic {
        let Filter::AnyDeviceChannel { hospital, device } = c.filter else { unreachable!() };
        Topic::Device { hospital, device, channel: crate::topic::DeviceChannel::Telemetry }
    }

    #[test]
    fn a_device_is_wanted_from_the_subscribe_until_the_core_holds_no_subscription_to_it() {
        let book = SessionBook::new(4, false);
        let (owner, c) = (Uuid::new_v4(), carried());
        let topic = device_topic(&c);
        assert!(!book.may_be_wanted(&topic), "nobody subscribes");
        let a = book.claim(owner, "a", false, None).unwrap();
        book.confirm(owner, a.generation);
        book.subscribing(owner, a.generation, [&c.filter]);
        assert!(book.may_be_wanted(&topic), "asked of the core: wanted before the SUBACK");
        book.subscribed(owner, a.generation, [c.filter], [c.clone()]);
        assert!(book.may_be_wanted(&topic));
        // A second subscription of another session to the same device, refused by the core.
        let b = book.claim(owner, "b", true, None).unwrap();
        book.subscribing(owner, b.generation, [&c.filter]);
        book.subscribed(owner, b.generation, [c.filter], []);
        // A persistent session kept while away still wants it; unsubscribing ends that.
        book.release(owner, a.generation);
        assert!(book.may_be_wanted(&topic), "the core keeps the session and its subscription");
        let again = book.claim(owner, "a", false, None).unwrap();
        assert_eq!(again.carried.len(), 1);
        book.unsubscribed(owner, again.generation, [&c.path]);
        assert!(!book.may_be_wanted(&topic));
        // A clean session's subscriptions end with the connection.
        book.subscribing(owner, b.generation, [&c.filter]);
        book.subscribed(owner, b.generation, [c.filter], [c.clone()]);
        book.release(owner, b.generation);
        assert!(!book.may_be_wanted(&topic));
        // A session discarded by a new login, or evicted, takes its subscriptions along.
        book.subscribing(owner, again.generation, [&c.filter]);
        book.subscribed(owner, again.generation, [c.filter], [c.clone()]);
        book.release(owner, again.generation);
        let relogin = book.claim(owner, "a", false, Some(TokenFamilyId::new())).unwrap();
        assert!(relogin.carried.is_empty());
        assert!(!book.may_be_wanted(&topic));
        // A subscription to exactly another channel of the device (a machine's own errors
        // topic) does not make its readings wanted.
        let Filter::AnyDeviceChannel { hospital, device } = c.filter else { unreachable!() };
        let errors = Filter::Exact(Topic::Device { hospital, device, channel: DeviceChannel::Errors });
        let own = book.claim(owner, "e", true, None).unwrap();
        book.subscribing(owner, own.generation, [&errors]);
        let path = "its/errors".to_owned();
        book.subscribed(owner, own.generation, [errors], [Carried { path, filter: errors, qos: QoS::AtLeastOnce }]);
        assert!(!book.may_be_wanted(&topic), "an errors subscription wants no readings");
        // Other topics are always forwarded.
        let h = HospitalId::new();
        assert!(book.may_be_wanted(&Topic::Notifications { hospital: h, user: nc_domain::UserId::new() }));
    }

    #[test]
    fn a_takeover_that_never_reaches_the_core_leaves_the_old_connections_subscriptions_wanted() {
        let book = SessionBook::new(4, false);
        let (owner, c) = (Uuid::new_v4(), carried());
        let topic = device_topic(&c);
        let a = book.claim(owner, "app", true, None).unwrap();
        book.subscribing(owner, a.generation, [&c.filter]);
        book.subscribed(owner, a.generation, [c.filter], [c.clone()]);
        // A second CONNECT with the same client id takes the slot, then fails before the core
        // sees it: the first connection goes on, with its subscription, and subscribes again.
        let b = book.claim(owner, "app", true, None).unwrap();
        book.release(owner, b.generation);
        assert!(book.may_be_wanted(&topic), "the first connection still holds its subscription");
        let other = carried();
        book.subscribing(owner, a.generation, [&other.filter]);
        book.subscribed(owner, a.generation, [other.filter], [other.clone()]);
        assert!(book.may_be_wanted(&device_topic(&other)), "and what it subscribes to afterwards");
    }

    #[test]
    fn a_session_another_node_kept_is_adopted_and_resumed_and_a_forgotten_one_is_dropped() {
        let book = SessionBook::new(4, true);
        let (owner, login) = (Uuid::new_v4(), Some(TokenFamilyId::new()));
        // This node kept "old" (idle); the store no longer has it: another node reset it.
        let old = book.claim(owner, "old", false, login).unwrap();
        book.confirm(owner, old.generation);
        book.release(owner, old.generation);
        // A connection held here is left alone whatever the store says.
        let live = book.claim(owner, "live", false, login).unwrap();
        let c = carried();
        let kept = Kept {
            client_id: "app".into(),
            slot: 5,
            family: login,
            subscriptions: vec![c.clone()],
            released_at: None,
            expiry: None,
        };
        book.adopt(owner, vec![kept.clone()]);
        assert!(book.kept(owner, live.generation).is_some(), "the held slot stays");
        let again = book.claim(owner, "app", false, login).unwrap();
        assert_eq!(again.upstream_id, format!("{owner}~5"), "the other node's slot, so the core resumes its session");
        assert_eq!(again.carried, vec![c.clone()]);
        assert!(!again.reset);
        assert_eq!(book.kept(owner, again.generation).map(|k| k.subscriptions), Some(vec![c]));
        let fresh = book.claim(owner, "old", false, login).unwrap();
        assert!(fresh.carried.is_empty() && fresh.reset, "the forgotten session starts clean");
    }

    #[test]
    fn notification_listeners_are_the_people_connected_and_subscribed_to_their_own() {
        let book = SessionBook::new(4, false);
        let (h, me, other) = (nc_domain::HospitalId::new(), nc_domain::UserId::new(), nc_domain::UserId::new());
        let mine = Topic::Notifications { hospital: h, user: me };
        let sub = |t: &Topic| Carried { path: t.to_string(), filter: Filter::Exact(*t), qos: QoS::AtLeastOnce };
        let a = book.claim(me.as_uuid(), "a", true, None).unwrap();
        book.subscribed(me.as_uuid(), a.generation, [], [sub(&mine)]);
        // Someone else's notifications (never granted, but the book would not count it).
        let b = book.claim(other.as_uuid(), "b", true, None).unwrap();
        book.subscribed(other.as_uuid(), b.generation, [], [sub(&mine)]);
        assert_eq!(book.notification_listeners(), vec![me.as_uuid()]);
        book.release(me.as_uuid(), a.generation);
        assert!(book.notification_listeners().is_empty(), "a session kept while away does not count");
    }
}
