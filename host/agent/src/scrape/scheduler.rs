//! Loads each target's plugin and runs one task per target that calls `collect` at
//! the target's interval, under its timeout, re-creating the instance after a trap.
//! Targets never wait for each other: each has its own task and its own store.

use super::receiver::{self, Listeners, Received};
use super::reload::Reloader;
use super::table::{Applied, SeriesTable, TargetLabels};
use super::target::{Health, Target};
use crate::config::Config;
use crate::storage::{Metadata, STALE_NAN, SeriesRef, Storage};
use sonde_plugin_host::{CallError, EngineOptions, InstanceSpec, LoadStats, Plugin, PluginEngine, PluginInstance};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

pub fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A target and the plugin it runs (or why the plugin could not be loaded).
pub struct Scraper {
    pub target: Arc<Target>,
    pub(super) plugin: Result<Plugin, String>,
    /// New versions of the plugin file (hot reload), once [`Scraper::follow_reloads`].
    pub(super) reload: Option<watch::Receiver<Option<Plugin>>>,
}

/// Compiles (or loads from cache) every distinct plugin once, asks each instance's
/// plugin for its default interval, and returns one scraper per target.
pub async fn load_targets(cfg: &Config, engine: &Arc<PluginEngine>, opts: &EngineOptions) -> Vec<Scraper> {
    let mut loaded: HashMap<PathBuf, Result<(Plugin, LoadStats), String>> = HashMap::new();
    for spec in &cfg.targets {
        if loaded.contains_key(&spec.plugin_path) {
            continue;
        }
        let result = load_plugin(engine, opts, &spec.plugin_path).await;
        loaded.insert(spec.plugin_path.clone(), result);
    }
    let mut out = Vec::new();
    for spec in &cfg.targets {
        let plugin = loaded[&spec.plugin_path].clone();
        let (default_interval, description) = match &plugin {
            Ok((p, _)) => describe(p, spec).await,
            Err(_) => (None, String::new()),
        };
        let interval = spec.interval.or(default_interval).unwrap_or(cfg.sonde.interval());
        let timeout = spec.timeout.unwrap_or(cfg.sonde.timeout()).min(interval);
        let target = Arc::new(Target::new(spec.clone(), interval, timeout));
        *target.description.lock().unwrap() = description;
        if let Ok((_, stats)) = &plugin {
            *target.stats.load_seconds.lock().unwrap() = stats.took.as_secs_f64();
            target
                .stats
                .loaded_from_cache
                .store(stats.from_cache as u64, Ordering::Relaxed);
        }
        out.push(Scraper {
            target,
            plugin: plugin.map(|(p, _)| p),
            reload: None,
        });
    }
    out
}

/// Loads the component at `path`: compiled in a child process when the compile
/// cache has no artifact for it (keeping Cranelift's memory out of the daemon), then
/// deserialized and linked here. Logs the outcome.
pub(super) async fn load_plugin(
    engine: &Arc<PluginEngine>,
    opts: &EngineOptions,
    path: &std::path::Path,
) -> Result<(Plugin, LoadStats), String> {
    let t0 = Instant::now();
    let compiled_by_child = engine.needs_compile(path) && compile_in_child(opts, path).await;
    let engine = engine.clone();
    let owned = path.to_path_buf();
    let mut result = tokio::task::spawn_blocking(move || engine.load(&owned).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(format!("loading the plugin panicked: {e}")));
    if let (true, Ok((_, stats))) = (compiled_by_child, &mut result) {
        *stats = LoadStats {
            from_cache: false,
            took: t0.elapsed(),
        };
    }
    match &result {
        Ok((p, stats)) => tracing::info!(
            plugin = %path.display(), sha256 = %p.sha256, from_cache = stats.from_cache,
            took_ms = stats.took.as_millis() as u64, "plugin loaded"
        ),
        Err(e) => tracing::error!(plugin = %path.display(), "{e}"),
    }
    result
}

/// Runs `sonde compile-plugin` for `path`; true if it put the result in the cache.
/// On any failure the caller compiles in-process, which reports the real error.
async fn compile_in_child(opts: &EngineOptions, path: &std::path::Path) -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    let Some(cache_dir) = &opts.cache_dir else { return false };
    let status = tokio::process::Command::new(exe)
        .arg("compile-plugin")
        .arg("--cache-dir")
        .arg(cache_dir)
        .arg("--max-instances")
        .arg(opts.max_instances.to_string())
        .arg("--max-memory-bytes")
        .arg(opts.max_memory_bytes.to_string())
        .arg(path)
        .stdin(std::process::Stdio::null())
        .status()
        .await;
    matches!(status, Ok(s) if s.success())
}

