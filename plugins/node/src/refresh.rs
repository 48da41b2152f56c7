//! When to re-read data that changes by administration rather than by activity
//! (interface addresses, clocksource lists, os-release). Every file read costs a
//! WASI round trip through the host's blocking-thread pool (tens of µs of CPU), so
//! such data is read once a minute instead of at every collection.

use std::time::{Duration, Instant};

/// How long slowly changing data is trusted.
pub const INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
pub struct Refresh {
    last: Option<Instant>,
}

impl Refresh {
    /// Whether the data should be read again at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|t| now.saturating_duration_since(t) >= INTERVAL)
    }

    pub fn done(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_first_then_once_per_interval() {
        let t0 = Instant::now();
        let mut r = Refresh::default();
        assert!(r.due(t0));
        r.done(t0);
        assert!(!r.due(t0 + Duration::from_secs(59)));
        assert!(r.due(t0 + INTERVAL));
    }
}
