//! Per-receiver delivery counters for `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default, Clone)]
pub struct IntegrationStats {
    /// Notifications attempted (each retried until delivered or given up).
    pub notifications: u64,
    /// Notifications given up on after retries.
    pub failed: u64,
    /// Single requests, and those that failed.
    pub requests: u64,
    pub requests_failed: u64,
    /// Latency of successful and failed requests.
    pub latency_sum: f64,
    pub latency_count: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// By (receiver, integration kind).
    pub by_integration: Mutex<BTreeMap<(String, &'static str), IntegrationStats>>,
}

impl Metrics {
    pub fn update(&self, receiver: &str, kind: &'static str, f: impl FnOnce(&mut IntegrationStats)) {
        let mut m = self.by_integration.lock().unwrap();
        f(m.entry((receiver.to_string(), kind)).or_default());
    }
}
