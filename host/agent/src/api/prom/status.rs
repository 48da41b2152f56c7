//! `/api/v1/status/*` (build information, the effective configuration, flags, runtime
//! information) and `/api/v1/format_query`.
//!
//! `buildinfo` reports `version` as `2.42.0+sonde.<sonde version>`: Grafana and other
//! clients compare the Prometheus version with semver to decide which APIs to use,
//! and the API implemented here is Prometheus 2.42's. The build metadata after `+`
//! says what actually answers (semver ignores it when comparing). There is no
//! `features` or `application` field: with one, Grafana would take sonde for Mimir.

use super::params::Form;
use super::{ApiError, json, success};
use crate::api::Shared;
use crate::config::units::PromDuration;
use crate::config::{Config, TargetSpec};
use crate::timefmt::rfc3339;
use axum::extract::State;
use axum::response::Response;
use std::time::{Duration, SystemTime};

/// The Prometheus API version sonde implements.
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

/// What the status endpoints report, fixed at start-up.
#[derive(Debug, Clone)]
pub struct StatusInfo {
    /// The effective configuration as TOML (defaults filled in, secrets redacted).
    pub config_text: String,
    /// Command-line flags and their effective values.
    pub flags: Vec<(String, String)>,
    /// `15d`, `10GiB` or `15d or 10GiB`, as Prometheus words it.
    pub storage_retention: String,
    pub config_time: SystemTime,
    pub cwd: String,
}

impl StatusInfo {
    pub fn new(cfg: &Config, flags: Vec<(String, String)>) -> Self {
        let retention = cfg
            .sonde
            .storage
            .retention
            .unwrap_or(PromDuration(sonde_tsdb::db::Options::default().retention));
        let storage_retention = match cfg.sonde.storage.retention_size {
            Some(size) if cfg.sonde.storage.retention.is_some() => format!("{retention} or {}", bytes(size.0)),
            Some(size) => bytes(size.0),
            None => retention.to_string(),
        };
        StatusInfo {
            config_text: render_config(cfg),
            flags,
            storage_retention,
            // Prometheus reports it to the second.
            config_time: std::time::UNIX_EPOCH
                + Duration::from_secs(
                    SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                ),
            cwd: std::env::current_dir().map_or_else(|_| "<unknown>".into(), |d| d.display().to_string()),
        }
    }
}

/// Writes `{"k":v,...}` field by field, in the order given.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json::string(self.out, k);
        self.out.push(b':');
        self.out
    }

    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        json::string(self.key(k), v);
        self
    }

    fn raw(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Self {
        let out = self.key(k);
        out.extend_from_slice(v.to_string().as_bytes());
        self
    }

    fn end(&mut self) {
        self.out.push(b'}');
    }
}

pub async fn buildinfo() -> Response {
    let version = format!("{PROMETHEUS_API_VERSION}+sonde.{}", env!("CARGO_PKG_VERSION"));
    success(256, |out| {
        Object::new(out)
            .str("version", &version)
            .str("revision", option_env!("SONDE_REVISION").unwrap_or("unknown"))
            .str("branch", option_env!("SONDE_BRANCH").unwrap_or("unknown"))
            .str("buildUser", option_env!("SONDE_BUILD_USER").unwrap_or("unknown"))
            .str("buildDate", option_env!("SONDE_BUILD_DATE").unwrap_or("unknown"))
            .str("goVersion", "rust")
            .end()
    })
}

pub async fn config(State(s): State<Shared>) -> Response {
    success(s.status.config_text.len() + 32, |out| {
        Object::new(out).str("yaml", &s.status.config_text).end()
    })
}

pub async fn flags(State(s): State<Shared>) -> Response {
    let mut flags = s.status.flags.clone();
    flags.sort();
    success(256, |out| {
        let mut o = Object::new(out);
        for (k, v) in &flags {
            o.str(k, v);
        }
        o.end()
    })
}

pub async fn runtimeinfo(State(s): State<Shared>) -> Response {
    let rt = tokio::runtime::Handle::current().metrics();
    success(512, |out| {
        Object::new(out)
            .str("startTime", &rfc3339(s.started))
            .str("CWD", &s.status.cwd)
            .raw("reloadConfigSuccess", true)
            .str("lastConfigTime", &rfc3339(s.status.config_time))
            .raw("corruptionCount", 0)
            .raw("goroutineCount", rt.num_alive_tasks())
            .raw("GOMAXPROCS", rt.num_workers())
            .str("GOGC", "")
            .str("GODEBUG", "")
            .str("storageRetention", &s.status.storage_retention)
            .end()
    })
}

/// `/api/v1/format_query?query=...`: the query pretty-printed as Prometheus's
/// `promql.Pretty` does (promql-parser's port of it).
pub async fn format_query(form: Form) -> Result<Response, ApiError> {
    let expr = sonde_promql::parse(form.get("query")).map_err(|e| ApiError::invalid_param("query", e.message()))?;
    let pretty = expr.prettify();
    Ok(success(pretty.len() + 2, |out| json::string(out, &pretty)))
}

