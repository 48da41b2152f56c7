//! The node plugin against Debian's `prometheus-node-exporter` (1.5) on the same
//! machine, both restricted to the same collectors: every family both emit has the
//! same name, type and label names; slowly changing values agree; and the plugin
//! covers node_exporter's families for these collectors.

use sonde_tests::{Exposition, External, Sonde, exposition, http, toml_str, wait_for};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// The collectors compared (node_exporter's names; the plugin uses the same).
const COLLECTORS: &[&str] = &[
    "cpu",
    "meminfo",
    "loadavg",
    "filesystem",
    "diskstats",
    "netdev",
    "stat",
    "uname",
    "time",
    "filefd",
    "vmstat",
    "netstat",
    "sockstat",
    "pressure",
    "os",
];

/// Debian patches some of node_exporter's defaults (it skips `lo` and everything
/// under /run, /mnt and /media); the plugin follows upstream 1.5, so the exporter is
/// given upstream's values back.
const UPSTREAM_DEFAULTS: &[&str] = &[
    "--collector.netdev.device-exclude=",
    "--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
];

/// Share of node_exporter's families (for the collectors above, on this machine)
/// that the plugin must emit. The plugin aims at all of them.
const MIN_COVERAGE: f64 = 1.0;

/// Relative tolerance for values that change slowly or never.
const TOLERANCE: f64 = 0.01;

/// node_exporter families that describe node_exporter itself, not the host.
fn is_exporter_own(family: &str) -> bool {
    family.starts_with("node_exporter_") || !family.starts_with("node_")
}

/// sonde's per-target series, not the plugin's.
fn is_sonde_own(family: &str) -> bool {
    family == "up" || family.starts_with("scrape_")
}

fn plugins_toml() -> String {
    // Grant what node_exporter reads, where it exists on this machine (a missing
    // directory cannot be granted): os-release lives in /usr/lib (/etc/os-release
    // links there), udev's database only where udev runs.
    let mut read = vec!["/proc", "/sys"];
    if Path::new("/usr/lib/os-release").exists() {
        read.push("/usr/lib");
    }
    if Path::new("/run/udev/data").is_dir() {
        read.push("/run/udev/data");
    }
    let read: Vec<String> = read.iter().map(toml_str).collect();
    let collectors: Vec<String> = COLLECTORS.iter().map(toml_str).collect();
    format!(
        "[node]\nplugin = \"node\"\ninterval = \"2s\"\ntimeout = \"2s\"\n\
         [node.grants]\nread = [{}]\nstatfs = true\n\
         [node.config]\ncollectors = [{}]\n",
        read.join(", "),
        collectors.join(", ")
    )
}

#[test]
fn node_plugin_matches_node_exporter() {
    let exporter = External::node_exporter(COLLECTORS, UPSTREAM_DEFAULTS);
    let sonde = Sonde::start(&plugins_toml());
    sonde.wait_health("node", "up", Duration::from_secs(30));

    // A mount or interface can come or go between the two scrapes; a real difference
    // persists, so compare up to ATTEMPTS snapshots and report the last one.
    let mut report = compare(&exporter, &sonde);
    for attempt in 2..=ATTEMPTS {
        if report.problems.is_empty() {
            break;
        }
        println!(
            "snapshot {} differs, comparing again:\n{}",
            attempt - 1,
            report.problems.join("\n")
        );
        report = compare(&exporter, &sonde);
    }
    println!(
        "node plugin coverage: {}/{} node_exporter families ({:.1}%)",
        report.covered,
        report.total,
        report.coverage() * 100.0
    );
    println!("missing: {:?}", report.missing);
    println!("only in the plugin: {:?}", report.extra);
    assert!(
        report.problems.is_empty(),
        "the node plugin differs from node_exporter:\n{}",
        report.problems.join("\n")
    );
    assert!(
        report.coverage() >= MIN_COVERAGE,
        "coverage {:.1}% < {:.1}%; missing {:?}",
        report.coverage() * 100.0,
        MIN_COVERAGE * 100.0,
        report.missing
    );

    let idle = sonde.federate(&["node_cpu_seconds_total{cpu=\"0\",mode=\"idle\",job=\"node\"}"]);
    let labels = [("cpu", "0"), ("mode", "idle"), ("job", "node")];
    let s = idle.find("node_cpu_seconds_total", &labels).next();
    let s = s.expect("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} in /federate");
    assert!(s.value > 0.0 && s.timestamp.is_some(), "{s:?}");
    assert_eq!(
        idle.types.get("node_cpu_seconds_total").map(String::as_str),
        Some("counter")
    );
}

/// Snapshots compared before giving up on a difference.
const ATTEMPTS: usize = 3;

struct Report {
    covered: usize,
    total: usize,
    missing: Vec<String>,
    extra: Vec<String>,
    problems: Vec<String>,
}

