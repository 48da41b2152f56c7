//! `plugins.toml`: one table per plugin instance, keyed by the instance name.
//!
//! ```toml
//! [node]
//! plugin = "node"
//! interval = "15s"
//! [node.grants]
//! read = ["/proc", "/sys"]
//! statfs = true
//! ```

use super::SondeConfig;
use super::discovery::{self, DiscoverySpec};
use super::file_sd;
use super::source::{Problem, SourceFile, subtable, value_span};
use super::units::{ByteSize, PromDuration};
use serde::Deserialize;
use sonde_plugin_host::Grants;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::DeTable;

/// Shortest collection interval accepted; below this the scheduling overhead dominates.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Memory limits outside this range are almost certainly typos.
const MIN_MEMORY_LIMIT: u64 = 1 << 20;
const MAX_MEMORY_LIMIT: u64 = 4 << 30;

/// One `[name]` table of plugins.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// The component to run: a name, resolved as `<plugin_dir>/<name>.wasm`, or a
    /// path to a `.wasm` file (relative to this file's directory). Required.
    pub plugin: Option<String>,
    /// Set to false to keep the entry but not run it.
    pub enabled: Option<bool>,
    /// Collection interval (default: sonde.toml `defaults.interval`, else the
    /// plugin's own default, else 15s).
    pub interval: Option<PromDuration>,
    /// Deadline of one collection; at most the interval (default 10s or the interval).
    pub timeout: Option<PromDuration>,
    /// Linear-memory limit of the instance (default 128MiB).
    pub memory_limit: Option<ByteSize>,
    /// Value of the `job` label (default: the table name).
    pub job: Option<String>,
    /// Value of the `instance` label (default: the host name).
    pub instance: Option<String>,
    /// Extra labels added to every series of this target.
    pub labels: BTreeMap<String, String>,
    /// When a series from the plugin has a label the target also sets (`job`,
    /// `instance`, `labels`): true keeps the plugin's value (for federation and
    /// pushgateway-like sources), false (default) renames the plugin's to
    /// `exported_<name>`, as Prometheus's `honor_labels`.
    pub honor_labels: Option<bool>,
    /// What the plugin may access; everything else is denied.
    pub grants: GrantsConfig,
    /// Plugin-specific settings, handed to the plugin's `configure` as JSON.
    pub config: Option<serde_json::Value>,
    /// Static targets, `"host:port"` (or `"host"` for the scheme's default port): the
    /// entry runs one plugin instance per address, which gets `__address__` in its
    /// config, HTTP access to that address, and `instance` = the address.
    pub targets: Vec<String>,
    /// Prometheus file_sd files (`.json`, `.yml` or `.yaml`, a glob allowed in the
    /// file name, relative to this file's directory) listing more targets as
    /// `[{targets: [...], labels: {...}}]`; targets come and go as the files change.
    pub file_sd: Vec<String>,
    /// How often the file_sd files are read again even when unchanged (default 30s;
    /// a changed file is seen within 5s).
    pub file_sd_refresh: Option<PromDuration>,
}

/// The `[name.grants]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// Directories the plugin may read (read-only, seen under the same path).
    pub read: Vec<PathBuf>,
    /// Outbound HTTP authorities, `host:port` (or `host` for the default port).
    pub http: Vec<String>,
    /// TCP addresses the plugin may connect to, `host:port`.
    pub tcp: Vec<String>,
    /// Whether the plugin may query file-system usage (statfs) of mount points.
    pub statfs: bool,
    /// Database connections (names of sonde.toml `[connections.<name>]` tables) the
    /// plugin may send read-only statements to.
    pub sql: Vec<String>,
    /// UDP addresses (`ip:port`) sonde listens on for a push plugin (StatsD): the
    /// host owns the socket and hands the datagrams to the plugin's `ingest`.
    pub listen_udp: Vec<String>,
    /// TCP addresses (`ip:port`) sonde listens on for a push plugin; what clients
    /// send is handed over in whole lines.
    pub listen_tcp: Vec<String>,
}

