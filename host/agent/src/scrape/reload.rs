//! Hot reload of plugin components: when a `.wasm` file a target runs is replaced,
//! the new version is loaded (compiled in a child process, as at start) and handed to
//! every target that runs it, without a restart and without touching the others.
//!
//! Files are polled (modification time and size) every [`POLL`]; a change is acted on
//! once two polls agree, so a file still being copied is not loaded half-written, and
//! only when the content hash really changed. A new version that does not load (not a
//! component, missing exports) is logged and the previous version keeps running.
//!
//! The target's task swaps the plugin between calls (see `Run::swap_plugin`): a push
//! source hands its aggregation state over through `snapshot` / `restore`, a pull
//! source simply starts a fresh instance at its next collection.

use super::scheduler::load_plugin;
use sonde_plugin_host::{EngineOptions, Plugin, PluginEngine};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often plugin files are checked for a new version.
const POLL: Duration = Duration::from_secs(2);

/// What identifies a file version cheaply, before hashing it.
type Fingerprint = Option<(SystemTime, u64)>;

struct Watched {
    tx: watch::Sender<Option<Plugin>>,
    /// SHA-256 of the version the targets run (empty: none loaded).
    sha256: String,
    /// The file as last acted on.
    seen: Fingerprint,
    /// A change seen by the last poll, acted on when the next one sees the same.
    pending: Fingerprint,
}

/// Watches the plugin files of running targets.
pub struct Reloader {
    engine: Arc<PluginEngine>,
    opts: EngineOptions,
    files: Mutex<HashMap<PathBuf, Watched>>,
}

fn fingerprint(path: &Path) -> Fingerprint {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Reloader {
    pub fn new(engine: Arc<PluginEngine>, opts: EngineOptions) -> Arc<Self> {
        Arc::new(Reloader {
            engine,
            opts,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// The versions of `path` after `current` (the one the caller runs; `None` if it
    /// failed to load, so a fixed file is picked up too).
    pub fn subscribe(&self, path: &Path, current: Option<&Plugin>) -> watch::Receiver<Option<Plugin>> {
        let mut files = self.files.lock().unwrap();
        let w = files.entry(path.to_path_buf()).or_insert_with(|| {
            let (tx, _) = watch::channel(current.cloned());
            let seen = fingerprint(path);
            Watched {
                tx,
                sha256: current.map(|p| p.sha256.clone()).unwrap_or_default(),
                seen,
                pending: seen,
            }
        });
        let mut rx = w.tx.subscribe();
        rx.mark_unchanged();
        rx
    }

    /// Polls until `shutdown` flips.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => me.poll().await,
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    async fn poll(&self) {
        for path in self.changed_files() {
            self.reload(&path).await;
        }
    }

    /// Files whose fingerprint changed and then held still for one poll.
    fn changed_files(&self) -> Vec<PathBuf> {
        let mut files = self.files.lock().unwrap();
        let mut out = Vec::new();
        for (path, w) in files.iter_mut() {
            let now = fingerprint(path);
            if now == w.seen {
                w.pending = now;
                continue;
            }
            if now != w.pending {
                w.pending = now;
                continue;
            }
            w.seen = now;
            if now.is_some() {
                out.push(path.clone());
            }
        }
        out
    }

    async fn reload(&self, path: &Path) {
        let Ok(bytes) = tokio::fs::read(path).await else { return };
        let sha = sonde_plugin_host::sha256_hex(&bytes);
        let unchanged = self.files.lock().unwrap().get(path).is_some_and(|w| w.sha256 == sha);
        if unchanged {
            return;
        }
        match load_plugin(&self.engine, &self.opts, path).await {
            Ok((plugin, _)) => {
                tracing::info!(plugin = %path.display(), sha256 = %plugin.sha256, "plugin file changed: new version loaded");
                if let Some(w) = self.files.lock().unwrap().get_mut(path) {
                    w.sha256 = plugin.sha256.clone();
                    w.tx.send_replace(Some(plugin));
                }
            }
            Err(e) => {
                tracing::error!(plugin = %path.display(), "plugin file changed but the new version cannot be loaded; the previous version keeps running: {e}");
                if let Some(w) = self.files.lock().unwrap().get_mut(path) {
                    // Not retried until the file changes again.
                    w.sha256 = sha;
                }
            }
        }
    }
}
