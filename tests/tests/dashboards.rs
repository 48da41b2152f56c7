//! The Grafana dashboards sonde promises to serve unchanged (shared/compat/dashboards:
//! Node Exporter Full, Postgres overview, Redis) against a sonde running the node
//! plugin: every template variable query (`label_values(...)`, `query_result(...)`)
//! runs through the API calls Grafana makes, every panel query (nested rows included)
//! with Grafana's variables substituted evaluates without error, as a range query and,
//! where the panel asks for it, as an instant query; and the node dashboard's panels
//! show data, except those listed in [`NODE_PANELS_MAY_BE_EMPTY`] with the reason.
//! With a real PostgreSQL 15 and redis-server and the postgres and redis plugins, every
//! panel of the Postgres overview and Redis (763) dashboards shows data.
//! Also: Prometheus's own client, `promtool query`, works against sonde.
//!
//! The dashboards directory is `$SONDE_DASHBOARDS_DIR`, else tests/dashboards/ (copies
//! of the team's ../shared/compat/dashboards, so the test does not depend on where the
//! repository is checked out).

use serde_json::Value;
use sonde_tests::postgres::Postgres;
use sonde_tests::prometheus::api::{self, Answer, Data};
use sonde_tests::redis::RedisServer;
use sonde_tests::{Sonde, SondeOptions, http, repo_root, toml_str, wait_for};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The node plugin's collection interval here: short, so rates have samples soon.
const SCRAPE_INTERVAL_S: i64 = 1;
/// Grafana's `$__interval` for the panels (the range query step).
const INTERVAL_S: i64 = 2;
/// The dashboard's time range (`$__range`), ending now.
const RANGE_S: i64 = 30;

/// Node Exporter Full panels (by title) that may show no data on a sonde with the node
/// plugin, and why. Every other panel of that dashboard must return data.
const NODE_PANELS_MAY_BE_EMPTY: &[(&str, &str)] = &[
    // Collectors the node plugin does not implement (plugins/node/README.md); several
    // are off by default in node_exporter too.
    ("CPU Saturation per Core", "schedstat collector not implemented"),
    ("CPU Schedule Timeslices", "schedstat collector not implemented"),
    ("Cooling Device Utilization", "thermal_zone collector not implemented"),
    ("Hardware Fan Speed", "hwmon collector not implemented"),
    ("Hardware Temperature Monitor", "hwmon collector not implemented"),
    ("Power Supply", "powersupplyclass collector not implemented"),
    ("CPU Frequency Scaling", "cpufreq collector not implemented"),
    ("Entropy", "entropy collector not implemented"),
    (
        "IRQ Detail",
        "interrupts collector not implemented (off by default in node_exporter)",
    ),
    ("Time Synchronized Drift", "timex collector not implemented"),
    ("Time PLL Adjust", "timex collector not implemented"),
    ("Time Synchronized Status", "timex collector not implemented"),
    ("PPS Frequency / Stability", "timex collector not implemented"),
    ("PPS Sync Events", "timex collector not implemented"),
    ("PPS Time Accuracy", "timex collector not implemented"),
    (
        "Processes Detailed States",
        "processes collector not implemented (off by default in node_exporter)",
    ),
    (
        "PIDs Number and Limit",
        "processes collector not implemented (off by default in node_exporter)",
    ),
    (
        "Threads Number and Limit",
        "processes collector not implemented (off by default in node_exporter)",
    ),
    (
        "Systemd Units State",
        "systemd collector not implemented (off by default in node_exporter)",
    ),
    (
        "Systemd Sockets Current",
        "systemd collector not implemented (off by default in node_exporter)",
    ),
    (
        "Systemd Sockets Accepted",
        "systemd collector not implemented (off by default in node_exporter)",
    ),
    (
        "Systemd Sockets Refused",
        "systemd collector not implemented (off by default in node_exporter)",
    ),
    ("ARP Entries", "arp collector not implemented"),
    ("NF Conntrack", "conntrack collector not implemented"),
    ("Softnet Packets", "softnet collector not implemented"),
    ("Softnet Out of Quota", "softnet collector not implemented"),
    ("Softnet RPS", "softnet collector not implemented"),
    ("UDP Queue", "udp_queues collector not implemented"),
    (
        "TCP Stat Persistent",
        "tcpstat collector not implemented (off by default in node_exporter)",
    ),
    (
        "TCP Stat Transient",
        "tcpstat collector not implemented (off by default in node_exporter)",
    ),
    (
        "TCP Socket Queue",
        "tcpstat collector not implemented (off by default in node_exporter)",
    ),
    // node_exporter's own process: a plugin has no process of its own to describe.
    (
        "Exporter Process CPU Usage",
        "process_* families describe node_exporter's own process",
    ),
    (
        "Exporter Processes Memory",
        "process_* families describe node_exporter's own process",
    ),
    (
        "Exporter File Descriptor Usage",
        "process_* families describe node_exporter's own process",
    ),
];

