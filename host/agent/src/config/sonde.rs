//! `sonde.toml`: daemon-wide settings. Every key is optional.

use super::source::{Problem, SourceFile, subtable, value_span};
use super::units::{ByteSize, PromDuration};
use serde::Deserialize;
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
    let nested = ["defaults", "storage"];
    let cfg = if defaults_ok && storage_ok {
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
