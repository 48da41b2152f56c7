//! Recording and alerting rules: rule files in Prometheus's YAML format ([`file`]),
//! label and annotation templates ([`template`]), the alert state machine
//! ([`alerting`]), group evaluation over the storage ([`group`]), `/api/v1/rules` and
//! `/api/v1/alerts` ([`api`]) and delivery to Alertmanager ([`alertmanager`]).
//! A [`Manager`] runs one task per group and hands the alerts of every evaluation
//! to each registered [`AlertSink`].

pub mod alerting;
pub mod alertmanager;
pub mod api;
pub mod file;
pub mod format;
pub mod group;
pub mod template;

use crate::alert::AlertSink;
use crate::config::{Problem, RulesConfig};
use crate::storage::Storage;
use group::{EvalSettings, Group};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The rules loaded when `[rules] files` is not set: the repository's
/// `rules/default.yml` (target down, CPU, memory, disk, Postgres, Redis, plugin errors).
pub const DEFAULT_RULES: &str = include_str!("../../../../rules/default.yml");
pub const DEFAULT_RULES_NAME: &str = "<built-in rules/default.yml>";
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);
/// Prometheus's `--rules.alert.resend-delay`.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// Prometheus's `--rules.alert.for-grace-period`.
pub const DEFAULT_FOR_GRACE_PERIOD: Duration = Duration::from_secs(600);
/// Prometheus's `--rules.alert.for-outage-tolerance`.
pub const DEFAULT_FOR_OUTAGE_TOLERANCE: Duration = Duration::from_secs(3600);

/// Every group, evaluated by one task each; `reload` swaps in freshly read rule files.
pub struct Manager {
    groups: RwLock<Vec<Arc<Group>>>,
    pub settings: EvalSettings,
    /// One client per `[[alerting.alertmanagers]]`; their delivery tasks are started
    /// by the daemon.
    pub alertmanagers: Vec<Arc<alertmanager::Client>>,
    /// Where the rule files come from, to read them again on reload.
    files: Option<Vec<String>>,
    config_dir: PathBuf,
    default_interval: Duration,
    running: Mutex<Option<Running>>,
}

