//! redis: Redis metrics compatible with redis_exporter 1.45 (same names, types,
//! labels and units), so the redis_exporter Grafana dashboard (763) and its alert
//! rules work unchanged.
//!
//! The plugin speaks RESP over TCP to each configured target (the entry needs a
//! `tcp` grant for every address) and keeps one connection per target open between
//! collections. Like redis_exporter, a Redis that is down, does not answer in time or
//! refuses the password gives `redis_up 0` (and
//! `redis_exporter_last_scrape_error{err}`) for that target; the collection is also
//! reported degraded (`Collection::target_error`), so sonde's target shows `up 0`
//! and the reason as its `lastError`, while the other Redis targets of the entry keep
//! their metrics.

mod info;
mod resp;

use info::{Info as RedisInfo, with};
use resp::{Conn, Reply};
use sonde_plugin_sdk::{Collection, Error, Info, Plugin, log, parse_config};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `[<name>.config]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Redis servers as `IP:port` (or `redis://IP:port`); each needs the same address
    /// in `grants.tcp`. Default: `127.0.0.1:6379`.
    #[serde(default = "default_targets")]
    targets: Vec<String>,
    /// ACL user name for `AUTH` (Redis 6+); needs `password_file`.
    #[serde(default)]
    username: Option<String>,
    /// File holding the password (trailing newline ignored), read at each connect;
    /// its directory needs a `read` grant. Plugins see no environment variables, so
    /// a file is the way to pass a secret.
    #[serde(default)]
    password_file: Option<String>,
    /// How long to wait for a TCP connection, e.g. `"2s"`.
    #[serde(default = "default_timeout")]
    connect_timeout: String,
    /// How long to wait for each reply before the target counts as down.
    #[serde(default = "default_timeout")]
    read_timeout: String,
}

fn default_targets() -> Vec<String> {
    vec!["127.0.0.1:6379".into()]
}

fn default_timeout() -> String {
    "2s".into()
}

/// CONFIG values redis_exporter 1.45 exports as `redis_config_<name>` by default.
const CONFIG_METRICS: &[(&str, &str)] = &[
    ("maxmemory", "redis_config_maxmemory"),
    ("maxclients", "redis_config_maxclients"),
    ("io-threads", "redis_config_io_threads"),
];

/// Databases assumed when `CONFIG GET databases` is not allowed (Redis' default).
const DEFAULT_DATABASES: u32 = 16;

struct Target {
    addr: SocketAddr,
    /// `addr` as configured, the `addr` label value when there are several targets.
    name: String,
    conn: Option<Conn>,
    /// The last error, logged when it starts or changes rather than every collection.
    failing: Option<String>,
}

