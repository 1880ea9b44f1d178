//! Refused connections, logged without flooding: a storm of refusals (a fleet with a wrong
//! secret, an identity over its cap, the connection limit reached) is one line per reason
//! every [`WINDOW`], saying how many there were since the last line, not one line each.
//! The first refusal of a reason is logged at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per reason in this window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Why a connection was refused (one line each per window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Credentials refused, or the account or device may not connect.
    NotAuthenticated,
    /// Too many CONNECTs being authenticated at once.
    TooManyPending,
    /// The connection limit of machines or of people is reached.
    LimitReached,
    /// The identity has its maximum of connections.
    IdentityCap,
    /// A will on a topic the client may not publish on.
    WillRefused,
    /// A resumed session could not be re-authorized (database unavailable).
    CannotReauthorize,
}

impl Refusal {
    fn sentence(self) -> &'static str {
        match self {
            Refusal::NotAuthenticated => "mqtt connection refused (credentials or account)",
            Refusal::TooManyPending => "too many CONNECTs being authenticated; refusing",
            Refusal::LimitReached => "connection limit of this kind of client reached; refusing",
            Refusal::IdentityCap => "too many connections for this identity; refusing",
            Refusal::WillRefused => "will topic not permitted; refused",
            Refusal::CannotReauthorize => "cannot re-authorize a resumed session now; refusing (retry later)",
        }
    }

    /// What an operator should act on is a warning; a refused login is information.
    fn is_warning(self) -> bool {
        !matches!(self, Refusal::NotAuthenticated | Refusal::WillRefused)
    }
}

#[derive(Default)]
pub struct Refusals {
    /// Per reason: when its last line was logged, and refusals since.
    seen: Mutex<HashMap<Refusal, (Instant, u64)>>,
}

impl Refusals {
    /// Counts a refusal; logs it (with the count of those not logged) unless a line of this
    /// reason was logged within the window.
    pub fn note(&self, reason: Refusal, peer: SocketAddr, client_id: &str) {
        let now = Instant::now();
        let since = {
            let mut seen = self.seen.lock().expect("refusals");
            match seen.get_mut(&reason) {
                Some((at, n)) if now.duration_since(*at) < WINDOW => {
                    *n += 1;
                    return;
                }
                Some((at, n)) => {
                    let since = *n;
                    (*at, *n) = (now, 0);
                    since
                }
                None => {
                    seen.insert(reason, (now, 0));
                    0
                }
            }
        };
        if reason.is_warning() {
            tracing::warn!(%peer, %client_id, refused_since_last_line = since, "{}", reason.sentence());
        } else {
            tracing::info!(%peer, %client_id, refused_since_last_line = since, "{}", reason.sentence());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_counted_not_logged_line_by_line() {
        let r = Refusals::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..1000 {
            r.note(Refusal::IdentityCap, peer, "c");
        }
        r.note(Refusal::LimitReached, peer, "c");
        let seen = r.seen.lock().unwrap();
        assert_eq!(seen[&Refusal::IdentityCap].1, 999, "the first logged, the rest counted");
        assert_eq!(seen[&Refusal::LimitReached].1, 0, "each reason has its own line");
    }
}
