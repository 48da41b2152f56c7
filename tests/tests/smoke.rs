//! The binary answers `--version` and `--help`, and the repository's default
//! plugins.toml brings the node target up.

use sonde_tests::{Exposition, Sonde, SondeOptions, repo_root, run_sonde, test_plugin, toml_str};
use std::time::Duration;

#[test]
fn version_and_help() {
    let cwd = tempfile::tempdir().unwrap();
    let out = run_sonde(cwd.path(), &["--version"]);
    assert!(out.status.success(), "sonde --version failed:\n{}", out.all());
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version should print the version: {}",
        out.all()
    );

    let out = run_sonde(cwd.path(), &["--help"]);
    assert!(out.status.success(), "sonde --help failed:\n{}", out.all());
    for word in ["run", "check"] {
        assert!(
            out.stdout.contains(word),
            "--help should mention `{word}`:\n{}",
            out.stdout
        );
    }
}

/// `sonde` without a subcommand is `sonde run`.
#[test]
fn bare_sonde_runs_the_daemon() {
    let plugins = format!(
        "[synthetic]\nplugin = {}\ninterval = \"2s\"\ntimeout = \"1s\"\n",
        toml_str(test_plugin("synthetic").display().to_string())
    );
    let sonde = Sonde::start_with(SondeOptions {
        plugins_toml: Some(plugins),
        bare: true,
        ..Default::default()
    });
    sonde.wait_health("synthetic", "up", Duration::from_secs(30));
}

#[test]
fn default_plugins_toml_brings_node_up() {
    let plugins = repo_root().join("plugins.toml");
    assert!(plugins.is_file(), "the repository has no default {}", plugins.display());
    let sonde = Sonde::start_with(SondeOptions {
        plugins_file: Some(plugins),
        ..Default::default()
    });
    assert_eq!(sonde.get("/-/healthy").status, 200);
    let node = sonde.wait_health("node", "up", Duration::from_secs(30));
    assert_eq!(node["lastError"], "", "{node}");
    let page = sonde.federate(&["{job=\"node\"}"]);
    let node_samples = page.samples.iter().filter(|s| s.name.starts_with("node_")).count();
    assert!(node_samples > 0, "the node target federates no node_* samples");
    assert_federation_format(&page);

    let metrics = sonde.metrics();
    assert!(metrics.sum("sonde_plugin_collections_total", &[("plugin", "node")]) >= 1.0);
    let rss = metrics
        .value("process_resident_memory_bytes", &[])
        .expect("process_resident_memory_bytes");
    assert!(rss > 0.0);
}

/// Like Prometheus's /federate: every sample carries a millisecond timestamp, every
/// family has a `# TYPE` line, and each target has its `up` and `scrape_*` series.
#[track_caller]
fn assert_federation_format(page: &Exposition) {
    for s in &page.samples {
        let ts = s
            .timestamp
            .unwrap_or_else(|| panic!("federated sample without a timestamp: {s:?}"));
        // Milliseconds, not seconds: after 2001-09-09 in ms is > 1e12.
        assert!(
            ts > 1_000_000_000_000,
            "timestamp of {} is not in milliseconds: {ts}",
            s.name
        );
        assert!(
            page.types.contains_key(page.family_of(&s.name)),
            "no # TYPE line for {}",
            s.name
        );
        assert_eq!(s.label("job"), Some("node"), "{s:?}");
        assert!(s.label("instance").is_some_and(|i| !i.is_empty()), "{s:?}");
    }
    for name in ["up", "scrape_duration_seconds", "scrape_samples_scraped"] {
        assert!(
            page.value(name, &[("job", "node")]).is_some(),
            "/federate has no {name} for node"
        );
        assert_eq!(
            page.types.get(name).map(String::as_str),
            Some("gauge"),
            "# TYPE of {name}"
        );
    }
}
