//! The `[<name>.config]` table of a scrape entry, and what it resolves to: the URL to
//! scrape, the deadline, the body limit and the compiled relabelling rules.

use crate::relabel::{self, RelabelConfig, Rule};
use serde::Deserialize;
use sonde_plugin_sdk::{Error, parse_config};
use std::collections::BTreeMap;
use std::time::Duration;

/// Prometheus's default `scrape_timeout`, used when neither `timeout` nor the host's
/// `__scrape_timeout_ms__` is given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Defaults that differ between presets of the scrape plugin (prometheus, django).
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// URL scraped when the config gives neither `url` nor `__address__`.
    pub url: Option<&'static str>,
    /// Path used with `__address__`.
    pub path: &'static str,
}

/// The plugin config (JSON from plugins.toml). Either `url`, or one instance per
/// target with `__address__` (and `scheme`, `path`, `params`) from the host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The endpoint to scrape, e.g. `"http://127.0.0.1:9100/metrics"`. Its
    /// `host:port` needs `grants.http`. Not with `targets` (`__address__`).
    #[serde(default)]
    pub url: Option<String>,
    /// `host:port` of this instance's target; set by the host for each entry of
    /// `targets` / `file_sd` (which also grants HTTP to it).
    #[serde(default, rename = "__address__")]
    pub address: Option<String>,
    /// The `__scheme__` label of a file_sd target; overrides `scheme`.
    #[serde(default, rename = "__scheme__")]
    pub scheme_label: Option<String>,
    /// The `__metrics_path__` label of a file_sd target; overrides `path`.
    #[serde(default, rename = "__metrics_path__")]
    pub path_label: Option<String>,
    /// The collection's deadline in milliseconds, set by the host with `__address__`.
    #[serde(default, rename = "__scrape_timeout_ms__")]
    pub scrape_timeout_ms: Option<u64>,
    /// `http` (default) or `https`, with `__address__`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// The path scraped with `__address__`. Default `/metrics`.
    #[serde(default, alias = "metrics_path")]
    pub path: Option<String>,
    /// URL query parameters, e.g. `{ module = ["if_mib"] }` (a single string is
    /// accepted for one value).
    #[serde(default)]
    pub params: BTreeMap<String, OneOrMany>,
    /// How long the scrape may take, e.g. `"5s"` (`ms`, `s`, `m`). Default: the
    /// host's deadline for the entry, else 10s. Never longer than the host's deadline.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Largest accepted body after decompression, e.g. `"10MB"`, `"512KiB"` or a byte
    /// count; a bigger body fails the scrape. `0` (default): no limit but the
    /// plugin's memory limit.
    #[serde(default)]
    pub body_size_limit: Option<Size>,
    /// Store the timestamps the exposition gives (default `true`), or stamp every
    /// sample with the scrape time.
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Most samples a scrape may store after relabelling; more fail the scrape with
    /// `sample limit exceeded` and store nothing, as Prometheus's `sample_limit`.
    /// 0 (default): no limit.
    #[serde(default)]
    pub sample_limit: usize,
    /// Prometheus `metric_relabel_configs`, applied to every scraped series.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// HTTP basic authentication: `{ username = "u", password_file = "/etc/sonde/pw" }`.
    /// The file is read at every scrape (trailing newline ignored); its directory
    /// needs `grants.read`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A file holding a token sent as `Authorization: Bearer <token>`, read at every
    /// scrape; its directory needs `grants.read`.
    #[serde(default)]
    pub bearer_token_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// The password's file. Plugins see no environment, and a password written into
    /// plugins.toml would show in `/api/v1/status/config`.
    pub password_file: String,
}

/// Where the `Authorization` header comes from.
#[derive(Debug, Clone)]
pub enum Auth {
    Basic { username: String, password_file: String },
    BearerFile(String),
}

impl Auth {
    /// The header value, reading the secret's file now.
    pub fn header(&self) -> Result<String, Error> {
        let read = |file: &str| {
            std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| {
                    Error::denied(format!(
                        "cannot read {file}: {e} (grant its directory with grants.read)"
                    ))
                })
        };
        Ok(match self {
            Auth::Basic {
                username,
                password_file,
            } => {
                let password = read(password_file)?;
                format!("Basic {}", base64(format!("{username}:{password}").as_bytes()))
            }
            Auth::BearerFile(file) => format!("Bearer {}", read(file)?),
        })
    }
}

/// Standard base64 with padding (RFC 4648), for basic authentication.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

/// The URL split as wasi:http wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub authority: String,
    pub path_with_query: String,
}

impl Endpoint {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path_with_query)
    }
}

/// A checked config.
pub struct Settings {
    pub endpoint: Endpoint,
    pub timeout: Duration,
    /// 0 = no limit.
    pub body_size_limit: u64,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub rules: Vec<Rule>,
    pub auth: Option<Auth>,
}

