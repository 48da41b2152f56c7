//! `sonde query EXPR`: asks a running sonde over its HTTP API (the same
//! `/api/v1/query` and `/api/v1/query_range` Grafana uses) and prints the result as a
//! table; errors go to stderr with exit code 1.

use crate::api::prom::params::parse_time;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long connecting to sonde may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an answer: the server's longest query timeout (2 min) plus margin.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(130);

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The PromQL expression.
    expr: String,
    /// Evaluation time of an instant query: Unix seconds or RFC 3339 (default: now).
    #[arg(long, conflicts_with_all = ["start", "end", "step"])]
    time: Option<String>,
    /// Start of a range query: Unix seconds or RFC 3339 (default: end minus 5m).
    #[arg(long)]
    start: Option<String>,
    /// End of a range query (default: now).
    #[arg(long)]
    end: Option<String>,
    /// Step of a range query: seconds or a duration such as 15s (default: the range
    /// divided by 250, at least 1s).
    #[arg(long)]
    step: Option<String>,
    /// Query timeout: seconds or a duration (default and maximum: 2m).
    #[arg(long)]
    timeout: Option<String>,
    /// sonde to ask, e.g. http://127.0.0.1:9190 (default: the listen address from
    /// --listen, --config or ./sonde.toml, else 127.0.0.1:9190).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

/// Runs the query; the exit code is 1 on any error (printed to stderr).
pub fn run(args: QueryArgs, config: Option<&Path>, listen: Option<&str>) -> ExitCode {
    match query(&args, config, listen) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn query(args: &QueryArgs, config: Option<&Path>, listen: Option<&str>) -> Result<String> {
    let server = match &args.server {
        Some(s) => Server::parse(s)?,
        None => Server::parse(&default_listen(config, listen)?)?,
    };
    let mut form = vec![("query", args.expr.clone())];
    let range = args.start.is_some() || args.end.is_some() || args.step.is_some();
    let path = if range {
        form.extend(range_params(args));
        "/api/v1/query_range"
    } else {
        form.extend(args.time.clone().map(|t| ("time", t)));
        "/api/v1/query"
    };
    form.extend(args.timeout.clone().map(|t| ("timeout", t)));
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, text) = rt.block_on(server.post_form(path, body))?;
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} answered {status} with something that is not JSON: {}",
            server.base,
            text.trim()
        )
    })?;
    if v["status"] != "success" {
        bail!(
            "{}: {}",
            v["errorType"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or(text.trim())
        );
    }
    render(&v["data"])
}

/// `start`, `end` and `step` with promtool's defaults for the missing ones. Values the
/// user gave are sent as written, so the server judges them (and words the errors).
fn range_params(args: &QueryArgs) -> Vec<(&'static str, String)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let end = args.end.as_deref().map_or(Ok(now), parse_time);
    let start = match (&args.start, &end) {
        (Some(s), _) => parse_time(s),
        (None, Ok(e)) => Ok(e - 5 * 60_000),
        (None, Err(e)) => Err(e.clone()),
    };
    let secs = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let step = match (&args.step, &start, &end) {
        (Some(s), ..) => s.clone(),
        (None, Ok(s), Ok(e)) => (((e - s) / 1000 / 250).max(1)).to_string(),
        _ => "1".into(),
    };
    let start = args
        .start
        .clone()
        .unwrap_or_else(|| start.map_or_else(|_| String::new(), secs));
    let end = args.end.clone().unwrap_or_else(|| secs(now));
    vec![("start", start), ("end", end), ("step", step)]
}

/// `--listen`, else `listen` of the config file (`--config`, or ./sonde.toml when
/// present), else the default address.
fn default_listen(config: Option<&Path>, listen: Option<&str>) -> Result<String> {
    if let Some(l) = listen {
        return Ok(l.to_string());
    }
    let (path, explicit) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("sonde.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if explicit => bail!("cannot read {}: {e}", path.display()),
        Err(_) => return Ok(crate::config::DEFAULT_LISTEN.to_string()),
    };
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    Ok(table
        .get("listen")
        .and_then(|v| v.as_str())
        .unwrap_or(crate::config::DEFAULT_LISTEN)
        .to_string())
}

/// Where sonde listens: `http://host:port[/prefix]` or `host:port`.
#[derive(Debug, PartialEq)]
struct Server {
    /// `host:port` to connect to.
    addr: String,
    /// Path prefix (no trailing slash).
    prefix: String,
    /// For messages.
    base: String,
}