fn dashboards_dir() -> PathBuf {
    std::env::var_os("SONDE_DASHBOARDS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/dashboards"))
}

fn load_dashboards() -> Vec<(String, Value)> {
    let dir = dashboards_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot list the dashboards in {} ({e}); set SONDE_DASHBOARDS_DIR",
            dir.display()
        )
    });
    let mut out: Vec<(String, Value)> = entries
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            let name = p.file_name().expect("file name").to_string_lossy().into_owned();
            (
                name,
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// One query of one panel.
struct PanelQuery {
    /// Row and panel titles, outermost first.
    path: Vec<String>,
    expr: String,
    instant: bool,
    range: bool,
}

impl PanelQuery {
    fn panel(&self) -> &str {
        self.path.last().map_or("", |s| s.as_str())
    }
}

/// Every panel target with an `expr`, walking `panels` and (old-style or collapsed)
/// `rows` recursively.
fn panel_queries(node: &Value, path: &[String], out: &mut Vec<PanelQuery>) {
    for key in ["panels", "rows"] {
        for child in node[key].as_array().into_iter().flatten() {
            let mut p = path.to_vec();
            p.push(child["title"].as_str().unwrap_or("(untitled)").to_string());
            panel_queries(child, &p, out);
        }
    }
    for t in node["targets"].as_array().into_iter().flatten() {
        let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
            continue;
        };
        if t["hide"].as_bool() == Some(true) {
            continue;
        }
        let instant = t["instant"].as_bool() == Some(true);
        // Grafana runs a range query unless the target is instant-only.
        let range = t["range"].as_bool() == Some(true) || !instant;
        out.push(PanelQuery {
            path: path.to_vec(),
            expr: expr.to_string(),
            instant,
            range,
        });
    }
}

/// A template variable and the values chosen for it.
struct Variable {
    name: String,
    /// The text Grafana puts in place of `$name`.
    value: String,
    /// Every value the variable's query returned.
    options: Vec<String>,
}