pub struct Redis {
    targets: Vec<Target>,
    username: Option<String>,
    password_file: Option<String>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Plugin for Redis {
    fn info() -> Info {
        Info::new(
            "redis",
            env!("CARGO_PKG_VERSION"),
            "redis_exporter-compatible Redis metrics",
        )
    }

    fn configure(config: &str) -> Result<Self, Error> {
        let c: Config = parse_config(config)?;
        let mut targets = Vec::new();
        for t in &c.targets {
            let bare = t.strip_prefix("redis://").unwrap_or(t);
            let addr: SocketAddr = bare.parse().map_err(|_| {
                Error::config(format!(
                    "plugin config: target {t:?} is not IP:port (host names are not resolved by the plugin)"
                ))
            })?;
            targets.push(Target {
                addr,
                name: bare.to_string(),
                conn: None,
                failing: None,
            });
        }
        if targets.is_empty() {
            return Err(Error::config("plugin config: targets is empty"));
        }
        if c.username.is_some() && c.password_file.is_none() {
            return Err(Error::config("plugin config: username needs password_file"));
        }
        if let Some(file) = &c.password_file {
            std::fs::metadata(file).map_err(|e| {
                Error::denied(format!(
                    "cannot read password_file {file}: {e} (grant its directory with grants.read)"
                ))
            })?;
        }
        Ok(Redis {
            targets,
            username: c.username,
            password_file: c.password_file,
            connect_timeout: duration("connect_timeout", &c.connect_timeout)?,
            read_timeout: duration("read_timeout", &c.read_timeout)?,
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let several = self.targets.len() > 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        for i in 0..self.targets.len() {
            let name = self.targets[i].name.clone();
            let labels: Vec<(&str, &str)> = if several { vec![("addr", &name)] } else { vec![] };
            let result = self.scrape(i, out, &labels, now);
            let t = &mut self.targets[i];
            let up = match result {
                Ok(()) => {
                    out.gauge(
                        "redis_exporter_last_scrape_error",
                        "The last scrape error status.",
                        &with(&labels, &[("err", "")]),
                        0.0,
                    );
                    if t.failing.take().is_some() {
                        log::info(&format!("redis {}: connected again", t.name));
                    }
                    1.0
                }
                Err(e) => {
                    t.conn = None;
                    if t.failing.as_deref() != Some(e.as_str()) {
                        log::warn(&format!("redis {}: {e}", t.name));
                    }
                    out.gauge(
                        "redis_exporter_last_scrape_error",
                        "The last scrape error status.",
                        &with(&labels, &[("err", &e)]),
                        1.0,
                    );
                    out.target_error(format!("redis {}: {e}", t.name));
                    t.failing = Some(e);
                    0.0
                }
            };
            out.gauge("redis_up", "Information about the Redis instance", &labels, up);
        }
        Ok(())
    }
}

impl Redis {
    /// One target's metrics; `Err` is the reason it counts as down.
    fn scrape(&mut self, i: usize, out: &mut Collection, labels: &[(&str, &str)], now: f64) -> Result<(), String> {
        // A kept connection may have been closed meanwhile (Redis restarted, `timeout`
        // config): check it with the first command and connect again once.
        let first = ["CONFIG", "GET", "maxmemory"];
        let mut first_reply = None;
        if let Some(conn) = self.targets[i].conn.as_mut() {
            first_reply = conn.call(&first).ok();
        }
        if first_reply.is_none() {
            let mut conn = self.connect(self.targets[i].addr)?;
            let reply = conn
                .call(&first)
                .map_err(|e| io_error("CONFIG", &e, self.read_timeout))?;
            first_reply = Some(reply);
            self.targets[i].conn = Some(conn);
        }
        let conn = self.targets[i].conn.as_mut().expect("connected above");
        let mut call = |args: &[&str]| {
            if args == first
                && let Some(r) = first_reply.take()
            {
                return Ok(r);
            }
            conn.call(args).map_err(|e| io_error(args[0], &e, self.read_timeout))
        };

        // CONFIG may be renamed or denied by ACLs: then only its metrics are missing.
        let mut databases = DEFAULT_DATABASES;
        for key in ["maxmemory", "maxclients", "io-threads", "databases"] {
            let Some(v) = config_value(call(&["CONFIG", "GET", key])?) else {
                continue;
            };
            if key == "databases" {
                databases = v as u32;
            } else if let Some((_, name)) = CONFIG_METRICS.iter().find(|(k, _)| *k == key) {
                out.gauge(name, &format!("Redis config {key}."), labels, v);
            }
        }
        let text = call(&["INFO", "ALL"])?.text().map_err(|e| format!("INFO: {e}"))?;
        RedisInfo::parse(&text).emit(out, labels, databases, now);

        if let Reply::Int(n) = call(&["SLOWLOG", "LEN"])? {
            out.gauge("redis_slowlog_length", "Total slowlog", labels, n as f64);
        }
        let (mut last_id, mut last_duration) = (0.0, 0.0);
        if let Reply::Array(Some(entries)) = call(&["SLOWLOG", "GET", "1"])?
            && let Some(Reply::Array(Some(entry))) = entries.first()
            && let (Some(Reply::Int(id)), Some(Reply::Int(usec))) = (entry.first(), entry.get(2))
        {
            (last_id, last_duration) = (*id as f64, *usec as f64 / 1e6);
        }
        out.gauge("redis_slowlog_last_id", "Last id of slowlog", labels, last_id);
        out.gauge(
            "redis_last_slow_execution_duration_seconds",
            "The amount of time needed for last slow execution, in seconds",
            labels,
            last_duration,
        );
        Ok(())
    }

    fn connect(&self, addr: SocketAddr) -> Result<Conn, String> {
        let mut conn = Conn::connect(addr, self.connect_timeout, self.read_timeout).map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock {
                format!("connect to {addr}: no answer within {:?}", self.connect_timeout)
            } else {
                format!("connect to {addr}: {e}")
            }
        })?;
        if let Some(file) = &self.password_file {
            let password =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read password_file {file}: {e}"))?;
            let password = password.trim_end_matches(['\r', '\n']);
            let mut args = vec!["AUTH"];
            if let Some(user) = &self.username {
                args.push(user);
            }
            args.push(password);
            let reply = conn.call(&args).map_err(|e| io_error("AUTH", &e, self.read_timeout))?;
            reply.text().map_err(|e| format!("AUTH: {e}"))?;
        }
        Ok(conn)
    }
}

/// The number in a `CONFIG GET key` reply (`[key, value]`), if any.
fn config_value(reply: Reply) -> Option<f64> {
    match reply {
        Reply::Array(Some(items)) => items.into_iter().nth(1)?.text().ok()?.parse().ok(),
        _ => None,
    }
}

fn io_error(cmd: &str, e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("{cmd}: no reply within {timeout:?} (read_timeout)")
        }
        _ => format!("{cmd}: {e}"),
    }
}

/// A Prometheus-style duration of whole milliseconds or seconds: `500ms`, `2s`, `1m`.
fn duration(key: &str, s: &str) -> Result<Duration, Error> {
    let parse = |num: &str, unit_ms: u64| num.parse::<u64>().ok().map(|n| Duration::from_millis(n * unit_ms));
    let d = if let Some(n) = s.strip_suffix("ms") {
        parse(n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        parse(n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        parse(n, 60_000)
    } else {
        None
    };
    d.filter(|d| !d.is_zero()).ok_or_else(|| {
        Error::config(format!(
            "plugin config: {key} = {s:?} is not a duration like \"500ms\" or \"2s\""
        ))
    })
}

sonde_plugin_sdk::export_plugin!(Redis);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("t", "500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("t", "2s").unwrap(), Duration::from_secs(2));
        assert!(duration("t", "2").is_err());
        assert!(duration("t", "0s").is_err());
    }
}
