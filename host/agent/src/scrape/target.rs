//! A scrape target (one plugin instance): its labels, its last status as shown by
//! /api/v1/targets, and its counters for sonde's own /metrics.

use super::receiver::ReceiverStats;
use crate::config::TargetSpec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Upper bounds of the collect-duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_samples: usize,
}

/// Counters and gauges of one target, exported as `sonde_plugin_*{plugin="<name>"}`.
#[derive(Default)]
pub struct Stats {
    pub collections: AtomicU64,
    pub failures: Mutex<BTreeMap<&'static str, u64>>,
    pub restarts: AtomicU64,
    /// New versions of the plugin file swapped in (hot reload).
    pub reloads: AtomicU64,
    pub memory_bytes: AtomicU64,
    pub series: AtomicU64,
    pub samples: AtomicU64,
    pub duration_buckets: [AtomicU64; DURATION_BUCKETS.len()],
    pub duration_sum_us: AtomicU64,
    pub load_seconds: Mutex<f64>,
    pub loaded_from_cache: AtomicU64,
}

impl Stats {
    pub fn observe_duration(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if s <= *le {
                self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.collections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fail(&self, reason: &'static str) {
        *self.failures.lock().unwrap().entry(reason).or_default() += 1;
    }
}

pub struct Target {
    pub spec: TargetSpec,
    pub interval: Duration,
    pub timeout: Duration,
    /// What `describe` said (name, version, description), once known.
    pub description: Mutex<String>,
    pub status: Mutex<Status>,
    pub stats: Stats,
    /// Counters of the sockets the host owns for a push source.
    pub receiver: Arc<ReceiverStats>,
    /// Set when discovery dropped the target: its scraper then marks the target's
    /// series stale as it stops, instead of leaving them as a shutdown does.
    pub removed: AtomicBool,
}

impl Target {
    pub fn new(spec: TargetSpec, interval: Duration, timeout: Duration) -> Self {
        Target {
            spec,
            interval,
            timeout,
            description: Mutex::new(String::new()),
            status: Mutex::new(Status {
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape: None,
                last_duration: Duration::ZERO,
                last_samples: 0,
            }),
            stats: Stats::default(),
            receiver: Default::default(),
            removed: AtomicBool::new(false),
        }
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// `job`, `instance` and configured labels, sorted by name.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.push(("instance".into(), self.spec.instance.clone()));
        v.push(("job".into(), self.spec.job.clone()));
        v.sort();
        v
    }

    /// Where the target's data comes from, shown as `scrapeUrl`.
    pub fn url(&self) -> String {
        format!("plugin://{}/{}", self.spec.name, self.spec.plugin_path.display())
    }

    /// Scrape offset within the interval, from a hash of the target's identity, so
    /// targets spread over the interval instead of all firing together (as
    /// Prometheus does) and a target keeps its phase across restarts.
    pub fn offset(&self) -> Duration {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self
            .spec
            .name
            .bytes()
            .chain(self.spec.job.bytes())
            .chain(self.spec.instance.bytes())
        {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        let ms = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(h % ms)
    }
}
