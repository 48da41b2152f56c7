//! file_sd at run time: polls one entry's files for changes (modification time and
//! size every few seconds, a full re-read every `file_sd_refresh`) and hands the
//! entry's new target set to the [`TargetManager`]. A file that no longer parses keeps
//! the targets it gave before, as in Prometheus; a deleted file's targets go.

use super::manager::TargetManager;
use crate::config::discovery::POLL;
use crate::config::file_sd::{self, Group};
use crate::config::{DiscoverySpec, Problem};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// What file_sd did, per entry, for sonde's own `/metrics` (`sonde_sd_*`).
#[derive(Default)]
pub struct SdStats(Mutex<BTreeMap<String, EntryStats>>);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EntryStats {
    /// Files the patterns match now.
    pub files: usize,
    /// Targets the entry has now (its static ones included).
    pub targets: usize,
    /// Reads of a file that failed (unreadable, or did not parse).
    pub read_errors: u64,
    /// Times the entry's target set changed after start.
    pub updates: u64,
}

impl SdStats {
    /// Every entry with file_sd, by name.
    pub fn snapshot(&self) -> Vec<(String, EntryStats)> {
        self.0.lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn update(&self, entry: &str, f: impl FnOnce(&mut EntryStats)) {
        f(self.0.lock().unwrap().entry(entry.to_string()).or_default());
    }
}

/// One entry's file_sd files and what they gave.
pub struct Watcher {
    spec: DiscoverySpec,
    manager: Arc<TargetManager>,
    files: Files,
    last_full: Instant,
}

impl Watcher {
    /// Reads the files and starts the entry's targets.
    pub async fn start(spec: DiscoverySpec, manager: Arc<TargetManager>) -> Watcher {
        let mut w = Watcher {
            spec,
            manager,
            files: Files::default(),
            last_full: Instant::now(),
        };
        w.refresh(true, true).await;
        w
    }

    /// Polls the files until `shutdown` flips.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL.min(self.spec.refresh)) => {}
                _ = shutdown.changed() => return,
            }
            let full = self.last_full.elapsed() >= self.spec.refresh;
            if full {
                self.last_full = Instant::now();
            }
            self.refresh(full, false).await;
        }
    }

    /// Re-reads changed files (all when `full`); on a change, or `initial`, hands the
    /// entry's targets to the manager.
    async fn refresh(&mut self, full: bool, initial: bool) {
        let entry = self.spec.template.entry.clone();
        let stats = self.manager.sd_stats();
        let patterns = self.spec.file_sd.clone();
        let mut files = std::mem::take(&mut self.files);
        let (files, changed, problems) = tokio::task::spawn_blocking(move || {
            let mut problems = Vec::new();
            let changed = files.refresh(&patterns, full, &mut problems);
            (files, changed, problems)
        })
        .await
        .expect("file_sd refresh does not panic");
        self.files = files;
        stats.update(&entry, |s| {
            s.files = self.files.0.len();
            s.read_errors += problems.len() as u64;
        });
        for p in problems {
            tracing::error!(entry = %entry, "file_sd: {p} (the file's previous targets are kept)");
        }
        if changed || initial {
            let targets = self.spec.expand(self.files.groups());
            tracing::debug!(entry = %entry, targets = targets.len(), "file_sd targets");
            stats.update(&entry, |s| {
                s.targets = targets.len();
                s.updates += u64::from(!initial);
            });
            self.manager.sync(&entry, targets).await;
        }
    }
}

/// The files an entry's patterns match, with the groups each gave last time it parsed.
#[derive(Default)]
struct Files(BTreeMap<PathBuf, FileState>);

struct FileState {
    stamp: Option<(SystemTime, u64)>,
    groups: Vec<Group>,
}

impl Files {
    /// Reads the files that are new or changed (every file when `full`); true when
    /// the set of groups changed.
    fn refresh(&mut self, patterns: &[PathBuf], full: bool, problems: &mut Vec<Problem>) -> bool {
        let now = file_sd::files(patterns);
        let before = self.0.len();
        self.0.retain(|p, _| now.contains(p));
        let mut changed = self.0.len() != before;
        for path in now {
            let stamp = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            let st = self.0.entry(path.clone()).or_insert(FileState {
                stamp: None,
                groups: Vec::new(),
            });
            if !full && stamp.is_some() && st.stamp == stamp {
                continue;
            }
            st.stamp = stamp;
            if let Some(groups) = file_sd::read(&path, problems)
                && groups != st.groups
            {
                st.groups = groups;
                changed = true;
            }
        }
        changed
    }

    fn groups(&self) -> impl Iterator<Item = &Group> {
        self.0.values().flat_map(|f| f.groups.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_refresh_keeps_a_broken_files_targets_and_drops_a_deleted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yml"), dir.path().join("b.json"));
        std::fs::write(&a, "- targets: ['x:1']\n").unwrap();
        std::fs::write(&b, r#"[{"targets": ["y:2"], "labels": {"k": "v"}}]"#).unwrap();
        let patterns = [dir.path().join("*.yml"), dir.path().join("*.json")];
        let mut files = Files::default();
        let mut p = vec![];
        assert!(files.refresh(&patterns, true, &mut p));
        let targets = |f: &Files| f.groups().flat_map(|g| g.targets.clone()).collect::<Vec<_>>();
        assert_eq!(targets(&files), ["x:1", "y:2"]);
        assert!(!files.refresh(&patterns, true, &mut p), "nothing changed");

        std::fs::write(&a, "- targets: ['x:1', oops: [\n").unwrap();
        assert!(!files.refresh(&patterns, false, &mut p));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].to_string().contains("a.yml:"), "{}", p[0]);
        assert_eq!(targets(&files), ["x:1", "y:2"], "the broken file's targets stay");

        std::fs::remove_file(&b).unwrap();
        std::fs::write(&a, "- targets: ['x:1', 'z:3']\n").unwrap();
        assert!(files.refresh(&patterns, false, &mut p));
        assert_eq!(targets(&files), ["x:1", "z:3"]);
    }
}
