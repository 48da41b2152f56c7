//! The targets that come and go at run time (`targets`/`file_sd` entries): starts a
//! scraper for each new target, stops the removed ones (whose series then go stale),
//! leaves unchanged ones alone, and keeps the [`TargetSet`] the API reads current.

use super::discovery::{SdStats, Watcher};
use super::reload::Reloader;
use super::scheduler::{Scraper, describe, load_plugin};
use super::target::Target;
use crate::config::discovery::with_timeout;
use crate::config::{Config, DiscoverySpec, TargetSpec};
use crate::storage::Storage;
use sonde_plugin_host::{EngineOptions, Plugin, PluginEngine};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Every target being scraped, as `/api/v1/targets` and `/metrics` list them, and
/// what file_sd did to get them.
#[derive(Clone, Default)]
pub struct TargetSet {
    targets: Arc<RwLock<Vec<Arc<Target>>>>,
    sd: Arc<SdStats>,
}

impl TargetSet {
    pub fn new(targets: impl IntoIterator<Item = Arc<Target>>) -> Self {
        TargetSet {
            targets: Arc::new(RwLock::new(targets.into_iter().collect())),
            sd: Default::default(),
        }
    }

    /// The targets now, in the order they were added.
    pub fn snapshot(&self) -> Vec<Arc<Target>> {
        self.targets.read().unwrap().clone()
    }

    pub fn sd_stats(&self) -> &SdStats {
        &self.sd
    }

    fn add(&self, t: Arc<Target>) {
        self.targets.write().unwrap().push(t);
    }

    fn remove(&self, name: &str) {
        self.targets.write().unwrap().retain(|t| t.spec.name != name);
    }
}

/// A plugin as loaded once for all the targets that run it.
#[derive(Clone)]
struct Loaded {
    plugin: Result<Plugin, String>,
    load_seconds: f64,
    from_cache: bool,
    /// What `describe` said: the plugin's default interval and its description.
    info: Option<(Option<Duration>, String)>,
}

struct Running {
    /// The spec as discovery gave it (before `__scrape_timeout_ms__`), to tell an
    /// unchanged target from a changed one.
    spec: TargetSpec,
    target: Arc<Target>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    plugins: HashMap<PathBuf, Loaded>,
    running: BTreeMap<String, Running>,
    /// Scrapers told to stop, still writing their staleness markers.
    stopping: Vec<JoinHandle<()>>,
    /// Set at shutdown: later syncs change nothing.
    closed: bool,
}

pub struct TargetManager {
    set: TargetSet,
    head: Arc<Storage>,
    engine: Arc<PluginEngine>,
    opts: EngineOptions,
    default_interval: Duration,
    default_timeout: Duration,
    state: tokio::sync::Mutex<State>,
    /// Hot reload of plugin files, for the targets started here.
    reloader: std::sync::OnceLock<Arc<Reloader>>,
}

impl TargetManager {
    /// `scrapers` are the single-instance targets already loaded: their plugins are
    /// reused rather than loaded a second time.
    pub fn new(
        cfg: &Config,
        set: TargetSet,
        head: Arc<Storage>,
        engine: Arc<PluginEngine>,
        opts: EngineOptions,
        scrapers: &[Scraper],
    ) -> Arc<Self> {
        let mut state = State::default();
        for s in scrapers {
            let t = &s.target;
            state
                .plugins
                .entry(t.spec.plugin_path.clone())
                .or_insert_with(|| Loaded {
                    plugin: s.plugin.clone(),
                    load_seconds: *t.stats.load_seconds.lock().unwrap(),
                    from_cache: t.stats.loaded_from_cache.load(Ordering::Relaxed) == 1,
                    info: None,
                });
        }
        Arc::new(TargetManager {
            set,
            head,
            engine,
            opts,
            default_interval: cfg.sonde.interval(),
            default_timeout: cfg.sonde.timeout(),
            state: tokio::sync::Mutex::new(state),
            reloader: std::sync::OnceLock::new(),
        })
    }

    /// Targets started from now on swap in new versions of their plugin file.
    pub fn follow_reloads(&self, reloader: Arc<Reloader>) {
        let _ = self.reloader.set(reloader);
    }

