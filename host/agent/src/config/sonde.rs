//! `sonde.toml`: daemon-wide settings. Every key is optional.

use super::source::{Problem, SourceFile, subtable, value_span};
use super::units::{ByteSize, PromDuration};
use serde::Deserialize;
use sonde_plugin_host::{PasswordSource, SqlConnection, SslMode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address: loopback only; expose it deliberately.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9190";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MEMORY_LIMIT: u64 = 128 << 20;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SondeConfig {
    /// Address of the HTTP API, `/metrics` and `/federate` (default 127.0.0.1:9190).
    pub listen: Option<String>,
    /// Where sonde keeps its data: samples, compiled-plugin cache (default ./data).
    pub data_dir: Option<PathBuf>,
    /// Directory of plugin components, `<name>.wasm` (default ./plugins).
    pub plugin_dir: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// `info,sonde::plugin=debug` (default info; the RUST_LOG variable wins).
    pub log_level: Option<String>,
    /// Defaults for every plugin instance that does not set its own.
    pub defaults: Defaults,
    /// Sample storage.
    pub storage: StorageConfig,
    /// Database connections, by name; a plugin may use one when its grants list the
    /// name (`[<plugin>.grants] sql = ["main"]`). The host owns the connection and the
    /// credentials; the plugin only sends read-only statements.
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Recording and alerting rules.
    pub rules: RulesConfig,
    /// Where alerts go.
    pub alerting: AlertingConfig,
    /// The built-in notifier (routes, receivers, inhibition); off when absent.
    pub notifier: Option<crate::notify::NotifierConfig>,
}

/// `[rules]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Rule files in Prometheus's format; globs, relative to this file's directory
    /// (default: the built-in rules/default.yml; `files = []` loads none).
    pub files: Option<Vec<String>>,
    /// How often groups without their own `interval` are evaluated (default 1m).
    pub evaluation_interval: Option<PromDuration>,
    /// Alerts whose `for` is shorter are not restored after a restart, and a restored
    /// alert fires no sooner than this after the restart (default 10m, Prometheus's
    /// `--rules.alert.for-grace-period`).
    pub for_grace_period: Option<PromDuration>,
    /// How long sonde may have been down and still restore `for` state (default 1h,
    /// Prometheus's `--rules.alert.for-outage-tolerance`).
    pub for_outage_tolerance: Option<PromDuration>,
}

/// `[alerting]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// `[[alerting.alertmanagers]]`: every alert goes to each of them.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Labels added to every alert sent (unless it has them) and `$externalLabels`
    /// in templates.
    pub external_labels: BTreeMap<String, String>,
    /// Base of alerts' generator URLs and `$externalURL` (default http://<listen>).
    pub external_url: Option<String>,
    /// How often a firing alert is re-sent (default 1m).
    pub resend_delay: Option<PromDuration>,
}

/// One `[[alerting.alertmanagers]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. "http://127.0.0.1:9093" (plain HTTP).
    pub url: String,
    /// Per-request timeout (default 10s).
    pub timeout: Option<PromDuration>,
    /// Alerts queued for this Alertmanager at most; the oldest are dropped beyond
    /// (default 10000).
    pub queue_capacity: Option<usize>,
}

/// Checks `[alerting]`: bad keys where they are, unusable Alertmanager URLs.
fn check_alerting(
    file: &SourceFile,
    table: &toml::Spanned<toml::de::DeTable<'_>>,
    problems: &mut Vec<Problem>,
) -> bool {
    let Some(t) = subtable(table, "alerting") else {
        return true;
    };
    let Some(a) = file.deserialize_all::<AlertingConfig>(&t, &[], problems) else {
        return false;
    };
    let before = problems.len();
    for am in &a.alertmanagers {
        if let Err(e) = crate::rules::alertmanager::Client::new(&am.url, Duration::ZERO, 1) {
            problems.push(file.problem(
                value_span(&t, "alertmanagers"),
                format!("[[alerting.alertmanagers]] url: {e}"),
            ));
        }
    }
    problems.len() == before
}

/// One `[connections.<name>]` table (PostgreSQL).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Server host name or address (default 127.0.0.1).
    pub host: Option<String>,
    /// Server port (default 5432).
    pub port: Option<u16>,
    /// Database to connect to (default postgres).
    pub database: Option<String>,
    /// Role to log in as; give it `pg_monitor` and nothing more (required).
    pub user: Option<String>,
    /// `disable` or `prefer` (default prefer; TLS itself is not implemented yet, so
    /// prefer connects without it).
    pub sslmode: Option<SslModeConfig>,
    /// File holding the password (its first line); read at every connect, so a
    /// rotated password is picked up without a restart.
    pub password_file: Option<PathBuf>,
    /// Environment variable of the sonde process holding the password.
    pub password_env: Option<String>,
    /// Not accepted: an inline password would sit in a config file that is often
    /// world-readable and checked in. Use password_file or password_env.
    pub password: Option<toml::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslModeConfig {
    Disable,
    Prefer,
}