impl Server {
    fn parse(s: &str) -> Result<Server> {
        if s.starts_with("https://") {
            bail!("{s}: sonde query speaks plain HTTP only; use http://");
        }
        let rest = s.strip_prefix("http://").unwrap_or(s);
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            bail!("{s:?} is not a server address; write it like http://127.0.0.1:9190");
        }
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let mut addr = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        // A wildcard listen address is reached over loopback.
        for (any, local) in [("0.0.0.0:", "127.0.0.1:"), ("[::]:", "[::1]:")] {
            if let Some(port) = addr.strip_prefix(any) {
                addr = format!("{local}{port}");
            }
        }
        Ok(Server {
            base: format!("http://{addr}{}", prefix.trim_end_matches('/')),
            addr,
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }

    /// POSTs a form; the status and the body.
    async fn post_form(&self, path: &str, body: String) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: &dyn std::fmt::Display| {
            anyhow!("cannot reach sonde at {}: {e} (is it running? see --server)", self.base)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.addr))
            .await
            .map_err(|_| unreachable(&"connection timed out"))?
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let req = hyper::Request::post(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))?;
        let answer = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&bytes).into_owned()))
        };
        tokio::time::timeout(ANSWER_TIMEOUT, answer)
            .await
            .map_err(|_| anyhow!("POST {url}: no answer within {ANSWER_TIMEOUT:?}"))?
            .with_context(|| format!("POST {url}"))
    }
}

/// `name{a="x", b="y"}` as Prometheus prints a series.
fn series_name(metric: &Value) -> String {
    let Some(m) = metric.as_object() else {
        return "{}".into();
    };
    let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    if labels.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(", "))
    }
}

/// `[t, "v"]` → (`t` as written in the JSON, `v`).
fn point(p: &Value) -> (String, String) {
    let t = p[0].as_number().map_or_else(|| p[0].to_string(), |n| n.to_string());
    let v = p[1].as_str().map_or_else(|| p[1].to_string(), |s| s.to_string());
    (t, v)
}

/// The result as a table: an instant vector is one `series  value` row per series; a
/// matrix is each series' name followed by its `time  value` rows; a scalar or string
/// is its value alone.
fn render(data: &Value) -> Result<String> {
    let result = &data["result"];
    let mut out = String::new();
    match data["resultType"].as_str() {
        Some("vector") => {
            let rows: Vec<(String, String)> = result
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (series_name(&s["metric"]), point(&s["value"]).1))
                .collect();
            let width = rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
            for (name, value) in rows {
                out.push_str(&format!("{name:<width$}  {value}\n"));
            }
        }
        Some("matrix") => {
            for (i, s) in result.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&series_name(&s["metric"]));
                out.push('\n');
                let points: Vec<(String, String)> = s["values"].as_array().into_iter().flatten().map(point).collect();
                let width = points.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
                for (t, v) in points {
                    out.push_str(&format!("  {t:<width$}  {v}\n"));
                }
            }
        }
        Some("scalar") | Some("string") => {
            out.push_str(&point(result).1);
            out.push('\n');
        }
        other => bail!("unexpected result type {other:?} in {data}"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let s = Server::parse("http://127.0.0.1:9190/").unwrap();
        assert_eq!((s.addr.as_str(), s.prefix.as_str()), ("127.0.0.1:9190", ""));
        let s = Server::parse("0.0.0.0:9190").unwrap();
        assert_eq!(s.addr, "127.0.0.1:9190");
        let s = Server::parse("http://[::]:9190/prom").unwrap();
        assert_eq!((s.addr.as_str(), s.prefix.as_str()), ("[::1]:9190", "/prom"));
        assert_eq!(Server::parse("http://example.org").unwrap().addr, "example.org:80");
        assert!(Server::parse("https://x:1").is_err());
    }

    #[test]
    fn tables() {
        let v: Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[
                {"metric":{"__name__":"up","job":"a"},"value":[1,"1"]},
                {"metric":{"job":"long-name"},"value":[1,"NaN"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            render(&v).unwrap(),
            "up{job=\"a\"}        1\n{job=\"long-name\"}  NaN\n"
        );
        let m: Value = serde_json::from_str(
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[1.5,"1"],[10,"0"]]}]}"#,
        )
        .unwrap();
        assert_eq!(render(&m).unwrap(), "up\n  1.5  1\n  10   0\n");
        let s: Value = serde_json::from_str(r#"{"resultType":"scalar","result":[1,"2.5"]}"#).unwrap();
        assert_eq!(render(&s).unwrap(), "2.5\n");
    }
}