/// Sizes as Prometheus prints them (`10GiB`, `512MiB`, `1000B`).
fn bytes(n: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

fn duration(d: Duration) -> toml::Value {
    toml::Value::String(PromDuration(d).to_string())
}

/// The effective configuration: sonde.toml with every default filled in, then one
/// table per plugin instance as it runs. Values of keys that look like secrets, and
/// passwords in URLs, are replaced by `<secret>` (as Prometheus does for its secrets).
pub fn render_config(cfg: &Config) -> String {
    use toml::{Table, Value};
    let s = &cfg.sonde;
    let mut top = Table::new();
    top.insert("listen".into(), cfg.listen.clone().into());
    top.insert("data_dir".into(), cfg.data_dir.display().to_string().into());
    top.insert(
        "log_level".into(),
        s.log_level.clone().unwrap_or_else(|| "info".into()).into(),
    );
    let mut defaults = Table::new();
    defaults.insert("interval".into(), duration(s.interval()));
    defaults.insert("timeout".into(), duration(s.timeout()));
    defaults.insert("memory_limit".into(), bytes(s.memory_limit()).into());
    top.insert("defaults".into(), Value::Table(defaults));
    let st = &s.storage;
    let mut storage = Table::new();
    let tsdb = sonde_tsdb::db::Options::default();
    storage.insert(
        "retention".into(),
        duration(st.retention.map_or(tsdb.retention, |d| d.0)),
    );
    if let Some(size) = st.retention_size {
        storage.insert("retention_size".into(), bytes(size.0).into());
    }
    storage.insert(
        "out_of_order_window".into(),
        duration(st.out_of_order_window.map_or(Duration::ZERO, |d| d.0)),
    );
    storage.insert(
        "wal_fsync_interval".into(),
        duration(st.wal_fsync_interval.map_or(Duration::from_secs(10), |d| d.0)),
    );
    top.insert("storage".into(), Value::Table(storage));
    if !s.connections.is_empty() {
        let conns: Table = s
            .connections
            .iter()
            .map(|(name, c)| {
                let t = connection_table(c.resolve(), c.password_file.as_deref(), c.password_env.as_deref());
                (name.clone(), Value::Table(t))
            })
            .collect();
        top.insert("connections".into(), Value::Table(conns));
    }
    let mut text = format!("# sonde.toml (effective)\n{top}");
    let mut plugins = Table::new();
    for t in &cfg.targets {
        plugins.insert(t.name.clone(), Value::Table(target_table(t)));
    }
    for d in &cfg.discovery {
        let mut tt = target_table(&d.template);
        match &d.instance {
            Some(i) => tt.insert("instance".into(), i.clone().into()),
            None => tt.remove("instance"),
        };
        let list = |v: Vec<String>| Value::Array(v.into_iter().map(Value::from).collect());
        tt.insert("targets".into(), list(d.targets.clone()));
        if !d.file_sd.is_empty() {
            tt.insert(
                "file_sd".into(),
                list(d.file_sd.iter().map(|p| p.display().to_string()).collect()),
            );
            tt.insert("file_sd_refresh".into(), duration(d.refresh));
        }
        plugins.insert(d.template.name.clone(), Value::Table(tt));
    }
    text.push_str(&format!("\n# plugins.toml ({})\n{plugins}", cfg.plugins_origin));
    text
}

/// A `[connections.<name>]` table with its defaults. The config never holds the
/// password itself, only where to read it, so nothing needs hiding.
fn connection_table(
    r: sonde_plugin_host::SqlConnection,
    password_file: Option<&std::path::Path>,
    password_env: Option<&str>,
) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("host".into(), r.host.into());
    t.insert("port".into(), i64::from(r.port).into());
    t.insert("database".into(), r.database.into());
    t.insert("user".into(), r.user.into());
    let sslmode = match r.sslmode {
        sonde_plugin_host::SslMode::Disable => "disable",
        _ => "prefer",
    };
    t.insert("sslmode".into(), sslmode.into());
    if let Some(f) = password_file {
        t.insert("password_file".into(), f.display().to_string().into());
    }
    if let Some(e) = password_env {
        t.insert("password_env".into(), e.into());
    }
    t
}