impl ConnectionConfig {
    /// The host-side description of the connection (no secret in it).
    pub fn resolve(&self) -> SqlConnection {
        SqlConnection {
            host: self.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            port: self.port.unwrap_or(5432),
            database: self.database.clone().unwrap_or_else(|| "postgres".into()),
            user: self.user.clone().unwrap_or_default(),
            sslmode: match self.sslmode {
                Some(SslModeConfig::Disable) => SslMode::Disable,
                _ => SslMode::Prefer,
            },
            password: match (&self.password_file, &self.password_env) {
                (Some(f), _) => PasswordSource::File(f.clone()),
                (None, Some(v)) => PasswordSource::Env(v.clone()),
                (None, None) => PasswordSource::None,
            },
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// How long samples are kept (default 15d). Whole blocks are deleted once they end
    /// before now minus this.
    pub retention: Option<PromDuration>,
    /// Disk budget for blocks and WAL (e.g. "10GiB"); the oldest blocks go first.
    pub retention_size: Option<ByteSize>,
    /// How far behind the newest sample an out-of-order sample is still accepted
    /// (default 0: out-of-order samples are rejected, as in Prometheus).
    pub out_of_order_window: Option<PromDuration>,
    /// How often the WAL is fsynced (default 10s): the most a power loss can take.
    /// Independently, the WAL is handed to the OS every second, so a crash of sonde
    /// itself loses at most one second.
    pub wal_fsync_interval: Option<PromDuration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Collection interval (default 15s).
    pub interval: Option<PromDuration>,
    /// Per-collection timeout (default 10s; at most the interval).
    pub timeout: Option<PromDuration>,
    /// Linear-memory limit per plugin instance (default 128MiB).
    pub memory_limit: Option<ByteSize>,
}

impl SondeConfig {
    pub fn interval(&self) -> Duration {
        self.defaults.interval.map_or(DEFAULT_INTERVAL, |d| d.0)
    }
    pub fn timeout(&self) -> Duration {
        self.defaults
            .timeout
            .map_or(DEFAULT_TIMEOUT, |d| d.0)
            .min(self.interval())
    }
    pub fn memory_limit(&self) -> u64 {
        self.defaults.memory_limit.map_or(DEFAULT_MEMORY_LIMIT, |b| b.0)
    }
}

/// Checks every `[connections.<name>]` table; true when all are usable.
fn check_connections(
    file: &SourceFile,
    table: &toml::Spanned<toml::de::DeTable<'_>>,
    problems: &mut Vec<Problem>,
) -> bool {
    let Some(conns) = subtable(table, "connections") else {
        return true;
    };
    let before = problems.len();
    for (key, value) in conns.get_ref().iter() {
        let name = key.get_ref().to_string();
        let Some(t) = subtable(&conns, &name) else {
            problems.push(file.problem(
                value.span(),
                format!("connections.{name} must be a table: [connections.{name}] with host, port, user, ..."),
            ));
            continue;
        };
        let Some(c) = file.deserialize_all::<ConnectionConfig>(&t, &[], problems) else {
            continue;
        };
        let mut report = |key: &str, msg: String| {
            problems.push(file.problem(value_span(&t, key), format!("[connections.{name}] {msg}")));
        };
        if c.password.is_some() {
            report(
                "password",
                "inline passwords are not accepted: put it in a file (password_file) or an environment variable (password_env)".into(),
            );
        }
        if c.user.as_deref().is_none_or(str::is_empty) {
            report(
                "user",
                "missing `user = \"...\"`: the role to log in as (pg_monitor is enough)".into(),
            );
        }
        match (&c.password_file, &c.password_env) {
            (Some(_), Some(_)) => report("password_env", "set password_file or password_env, not both".into()),
            (Some(f), None) => {
                if let Err(e) = std::fs::metadata(f) {
                    report(
                        "password_file",
                        format!("cannot read password_file {}: {e}", f.display()),
                    );
                }
            }
            (None, Some(v)) if std::env::var_os(v).is_none() => {
                report("password_env", format!("environment variable {v} is not set"));
            }
            _ => {}
        }
    }
    problems.len() == before
}

/// Checks `[notifier]`: every bad key where it is (through the nested routes,
/// receivers and inhibit rules), then every semantic problem at the key it is about.
fn check_notifier(
    file: &SourceFile,
    table: &toml::Spanned<toml::de::DeTable<'_>>,
    problems: &mut Vec<Problem>,
) -> bool {
    use crate::notify::config as nc;
    let Some(t) = subtable(table, "notifier") else {
        return true;
    };
    let before = problems.len();
    file.check_keys::<nc::NotifierConfig>(&t, &["route", "receivers", "inhibit_rules"], problems);
    fn route(file: &SourceFile, r: &toml::Spanned<toml::de::DeTable<'_>>, problems: &mut Vec<Problem>) {
        file.check_keys::<nc::RouteConfig>(r, &["routes"], problems);
        for c in table_items(r, "routes") {
            route(file, &c, problems);
        }
    }
    if let Some(r) = subtable(&t, "route") {
        route(file, &r, problems);
    }
    let kinds = ["webhook_configs", "slack_configs", "email_configs", "pagerduty_configs"];
    for r in table_items(&t, "receivers") {
        file.check_keys::<nc::ReceiverConfig>(&r, &kinds, problems);
        for i in table_items(&r, "webhook_configs") {
            file.check_keys::<nc::WebhookConfig>(&i, &[], problems);
        }
        for i in table_items(&r, "slack_configs") {
            file.check_keys::<nc::SlackConfig>(&i, &[], problems);
        }
        for i in table_items(&r, "email_configs") {
            file.check_keys::<nc::EmailConfig>(&i, &[], problems);
        }
        for i in table_items(&r, "pagerduty_configs") {
            file.check_keys::<nc::PagerdutyConfig>(&i, &[], problems);
        }
    }
    for r in table_items(&t, "inhibit_rules") {
        file.check_keys::<nc::InhibitRuleConfig>(&r, &[], problems);
    }
    if problems.len() > before {
        return false;
    }
    let Some(n) = file.deserialize_all::<nc::NotifierConfig>(&t, &[], problems) else {
        return false;
    };
    for (path, msg) in n.validate() {
        problems.push(file.problem(span_at(&t, &path), format!("[notifier] {msg}")));
    }
    problems.len() == before
}

/// The tables of an array of tables (`[[notifier.receivers]]`).
fn table_items<'i>(t: &toml::Spanned<toml::de::DeTable<'i>>, key: &str) -> Vec<toml::Spanned<toml::de::DeTable<'i>>> {
    match t.get_ref().get(key).map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Array(a)) => a
            .iter()
            .filter_map(|v| match v.get_ref() {
                toml::de::DeValue::Table(x) => Some(toml::Spanned::new(v.span(), x.clone())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The span of a dotted key path (`route.routes.0.receiver`), or of the deepest
/// part of it that exists.
fn span_at(t: &toml::Spanned<toml::de::DeTable<'_>>, path: &str) -> std::ops::Range<usize> {
    use toml::de::DeValue;
    let mut span = t.span();
    let mut cur: Option<&DeValue<'_>> = None;
    for seg in path.split('.') {
        let next = match cur {
            None => t.get_ref().get(seg),
            Some(DeValue::Table(x)) => x.get(seg),
            Some(DeValue::Array(a)) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            Some(_) => None,
        };
        let Some(v) = next else { break };
        span = v.span();
        cur = Some(v.get_ref());
    }
    span
}

/// Parses and validates sonde.toml, appending every problem found.
pub fn parse(file: &SourceFile, problems: &mut Vec<Problem>) -> SondeConfig {
    let before = problems.len();
    let table = file.parse(problems);
    if problems.len() > before {
        // After a syntax error the rest of the file is guesswork: report only that.
        return SondeConfig::default();
    }
    let defaults_ok = match subtable(&table, "defaults") {
        Some(d) => file.deserialize_all::<Defaults>(&d, &[], problems).is_some(),
        None => true,
    };
    let storage_ok = match subtable(&table, "storage") {
        Some(d) => file.deserialize_all::<StorageConfig>(&d, &[], problems).is_some(),
        None => true,
    };
    let connections_ok = check_connections(file, &table, problems);
    let rules_ok = match subtable(&table, "rules") {
        Some(d) => file.deserialize_all::<RulesConfig>(&d, &[], problems).is_some(),
        None => true,
    };
    let alerting_ok = check_alerting(file, &table, problems);
    let notifier_ok = check_notifier(file, &table, problems);
    let nested = ["defaults", "storage", "connections", "rules", "alerting", "notifier"];
    let cfg = if defaults_ok && storage_ok && connections_ok && rules_ok && alerting_ok && notifier_ok {
        file.deserialize_all::<SondeConfig>(&table, &nested, problems)
    } else {
        file.check_keys::<SondeConfig>(&table, &nested, problems);
        None
    };
    let Some(cfg) = cfg else {
        return SondeConfig::default();
    };
    if let Some(listen) = &cfg.listen
        && let Err(e) = listen.parse::<SocketAddr>()
    {
        problems.push(file.problem(
            value_span(&table, "listen"),
            format!("listen = {listen:?} is not an address ({e}); write it like \"127.0.0.1:9190\""),
        ));
    }
    if let (Some(i), Some(t)) = (cfg.defaults.interval, cfg.defaults.timeout)
        && t > i
    {
        let d = subtable(&table, "defaults").expect("defaults parsed above");
        problems.push(file.problem(
            value_span(&d, "timeout"),
            format!("defaults.timeout ({t}) is longer than defaults.interval ({i})"),
        ));
    }
    cfg
}