impl Settings {
    /// Reads and checks the JSON config, reporting every problem at once.
    pub fn from_json(json: &str, defaults: &Defaults) -> Result<Settings, Error> {
        let c: Config = parse_config(json)?;
        let mut problems = Vec::new();
        let endpoint = match c.endpoint(defaults) {
            Ok(e) => Some(e),
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let host_deadline = c.scrape_timeout_ms.map(Duration::from_millis);
        let timeout = match &c.timeout {
            Some(t) => match duration(t) {
                Some(d) => Some(d),
                None => {
                    problems.push(format!(
                        "timeout = {t:?} is not a duration like \"500ms\", \"5s\" or \"1m\""
                    ));
                    None
                }
            },
            None => None,
        };
        let timeout = match (timeout, host_deadline) {
            (Some(t), Some(h)) => t.min(h),
            (t, h) => t.or(h).unwrap_or(DEFAULT_TIMEOUT),
        };
        let body_size_limit = match &c.body_size_limit {
            None => 0,
            Some(Size::Bytes(n)) => *n,
            Some(Size::Text(s)) => size(s).unwrap_or_else(|| {
                problems.push(format!(
                    "body_size_limit = {s:?} is not a size like \"10MB\", \"512KiB\" or a byte count"
                ));
                0
            }),
        };
        let rules = relabel::compile(&c.metric_relabel_configs).unwrap_or_else(|p| {
            problems.extend(p);
            Vec::new()
        });
        let auth = match (&c.basic_auth, &c.bearer_token_file) {
            (Some(_), Some(_)) => {
                problems.push("basic_auth and bearer_token_file are exclusive: give one".into());
                None
            }
            (Some(b), None) => Some(Auth::Basic {
                username: b.username.clone(),
                password_file: b.password_file.clone(),
            }),
            (None, Some(f)) => Some(Auth::BearerFile(f.clone())),
            (None, None) => None,
        };
        if !problems.is_empty() {
            return Err(Error::config(format!("plugin config: {}", problems.join("; "))));
        }
        // A secret that cannot be read is a missing grant: say so at configure.
        if let Some(a) = &auth {
            a.header()?;
        }
        Ok(Settings {
            endpoint: endpoint.expect("no problems"),
            timeout,
            body_size_limit,
            honor_timestamps: c.honor_timestamps,
            sample_limit: c.sample_limit,
            rules,
            auth,
        })
    }
}

impl Config {
    fn endpoint(&self, defaults: &Defaults) -> Result<Endpoint, String> {
        let mut endpoint = match (&self.url, &self.address) {
            (Some(_), Some(_)) => {
                return Err("url and targets (__address__) are exclusive: give one".into());
            }
            (Some(url), None) => parse_url(url)?,
            (None, Some(address)) => {
                let scheme = self
                    .scheme_label
                    .as_deref()
                    .or(self.scheme.as_deref())
                    .unwrap_or("http");
                let https = match scheme {
                    "http" => false,
                    "https" => true,
                    s => return Err(format!("scheme = {s:?}: only http and https are supported")),
                };
                let path = self
                    .path_label
                    .as_deref()
                    .or(self.path.as_deref())
                    .unwrap_or(defaults.path);
                if !path.starts_with('/') {
                    return Err(format!("path = {path:?} must start with '/'"));
                }
                check_authority(address)?;
                Endpoint {
                    https,
                    authority: address.clone(),
                    path_with_query: path.to_string(),
                }
            }
            (None, None) => match defaults.url {
                Some(url) => parse_url(url)?,
                None => {
                    return Err("give the endpoint as url = \"http://host:port/metrics\" (with grants.http = [\"host:port\"]) or as targets = [\"host:port\"]".into());
                }
            },
        };
        if self.address.is_none() && (self.scheme.is_some() || self.path.is_some()) {
            return Err("scheme and path go with targets; with url, put them in the url".into());
        }
        let mut query = String::new();
        for (k, v) in &self.params {
            let values = match v {
                OneOrMany::One(s) => std::slice::from_ref(s),
                OneOrMany::Many(v) => v.as_slice(),
            };
            for v in values {
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str(&percent_encode(k));
                query.push('=');
                query.push_str(&percent_encode(v));
            }
        }
        if !query.is_empty() {
            let sep = if endpoint.path_with_query.contains('?') {
                '&'
            } else {
                '?'
            };
            endpoint.path_with_query.push(sep);
            endpoint.path_with_query.push_str(&query);
        }
        Ok(endpoint)
    }
}

fn parse_url(url: &str) -> Result<Endpoint, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("url = {url:?} must start with http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    check_authority(authority).map_err(|e| format!("url = {url:?}: {e}"))?;
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok(Endpoint {
        https,
        authority: authority.to_string(),
        path_with_query: path,
    })
}

fn check_authority(a: &str) -> Result<(), String> {
    if a.is_empty() || a.contains('@') || a.contains(char::is_whitespace) {
        return Err(format!("{a:?} is not a host:port"));
    }
    Ok(())
}

/// Percent-encodes a query component as Go's `url.QueryEscape` does.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A duration of whole `ms`, `s` or `m` (`"500ms"`, `"5s"`); not zero.
pub fn duration(s: &str) -> Option<Duration> {
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        return None;
    };
    let n: u64 = num.parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?)).filter(|d| !d.is_zero())
}

