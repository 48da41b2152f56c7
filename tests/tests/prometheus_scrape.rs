//! The prometheus (scrape) plugin: scraping Debian's node_exporter it must store the
//! same series as Prometheus 2.42 scraping the same exporter; it reads the
//! OpenMetrics page of the Python client library (`_created`, info, stateset,
//! escapes, `# EOF`); and a target that
//! answers 404, sends a malformed page or a body over `body_size_limit` is down with
//! the reason as `lastError`.

use sonde_tests::{External, Sonde, exposition, http, wait_for};
use std::collections::BTreeSet;
use std::time::Duration;

/// The Accept header of Prometheus 2.42, which the plugin sends.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Series Prometheus and sonde each add themselves (not scraped).
fn is_scrape_own(name: &str) -> bool {
    name == "up" || name.starts_with("scrape_")
}

/// `name{labels}` of every scraped series of `job`, target labels left out.
fn series_set(page: &str, job: &str) -> BTreeSet<String> {
    let e = exposition::parse(page).unwrap_or_else(|e| panic!("federate page does not parse: {e}"));
    e.samples
        .iter()
        .filter(|s| s.label("job") == Some(job) && !is_scrape_own(&s.name))
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(n, _)| n != "job" && n != "instance")
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect();
            format!("{}{{{}}}", s.name, labels.join(","))
        })
        .collect()
}

/// Prometheus 2.42 scraping `target` every second as job `node`.
fn prometheus_scraping(target: &str) -> (External, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("sonde-e2e-prom-scrape-")
        .tempdir()
        .expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let data = dir.path().join("data");
    let server = External::start(
        "prometheus",
        |port| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", data.display()),
                "--log.level=warn".into(),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
        "/-/ready",
    );
    (server, dir)
}

#[test]
fn prometheus_plugin_stores_what_prometheus_stores() {
    let exporter = External::node_exporter(&["cpu", "meminfo", "loadavg", "uname"], &[]);
    let addr = format!("127.0.0.1:{}", exporter.port);
    let (prom, _dir) = prometheus_scraping(&addr);
    let sonde = Sonde::start(&format!(
        "[node]\nplugin = \"prometheus\"\ninterval = \"1s\"\ntimeout = \"1s\"\ntargets = [\"{addr}\"]\n"
    ));
    sonde.wait_health("node", "up", Duration::from_secs(60));
    // Both have scraped a few times.
    wait_for(Duration::from_secs(60), "Prometheus scraping node_exporter", || {
        let r = http::get_with_query(&prom.url("/api/v1/query"), &[("query", "count(up{job=\"node\"} == 1)")]).ok()?;
        r.body.contains("\"1\"").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));

    let fed = |url: String| {
        let r = http::get_with_query(&url, &[("match[]", "{job=\"node\"}")]).expect("federate");
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        r.body
    };
    let theirs = series_set(&fed(prom.url("/federate")), "node");
    let ours = series_set(&fed(sonde.url("/federate")), "node");
    assert!(theirs.len() > 50, "Prometheus has only {} series", theirs.len());
    // Series that come and go between two scrapes (a GC, a new HTTP status code) may
    // differ; the page's fixed part must be identical.
    let volatile = |s: &&String| s.starts_with("go_gc_") || s.starts_with("promhttp_");
    let only_theirs: Vec<&String> = theirs.difference(&ours).filter(|s| !volatile(s)).collect();
    let only_ours: Vec<&String> = ours.difference(&theirs).filter(|s| !volatile(s)).collect();
    assert!(
        only_theirs.is_empty() && only_ours.is_empty(),
        "only in Prometheus: {only_theirs:#?}\nonly in sonde: {only_ours:#?}"
    );
    println!("{} series identical", theirs.intersection(&ours).count());
}

#[test]
fn a_target_in_trouble_is_down_with_the_reason() {
    let dir = tempfile::Builder::new()
        .prefix("sonde-e2e-scrape-files-")
        .tempdir()
        .expect("temp dir");
    std::fs::write(dir.path().join("bad.txt"), "ok 1\nbroken{a=\"b\"}\n").expect("write bad.txt");
    std::fs::write(dir.path().join("big.txt"), "x 1\n".repeat(1000)).expect("write big.txt");
    let root = dir.path().display().to_string();
    let files = External::start(
        "python3",
        |port| {
            vec![
                "-m".into(),
                "http.server".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--directory".into(),
                root.clone(),
            ]
        },
        "/",
    );
    let addr = format!("127.0.0.1:{}", files.port);
    let entry = |name: &str, config: &str| {
        format!(
            "[{name}]\nplugin = \"prometheus\"\ninterval = \"1s\"\ntimeout = \"1s\"\ntargets = [\"{addr}\"]\n[{name}.config]\n{config}\n"
        )
    };
    let toml = [
        entry("missing", "path = \"/nothing\""),
        entry("bad", "path = \"/bad.txt\""),
        entry("big", "path = \"/big.txt\"\nbody_size_limit = \"1KB\""),
        entry("fine", "path = \"/big.txt\""),
    ]
    .join("\n");
    let sonde = Sonde::start(&toml);
    let expect = [
        ("missing", "server returned HTTP status 404 Not Found"),
        ("bad", "/bad.txt: line 2: expected a value after the labels"),
        ("big", "body size limit exceeded"),
    ];
    for (job, want) in expect {
        let t = sonde.wait_health(job, "down", Duration::from_secs(60));
        let err = t["lastError"].as_str().unwrap_or("");
        assert!(err.contains(want), "{job}: lastError {err:?} should contain {want:?}");
    }
    sonde.wait_health("fine", "up", Duration::from_secs(60));
}