impl Report {
    fn coverage(&self) -> f64 {
        self.covered as f64 / self.total.max(1) as f64
    }
}

/// Scrapes node_exporter, waits for the plugin's next collection, and compares.
fn compare(exporter: &External, sonde: &Sonde) -> Report {
    let ne_page = http::get(&exporter.url("/metrics")).expect("node_exporter /metrics");
    assert_eq!(ne_page.status, 200);
    let ne = exposition::parse(&ne_page.body).expect("node_exporter's page parses");
    let before = sonde.target("node").expect("node target")["lastScrape"].clone();
    wait_for(Duration::from_secs(30), "the next collection of node", || {
        let t = sonde.target("node").expect("node target");
        (t["lastScrape"] != before).then_some(())
    });
    let ours = sonde.federate(&["{job=\"node\"}"]);

    let ne_families: BTreeSet<&String> = ne.types.keys().filter(|f| !is_exporter_own(f)).collect();
    let our_families: BTreeSet<&String> = ours.types.keys().filter(|f| !is_sonde_own(f)).collect();
    let both: Vec<&String> = ne_families.intersection(&our_families).copied().collect();
    let mut problems = Vec::new();
    let ne_labels = ne.label_names_by_family(&[]);
    let our_labels = ours.label_names_by_family(&["job", "instance"]);
    for family in &both {
        let (a, b) = (&ne.types[*family], &ours.types[*family]);
        if a != b {
            problems.push(format!("{family}: type {b}, node_exporter says {a}"));
        }
        let (a, b) = (ne_labels.get(*family), our_labels.get(*family));
        if a != b {
            problems.push(format!("{family}: labels {b:?}, node_exporter has {a:?}"));
        }
    }
    problems.extend(series_mismatches(&ne, &ours, &both));
    problems.extend(value_mismatches(&ne, &ours));
    Report {
        covered: both.len(),
        total: ne_families.len(),
        missing: ne_families.difference(&our_families).map(|s| s.to_string()).collect(),
        extra: our_families.difference(&ne_families).map(|s| s.to_string()).collect(),
        problems,
    }
}

/// Values that cannot move by 1% between the two scrapes.
fn value_mismatches(ne: &Exposition, ours: &Exposition) -> Vec<String> {
    let mut problems = Vec::new();
    let mut compare = |what: String, a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()) => {}
        _ => problems.push(format!("{what}: plugin {b:?}, node_exporter {a:?}")),
    };
    for name in ["node_memory_MemTotal_bytes", "node_boot_time_seconds"] {
        compare(name.to_string(), ne.value(name, &[]), ours.value(name, &[]));
    }
    let cpus = |e: &Exposition| {
        let set: BTreeSet<&str> = e
            .find("node_cpu_seconds_total", &[])
            .filter_map(|s| s.label("cpu"))
            .collect();
        Some(set.len() as f64).filter(|n| *n > 0.0)
    };
    compare("number of CPUs".into(), cpus(ne), cpus(ours));
    let sizes = |e: &Exposition| -> BTreeMap<String, f64> {
        let by_mount = e.find("node_filesystem_size_bytes", &[]);
        by_mount
            .map(|s| (s.label("mountpoint").unwrap_or_default().to_string(), s.value))
            .collect()
    };
    let (ne_sizes, our_sizes) = (sizes(ne), sizes(ours));
    for (mount, size) in &ne_sizes {
        compare(
            format!("node_filesystem_size_bytes{{mountpoint={mount:?}}}"),
            Some(*size),
            our_sizes.get(mount).copied(),
        );
    }
    problems
}

/// Families whose series (label sets, less job/instance) differ: a CPU, device,
/// mount point or mode one side has and the other lacks.
fn series_mismatches(ne: &Exposition, ours: &Exposition, families: &[&String]) -> Vec<String> {
    let series = |e: &Exposition, family: &str| -> BTreeSet<String> {
        let of_family = e.samples.iter().filter(|s| e.family_of(&s.name) == family);
        of_family
            .map(|s| {
                let labels = s.labels.iter().filter(|(n, _)| n != "job" && n != "instance");
                let labels: Vec<String> = labels.map(|(n, v)| format!("{n}={v:?}")).collect();
                format!("{}{{{}}}", s.name, labels.join(","))
            })
            .collect()
    };
    let mut problems = Vec::new();
    for family in families {
        let (a, b) = (series(ne, family), series(ours, family));
        let only_ne: Vec<&String> = a.difference(&b).take(5).collect();
        let only_ours: Vec<&String> = b.difference(&a).take(5).collect();
        if !only_ne.is_empty() || !only_ours.is_empty() {
            problems.push(format!(
                "{family}: series only in node_exporter {only_ne:?}, only in the plugin {only_ours:?}"
            ));
        }
    }
    problems
}