/// A byte size as Prometheus's `body_size_limit` reads it: `B`, `KB`/`KiB`,
/// `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`, all powers of 1024.
pub fn size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: Defaults = Defaults {
        url: None,
        path: "/metrics",
    };

    fn settings(json: &str) -> Result<Settings, String> {
        Settings::from_json(json, &PROM).map_err(|e| match e {
            Error::Config(m) => m,
            e => format!("{e:?}"),
        })
    }

    #[test]
    fn url_is_split_for_wasi_http() {
        let s = settings(r#"{"url":"http://127.0.0.1:9100/metrics"}"#).unwrap();
        assert_eq!(s.endpoint.authority, "127.0.0.1:9100");
        assert_eq!(s.endpoint.path_with_query, "/metrics");
        assert!(!s.endpoint.https);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert!(s.honor_timestamps);
        let s = settings(r#"{"url":"https://h:1","params":{"module":["a b","c"],"x":"y"}}"#).unwrap();
        assert_eq!(s.endpoint.url(), "https://h:1/?module=a+b&module=c&x=y");
    }

    #[test]
    fn host_keys_make_the_url_and_bound_the_timeout() {
        let s = settings(
            r#"{"__address__":"127.0.0.1:8000","__scheme__":"https","__metrics_path__":"/m","__scrape_timeout_ms__":2500,"timeout":"5s"}"#,
        )
        .unwrap();
        assert_eq!(s.endpoint.url(), "https://127.0.0.1:8000/m");
        assert_eq!(s.timeout, Duration::from_millis(2500));
        let s = settings(r#"{"__address__":"h:1","path":"/x","timeout":"1s","__scrape_timeout_ms__":2500}"#).unwrap();
        assert_eq!(s.endpoint.url(), "http://h:1/x");
        assert_eq!(s.timeout, Duration::from_secs(1));
    }

    #[test]
    fn every_problem_is_reported() {
        let e = settings(
            r#"{"timeout":"5","body_size_limit":"10XB","metric_relabel_configs":[{"action":"hashmod","target_label":"x"}]}"#,
        )
        .err()
        .unwrap();
        assert_eq!(
            e,
            "plugin config: give the endpoint as url = \"http://host:port/metrics\" (with grants.http = [\"host:port\"]) or as targets = [\"host:port\"]; \
             timeout = \"5\" is not a duration like \"500ms\", \"5s\" or \"1m\"; \
             body_size_limit = \"10XB\" is not a size like \"10MB\", \"512KiB\" or a byte count; \
             metric_relabel_configs[0]: relabel configuration for hashmod requires non-zero modulus"
        );
        let e = settings(r#"{"url":"http://h:1","bogus":1}"#).err().unwrap();
        assert!(e.starts_with("plugin config: unknown field `bogus`"), "{e}");
        let e = settings(r#"{"url":"ftp://h"}"#).err().unwrap();
        assert_eq!(
            e,
            "plugin config: url = \"ftp://h\" must start with http:// or https://"
        );
    }

    #[test]
    fn authorization_headers_read_their_files() {
        let dir = std::env::temp_dir().join(format!("sonde-scrape-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "open sesame\n").unwrap();
        let json = format!(
            r#"{{"url":"http://h:1","basic_auth":{{"username":"Aladdin","password_file":{:?}}}}}"#,
            pw.display().to_string()
        );
        let s = settings(&json).unwrap();
        assert_eq!(s.auth.unwrap().header().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let json = format!(
            r#"{{"url":"http://h:1","bearer_token_file":{:?}}}"#,
            pw.display().to_string()
        );
        assert_eq!(
            settings(&json).unwrap().auth.unwrap().header().unwrap(),
            "Bearer open sesame"
        );
        let e = Settings::from_json(r#"{"url":"http://h:1","bearer_token_file":"/nonexistent/t"}"#, &PROM)
            .err()
            .unwrap();
        assert!(
            matches!(&e, Error::Denied(m) if m.starts_with("cannot read /nonexistent/t: ") && m.ends_with("(grant its directory with grants.read)")),
            "{e:?}"
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("10MB"), Some(10 << 20));
        assert_eq!(size("512KiB"), Some(512 << 10));
        assert_eq!(size("0"), Some(0));
        assert_eq!(size("1.5MB"), None);
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("0s"), None);
        assert_eq!(duration("1h"), None);
    }
}
