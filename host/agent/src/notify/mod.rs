//! The built-in notifier (Alertmanager's job for people who run none): routes alerts
//! through a tree, groups them, applies silences and inhibition, and delivers to
//! webhook, Slack, email and PagerDuty receivers with retries. State lives in
//! `<data_dir>/notifier/`.

pub mod api;
pub mod config;
mod dispatch;
mod matcher;
pub mod metrics;
mod persist;
pub(crate) mod receivers;
mod route;
mod silence;
mod state;

pub use config::NotifierConfig;
pub use metrics::Metrics;

use crate::alert::{Alert, AlertSink};
use matcher::Matcher;
use receivers::Integration;
use route::Route;
use state::{State, StoredAlert};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    ms(SystemTime::now())
}

fn ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

/// The notifier: shared by the HTTP API, the rule evaluator (as an [`AlertSink`]) and
/// its dispatcher task.
pub struct Notifier {
    root: Route,
    receivers: BTreeMap<String, Vec<Integration>>,
    inhibit: Vec<InhibitRule>,
    external_url: String,
    resolve_timeout: Duration,
    state: Mutex<State>,
    pub metrics: Metrics,
    queue: tokio::sync::mpsc::UnboundedSender<Vec<StoredAlert>>,
    /// The dispatcher task, awaited at shutdown so its last save happens.
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Notifier {
    /// Loads the persisted state and starts the dispatcher on the current runtime.
    pub fn start(
        cfg: &NotifierConfig,
        data_dir: &Path,
        listen: &str,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Notifier> {
        let mut state = State::load(&data_dir.join("notifier"));
        let root = Route::root(&cfg.route);
        let now = now_ms();
        let fps: Vec<(String, BTreeMap<String, String>)> = state
            .alerts
            .iter()
            .map(|(fp, a)| (fp.clone(), a.labels.clone()))
            .collect();
        for (fp, labels) in fps {
            state.place(&root, &fp, &labels, now);
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let n = Arc::new(Notifier {
            receivers: cfg
                .receivers
                .iter()
                .map(|r| (r.name.clone(), Integration::from_config(r)))
                .collect(),
            inhibit: cfg
                .inhibit_rules
                .iter()
                .map(|r| InhibitRule {
                    source: config::matchers(&r.source_matchers, &mut Vec::new(), ""),
                    target: config::matchers(&r.target_matchers, &mut Vec::new(), ""),
                    equal: r.equal.clone(),
                })
                .collect(),
            external_url: cfg.external_url.clone().unwrap_or_else(|| format!("http://{listen}")),
            resolve_timeout: cfg.resolve_timeout.map_or(config::DEFAULT_RESOLVE_TIMEOUT, |d| d.0),
            root,
            state: Mutex::new(state),
            metrics: Metrics::default(),
            queue: tx,
            dispatcher: Mutex::new(None),
        });
        let task = tokio::spawn(dispatch::run(n.clone(), rx, shutdown));
        *n.dispatcher.lock().unwrap() = Some(task);
        n
    }

    /// Waits (until `deadline`) for the dispatcher to take in what was queued before
    /// shutdown and save the state, so an alert acknowledged just before a stop is
    /// not lost.
    pub async fn stopped(&self, deadline: tokio::time::Instant) {
        let task = self.dispatcher.lock().unwrap().take();
        if let Some(task) = task {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
    }

    /// Takes alerts in (from the API or the rule evaluator).
    fn ingest(&self, alerts: Vec<StoredAlert>) {
        let now = now_ms();
        let mut st = self.state.lock().unwrap();
        for a in alerts {
            st.ingest(&self.root, a, now);
        }
    }

    /// Whether an alert is muted now: the ids of the silences that match it, and
    /// whether an inhibition rule mutes it.
    fn muted(&self, st: &State, labels: &BTreeMap<String, String>, now: i64) -> (Vec<String>, bool) {
        let silenced = st.silences.silencing(labels, now);
        let inhibited = self.inhibit.iter().any(|r| {
            matcher::all_match(&r.target, labels)
                && st.alerts.values().any(|s| {
                    !s.resolved(now)
                        && s.labels != *labels
                        && matcher::all_match(&r.source, &s.labels)
                        && r.equal.iter().all(|l| s.labels.get(l) == labels.get(l))
                })
        });
        (silenced, inhibited)
    }
}

impl AlertSink for Notifier {
    fn send(&self, alerts: &[Alert]) {
        let now = SystemTime::now();
        let v = alerts
            .iter()
            .map(|a| StoredAlert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: ms(a.starts_at.min(now)),
                ends_at: ms(a.ends_at),
                updated_at: 0,
                generator_url: a.generator_url.clone(),
            })
            .collect();
        // Unbounded: the rule evaluator must never wait on delivery.
        let _ = self.queue.send(v);
    }
}