/// Arguments of the hidden `sonde compile-plugin` command. They must reproduce the
/// daemon's engine options exactly, so the artifact passes its compatibility check.
#[derive(clap::Args, Debug)]
pub struct CompileJob {
    #[arg(long)]
    cache_dir: PathBuf,
    #[arg(long)]
    max_instances: u32,
    #[arg(long)]
    max_memory_bytes: usize,
    plugin: PathBuf,
}

impl CompileJob {
    pub fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let opts = EngineOptions {
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_bytes,
            cache_dir: Some(self.cache_dir),
        };
        let engine = PluginEngine::new(&opts)?;
        engine.load(&self.plugin)?;
        Ok(std::process::ExitCode::SUCCESS)
    }
}

fn instance_spec(spec: &crate::config::TargetSpec) -> InstanceSpec {
    InstanceSpec {
        name: spec.name.as_str().into(),
        grants: Arc::new(spec.grants.clone()),
        memory_limit: spec.memory_limit as usize,
    }
}

/// What `describe` tells the scheduler: the plugin's default interval (if it has one)
/// and its `name version: description` line. A failure is logged and yields neither.
pub(super) async fn describe(p: &Plugin, spec: &crate::config::TargetSpec) -> (Option<Duration>, String) {
    let timeout = Duration::from_secs(5);
    let info = match p.instantiate(&instance_spec(spec), timeout).await {
        Ok(mut inst) => inst.describe(timeout).await,
        Err(e) => Err(e),
    };
    match info {
        Ok(i) => (
            (i.default_interval_ms > 0).then(|| Duration::from_millis(i.default_interval_ms as u64)),
            format!("{} {}: {}", i.name, i.version, i.description),
        ),
        Err(e) => {
            tracing::warn!(target_name = %spec.name, "describe failed: {e}");
            (None, String::new())
        }
    }
}

/// The series the host adds to every target, as Prometheus does.
struct HostSeries {
    up: SeriesRef,
    duration: SeriesRef,
    scraped: SeriesRef,
    post_relabel: SeriesRef,
    added: SeriesRef,
}

impl HostSeries {
    fn new(head: &Storage, labels: &TargetLabels) -> Result<Self, String> {
        let mk = |name: &str, help: &str| {
            let meta = Metadata {
                family: name.into(),
                kind: "gauge".into(),
                help: help.into(),
                unit: String::new(),
            };
            head.set_metadata(&[name], meta);
            let mut pairs: Vec<(&str, &str)> = vec![("__name__", name)];
            pairs.extend(labels.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            head.get_or_create(&pairs)
        };
        Ok(HostSeries {
            up: mk(
                "up",
                "1 if the last collection of the target succeeded, 0 if it failed.",
            )?,
            duration: mk("scrape_duration_seconds", "Duration of the last collection in seconds.")?,
            scraped: mk(
                "scrape_samples_scraped",
                "Samples the target returned in the last collection.",
            )?,
            post_relabel: mk(
                "scrape_samples_post_metric_relabeling",
                "Samples remaining after metric relabeling in the last collection.",
            )?,
            added: mk("scrape_series_added", "Series new in the last collection.")?,
        })
    }

    fn record(&self, head: &Storage, t: i64, outcome: &Outcome, took: Duration) {
        let a = outcome.applied;
        let samples = [
            (self.up, t, if outcome.error.is_none() { 1.0 } else { 0.0 }),
            (self.duration, t, took.as_secs_f64()),
            (self.scraped, t, a.samples as f64),
            (self.post_relabel, t, a.samples as f64),
            (self.added, t, a.series_added as f64),
        ];
        if let Err(e) = head.append(&samples) {
            tracing::warn!("{e}");
        }
    }

    /// Staleness markers for the target's own series, which are then let go.
    fn retire(&self, head: &Storage, t: i64) {
        let refs = [self.up, self.duration, self.scraped, self.post_relabel, self.added];
        let samples: Vec<_> = refs.iter().map(|r| (*r, t, STALE_NAN)).collect();
        if let Err(e) = head.append(&samples) {
            tracing::warn!("staleness markers lost: {e}");
        }
        for r in refs {
            head.release(r);
        }
    }
}

impl Scraper {
    /// Swaps in new versions of the plugin file as the reloader finds them.
    pub fn follow_reloads(&mut self, reloader: &Reloader) {
        let current = self.plugin.as_ref().ok();
        let rx = reloader.subscribe(&self.target.spec.plugin_path, current);
        // A target started after a reload (file_sd) runs the newest version.
        let newest = rx.borrow().clone();
        if let Some(p) = newest
            && self.plugin.as_ref().map_or(true, |cur| cur.sha256 != p.sha256)
        {
            self.plugin = Ok(p);
        }
        self.reload = Some(rx);
    }

