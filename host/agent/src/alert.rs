//! The alert as it travels from the rule evaluator to its destinations: one or more
//! Alertmanagers (API v2) and sonde's built-in notifier. The shape is Alertmanager's
//! `postableAlert`, so both destinations receive exactly the same thing.
#![allow(dead_code)] // Used by the rule evaluator and the notifier, landing next.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One alert as sent after every evaluation of its rule while it fires, and once more
/// when it resolves (with `ends_at` in the past), like Prometheus does.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The rule's labels plus `alertname` and the series' labels; identifies the alert.
    pub labels: BTreeMap<String, String>,
    /// Templated annotations (`summary`, `description`, ...).
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing.
    pub starts_at: SystemTime,
    /// For a firing alert: a time after which a receiver may consider it resolved if
    /// it hears nothing more (Prometheus: now + 4 × the larger of the resend delay and
    /// the group interval). For a resolved alert: when it resolved.
    pub ends_at: SystemTime,
    /// A link back to the expression (`/graph?g0.expr=...`).
    pub generator_url: String,
}

impl Alert {
    /// Resolved once `ends_at` has passed.
    pub fn is_resolved(&self, now: SystemTime) -> bool {
        self.ends_at <= now
    }
}

/// Somewhere alerts are delivered. `send` must not block: implementations queue and
/// deliver in the background (with retries), so a slow receiver never delays rule
/// evaluation.
pub trait AlertSink: Send + Sync {
    fn send(&self, alerts: &[Alert]);
}