/// What the group tasks run with, kept to start new tasks after a reload.
struct Running {
    storage: Arc<Storage>,
    sinks: Arc<[Arc<dyn AlertSink>]>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The rule files `[rules] files` names: globs relative to `base` (sonde.toml's
/// directory), in order, each file once. `None`: the built-in default rules.
pub fn resolve_files(patterns: &[String], base: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let pattern = full.display().to_string();
        match glob::glob(&pattern) {
            Ok(paths) => {
                let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                found.sort();
                if found.is_empty() && !pattern.contains(['*', '?', '[']) {
                    problems.push(Problem {
                        file: full.clone(),
                        line: 0,
                        col: 0,
                        message: "rule file not found ([rules] files)".into(),
                    });
                }
                for f in found {
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
            }
            Err(e) => problems.push(Problem {
                file: full.clone(),
                line: 0,
                col: 0,
                message: format!("invalid glob in [rules] files: {e}"),
            }),
        }
    }
    out
}

/// Reads the rule files `files` names (the built-in default rules when `None`).
fn load_specs(files: &Option<Vec<String>>, config_dir: &Path) -> Result<Vec<file::GroupSpec>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    match files {
        None => specs.extend(file::parse(Path::new(DEFAULT_RULES_NAME), DEFAULT_RULES, &mut problems)),
        Some(patterns) => {
            for f in resolve_files(patterns, config_dir, &mut problems) {
                specs.extend(file::load(&f, &mut problems));
            }
        }
    }
    if problems.is_empty() { Ok(specs) } else { Err(problems) }
}

impl Manager {
    /// Loads and validates every rule file; all problems at once.
    pub fn load(
        cfg: &RulesConfig,
        alerting: &crate::config::AlertingConfig,
        config_dir: &Path,
        listen: &str,
    ) -> Result<Manager, Vec<Problem>> {
        let specs = load_specs(&cfg.files, config_dir)?;
        let interval = cfg.evaluation_interval.map_or(DEFAULT_EVALUATION_INTERVAL, |d| d.0);
        let groups = specs.into_iter().map(|s| Arc::new(Group::new(s, interval))).collect();
        let alertmanagers = alerting
            .alertmanagers
            .iter()
            .map(|am| {
                alertmanager::Client::new(
                    &am.url,
                    am.timeout.map_or(alertmanager::DEFAULT_TIMEOUT, |d| d.0),
                    am.queue_capacity.unwrap_or(alertmanager::DEFAULT_QUEUE_CAPACITY),
                )
                .map(Arc::new)
                .map_err(|e| Problem {
                    file: "sonde.toml".into(),
                    line: 0,
                    col: 0,
                    message: format!("[[alerting.alertmanagers]] url: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| vec![p])?;
        let external_url = alerting.external_url.clone().unwrap_or_else(|| {
            let addr = listen.replace("0.0.0.0:", "127.0.0.1:");
            format!("http://{addr}")
        });
        Ok(Manager {
            groups: RwLock::new(groups),
            alertmanagers,
            settings: EvalSettings {
                external_labels: alerting.external_labels.clone(),
                external_url,
                resend_delay: alerting.resend_delay.map_or(DEFAULT_RESEND_DELAY, |d| d.0),
                for_grace_period: cfg.for_grace_period.map_or(DEFAULT_FOR_GRACE_PERIOD, |d| d.0),
                for_outage_tolerance: cfg.for_outage_tolerance.map_or(DEFAULT_FOR_OUTAGE_TOLERANCE, |d| d.0),
            },
            files: cfg.files.clone(),
            config_dir: config_dir.to_path_buf(),
            default_interval: interval,
            running: Mutex::new(None),
        })
    }

    /// The current groups.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups.read().unwrap().clone()
    }

    /// Starts one task per group; each stops when `shutdown` changes.
    pub fn spawn(
        self: &Arc<Self>,
        storage: Arc<Storage>,
        sinks: Vec<Arc<dyn AlertSink>>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut running = Running {
            storage,
            sinks: sinks.into(),
            shutdown,
            tasks: Vec::new(),
        };
        for g in self.groups() {
            running.tasks.push(self.start_group(g, &running));
        }
        *self.running.lock().unwrap() = Some(running);
    }

    /// Waits for the group tasks (after shutdown was signalled), at most until `deadline`.
    pub async fn stopped(&self, deadline: tokio::time::Instant) {
        let tasks = self
            .running
            .lock()
            .unwrap()
            .as_mut()
            .map(|r| std::mem::take(&mut r.tasks));
        for t in tasks.unwrap_or_default() {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
    }

    fn start_group(self: &Arc<Self>, g: Arc<Group>, r: &Running) -> tokio::task::JoinHandle<()> {
        let (m, st, sk, sd) = (self.clone(), r.storage.clone(), r.sinks.clone(), r.shutdown.clone());
        tokio::spawn(async move { m.run_group(g, st, sk, sd).await })
    }

    /// Reads the rule files again (SIGHUP, `POST /-/reload`). Rules that did not change
    /// (same group, name, expression and labels) keep their state, so nothing fires
    /// again; on any problem the running rules stay as they are.
    pub fn reload(self: &Arc<Self>) -> Result<usize, Vec<Problem>> {
        let specs = load_specs(&self.files, &self.config_dir)?;
        // Stop the old tasks first: an evaluation in flight finishes before its
        // group's state is adopted below (adopt waits for the group's lock).
        let mut running = self.running.lock().unwrap();
        if let Some(r) = running.as_mut() {
            for t in r.tasks.drain(..) {
                t.abort();
            }
        }
        let old = self.groups();
        let new: Vec<Arc<Group>> = specs
            .into_iter()
            .map(|s| {
                let g = Group::new(s, self.default_interval);
                if let Some(prev) = old.iter().find(|o| o.key() == g.key()) {
                    g.adopt(prev);
                }
                Arc::new(g)
            })
            .collect();
        let n = new.iter().map(|g| g.spec.rules.len()).sum();
        if let Some(r) = running.as_mut() {
            let now = crate::scrape::now_ms(SystemTime::now());
            for g in &old {
                g.retire(&r.storage, now);
            }
            for g in &new {
                let t = self.start_group(g.clone(), r);
                r.tasks.push(t);
            }
        }
        *self.groups.write().unwrap() = new;
        tracing::info!(rules = n, "rule files reloaded");
        Ok(n)
    }

    async fn run_group(
        self: Arc<Self>,
        g: Arc<Group>,
        storage: Arc<Storage>,
        sinks: Arc<[Arc<dyn AlertSink>]>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let interval = g.interval.max(Duration::from_millis(100));
        // Spread groups over the interval by a hash of their key, like Prometheus.
        let offset_ms = fnv(&g.key()) % interval.as_millis() as u64;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let period = interval.as_millis() as u64;
        let wait = (offset_ms + period - now_ms % period) % period;
        let start = tokio::time::Instant::now() + Duration::from_millis(wait);
        let mut tick = tokio::time::interval_at(start, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let ts = crate::scrape::now_ms(SystemTime::now());
            let (m, st, g2) = (self.clone(), storage.clone(), g.clone());
            let restore = first;
            first = false;
            let alerts = tokio::task::spawn_blocking(move || {
                let alerts = g2.eval(&st, ts, &m.settings);
                if restore {
                    g2.restore(&st, ts, &m.settings);
                }
                alerts
            })
            .await
            .unwrap_or_default();
            if !alerts.is_empty() {
                for s in sinks.iter() {
                    s.send(&alerts);
                }
            }
        }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// `sonde check rules FILE...`: promtool's output and exit status.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    if files.is_empty() {
        eprintln!("sonde check rules: name one or more rule files");
        return ExitCode::FAILURE;
    }
    for f in files {
        println!("Checking {}", f.display());
        let mut problems = Vec::new();
        let groups = file::load(f, &mut problems);
        if problems.is_empty() {
            let n: usize = groups.iter().map(|g| g.rules.len()).sum();
            println!("  SUCCESS: {n} rules found");
        } else {
            failed = true;
            eprintln!("  FAILED:");
            for p in &problems {
                eprintln!("{p}");
            }
        }
        println!();
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