    /// Runs until `shutdown` flips to true.
    pub async fn run(self, head: Arc<Storage>, mut shutdown: watch::Receiver<bool>) {
        let target = self.target.clone();
        // A collection's samples carry its start time and are stored when it ends: after
        // the timeout at worst, twice that when the instance is re-created (configure
        // has its own timeout) first.
        head.hold_cuts_for(target.timeout * 2 + Duration::from_secs(5));
        let labels = TargetLabels {
            pairs: target.labels(),
            honor: target.spec.honor_labels,
        };
        let mut host: Option<HostSeries> = None;
        let mut run = Run {
            scraper: self,
            head: head.clone(),
            table: SeriesTable::default(),
            instance: None,
            labels,
            last_ingest_warning: None,
        };
        let mut ticker = tokio::time::interval_at(first_tick(&target), target.interval);
        let interval_ms = target.interval.as_millis() as i64;
        let mut last_t: Option<i64> = None;
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut listeners: Option<Listeners> = None;
        loop {
            // A push source also takes what its sockets receive between collections;
            // both run on this task, so the instance sees one call at a time.
            let received = async {
                match listeners.as_mut() {
                    Some(l) => l.rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let reload = run.scraper.reload.clone();
            let new_version = async move {
                match reload {
                    Some(mut rx) => match rx.changed().await {
                        Ok(()) => rx.borrow_and_update().clone(),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticker.tick() => {}
                Some(plugin) = new_version => {
                    if let Some(r) = run.scraper.reload.as_mut() {
                        r.mark_unchanged();
                    }
                    run.swap_plugin(plugin).await;
                    continue;
                }
                batch = received => {
                    let Some(batch) = batch else {
                        // Every reader stopped (an I/O error, logged by the reader):
                        // bind again at the next interval rather than go deaf.
                        tracing::error!(target_name = %target.spec.name, "the receiver's sockets stopped; binding them again");
                        listeners = None;
                        continue;
                    };
                    tokio::select! {
                        _ = run.ingest(batch) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
                _ = shutdown.changed() => break,
            }
            match run.ensure_listening(&listeners).await {
                Ok(Some(l)) => listeners = Some(l),
                Ok(None) => {}
                Err(e) => {
                    let now = now_ms(SystemTime::now());
                    run.table.mark_all_stale(&head, now);
                    let outcome = Outcome {
                        applied: Applied::default(),
                        error: Some(e),
                    };
                    if host.is_none() {
                        host = HostSeries::new(&head, &run.labels)
                            .map_err(|e| tracing::warn!("{e}"))
                            .ok();
                    }
                    if let Some(h) = &host {
                        h.record(&head, now, &outcome, Duration::ZERO);
                    }
                    run.report(SystemTime::now(), Duration::ZERO, outcome);
                    continue;
                }
            }
            let started = SystemTime::now();
            let t0 = Instant::now();
            let t = aligned(now_ms(started), last_t, interval_ms);
            last_t = Some(t);
            // Shutdown cancels a collection in flight (a plugin may wait on a peer for
            // its whole timeout); its instance is dropped with the task.
            let outcome = tokio::select! {
                o = run.collect_once(t) => o,
                _ = shutdown.changed() => break,
            };
            let took = t0.elapsed();
            if host.is_none() {
                host = HostSeries::new(&head, &run.labels)
                    .map_err(|e| tracing::warn!("{e}"))
                    .ok();
            }
            if let Some(h) = &host {
                h.record(&head, t, &outcome, took);
            }
            run.report(started, took, outcome);
        }
        if target.is_removed() {
            run.retire(host.as_ref());
        }
    }
}

/// How far a collection's start may be off its schedule and still be stamped on it, as
/// Prometheus's `--scrape.timestamp-tolerance` (default 2 ms, timestamps adjusted by
/// default): regular timestamps cost the head 1 bit a sample instead of a few.
const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// The timestamp of a collection started at `t`: the previous one plus the interval when
/// `t` is within the tolerance of that, else `t`.
fn aligned(t: i64, last: Option<i64>, interval_ms: i64) -> i64 {
    match last {
        Some(last) if (t - (last + interval_ms)).abs() <= TIMESTAMP_TOLERANCE_MS => last + interval_ms,
        _ => t,
    }
}

/// The first tick: the next time the wall clock is at the target's offset within its
/// interval.
fn first_tick(target: &Target) -> tokio::time::Instant {
    let interval = target.interval.as_millis().max(1) as i64;
    let phase = now_ms(SystemTime::now()).rem_euclid(interval);
    let wait = (target.offset().as_millis() as i64 - phase).rem_euclid(interval);
    tokio::time::Instant::now() + Duration::from_millis(wait as u64)
}

/// How one collection went. A failed collection stored nothing; a degraded one
/// (the plugin reported `target-errors`) stored its batch but the target is down.
struct Outcome {
    applied: Applied,
    /// Why the target is down (`lastError`), if it is.
    error: Option<String>,
}

/// Bounds on `batch.target-errors`: a plugin describes its peer's trouble in a
/// line or two; more would only bloat /api/v1/targets and the log.
const MAX_TARGET_ERRORS: usize = 16;
const MAX_TARGET_ERROR_LEN: usize = 1024;

/// `lastError` of a degraded collection: the plugin's messages on one line each,
/// joined by `; `, bounded.
fn target_error(errors: &[String]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = errors
        .iter()
        .take(MAX_TARGET_ERRORS)
        .map(|e| {
            let line: String = e.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            let line = line.trim();
            match line.char_indices().nth(MAX_TARGET_ERROR_LEN) {
                Some((i, _)) => format!("{}...", &line[..i]),
                None => line.to_string(),
            }
        })
        .collect();
    if errors.len() > MAX_TARGET_ERRORS {
        parts.push(format!("and {} more", errors.len() - MAX_TARGET_ERRORS));
    }
    Some(parts.join("; "))
}

struct Run {
    scraper: Scraper,
    head: Arc<Storage>,
    table: SeriesTable,
    instance: Option<PluginInstance>,
    labels: TargetLabels,
    last_ingest_warning: Option<Instant>,
}

impl Run {
    async fn collect_once(&mut self, now: i64) -> Outcome {
        match self.try_collect(now).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.table.mark_all_stale(&self.head, now);
                Outcome {
                    applied: Applied::default(),
                    error: Some(e),
                }
            }
        }
    }

    async fn try_collect(&mut self, now: i64) -> Result<Outcome, String> {
        let target = self.scraper.target.clone();
        if let Err(e) = &self.scraper.plugin {
            target.stats.fail("load");
            return Err(e.clone());
        }
        let deadline = Instant::now() + target.timeout;
        let remaining = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        self.ensure_instance(deadline).await?;
        let inst = self.instance.as_mut().expect("created above");
        let result = inst.collect(remaining()).await;
        let denials = inst.take_denials();
        target
            .stats
            .memory_bytes
            .store(inst.memory_bytes() as u64, Ordering::Relaxed);
        let batch = match result {
            Ok(b) => b,
            Err(e) => {
                if e.poisons_instance() {
                    self.drop_instance();
                }
                return Err(self.fail(&e, &denials));
            }
        };
        match self.table.apply(&batch, &self.labels, &self.head, now) {
            Ok(applied) => {
                target.stats.series.store(self.table.len() as u64, Ordering::Relaxed);
                let error = target_error(&batch.target_errors);
                if error.is_some() {
                    target.stats.fail("target");
                }
                Ok(Outcome { applied, error })
            }
            Err(msg) => {
                target.stats.fail("invalid_output");
                self.drop_instance();
                Err(msg)
            }
        }
    }

    /// Creates and configures an instance of the loaded plugin if there is none (the
    /// first call, or the first after a trap or a reload dropped it).
    async fn ensure_instance(&mut self, deadline: Instant) -> Result<(), String> {
        if self.instance.is_some() {
            return Ok(());
        }
        // Cloned only here: a scrape with a running instance does not need it.
        let plugin = match &self.scraper.plugin {
            Ok(p) => p.clone(),
            Err(e) => return Err(e.clone()),
        };
        let remaining = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let spec = instance_spec(&self.scraper.target.spec);
        let mut inst = plugin
            .instantiate(&spec, remaining())
            .await
            .map_err(|e| self.fail(&e, &[]))?;
        if let Err(e) = inst.configure(&self.scraper.target.spec.config_json, remaining()).await {
            return Err(self.fail(&e, &inst.take_denials()));
        }
        self.instance = Some(inst);
        Ok(())
    }

    /// Binds the target's listen sockets if it is a push source and they are not
    /// bound yet (a failed bind is retried at the next interval).
    fn ensure_listening(
        &self,
        listeners: &Option<Listeners>,
    ) -> impl Future<Output = Result<Option<Listeners>, String>> + Send + use<> {
        let target = self.scraper.target.clone();
        let needed = listeners.is_none() && target.spec.grants.listens();
        let pull_only = self.scraper.plugin.as_ref().is_ok_and(|p| !p.is_receiver());
        async move {
            if !needed {
                return Ok(None);
            }
            if pull_only {
                target.stats.fail("load");
                return Err(format!(
                    "plugin {} does not export sonde:plugin/push, so it cannot take the data of \
                     grants.listen_udp/listen_tcp: use a push plugin (e.g. statsd) or remove the grant",
                    target.spec.plugin_path.display()
                ));
            }
            let grants = &target.spec.grants;
            let l = receiver::listen(
                &grants.listen_udp,
                &grants.listen_tcp,
                &target.spec.name,
                target.receiver.clone(),
            )
            .await
            .inspect_err(|_| target.stats.fail("listen"))?;
            tracing::info!(target_name = %target.spec.name, udp = ?grants.listen_udp, tcp = ?grants.listen_tcp, "listening");
            Ok(Some(l))
        }
    }

    /// Replaces the plugin with a new version of its file. A push source's state goes
    /// from the old instance to the new one (`snapshot` → `restore`); a failure there
    /// costs the state, not the reload.
    async fn swap_plugin(&mut self, plugin: Plugin) {
        let target = self.scraper.target.clone();
        let timeout = target.timeout;
        let mut state = Vec::new();
        if let Some(mut old) = self.instance.take()
            && target.spec.grants.listens()
        {
            match old.snapshot(timeout).await {
                Ok(s) => state = s,
                Err(e) => {
                    tracing::warn!(target_name = %target.spec.name, "snapshot of the old version failed, the new one starts empty: {e}")
                }
            }
        }
        self.table.reset(&self.head);
        self.scraper.plugin = Ok(plugin.clone());
        target.stats.reloads.fetch_add(1, Ordering::Relaxed);
        let restored = if state.is_empty() {
            Ok(())
        } else {
            self.restore(&state).await
        };
        match restored {
            Ok(()) => {
                tracing::info!(target_name = %target.spec.name, sha256 = %plugin.sha256, state_bytes = state.len(), "now running the new plugin version")
            }
            Err(e) => {
                tracing::warn!(target_name = %target.spec.name, "new plugin version running, but it did not take the old state (it starts empty): {e}")
            }
        }
    }

    /// Gives the new version (already in `scraper.plugin`) its predecessor's state.
    async fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let timeout = self.scraper.target.timeout;
        self.ensure_instance(Instant::now() + timeout).await?;
        let inst = self.instance.as_mut().expect("created above");
        match inst.restore(state, timeout).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.poisons_instance() {
                    self.drop_instance();
                }
                Err(e.to_string())
            }
        }
    }

    /// Hands one batch of received datagrams to the plugin. A failure costs this
    /// batch (and, after a trap, the state the instance had aggregated: the fresh
    /// instance starts empty and counters restart, which `rate()` treats as a reset).
    async fn ingest(&mut self, batch: Received) {
        let target = self.scraper.target.clone();
        if self.scraper.plugin.is_err() {
            return;
        }
        let deadline = Instant::now() + target.timeout;
        let result = match self.ensure_instance(deadline).await {
            Ok(()) => {
                let inst = self.instance.as_mut().expect("created above");
                match inst.ingest(&batch.payload, &batch.ends, target.timeout).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let denials = inst.take_denials();
                        Err((e.poisons_instance(), self.fail(&e, &denials)))
                    }
                }
            }
            Err(e) => Err((false, e)),
        };
        if let Err((poisoned, e)) = result {
            target.receiver.ingest_failures.fetch_add(1, Ordering::Relaxed);
            if poisoned {
                // The fresh instance registers its series anew (same labels, so the
                // same stored series); the ids of this one mean nothing any more.
                self.drop_instance();
            }
            self.warn_ingest(&e);
        }
    }