    /// Starts the entries' targets (their files read once), then watches the
    /// file_sd files in the background. The handle finishes once `shutdown` flipped
    /// and every managed scraper has stopped.
    pub async fn spawn(
        self: &Arc<Self>,
        entries: Vec<DiscoverySpec>,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let mut watchers = Vec::new();
        for spec in entries {
            if spec.file_sd.is_empty() {
                self.sync(&spec.template.entry, spec.expand([])).await;
            } else {
                let w = Watcher::start(spec, self.clone()).await;
                watchers.push(tokio::spawn(w.run(shutdown.clone())));
            }
        }
        let m = self.clone();
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            let _ = shutdown.changed().await;
            for w in watchers {
                let _ = w.await;
            }
            m.stop_all().await;
        })
    }

    pub(super) fn sd_stats(&self) -> Arc<SdStats> {
        self.set.sd.clone()
    }

    async fn stop_all(&self) {
        let tasks = {
            let mut st = self.state.lock().await;
            st.closed = true;
            let mut tasks = std::mem::take(&mut st.stopping);
            for (_, r) in std::mem::take(&mut st.running) {
                let _ = r.stop.send(true);
                tasks.push(r.task);
            }
            tasks
        };
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Makes `entry`'s running targets exactly `specs`: new ones start, removed or
    /// changed ones stop (a changed target is a new target: its labels differ).
    pub async fn sync(&self, entry: &str, specs: Vec<TargetSpec>) {
        let mut st = self.state.lock().await;
        if st.closed {
            return;
        }
        st.stopping.retain(|t| !t.is_finished());
        let want: BTreeMap<&str, &TargetSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let gone: Vec<String> = st
            .running
            .iter()
            .filter(|(name, r)| r.spec.entry == entry && want.get(name.as_str()) != Some(&&r.spec))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            let r = st.running.remove(&name).expect("listed above");
            r.target.removed.store(true, Ordering::Relaxed);
            let _ = r.stop.send(true);
            self.set.remove(&name);
            st.stopping.push(r.task);
            tracing::info!(target_name = %name, "target removed");
        }
        for spec in specs {
            if st.running.contains_key(&spec.name) {
                continue;
            }
            let loaded = self.plugin(&mut st, &spec).await;
            let running = self.start(spec, loaded);
            tracing::info!(target_name = %running.spec.name, "target added");
            self.set.add(running.target.clone());
            st.running.insert(running.spec.name.clone(), running);
        }
        // The engine's pool was sized at start (two slots per target, two spare).
        let room = (self.opts.max_instances as usize).saturating_sub(2) / 2;
        let total = self.set.snapshot().len();
        if total > room {
            tracing::warn!(
                entry,
                targets = total,
                room,
                "more targets than the plugin pool was sized for at start: some fail to instantiate until sonde restarts"
            );
        }
    }

    fn start(&self, spec: TargetSpec, loaded: Loaded) -> Running {
        let (default_interval, description) = loaded.info.unwrap_or_default();
        let interval = spec.interval.or(default_interval).unwrap_or(self.default_interval);
        let timeout = spec.timeout.unwrap_or(self.default_timeout).min(interval);
        let mut run_spec = spec.clone();
        run_spec.config_json = with_timeout(&spec.config_json, timeout);
        let target = Arc::new(Target::new(run_spec, interval, timeout));
        *target.description.lock().unwrap() = description;
        *target.stats.load_seconds.lock().unwrap() = loaded.load_seconds;
        target
            .stats
            .loaded_from_cache
            .store(loaded.from_cache as u64, Ordering::Relaxed);
        let mut scraper = Scraper {
            target: target.clone(),
            plugin: loaded.plugin,
            reload: None,
        };
        if let Some(r) = self.reloader.get() {
            scraper.follow_reloads(r);
            // A version hot reload loaded since this plugin was first loaded here is
            // the one to run (the subscription only reports versions after it).
            let reloaded = scraper.reload.as_ref().and_then(|rx| rx.borrow().clone());
            let running = scraper.plugin.as_ref().ok().map(|p| p.sha256.clone());
            if let Some(p) = reloaded.filter(|p| running.as_ref() != Some(&p.sha256)) {
                scraper.plugin = Ok(p);
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(scraper.run(self.head.clone(), stop_rx));
        Running {
            spec,
            target,
            stop,
            task,
        }
    }

    /// The plugin `spec` runs, loaded (and described) on first use.
    async fn plugin(&self, st: &mut State, spec: &TargetSpec) -> Loaded {
        let path = &spec.plugin_path;
        if !st.plugins.contains_key(path) {
            let loaded = self.load(path).await;
            st.plugins.insert(path.clone(), loaded);
        }
        let loaded = st.plugins.get_mut(path).expect("inserted above");
        if loaded.info.is_none() {
            let info = match &loaded.plugin {
                Ok(p) => describe(p, spec).await,
                Err(_) => (None, String::new()),
            };
            loaded.info = Some(info);
        }
        loaded.clone()
    }

    async fn load(&self, path: &std::path::Path) -> Loaded {
        match load_plugin(&self.engine, &self.opts, path).await {
            Ok((plugin, stats)) => Loaded {
                plugin: Ok(plugin),
                load_seconds: stats.took.as_secs_f64(),
                from_cache: stats.from_cache,
                info: None,
            },
            Err(e) => Loaded {
                plugin: Err(e),
                load_seconds: 0.0,
                from_cache: false,
                info: None,
            },
        }
    }
}
