//! plugins.toml entries with `targets` or `file_sd`: the entry is a template, expanded
//! into one plugin instance per address with Prometheus's label rules (group labels
//! win over the entry's, `instance` defaults to the address, `__`-labels are not
//! stored) and the address handed to the plugin in its config.

use super::file_sd::{self, Group};
use super::{Problem, TargetSpec};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// Default `file_sd_refresh`: how often every file is read again even when its
/// modification time did not change (Prometheus's 5m is long for a daemon that also
/// runs on laptops; files are polled for changes every [`POLL`] besides).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
/// How often the files' modification times are checked, so an edit is seen within
/// seconds without re-reading unchanged files.
pub const POLL: Duration = Duration::from_secs(5);
/// Shortest `file_sd_refresh`: re-reading files faster than this is only load.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Targets a file_sd entry may gain at run time beyond those its files list at start:
/// the plugin engine sizes its instance pool once, at start (see
/// `Config::target_capacity`), and each slot reserves ~8GiB of address space.
pub const RUNTIME_TARGETS_PER_ENTRY: usize = 64;

/// One entry with `targets` and/or `file_sd`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverySpec {
    /// The entry's settings, shared by its targets (`name` is the table name,
    /// `instance` is unused: see [`DiscoverySpec::instance`]).
    pub template: TargetSpec,
    /// The entry's own `instance`, which then replaces the address as the label.
    pub instance: Option<String>,
    /// The entry's `config` table (an object), to which the target's keys are added.
    pub config: Map<String, Value>,
    /// `targets = [...]`, as written.
    pub targets: Vec<String>,
    /// `file_sd` patterns, relative ones joined to plugins.toml's directory.
    pub file_sd: Vec<PathBuf>,
    pub refresh: Duration,
}