    /// Logs a failed ingest, at most once a minute per target (a sender repeating a
    /// poisonous packet must not flood the log).
    fn warn_ingest(&mut self, e: &str) {
        let now = Instant::now();
        if self
            .last_ingest_warning
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.last_ingest_warning = Some(now);
        let failures = self.scraper.target.receiver.ingest_failures.load(Ordering::Relaxed);
        tracing::warn!(target_name = %self.scraper.target.spec.name, failures, "ingest failed: {e}");
    }

    /// Counts a failed call and words its error, adding any access the sandbox denied
    /// during the call (often the real reason a plugin failed).
    fn fail(&self, e: &CallError, denials: &[String]) -> String {
        let target = &self.scraper.target;
        target.stats.fail(e.reason());
        // A call gets what is left of the collection's budget; report the configured
        // timeout, which is what the user can change.
        let e = match e {
            CallError::Timeout(_) => &CallError::Timeout(target.timeout),
            e => e,
        };
        if denials.is_empty() {
            e.to_string()
        } else {
            format!("{e} ({})", denials.join("; "))
        }
    }

    /// The target was removed by discovery: what it reported, `up` and the
    /// `scrape_*` series get staleness markers now (as Prometheus marks a vanished
    /// target's series) rather than lingering for the 5-minute lookback.
    fn retire(&mut self, host: Option<&HostSeries>) {
        let now = now_ms(SystemTime::now());
        self.table.mark_all_stale(&self.head, now);
        self.table.reset(&self.head);
        if let Some(h) = host {
            h.retire(&self.head, now);
        }
    }

