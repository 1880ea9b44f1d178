//! Retrying a database step that failed for a reason that may pass (the server restarting,
//! a failover): exponential delays with jitter from `backon`, and a wait that ends early
//! when the service shuts down, so no retry loop holds a stop up.

use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

/// Delays from `min`, doubling up to `max` (with jitter, so nodes do not retry in step),
/// without end: the loops decide themselves when to give up.
pub(crate) fn delays(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sleeps `delay`; `false` when `shutdown` came first (the caller stops retrying).
pub(crate) async fn wait(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_their_bound() {
        let d: Vec<_> = delays(Duration::from_millis(100), Duration::from_secs(1)).take(10).collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] < Duration::from_millis(250), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_secs(2)), "jitter stays within one more delay: {d:?}");
        assert!(d[9] >= Duration::from_secs(1), "{d:?}");
    }

    #[tokio::test]
    async fn a_wait_ends_at_shutdown() {
        let stop = CancellationToken::new();
        stop.cancel();
        let began = std::time::Instant::now();
        assert!(!wait(Duration::from_secs(60), &stop).await);
        assert!(began.elapsed() < Duration::from_secs(1));
    }
}