impl DiscoverySpec {
    /// The static targets and then each file's groups, one spec per address (the
    /// first group naming an address wins, as identical targets are one in Prometheus).
    pub fn expand<'a>(&self, groups: impl IntoIterator<Item = &'a Group>) -> Vec<TargetSpec> {
        let own = Group {
            targets: self.targets.clone(),
            labels: Default::default(),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        self.add_group(&own, &mut seen, &mut out);
        for g in groups {
            self.add_group(g, &mut seen, &mut out);
        }
        out
    }

    fn add_group(&self, g: &Group, seen: &mut HashSet<String>, out: &mut Vec<TargetSpec>) {
        let scheme = g.labels.get("__scheme__").map_or("http", String::as_str);
        for addr in &g.targets {
            let address = file_sd::with_port(addr, scheme);
            if seen.insert(address.clone()) {
                out.push(self.target(g, address));
            }
        }
    }

    fn target(&self, g: &Group, address: String) -> TargetSpec {
        let t = &self.template;
        let mut job = t.job.clone();
        let mut instance = self.instance.clone().unwrap_or_else(|| address.clone());
        let mut labels = t.labels.clone();
        for (k, v) in &g.labels {
            match k.as_str() {
                "job" => job = v.clone(),
                "instance" => instance = v.clone(),
                k if k.starts_with("__") => {}
                _ => {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
        let mut config = self.config.clone();
        config.insert("__address__".into(), Value::String(address.clone()));
        for key in ["__scheme__", "__metrics_path__"] {
            if let Some(v) = g.labels.get(key) {
                config.insert(key.into(), Value::String(v.clone()));
            }
        }
        let mut grants = t.grants.clone();
        if !grants.http.contains(&address) {
            grants.http.push(address.clone());
        }
        TargetSpec {
            name: format!("{}/{address}", t.entry),
            address: Some(address),
            job,
            instance,
            labels,
            grants,
            config_json: Value::Object(config).to_string(),
            ..t.clone()
        }
    }

    /// The groups of every file the patterns match now, and the problems of those
    /// that could not be used (for `sonde check config`).
    pub fn read_files(&self, problems: &mut Vec<Problem>) -> Vec<Group> {
        file_sd::files(&self.file_sd)
            .iter()
            .filter_map(|f| file_sd::read(f, problems))
            .flatten()
            .collect()
    }
}

/// Adds `__scrape_timeout_ms__` to a target's config JSON once its timeout is known
/// (it may come from the plugin's default interval).
pub fn with_timeout(config_json: &str, timeout: Duration) -> String {
    match serde_json::from_str::<Value>(config_json) {
        Ok(Value::Object(mut m)) => {
            m.insert("__scrape_timeout_ms__".into(), Value::from(timeout.as_millis() as u64));
            Value::Object(m).to_string()
        }
        _ => config_json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec() -> DiscoverySpec {
        DiscoverySpec {
            template: TargetSpec {
                name: "web".into(),
                entry: "web".into(),
                address: None,
                plugin_path: "/p.wasm".into(),
                interval: None,
                timeout: None,
                memory_limit: 1 << 20,
                job: "webjob".into(),
                instance: String::new(),
                labels: BTreeMap::from([("env".into(), "prod".into()), ("team".into(), "a".into())]),
                honor_labels: false,
                grants: sonde_plugin_host::Grants {
                    http: vec!["proxy:3128".into()],
                    ..Default::default()
                },
                config_json: "{}".into(),
            },
            instance: None,
            config: serde_json::from_str(r#"{"k": 1}"#).unwrap(),
            targets: vec!["127.0.0.1:8000".into(), "db".into()],
            file_sd: vec![],
            refresh: DEFAULT_REFRESH,
        }
    }

    fn group(targets: &[&str], labels: &[(&str, &str)]) -> Group {
        Group {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn expansion_gives_one_target_per_address_with_its_config_and_grant() {
        let t = spec().expand(&[]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "web/127.0.0.1:8000");
        assert_eq!(t[0].entry, "web");
        assert_eq!(t[0].instance, "127.0.0.1:8000");
        assert_eq!(t[0].job, "webjob");
        assert_eq!(t[0].grants.http, vec!["proxy:3128", "127.0.0.1:8000"]);
        assert_eq!(t[0].config_json, r#"{"__address__":"127.0.0.1:8000","k":1}"#);
        assert_eq!(t[1].address.as_deref(), Some("db:80"), "the default port is added");
    }

    #[test]
    fn expansion_group_labels_win_and_reserved_labels_go_to_the_config() {
        let g = group(
            &["a:1", "127.0.0.1:8000", "b"],
            &[
                ("team", "b"),
                ("job", "other"),
                ("__scheme__", "https"),
                ("__metrics_path__", "/m"),
                ("__meta_x", "dropped"),
            ],
        );
        let t = spec().expand([&g]);
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["web/127.0.0.1:8000", "web/db:80", "web/a:1", "web/b:443"],
            "duplicates kept once, https port added"
        );
        let a = &t[2];
        assert_eq!(a.labels["team"], "b");
        assert_eq!(a.labels["env"], "prod");
        assert!(!a.labels.contains_key("__meta_x") && !a.labels.contains_key("job"));
        assert_eq!(a.job, "other");
        let cfg: Value = serde_json::from_str(&a.config_json).unwrap();
        assert_eq!(cfg["__scheme__"], "https");
        assert_eq!(cfg["__metrics_path__"], "/m");
        assert!(cfg.get("__meta_x").is_none());
        assert_eq!(t[0].labels["team"], "a", "the static target keeps the entry's labels");
    }

    #[test]
    fn expansion_instance_from_entry_then_group() {
        let mut s = spec();
        s.instance = Some("fixed".into());
        let g = group(&["x:1"], &[("instance", "from-group")]);
        let t = s.expand([&g]);
        assert_eq!(t[0].instance, "fixed");
        assert_eq!(t[2].instance, "from-group");
    }

    #[test]
    fn expansion_timeout_is_added_to_the_config() {
        let c = with_timeout(r#"{"__address__":"a:1"}"#, Duration::from_millis(2500));
        assert_eq!(c, r#"{"__address__":"a:1","__scrape_timeout_ms__":2500}"#);
    }
}
