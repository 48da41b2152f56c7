//! The binary answers `--version` and `--help`, and the repository's default
//! plugins.toml brings the node target up.

use sonde_tests::{Sonde, SondeOptions, repo_root, run_sonde};
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
    assert!(
        sonde
            .metrics()
            .sum("sonde_plugin_collections_total", &[("plugin", "node")])
            >= 1.0
    );
}