fn target_table(t: &TargetSpec) -> toml::Table {
    use toml::{Table, Value};
    let mut tt = Table::new();
    tt.insert("plugin".into(), t.plugin_path.display().to_string().into());
    if let Some(i) = t.interval {
        tt.insert("interval".into(), duration(i));
    }
    if let Some(d) = t.timeout {
        tt.insert("timeout".into(), duration(d));
    }
    tt.insert("memory_limit".into(), bytes(t.memory_limit).into());
    tt.insert("job".into(), t.job.clone().into());
    tt.insert("instance".into(), t.instance.clone().into());
    if !t.labels.is_empty() {
        let labels: Table = t
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        tt.insert("labels".into(), Value::Table(labels));
    }
    if t.honor_labels {
        tt.insert("honor_labels".into(), true.into());
    }
    let g = &t.grants;
    let mut grants = Table::new();
    let list = |v: Vec<String>| Value::Array(v.into_iter().map(Value::from).collect());
    grants.insert(
        "read".into(),
        list(g.read.iter().map(|p| p.display().to_string()).collect()),
    );
    grants.insert("http".into(), list(g.http.clone()));
    grants.insert("tcp".into(), list(g.tcp.iter().map(|a| a.to_string()).collect()));
    grants.insert("statfs".into(), g.statfs.into());
    if g.listens() {
        grants.insert(
            "listen_udp".into(),
            list(g.listen_udp.iter().map(|a| a.to_string()).collect()),
        );
        grants.insert(
            "listen_tcp".into(),
            list(g.listen_tcp.iter().map(|a| a.to_string()).collect()),
        );
    }
    tt.insert("grants".into(), Value::Table(grants));
    if let Ok(serde_json::Value::Object(cfg)) = serde_json::from_str::<serde_json::Value>(&t.config_json)
        && !cfg.is_empty()
    {
        let config: Table = cfg
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), to_toml(k, v)?)))
            .collect();
        tt.insert("config".into(), Value::Table(config));
    }
    tt
}

/// Keys whose values are not shown.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `scheme://user:password@host` → `scheme://user:<secret>@host`.
fn redact_url_password(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_string();
    };
    let Some(colon) = rest[..at].find(':') else {
        return s.to_string();
    };
    format!("{}{}<secret>{}", &s[..scheme_end + 3], &rest[..=colon], &rest[at..])
}

/// A plugin `config` value as TOML (null has no TOML form and is left out).
fn to_toml(key: &str, v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    use toml::Value as T;
    if is_secret_key(key) && !v.is_null() {
        return Some(T::String("<secret>".into()));
    }
    Some(match v {
        J::Null => return None,
        J::Bool(b) => T::Boolean(*b),
        J::Number(n) => n
            .as_i64()
            .map_or_else(|| T::Float(n.as_f64().unwrap_or(f64::NAN)), T::Integer),
        J::String(s) => T::String(redact_url_password(s)),
        J::Array(a) => T::Array(a.iter().filter_map(|x| to_toml(key, x)).collect()),
        J::Object(o) => T::Table(
            o.iter()
                .filter_map(|(k, x)| Some((k.clone(), to_toml(k, x)?)))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://app:hunter2@db:5432/x?sslmode=off"),
            "postgres://app:<secret>@db:5432/x?sslmode=off"
        );
        assert_eq!(redact_url_password("http://host:80/a@b"), "http://host:80/a@b");
        assert_eq!(redact_url_password("redis://user@host"), "redis://user@host");
        let v: serde_json::Value = serde_json::json!({"password": "x", "dsn": "mysql://u:p@h/db", "n": 3});
        let t = to_toml("config", &serde_json::Value::Null);
        assert!(t.is_none());
        let table = to_toml("cfg", &v).unwrap().to_string();
        assert!(
            !table.contains("hunter2") && !table.contains("\"x\"") && !table.contains(":p@"),
            "{table}"
        );
        assert!(table.contains("n = 3"), "{table}");
    }

    #[test]
    fn the_effective_config_has_defaults_and_no_secrets() {
        let mut sonde = crate::config::SondeConfig::default();
        sonde.connections.insert("pg".into(), Default::default());
        let pg = sonde.connections.get_mut("pg").unwrap();
        pg.user = Some("monitor".into());
        pg.password_file = Some("/etc/sonde/pg.pass".into());
        let cfg = Config {
            sonde,
            listen: "127.0.0.1:9190".into(),
            data_dir: "data".into(),
            targets: vec![TargetSpec {
                name: "db".into(),
                entry: "db".into(),
                address: None,
                plugin_path: "plugins/postgres.wasm".into(),
                interval: None,
                timeout: Some(Duration::from_secs(5)),
                memory_limit: 64 << 20,
                job: "postgres".into(),
                instance: "db-1".into(),
                labels: Default::default(),
                honor_labels: false,
                grants: Default::default(),
                config_json: r#"{"dsn":"postgres://u:hunter2@h/db","api_token":"t0k"}"#.into(),
            }],
            discovery: vec![],
            plugins_origin: "plugins.toml".into(),
        };
        let text = render_config(&cfg);
        for want in [
            "retention = \"15d\"",
            "interval = \"15s\"",
            "[connections.pg]",
            "port = 5432",
            "password_file = \"/etc/sonde/pg.pass\"",
            "[db]",
            "timeout = \"5s\"",
            "memory_limit = \"64MiB\"",
            "dsn = \"postgres://u:<secret>@h/db\"",
            "api_token = \"<secret>\"",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert!(!text.contains("hunter2") && !text.contains("t0k"), "{text}");
    }

    #[test]
    fn sizes_like_prometheus() {
        assert_eq!(bytes(10 << 30), "10GiB");
        assert_eq!(bytes(1536 << 20), "1536MiB");
        assert_eq!(bytes(1000), "1000B");
    }
}
