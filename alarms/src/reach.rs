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
//! Both are what this process sees: with several nodes, each node answers for its own
//! connections (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use nc_domain::{DeviceId, HospitalId, UserId};

/// Whether a person has a connection subscribed to their notifications.
pub type Listening = dyn Fn(UserId, HospitalId) -> bool + Send + Sync;

#[derive(Default)]
pub struct Reach {
    mqtt: OnceLock<Arc<Listening>>,
    live: Arc<Mutex<HashMap<(UserId, DeviceId), usize>>>,
}

/// A live stream being watched; counted until dropped.
pub struct Watching {
    live: Arc<Mutex<HashMap<(UserId, DeviceId), usize>>>,
    key: (UserId, DeviceId),
}

impl Reach {
    /// Where MQTT listeners are known (the broker's session book), set once at start.
    pub fn set_mqtt(&self, listening: Arc<Listening>) {
        let _ = self.mqtt.set(listening);
    }

    /// Counts a person's live stream of a device while the guard lives.
    pub fn watching(&self, user: UserId, device: DeviceId) -> Watching {
        *self.live.lock().expect("reach").entry((user, device)).or_default() += 1;
        Watching { live: self.live.clone(), key: (user, device) }
    }

    /// Whether `user` would see an alert of `device` now.
    pub fn reachable(&self, user: UserId, hospital: HospitalId, device: DeviceId) -> bool {
        self.mqtt.get().is_some_and(|listening| listening(user, hospital))
            || self.live.lock().expect("reach").contains_key(&(user, device))
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

    #[test]
    fn a_live_stream_counts_while_open_and_mqtt_while_subscribed() {
        let reach = Reach::default();
        let (u, h, d) = (UserId::new(), HospitalId::new(), DeviceId::new());
        assert!(!reach.reachable(u, h, d));
        let a = reach.watching(u, d);
        let b = reach.watching(u, d);
        assert!(reach.reachable(u, h, d));
        assert!(!reach.reachable(u, h, DeviceId::new()), "a stream shows its own device's alerts only");
        drop(a);
        assert!(reach.reachable(u, h, d));
        drop(b);
        assert!(!reach.reachable(u, h, d));
        reach.set_mqtt(Arc::new(move |who, _| who == u));
        assert!(reach.reachable(u, h, d));
        assert!(!reach.reachable(UserId::new(), h, d));
    }
}