    /// Drops a broken instance; the next collection instantiates a fresh one.
    fn drop_instance(&mut self) {
        if self.instance.take().is_some() {
            self.scraper.target.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        self.table.reset(&self.head);
    }

    fn report(&self, started: SystemTime, took: Duration, outcome: Outcome) {
        let target = &self.scraper.target;
        target.stats.observe_duration(took);
        let mut st = target.status.lock().unwrap();
        st.last_scrape = Some(started);
        st.last_duration = took;
        st.last_samples = outcome.applied.samples;
        target
            .stats
            .samples
            .store(outcome.applied.samples as u64, Ordering::Relaxed);
        match outcome.error {
            None => {
                if st.health == Health::Down {
                    tracing::info!(target_name = %target.spec.name, "target is up again");
                }
                st.health = Health::Up;
                st.last_error.clear();
            }
            Some(e) => {
                if st.health != Health::Down || st.last_error != e {
                    tracing::warn!(target_name = %target.spec.name, "collection failed: {e}");
                }
                st.health = Health::Down;
                st.last_error = e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_errors_become_one_bounded_line() {
        assert_eq!(target_error(&[]), None);
        let e = target_error(&["redis a: refused\n".into(), "redis b:\tno reply".into()]);
        assert_eq!(e.as_deref(), Some("redis a: refused; redis b: no reply"));
        let many: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
        assert!(target_error(&many).unwrap().ends_with("e15; and 4 more"));
        let long = target_error(&["x".repeat(5000)]).unwrap();
        assert_eq!(long.len(), MAX_TARGET_ERROR_LEN + 3);
    }

    #[test]
    fn starts_within_two_ms_of_the_schedule_are_stamped_on_it() {
        assert_eq!(aligned(1_000_003, None, 1000), 1_000_003, "nothing to align to");
        assert_eq!(aligned(1_001_002, Some(1_000_000), 1000), 1_001_000);
        assert_eq!(aligned(1_000_998, Some(1_000_000), 1000), 1_001_000);
        assert_eq!(
            aligned(1_001_003, Some(1_000_000), 1000),
            1_001_003,
            "3 ms late is kept"
        );
        assert_eq!(
            aligned(1_002_001, Some(1_000_000), 1000),
            1_002_001,
            "a missed tick is kept"
        );
    }
}
