//! What the notifier knows: alerts, their aggregation groups, silences and the
//! notification log, behind one lock. Alerts and the log are persisted so a restart
//! neither loses a pending notification nor repeats a delivered one.

use super::persist;
use super::route::{Route, RouteOpts};
use super::silence::Silences;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub starts_at: i64,
    pub ends_at: i64,
    pub updated_at: i64,
    pub generator_url: String,
}

impl StoredAlert {
    pub fn resolved(&self, now_ms: i64) -> bool {
        self.ends_at <= now_ms
    }
}

/// Alertmanager's fingerprint: FNV-1a 64 over the sorted label pairs.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// The alerts of one route with equal group labels: notified together.
#[derive(Debug)]
pub struct Group {
    pub key: String,
    pub opts: RouteOpts,
    pub labels: BTreeMap<String, String>,
    pub alerts: BTreeSet<String>,
    /// When to flush next (ms since the epoch).
    pub next_flush: i64,
    /// Sends in flight; the group is not flushed again until they end.
    pub busy: usize,
}

/// What was last delivered for one group and integration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NflogEntry {
    pub firing: BTreeSet<String>,
    pub resolved: BTreeSet<String>,
    pub at: i64,
}

impl NflogEntry {
    /// Alertmanager's DedupStage: notify when something new fires (or resolves, with
    /// send_resolved), when everything resolved, or when the repeat interval passed.
    pub fn needs_update(
        prev: Option<&NflogEntry>,
        firing: &BTreeSet<String>,
        resolved: &BTreeSet<String>,
        send_resolved: bool,
        repeat_ms: i64,
        now_ms: i64,
    ) -> bool {
        let Some(p) = prev else {
            return !firing.is_empty();
        };
        if !firing.is_subset(&p.firing) {
            return true;
        }
        if firing.is_empty() && !p.firing.is_empty() {
            return true;
        }
        if send_resolved && !resolved.is_subset(&p.resolved) {
            return true;
        }
        !firing.is_empty() && now_ms >= p.at + repeat_ms
    }
}

pub struct State {
    dir: PathBuf,
    pub alerts: BTreeMap<String, StoredAlert>,
    pub groups: BTreeMap<String, Group>,
    pub silences: Silences,
    pub nflog: BTreeMap<String, NflogEntry>,
    pub alerts_dirty: bool,
}

impl State {
    pub fn load(dir: &Path) -> State {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::error!(dir = %dir.display(), "cannot create the notifier directory: {e}");
        }
        State {
            dir: dir.to_path_buf(),
            alerts: persist::read(&dir.join("alerts.json")).unwrap_or_default(),
            groups: BTreeMap::new(),
            silences: Silences::load(dir),
            nflog: persist::read(&dir.join("nflog.json")).unwrap_or_default(),
            alerts_dirty: false,
        }
    }

    pub fn save_alerts(&mut self) {
        if self.alerts_dirty {
            persist::write(&self.dir.join("alerts.json"), &self.alerts);
            self.alerts_dirty = false;
        }
    }

    pub fn save_nflog(&self) {
        persist::write(&self.dir.join("nflog.json"), &self.nflog);
    }

    /// Merges one alert (Alertmanager: an update keeps the earliest start while the
    /// alert has not resolved) and puts it in the groups of the routes that take it.
    pub fn ingest(&mut self, root: &Route, mut a: StoredAlert, now_ms: i64) {
        let fp = fingerprint(&a.labels);
        if let Some(old) = self.alerts.get(&fp)
            && !old.resolved(now_ms)
            && old.starts_at < a.starts_at
        {
            a.starts_at = old.starts_at;
        }
        a.updated_at = now_ms;
        self.place(root, &fp, &a.labels, now_ms);
        self.alerts.insert(fp, a);
        self.alerts_dirty = true;
    }

    /// Puts an alert in its groups, creating them (first flush after group_wait).
    pub fn place(&mut self, root: &Route, fp: &str, labels: &BTreeMap<String, String>, now_ms: i64) {
        for r in root.matching(labels) {
            let gl = r.group_labels(labels);
            let key = format!("{}:{}", r.id, label_string(&gl));
            let g = self.groups.entry(key.clone()).or_insert_with(|| Group {
                key,
                opts: r.opts.clone(),
                labels: gl,
                alerts: BTreeSet::new(),
                next_flush: now_ms + r.opts.group_wait.as_millis() as i64,
                busy: 0,
            });
            g.alerts.insert(fp.to_string());
        }
    }

    /// Drops alerts resolved long ago (and no longer in any group).
    pub fn gc(&mut self, now_ms: i64) {
        const KEEP_MS: i64 = 3600 * 1000;
        let grouped: BTreeSet<&String> = self.groups.values().flat_map(|g| g.alerts.iter()).collect();
        let before = self.alerts.len();
        self.alerts
            .retain(|fp, a| grouped.contains(fp) || a.ends_at + KEEP_MS > now_ms);
        self.alerts_dirty |= self.alerts.len() != before;
        // Alertmanager keeps its notification log for 120 h.
        const NFLOG_KEEP_MS: i64 = 120 * 3600 * 1000;
        let before = self.nflog.len();
        self.nflog.retain(|_, e| e.at + NFLOG_KEEP_MS > now_ms);
        if self.nflog.len() != before {
            self.save_nflog();
        }
    }
}

pub fn label_string(l: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_dedup_like_alertmanager() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        assert!(NflogEntry::needs_update(None, &s(&["a"]), &s(&[]), true, 1000, 0));
        assert!(!NflogEntry::needs_update(None, &s(&[]), &s(&["a"]), true, 1000, 0));
        let p = NflogEntry {
            firing: s(&["a", "b"]),
            resolved: s(&[]),
            at: 0,
        };
        assert!(!NflogEntry::needs_update(
            Some(&p),
            &s(&["a"]),
            &s(&["b"]),
            false,
            1000,
            10
        ));
        assert!(NflogEntry::needs_update(
            Some(&p),
            &s(&["a"]),
            &s(&["b"]),
            true,
            1000,
            10
        ));
        assert!(NflogEntry::needs_update(
            Some(&p),
            &s(&["a", "c"]),
            &s(&[]),
            false,
            1000,
            10
        ));
        assert!(NflogEntry::needs_update(
            Some(&p),
            &s(&["a"]),
            &s(&[]),
            false,
            1000,
            1000
        ));
        assert!(NflogEntry::needs_update(
            Some(&p),
            &s(&[]),
            &s(&["a", "b"]),
            false,
            1000,
            10
        ));
    }
}
