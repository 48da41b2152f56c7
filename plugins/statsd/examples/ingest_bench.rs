//! Native micro-benchmark of the statsd plugin's ingest path (no host, no wasm):
//! `cargo run --release -p sonde-plugin-statsd --example ingest_bench`.
//!
//! Prints ns per line for known series (the cached path: what a steady StatsD stream
//! costs), for first sight of every line (the slow path: parse, mapping, series
//! creation), and for one collection of all series.

use sonde_plugin_sdk::Collection;
use sonde_plugin_statsd::Config;
use std::hint::black_box;
use std::time::Instant;

const MAPPING: &str = r#"
mappings:
- match: "app.*.requests"
  name: "app_requests_total"
  labels: {service: "$1"}
- match: "app.*.latency"
  name: "app_latency_seconds"
  observer_type: histogram
  labels: {service: "$1"}
- match: "app.*.queue"
  name: "app_queue_depth"
  labels: {service: "$1"}
"#;

/// `series` distinct series of three kinds, with DogStatsD tags on a third of them,
/// packed into datagrams of at most ~1400 bytes (a typical StatsD client's MTU).
fn datagrams(series: usize, rounds: usize) -> (Vec<Vec<u8>>, usize) {
    let mut lines = Vec::new();
    for r in 0..rounds {
        for i in 0..series {
            let svc = i / 3;
            let line = match i % 3 {
                0 => format!("app.svc{svc}.requests:1|c"),
                1 => format!(
                    "app.svc{svc}.latency:{}|ms|#env:prod,zone:z{}",
                    3 + (r * 7 + i) % 250,
                    i % 4
                ),
                _ => format!("app.svc{svc}.queue:{}|g", (r + i) % 100),
            };
            lines.push(line);
        }
    }
    let n = lines.len();
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for l in lines {
        if cur.len() + l.len() + 1 > 1400 {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(l.as_bytes());
        cur.push(b'\n');
    }
    out.push(cur);
    (out, n)
}

fn main() {
    let config = Config {
        mapping: Some(MAPPING.into()),
        mapping_file: None,
        max_series: 1_000_000,
        max_line_length: 4096,
        parse_dogstatsd_tags: true,
        parse_influxdb_tags: true,
        parse_librato_tags: true,
        parse_signalfx_tags: true,
    };
    let series = 3000;
    let mut agg = config.aggregator().expect("config");

    // First sight: every line shape is new.
    let (cold, cold_lines) = datagrams(series, 1);
    let t = Instant::now();
    for d in &cold {
        agg.ingest(d, 0);
    }
    let cold_ns = t.elapsed().as_nanos() as f64 / cold_lines as f64;

    // Steady state: known series, new values.
    let (hot, hot_lines) = datagrams(series, 1000);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for d in &hot {
            agg.ingest(black_box(d), 1);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / hot_lines as f64);
    }

    let mut reg = Collection::native_registry();
    let mut collect_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        reg.collect(|out| {
            agg.collect(out, 2);
            Ok(())
        })
        .expect("collect");
        collect_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (rss_counters, rss_histograms) = (memory_per_series("c"), memory_per_series("ms"));
    println!(
        "statsd ingest, native, {series} series, {} datagrams of ~1400 bytes:",
        hot.len()
    );
    println!(
        "  known series (cached path): {best:.1} ns/line ({:.1} M lines/s on one core)",
        1e3 / best
    );
    println!("  first sight (slow path):    {cold_ns:.0} ns/line");
    println!(
        "  memory per series (100k, 2 tags, after a collection): counter {rss_counters} B, timer histogram {rss_histograms} B"
    );
    println!(
        "  collect of {} series: first {:.2} ms, then {:.2} ms",
        agg.store().live(),
        collect_ms[0],
        collect_ms[2]
    );
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<usize>().ok())
        .unwrap_or(0);
    kb * 1024
}

/// Resident memory per series for 100k series of one StatsD type (`c`, or `ms` as a
/// histogram with the default buckets), counted with the ingest cache and the SDK
/// registry of one collection.
fn memory_per_series(kind: &str) -> usize {
    let n = 100_000;
    let mapping = "defaults:\n  observer_type: histogram\n";
    let json = format!(r#"{{"max_series": {n}, "mapping": {mapping:?}}}"#);
    let config: Config = sonde_plugin_sdk::parse_config(&json).expect("config");
    let before = rss_bytes();
    let mut agg = config.aggregator().expect("config");
    for i in 0..n {
        let line = format!("mem.metric{}:1|{kind}|#host:host{},region:r{}", i % 100, i / 100, i % 7);
        agg.ingest(line.as_bytes(), 0);
    }
    let mut reg = Collection::native_registry();
    reg.collect(|out| {
        agg.collect(out, 0);
        Ok(())
    })
    .expect("collect");
    let per = rss_bytes().saturating_sub(before) / n;
    drop(reg);
    drop(agg);
    per
}