/// A validated plugin instance: one scrape target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// Unique name of the target: the plugins.toml table name, or
    /// `<table>/<address>` for one of an entry's `targets` or `file_sd` targets.
    pub name: String,
    /// The plugins.toml table name (the scrape pool).
    pub entry: String,
    /// The address of a `targets`/`file_sd` target.
    pub address: Option<String>,
    pub plugin_path: PathBuf,
    /// None: use the plugin's default interval, else the global default.
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub memory_limit: u64,
    pub job: String,
    pub instance: String,
    /// Extra target labels (besides job and instance).
    pub labels: BTreeMap<String, String>,
    /// Series labels win over target labels (`honor_labels`).
    pub honor_labels: bool,
    pub grants: Grants,
    /// The `config` table as JSON (`{}` when absent).
    pub config_json: String,
}

/// Where `plugin = "..."` points: a bare name is looked up in the plugin directory.
pub fn resolve_plugin_path(plugin: &str, plugin_dir: &Path, config_dir: &Path) -> PathBuf {
    if plugin.ends_with(".wasm") || plugin.contains('/') {
        let p = Path::new(plugin);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            config_dir.join(p)
        }
    } else {
        plugin_dir.join(format!("{plugin}.wasm"))
    }
}

/// The entries of plugins.toml: single instances, and templates of `targets`/`file_sd`.
#[derive(Debug, Default)]
pub struct Entries {
    pub targets: Vec<TargetSpec>,
    pub discovery: Vec<DiscoverySpec>,
}

pub fn parse(file: &SourceFile, sonde: &SondeConfig, plugin_dir: &Path, problems: &mut Vec<Problem>) -> Entries {
    let before = problems.len();
    let doc = file.parse(problems);
    let mut entries = Entries::default();
    if problems.len() > before {
        // After a syntax error the rest of the file is guesswork: report only that.
        return entries;
    }
    let config_dir = file.path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().to_string();
        let Some(table) = subtable(&doc, &name) else {
            problems.push(file.problem(
                value.span(),
                format!("`{name}` must be a table describing a plugin instance, e.g. [{name}] with plugin = \"...\""),
            ));
            continue;
        };
        let grants_ok = match subtable(&table, "grants") {
            Some(g) => file.deserialize_all::<GrantsConfig>(&g, &[], problems).is_some(),
            None => true,
        };
        if !grants_ok {
            file.check_keys::<InstanceConfig>(&table, &["grants"], problems);
            continue;
        }
        let Some(inst) = file.deserialize_all::<InstanceConfig>(&table, &["grants"], problems) else {
            continue;
        };
        let mut check = Check {
            file,
            table: &table,
            name: &name,
            problems,
        };
        let discovered = !inst.targets.is_empty() || !inst.file_sd.is_empty();
        let sd = (
            inst.targets.clone(),
            inst.file_sd.clone(),
            inst.file_sd_refresh,
            inst.instance.clone(),
        );
        let config = inst.config.clone();
        if inst.file_sd_refresh.is_some() && inst.file_sd.is_empty() {
            check.report(
                "file_sd_refresh",
                "file_sd_refresh without file_sd: add file_sd = [\"<file>.yml\"] or remove it".into(),
            );
        }
        let t = check.target(inst, sonde, plugin_dir, &config_dir);
        if discovered {
            // Checked even when the rest of the entry is wrong: every problem at once.
            entries.discovery.extend(check.discovery(t, sd, config, &config_dir));
        } else {
            entries.targets.extend(t);
        }
    }
    entries
}