/// Grafana's regex escaping of a value for a multi-value or "All" variable.
fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Substitutes Grafana's built-in and template variables in all their forms
/// (`$name`, `${name}`, `${name:fmt}`, `[[name]]`). Unknown names stay as they are.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (name, len) = if let Some(t) = tail.strip_prefix("${") {
            match t.find('}') {
                Some(end) => (t[..end].split(':').next().unwrap_or(""), end + 3),
                None => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix("[[") {
            match t.find("]]") {
                Some(end) => (t[..end].split(':').next().unwrap_or(""), end + 4),
                None => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix('$') {
            let end = t.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(t.len());
            (&t[..end], end + 1)
        } else {
            ("", 0)
        };
        match vars.get(name) {
            Some(v) if len > 0 => {
                out.push_str(v);
                rest = &tail[len..];
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Grafana's built-in time variables for the test's dashboard range.
fn builtin_vars() -> BTreeMap<String, String> {
    let rate_interval = (INTERVAL_S + SCRAPE_INTERVAL_S).max(4 * SCRAPE_INTERVAL_S);
    [
        ("__interval", format!("{INTERVAL_S}s")),
        ("__interval_ms", format!("{}", INTERVAL_S * 1000)),
        ("__rate_interval", format!("{rate_interval}s")),
        ("__range", format!("{RANGE_S}s")),
        ("__range_s", format!("{RANGE_S}")),
        ("__range_ms", format!("{}", RANGE_S * 1000)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// The values of a variable query, asked the way Grafana's Prometheus data source does:
/// `label_values(sel, label)` through `/api/v1/label/<label>/values?match[]=sel` and,
/// as older Grafana versions do, `/api/v1/series?match[]=sel` (both must agree);
/// `label_values(label)` through `/api/v1/label/<label>/values`; `query_result(q)` and
/// `metrics(re)` through `/api/v1/query` and the `__name__` values. Errors are strings.
fn variable_values(sonde: &Sonde, query: &str) -> Result<Vec<String>, String> {
    let q = query.trim();
    let (start, end) = ((now_s() - RANGE_S).to_string(), now_s().to_string());
    let json = |path: &str, pairs: &[(&str, &str)]| -> Result<Value, String> {
        let r = http::get_with_query(&sonde.url(path), pairs)?;
        let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{path}: not JSON ({e}): {}", r.body))?;
        if r.status != 200 || v["status"] != "success" {
            return Err(format!("{path} {pairs:?} answered {}: {}", r.status, r.body));
        }
        Ok(v["data"].clone())
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    if let Some(args) = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
        let (selector, label) = match args.rfind(',') {
            Some(i) => (Some(args[..i].trim()), args[i + 1..].trim()),
            None => (None, args.trim()),
        };
        let path = format!("/api/v1/label/{label}/values");
        let Some(selector) = selector else {
            return Ok(strings(&json(&path, &[("start", &start), ("end", &end)])?));
        };
        let mut values = strings(&json(
            &path,
            &[("match[]", selector), ("start", &start), ("end", &end)],
        )?);
        let series = json(
            "/api/v1/series",
            &[("match[]", selector), ("start", &start), ("end", &end)],
        )?;
        let mut from_series: Vec<String> = series
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s[label].as_str().map(str::to_string))
            .collect();
        from_series.sort();
        from_series.dedup();
        values.sort();
        if values != from_series {
            return Err(format!(
                "{q}: /api/v1/label/{label}/values gives {values:?}, /api/v1/series gives {from_series:?}"
            ));
        }
        return Ok(values);
    }
    if let Some(expr) = q.strip_prefix("query_result(").and_then(|r| r.strip_suffix(')')) {
        let data = json("/api/v1/query", &[("query", expr), ("time", &end)])?;
        return Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["metric"].to_string())
            .collect());
    }
    if let Some(re) = q.strip_prefix("metrics(").and_then(|r| r.strip_suffix(')')) {
        let names = strings(&json("/api/v1/label/__name__/values", &[])?);
        let matcher = format!("{{__name__=~\"{}\"}}", re.trim());
        json("/api/v1/series", &[("match[]", &matcher)])?;
        return Ok(names);
    }
    Err(format!("unsupported variable query {q:?}"))
}

/// Resolves a dashboard's template variables in order (later ones may use earlier ones).
fn resolve_variables(sonde: &Sonde, dashboard: &Value, problems: &mut Vec<String>) -> Vec<Variable> {
    let mut vars: Vec<Variable> = Vec::new();
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let query = match &v["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or_default().to_string(),
        };
        let options = match v["type"].as_str() {
            Some("query") => {
                let mut known: BTreeMap<String, String> = builtin_vars();
                known.extend(vars.iter().map(|v| (v.name.clone(), v.value.clone())));
                match variable_values(sonde, &substitute(&query, &known)) {
                    Ok(values) => values,
                    Err(e) => {
                        problems.push(format!("variable ${name}: {e}"));
                        Vec::new()
                    }
                }
            }
            Some("custom") => query.split(',').map(|s| s.trim().to_string()).collect(),
            Some("interval") => query.split(',').map(|s| s.trim().to_string()).take(1).collect(),
            Some("constant" | "textbox") => vec![query.clone()],
            _ => continue,
        };
        let multi = v["multi"].as_bool() == Some(true);
        let include_all = v["includeAll"].as_bool() == Some(true);
        let value = if include_all && v["allValue"].as_str().is_some_and(|a| !a.is_empty()) {
            v["allValue"].as_str().expect("checked").to_string()
        } else if multi || include_all {
            let escaped: Vec<String> = options.iter().map(|o| regex_escape(o)).collect();
            if escaped.len() == 1 {
                escaped[0].clone()
            } else {
                format!("({})", escaped.join("|"))
            }
        } else {
            options.first().cloned().unwrap_or_default()
        };
        vars.push(Variable { name, value, options });
    }
    vars
}

/// What one panel query gave.
struct Evaluated {
    query: PanelQuery,
    expr: String,
    /// Series in the range (or instant) result.
    series: usize,
}

fn series_count(a: &Answer) -> usize {
    match a {
        Answer::Success(Data::Vector(v)) => v.len(),
        Answer::Success(Data::Matrix(m)) => m.len(),
        Answer::Success(Data::Scalar(_) | Data::String(..)) => 1,
        _ => 0,
    }
}

/// Evaluates every panel query of `dashboard`; problems (errors, unresolved variables)
/// are appended to `problems`.
fn evaluate(sonde: &Sonde, name: &str, dashboard: &Value, problems: &mut Vec<String>) -> Vec<Evaluated> {
    let vars = resolve_variables(sonde, dashboard, problems);
    let mut known = builtin_vars();
    known.extend(vars.iter().map(|v| (v.name.clone(), v.value.clone())));
    eprintln!(
        "{name}: variables {}",
        vars.iter()
            .map(|v| format!("${}={:?} (of {:?})", v.name, v.value, v.options))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut queries = Vec::new();
    panel_queries(dashboard, &[], &mut queries);
    let base = sonde.url("");
    let end = now_s() * 1000;
    let mut out = Vec::new();
    for q in queries {
        let expr = substitute(&q.expr, &known);
        let where_ = format!("{name} / {}: {}", q.path.join(" / "), expr.replace('\n', " "));
        if expr.contains('$') || expr.contains("[[") {
            problems.push(format!("{where_}: a variable is left unsubstituted"));
        }
        let mut series = 0;
        let mut asks = Vec::new();
        if q.range {
            asks.push(api::Params::Range {
                start: end - RANGE_S * 1000,
                end,
                step: INTERVAL_S * 1000,
            });
        }
        if q.instant {
            asks.push(api::Params::Instant { time: end });
        }
        for params in asks {
            let answer = api::query(&base, &expr, params);
            match &answer {
                Answer::Success(_) => series = series.max(series_count(&answer)),
                other => problems.push(format!("{where_} ({params}): {}", api::summarize(other, 2, 2))),
            }
        }
        out.push(Evaluated { query: q, expr, series });
    }
    out
}

fn node_plugins_toml() -> String {
    let mut read = vec!["/proc", "/sys"];
    if Path::new("/usr/lib/os-release").exists() {
        read.push("/usr/lib");
    }
    let read: Vec<String> = read.iter().map(toml_str).collect();
    format!(
        "[node]\nplugin = \"node\"\ninterval = \"{SCRAPE_INTERVAL_S}s\"\ntimeout = \"{SCRAPE_INTERVAL_S}s\"\n\
         [node.grants]\nread = [{}]\nstatfs = true\n",
        read.join(", ")
    )
}

/// Starts sonde with the node plugin and waits until it has enough samples for rates
/// over `$__rate_interval` across the dashboard range.
fn start_node_sonde() -> Sonde {
    let sonde = Sonde::start(&node_plugins_toml());
    let base = sonde.url("");
    wait_for(Duration::from_secs(60), "10 collections of the node plugin", || {
        let a = api::query(
            &base,
            "count_over_time(up{job=\"node\"}[1m]) >= 10",
            api::Params::Instant { time: now_s() * 1000 },
        );
        (series_count(&a) > 0).then_some(())
    });
    sonde
}

#[test]
fn dashboard_queries_evaluate_and_node_panels_show_data() {
    let sonde = start_node_sonde();
    let mut problems = Vec::new();
    let mut node_panels: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for (name, dashboard) in load_dashboards() {
        let evaluated = evaluate(&sonde, &name, &dashboard, &mut problems);
        total += evaluated.len();
        if name.starts_with("node-exporter-full") {
            for e in &evaluated {
                *node_panels.entry(e.query.panel().to_string()).or_default() += e.series;
                if e.series == 0 {
                    eprintln!(
                        "  no data: {} / {}",
                        e.query.path.join(" / "),
                        e.expr.replace('\n', " ")
                    );
                }
            }
        }
    }
    assert!(
        !node_panels.is_empty(),
        "the node dashboard (node-exporter-full-*.json) is missing"
    );
    let may_be_empty: BTreeMap<&str, &str> = NODE_PANELS_MAY_BE_EMPTY.iter().copied().collect();
    let empty: Vec<&String> = node_panels.iter().filter(|(_, n)| **n == 0).map(|(p, _)| p).collect();
    eprintln!(
        "{total} panel queries evaluated; node dashboard: {} panels, {} without data ({} allowed)",
        node_panels.len(),
        empty.len(),
        may_be_empty.len()
    );
    for p in &empty {
        eprintln!(
            "  empty panel {p:?}: {}",
            may_be_empty.get(p.as_str()).unwrap_or(&"NOT ALLOWED")
        );
        if !may_be_empty.contains_key(p.as_str()) {
            problems.push(format!("node dashboard panel {p:?} shows no data"));
        }
    }
    for p in may_be_empty.keys() {
        if !node_panels.contains_key(*p) {
            problems.push(format!(
                "NODE_PANELS_MAY_BE_EMPTY names {p:?}, which is not a panel of the node dashboard"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Panels of the Postgres overview and Redis dashboards that may show no data with
/// one standalone server of each, and why. Empty: every panel of both shows data.
const DB_PANELS_MAY_BE_EMPTY: &[(&str, &str)] = &[];

/// Starts PostgreSQL (with an application database `app` that sees traffic, as the
/// Postgres overview's `$db` excludes `postgres` and `template*`) and Redis, and sonde
/// with the postgres and redis plugins collecting every second.
#[test]
fn postgres_and_redis_panels_show_data() {
    let pg = Postgres::start();
    let pwfile = pg.monitor_role("sonde_monitor", "pw-dashboards-3b1");
    pg.exec("CREATE DATABASE app");
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "plain", "1"]);
    redis.cli(&["SET", "expiring", "1", "EX", "3600"]);
    redis.cli(&["GET", "plain"]);
    redis.cli(&["GET", "missing"]);
    let sonde_toml = format!(
        "[connections.main]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"postgres\"\nuser = \"sonde_monitor\"\n\
         sslmode = \"disable\"\npassword_file = {}\n",
        pg.port,
        toml_str(pwfile.display().to_string())
    );
    let plugins_toml = format!(
        "[postgres]\nplugin = \"postgres\"\ninterval = \"{SCRAPE_INTERVAL_S}s\"\n[postgres.grants]\nsql = [\"main\"]\n\
         [postgres.config]\nconnection = \"main\"\n\
         [redis]\nplugin = \"redis\"\ninterval = \"{SCRAPE_INTERVAL_S}s\"\n[redis.grants]\ntcp = [{addr}]\n\
         [redis.config]\ntargets = [{addr}]\n",
        addr = toml_str(redis.addr())
    );
    let sonde = Sonde::start_with(SondeOptions {
        sonde_toml: Some(sonde_toml),
        plugins_toml: Some(plugins_toml),
        ..Default::default()
    });
    // Traffic on `app` while samples accumulate, so its rates are defined.
    let app_traffic = || {
        let sql = "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1); \
                   SELECT count(*) FROM t; UPDATE t SET x = 2; DELETE FROM t WHERE x = 3";
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "app",
            ])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", sonde_tests::postgres::SUPERUSER_PASSWORD)
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let base = sonde.url("");
    wait_for(Duration::from_secs(60), "10 collections of both plugins", || {
        app_traffic();
        std::thread::sleep(Duration::from_millis(300));
        let a = api::query(
            &base,
            "count_over_time(up{job=~\"postgres|redis\"}[1m]) >= 10",
            api::Params::Instant { time: now_s() * 1000 },
        );
        (series_count(&a) == 2).then_some(())
    });
    let mut problems = Vec::new();
    let mut panels: BTreeMap<String, usize> = BTreeMap::new();
    let dashboards = load_dashboards();
    for (name, dashboard) in &dashboards {
        if !(name.starts_with("postgres") || name.starts_with("redis")) {
            continue;
        }
        for e in evaluate(&sonde, name, dashboard, &mut problems) {
            let panel = format!("{name} / {}", e.query.path.join(" / "));
            *panels.entry(panel).or_default() += e.series;
            if e.series == 0 {
                eprintln!(
                    "  no data: {name} / {}: {}",
                    e.query.path.join(" / "),
                    e.expr.replace('\n', " ")
                );
            }
        }
    }
    assert!(
        panels.keys().any(|p| p.starts_with("postgres")) && panels.keys().any(|p| p.starts_with("redis")),
        "the Postgres or Redis dashboard is missing: {panels:?}"
    );
    let may_be_empty: BTreeMap<&str, &str> = DB_PANELS_MAY_BE_EMPTY.iter().copied().collect();
    eprintln!("Postgres and Redis dashboards: {} panels", panels.len());
    for (p, n) in &panels {
        if *n == 0 && !may_be_empty.contains_key(p.as_str()) {
            problems.push(format!("panel {p:?} shows no data"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Runs `promtool query <args> <sonde URL> [tail]`; its stdout, asserting success.
#[track_caller]
fn promtool_query(sonde: &Sonde, sub: &str, flags: &[&str], tail: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(["query", sub])
        .args(flags)
        .arg(sonde.url(""))
        .args(tail)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool (scripts/test installs `prometheus`): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool query {sub} {flags:?} {tail:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn promtool_queries_sonde() {
    let sonde = start_node_sonde();
    let up = promtool_query(&sonde, "instant", &[], &["up"]);
    assert!(
        up.contains("up{") && up.contains("job=\"node\"") && up.contains("=> 1 @["),
        "{up}"
    );

    let now = now_s();
    let (start, end) = (format!("--start={}", now - 10), format!("--end={now}"));
    let range = promtool_query(
        &sonde,
        "range",
        &[&start, &end, "--step=1s"],
        &["rate(node_cpu_seconds_total[5s])"],
    );
    assert!(
        range.contains("node_cpu_seconds_total") || range.contains("cpu=\""),
        "{range}"
    );

    let series = promtool_query(&sonde, "series", &["--match=node_uname_info"], &[]);
    assert!(
        series.contains("node_uname_info") && series.contains("nodename="),
        "{series}"
    );

    let labels = promtool_query(&sonde, "labels", &[], &["job"]);
    assert!(labels.lines().any(|l| l.trim() == "node"), "{labels}");
}