#[test]
fn file_sd_labels_choose_scheme_and_path() {
    let dir = tempfile::Builder::new()
        .prefix("sonde-e2e-scrape-sd-")
        .tempdir()
        .expect("temp dir");
    std::fs::create_dir(dir.path().join("www")).expect("mkdir www");
    std::fs::write(dir.path().join("www/app.txt"), "# TYPE y gauge\ny{a=\"1\"} 5\n").expect("write app.txt");
    let root = dir.path().join("www").display().to_string();
    let files = External::start(
        "python3",
        |port| {
            vec![
                "-m".into(),
                "http.server".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--directory".into(),
                root.clone(),
            ]
        },
        "/",
    );
    let sd = dir.path().join("sd.yml");
    std::fs::write(
        &sd,
        format!(
            "- targets: [\"127.0.0.1:{}\"]\n  labels:\n    __metrics_path__: /app.txt\n    __scheme__: http\n    team: a\n",
            files.port
        ),
    )
    .expect("write sd.yml");
    let sonde = Sonde::start(&format!(
        "[sd]\nplugin = \"prometheus\"\ninterval = \"1s\"\ntimeout = \"1s\"\nfile_sd = [\"{}\"]\n",
        sd.display()
    ));
    sonde.wait_health("sd", "up", Duration::from_secs(60));
    let page = sonde.federate(&["y"]);
    let s = page.find("y", &[("a", "1"), ("team", "a"), ("job", "sd")]).next();
    assert_eq!(s.map(|s| s.value), Some(5.0), "{:?}", page.samples);
}

/// A prometheus_client (Python) process with a few metrics of every kind, serving
/// OpenMetrics to clients that ask for it.
const CLIENT: &str = r#"
import sys, time
from prometheus_client import start_http_server, Counter, Histogram, Info, Enum
c = Counter("demo_requests", "Requests \\ served.", ["path"])
c.labels("/a").inc(3)
c.labels('/b"q').inc()
h = Histogram("demo_latency_seconds", "Latency.", buckets=(0.1, 0.5))
h.observe(0.3)
Info("demo_build", "Build.").info({"version": "1.2"})
Enum("demo_state", "State.", states=["up", "down"]).state("up")
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(60)
"#;

#[test]
fn openmetrics_from_the_python_client() {
    let python = sonde_tests::django::venv_python().display().to_string();
    let client = External::start(&python, |port| vec!["-c".into(), CLIENT.into(), port.to_string()], "/");
    let addr = format!("127.0.0.1:{}", client.port);
    let om = ureq::get(&client.url("/metrics"))
        .header("Accept", ACCEPT)
        .call()
        .expect("client /metrics");
    let content_type = om
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "answered {content_type}"
    );
    let sonde = Sonde::start(&format!(
        "[demo]\nplugin = \"prometheus\"\ninterval = \"1s\"\ntimeout = \"1s\"\ntargets = [\"{addr}\"]\n"
    ));
    sonde.wait_health("demo", "up", Duration::from_secs(60));
    let page = sonde.federate(&["{job=\"demo\",__name__=~\"demo_.*\"}"]);
    let value = |name: &str, labels: &[(&str, &str)]| page.value(name, labels);
    assert_eq!(value("demo_requests_total", &[("path", "/a")]), Some(3.0));
    assert_eq!(value("demo_requests_total", &[("path", "/b\"q")]), Some(1.0));
    assert!(value("demo_requests_created", &[("path", "/a")]).is_some_and(|t| t > 1.7e9));
    assert_eq!(value("demo_latency_seconds_bucket", &[("le", "0.1")]), Some(0.0));
    assert_eq!(value("demo_latency_seconds_bucket", &[("le", "0.5")]), Some(1.0));
    assert_eq!(value("demo_latency_seconds_count", &[]), Some(1.0));
    assert_eq!(value("demo_build_info", &[("version", "1.2")]), Some(1.0));
    assert_eq!(value("demo_state", &[("demo_state", "up")]), Some(1.0));
    assert_eq!(value("demo_state", &[("demo_state", "down")]), Some(0.0));
    assert_eq!(
        page.types.get("demo_requests_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        page.types.get("demo_latency_seconds").map(String::as_str),
        Some("histogram")
    );
    // HELP with its escape undone, through the metadata API (federation carries none).
    let meta = sonde.get_ok("/api/v1/metadata?metric=demo_requests_total");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("metadata JSON");
    assert_eq!(
        meta["data"]["demo_requests_total"][0]["help"], "Requests \\ served.",
        "{meta}"
    );
    assert_eq!(meta["data"]["demo_requests_total"][0]["type"], "counter", "{meta}");
}