struct Check<'a, 'i> {
    file: &'a SourceFile,
    table: &'a Spanned<DeTable<'i>>,
    name: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Check<'_, '_> {
    fn report(&mut self, key: &str, message: String) {
        let span = value_span(self.table, key);
        self.problems
            .push(self.file.problem(span, format!("[{}] {message}", self.name)));
    }

    fn report_grant(&mut self, key: &str, message: String) {
        let span = match subtable(self.table, "grants") {
            Some(g) => value_span(&g, key),
            None => self.table.span(),
        };
        self.problems
            .push(self.file.problem(span, format!("[{}.grants] {message}", self.name)));
    }

    fn target(
        &mut self,
        inst: InstanceConfig,
        sonde: &SondeConfig,
        plugin_dir: &Path,
        config_dir: &Path,
    ) -> Option<TargetSpec> {
        let before = self.problems.len();
        if inst.enabled == Some(false) {
            return None;
        }
        let plugin_path = match &inst.plugin {
            None => {
                self.report("plugin", "missing `plugin = \"<name>\"`: which component to run".into());
                None
            }
            Some(p) => {
                let path = resolve_plugin_path(p, plugin_dir, config_dir);
                if !path.is_file() {
                    self.report(
                        "plugin",
                        format!(
                            "plugin file {} not found (build the plugins with scripts/build, or fix the name)",
                            path.display()
                        ),
                    );
                }
                Some(path)
            }
        };
        let interval = inst.interval.map(|d| d.0).or(sonde.defaults.interval.map(|d| d.0));
        if let Some(i) = inst.interval.filter(|i| i.0 < MIN_INTERVAL) {
            self.report("interval", format!("interval {i} is shorter than the minimum of 100ms"));
        }
        let timeout = inst.timeout.map(|d| d.0).or(sonde.defaults.timeout.map(|d| d.0));
        if let (Some(t), Some(i)) = (inst.timeout, interval)
            && t.0 > i
        {
            self.report(
                "timeout",
                format!("timeout {t} is longer than the interval {}", PromDuration(i)),
            );
        }
        if inst.timeout.is_some_and(|t| t.0.is_zero()) {
            self.report("timeout", "timeout must be positive".into());
        }
        let memory_limit = inst.memory_limit.map_or(sonde.memory_limit(), |b| b.0);
        if !(MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT).contains(&memory_limit) {
            self.report(
                "memory_limit",
                format!("memory_limit {memory_limit} bytes is outside 1MiB..4GiB"),
            );
        }
        for (k, v) in &inst.labels {
            if let Err(e) = check_label_name(k) {
                self.report("labels", format!("label {k:?}: {e}"));
            }
            if k == "job" || k == "instance" {
                self.report("labels", format!("set `{k} = {v:?}` as its own key, not in labels"));
            }
        }
        let job = inst.job.clone().unwrap_or_else(|| self.name.to_string());
        let instance = inst.instance.clone().unwrap_or_else(hostname);
        if job.is_empty() {
            self.report("job", "job must not be empty".into());
        }
        if instance.is_empty() {
            self.report("instance", "instance must not be empty".into());
        }
        let grants = self.grants(&inst.grants, sonde);
        let config_json = inst.config.as_ref().map_or_else(|| "{}".to_string(), |c| c.to_string());
        if self.problems.len() > before {
            return None;
        }
        Some(TargetSpec {
            name: self.name.to_string(),
            entry: self.name.to_string(),
            address: None,
            plugin_path: plugin_path?,
            interval,
            timeout,
            memory_limit,
            job,
            instance,
            labels: inst.labels,
            honor_labels: inst.honor_labels.unwrap_or(false),
            grants,
            config_json,
        })
    }

    /// An entry with `targets`/`file_sd`: checks the addresses and patterns.
    fn discovery(
        &mut self,
        template: Option<TargetSpec>,
        (targets, file_sd, refresh, instance): (Vec<String>, Vec<String>, Option<PromDuration>, Option<String>),
        config: Option<serde_json::Value>,
        config_dir: &Path,
    ) -> Option<DiscoverySpec> {
        let before = self.problems.len();
        for t in &targets {
            if let Err(e) = file_sd::check_address(t) {
                self.report("targets", format!("target {t:?}: {e}"));
            }
        }
        for p in &file_sd {
            if let Err(e) = file_sd::check_pattern(p) {
                self.report("file_sd", e);
            }
        }
        let refresh = refresh.map_or(discovery::DEFAULT_REFRESH, |d| d.0);
        if refresh < discovery::MIN_REFRESH {
            self.report(
                "file_sd_refresh",
                format!(
                    "file_sd_refresh {} is shorter than the minimum of 1s",
                    PromDuration(refresh)
                ),
            );
        }
        let config = match config {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => {
                self.report(
                    "config",
                    "with targets or file_sd, config must be a table (each target's address is added to it)".into(),
                );
                serde_json::Map::new()
            }
        };
        if self.problems.len() > before {
            return None;
        }
        let template = template?;
        let file_sd = file_sd
            .iter()
            .map(|p| {
                if Path::new(p).is_absolute() {
                    PathBuf::from(p)
                } else {
                    config_dir.join(p)
                }
            })
            .collect();
        Some(DiscoverySpec {
            template,
            instance,
            config,
            targets,
            file_sd,
            refresh,
        })
    }

    fn grants(&mut self, g: &GrantsConfig, sonde: &SondeConfig) -> Grants {
        let mut sql = BTreeMap::new();
        for name in &g.sql {
            match sonde.connections.get(name) {
                Some(c) => {
                    sql.insert(name.clone(), c.resolve());
                }
                None => self.report_grant(
                    "sql",
                    format!("sql grant {name:?}: no [connections.{name}] in sonde.toml (define it there, with host, user and password_file)"),
                ),
            }
        }
        for dir in &g.read {
            if !dir.is_absolute() {
                self.report_grant("read", format!("read path {} must be absolute", dir.display()));
            } else if !dir.is_dir() {
                self.report_grant(
                    "read",
                    format!("read path {} is not an existing directory", dir.display()),
                );
            }
        }
        for a in &g.http {
            if let Err(e) = check_authority(a) {
                self.report_grant("http", format!("http grant {a:?}: {e}"));
            }
        }
        let mut tcp = Vec::new();
        for a in &g.tcp {
            match a.to_socket_addrs() {
                Ok(addrs) => tcp.extend(addrs),
                Err(e) => self.report_grant("tcp", format!("tcp grant {a:?} is not host:port ({e})")),
            }
        }
        let listen_udp = self.listen_addrs("listen_udp", &g.listen_udp);
        let listen_tcp = self.listen_addrs("listen_tcp", &g.listen_tcp);
        Grants {
            read: g.read.clone(),
            http: g.http.clone(),
            tcp,
            statfs: g.statfs,
            sql,
            listen_udp,
            listen_tcp,
        }
    }

    /// Listen addresses must be literal `ip:port` (binding a name would pick one of
    /// its addresses arbitrarily).
    fn listen_addrs(&mut self, key: &str, addrs: &[String]) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for a in addrs {
            match a.parse::<SocketAddr>() {
                Ok(sa) if out.contains(&sa) => self.report_grant(key, format!("{key} {a:?} is listed twice")),
                Ok(sa) => out.push(sa),
                Err(_) => self.report_grant(
                    key,
                    format!(
                        "{key} {a:?} is not ip:port (e.g. \"127.0.0.1:9125\"; use 0.0.0.0 to listen on every interface)"
                    ),
                ),
            }
        }
        out
    }
}

fn check_authority(a: &str) -> Result<(), String> {
    if a.is_empty() || a.contains('/') || a.contains('@') || a.contains(' ') {
        return Err("write it as host:port, without scheme or path (e.g. \"127.0.0.1:8000\")".into());
    }
    if let Some((_, port)) = a.rsplit_once(':').filter(|(h, _)| !h.contains(':') || h.ends_with(']')) {
        port.parse::<u16>()
            .map_err(|_| format!("port {port:?} is not a number"))?;
    }
    Ok(())
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`, `__` prefix reserved.
pub fn check_label_name(n: &str) -> Result<(), &'static str> {
    let mut chars = n.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("label names match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if n.starts_with("__") {
        return Err("names starting with __ are reserved");
    }
    Ok(())
}

/// The host name, for the default `instance` label.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn run(text: &str) -> (Vec<TargetSpec>, Vec<Problem>) {
        let dir = std::env::temp_dir();
        let file = SourceFile {
            path: "plugins.toml".into(),
            text: text.into(),
        };
        let mut problems = vec![];
        let t = parse(&file, &SondeConfig::default(), &dir, &mut problems);
        (t.targets, problems)
    }

    #[test]
    fn all_problems_of_all_instances_are_reported() {
        let (t, p) = run(
            "[a]\nplugin = \"/nonexistent/a.wasm\"\ninterval = 5\n\n[b]\nplugin = \"/nonexistent/b.wasm\"\n[b.grants]\nreed = [\"/proc\"]\n",
        );
        assert!(t.is_empty());
        let lines: Vec<(usize, bool)> = p.iter().map(|p| (p.line, p.message.contains("reed"))).collect();
        assert!(p.iter().any(|p| p.line == 3 && p.message.contains("string")), "{p:#?}");
        assert!(lines.contains(&(8, true)), "{p:#?}");
    }

    #[test]
    fn missing_plugin_file_and_bad_grants_are_located() {
        let (_, p) =
            run("[x]\nplugin = \"/nonexistent/x.wasm\"\n[x.grants]\nread = [\"relative\"]\nhttp = [\"http://a/b\"]\n");
        let msgs: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("plugins.toml:2:") && m.contains("not found")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("plugins.toml:4:") && m.contains("absolute")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("plugins.toml:5:") && m.contains("without scheme")),
            "{msgs:#?}"
        );
    }

    #[test]
    fn valid_instance_resolves_defaults() {
        let wasm = std::env::temp_dir().join("sonde-config-test.wasm");
        std::fs::write(&wasm, b"\0asm").unwrap();
        let (t, p) = run(&format!(
            "[web]\nplugin = {wasm:?}\ninterval = \"30s\"\nlabels = {{ env = \"prod\" }}\n[web.grants]\ntcp = [\"127.0.0.1:6379\"]\n[web.config]\nk = [1, 2]\n"
        ));
        assert!(p.is_empty(), "{p:#?}");
        assert_eq!(t[0].job, "web");
        assert_eq!(t[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(t[0].grants.tcp, vec!["127.0.0.1:6379".parse::<SocketAddr>().unwrap()]);
        assert_eq!(t[0].config_json, r#"{"k":[1,2]}"#);
    }

    #[test]
    fn targets_and_file_sd_entries_are_checked_and_located() {
        let (_, p) = run(
            "[w]\nplugin = \"/nonexistent/w.wasm\"\ntargets = [\"http://a:1\", \"b:2\"]\nfile_sd = [\"sd/*/x.yml\", \"t.txt\"]\nconfig = 3\n[v]\nplugin = \"/nonexistent/v.wasm\"\nfile_sd_refresh = \"1m\"\n",
        );
        let msgs: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        for want in [
            "plugins.toml:3:11: [w] target \"http://a:1\": write it as",
            "plugins.toml:4:11: [w] \"sd/*/x.yml\": a glob may only be in the file name",
            "plugins.toml:4:11: [w] \"t.txt\": file_sd files end in .json",
            "plugins.toml:5:10: [w] with targets or file_sd, config must be a table",
            "plugins.toml:8:19: [v] file_sd_refresh without file_sd",
        ] {
            assert!(msgs.iter().any(|m| m.starts_with(want)), "{want}\n{msgs:#?}");
        }
    }

    #[test]
    fn a_targets_entry_becomes_a_discovery_template() {
        let wasm = std::env::temp_dir().join("sonde-config-test-sd.wasm");
        std::fs::write(&wasm, b"\0asm").unwrap();
        let file = SourceFile {
            path: "/etc/sonde/plugins.toml".into(),
            text: format!(
                "[web]\nplugin = {wasm:?}\ntargets = [\"a:1\"]\nfile_sd = [\"sd/*.yml\", \"/abs/x.json\"]\nfile_sd_refresh = \"10s\"\n[web.config]\nk = 1\n"
            ),
        };
        let mut problems = vec![];
        let e = parse(&file, &SondeConfig::default(), &std::env::temp_dir(), &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(e.targets.is_empty());
        let d = &e.discovery[0];
        assert_eq!(d.template.entry, "web");
        assert_eq!(d.targets, ["a:1"]);
        assert_eq!(
            d.file_sd,
            [PathBuf::from("/etc/sonde/sd/*.yml"), PathBuf::from("/abs/x.json")]
        );
        assert_eq!(d.refresh, Duration::from_secs(10));
        assert_eq!(d.config["k"], 1);
    }

    #[test]
    fn timeout_longer_than_interval_is_rejected() {
        let (_, p) = run("[x]\nplugin = \"/nonexistent/x.wasm\"\ninterval = \"1s\"\ntimeout = \"2s\"\n");
        assert!(
            p.iter()
                .any(|p| p.line == 4 && p.message.contains("longer than the interval")),
            "{p:#?}"
        );
    }
}
