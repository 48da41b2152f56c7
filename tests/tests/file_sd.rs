//! `targets = [...]` and Prometheus file_sd in plugins.toml: one plugin instance per
//! address, targets added and removed while sonde runs (the removed one's series go
//! stale at once, the others keep running), and a broken file keeping its targets.
//! The synthetic test plugin reports the `__address__` it was given; the prometheus
//! plugin scrapes real node_exporters listed in a file.

use serde_json::Value;
use sonde_tests::{External, Sonde, SondeOptions, plugin, test_plugin, toml_str, wait_for, wait_until};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// file_sd_refresh of the test entry; a change must show within about this plus an
/// interval.
const REFRESH: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(30);

fn plugins_toml() -> String {
    let synthetic = toml_str(test_plugin("synthetic").display().to_string());
    format!(
        "[web]\nplugin = {synthetic}\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         targets = [\"127.0.0.1:1000\"]\nfile_sd = [\"sd/*.yml\", \"sd/*.json\"]\nfile_sd_refresh = \"1s\"\n\
         labels = {{ env = \"test\", team = \"entry\" }}\n\
         [web.config]\nseries = 1\nlabels = 0\n"
    )
}

/// Replaces `path` atomically, as a discovery tool should (a reader never sees half).
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn targets_by_name(sonde: &Sonde) -> Vec<(String, Value)> {
    let v = sonde.targets();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["labels"]["instance"].as_str().unwrap_or_default().to_string(),
                t.clone(),
            )
        })
        .collect()
}

fn instances(sonde: &Sonde) -> Vec<String> {
    let mut v: Vec<String> = targets_by_name(sonde).into_iter().map(|(i, _)| i).collect();
    v.sort();
    v
}

/// `query` at `time` (or now): the vector's samples as (labels, value).
fn instant(sonde: &Sonde, query: &str, time: Option<f64>) -> Vec<(Value, f64)> {
    let t = time.map(|t| format!("{t:.3}"));
    let mut q = vec![("query", query)];
    if let Some(t) = &t {
        q.push(("time", t));
    }
    let r = sonde.get_with_query("/api/v1/query", &q);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"].clone(), s["value"][1].as_str().unwrap().parse().unwrap()))
        .collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn collections(sonde: &Sonde, target: &str) -> f64 {
    sonde
        .metrics()
        .value("sonde_plugin_collections_total", &[("plugin", target)])
        .unwrap_or(0.0)
}

#[test]
fn file_sd_targets_come_and_go_at_run_time() {
    let dir = tempfile::Builder::new().prefix("sonde-e2e-file-sd-").tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sd")).unwrap();
    let web = dir.path().join("sd/web.yml");
    write_atomic(
        &web,
        "- targets: ['127.0.0.1:1001', '127.0.0.1:1000']\n  labels:\n    team: group\n    __scheme__: https\n    __metrics_path__: /m\n",
    );
    std::fs::write(dir.path().join("plugins.toml"), plugins_toml()).unwrap();
    let sonde = Sonde::start_with(SondeOptions {
        plugins_file: Some(dir.path().join("plugins.toml")),
        ..Default::default()
    });

    // The static target and the file's new one, each its own instance, listed once
    // sonde is ready; the file's duplicate of the static address is kept once.
    assert_eq!(instances(&sonde), ["127.0.0.1:1000", "127.0.0.1:1001"]);
    let one = sonde.wait_health("web", "up", WAIT);
    assert_eq!(one["scrapePool"], "web", "{one}");
    let all = targets_by_name(&sonde);
    let t1001 = &all.iter().find(|(i, _)| i == "127.0.0.1:1001").unwrap().1;
    let t1000 = &all.iter().find(|(i, _)| i == "127.0.0.1:1000").unwrap().1;
    assert_eq!(t1001["labels"]["team"], "group", "group labels win: {t1001}");
    assert_eq!(t1001["labels"]["env"], "test", "{t1001}");
    assert!(t1001["labels"].get("__scheme__").is_none(), "{t1001}");
    assert_eq!(t1001["discoveredLabels"]["__address__"], "127.0.0.1:1001", "{t1001}");
    assert_eq!(t1000["labels"]["team"], "entry", "{t1000}");

    // What the instance was given: its address, the group's scheme and path, the timeout.
    let info = wait_for(WAIT, "synthetic_target_info of 127.0.0.1:1001", || {
        let page = sonde.federate(&["synthetic_target_info"]);
        page.find("synthetic_target_info", &[("instance", "127.0.0.1:1001")])
            .next()
            .cloned()
    });
    assert_eq!(info.label("address"), Some("127.0.0.1:1001"), "{info:?}");
    assert_eq!(info.label("scheme"), Some("https"), "{info:?}");
    assert_eq!(info.label("metrics_path"), Some("/m"), "{info:?}");
    let page = sonde.federate(&["synthetic_scrape_timeout_seconds"]);
    assert_eq!(
        page.value("synthetic_scrape_timeout_seconds", &[("instance", "127.0.0.1:1000")]),
        Some(0.5)
    );

    // A target added to a (new, JSON) file appears with its `up` series.
    write_atomic(
        &dir.path().join("sd/more.json"),
        r#"[{"targets": ["127.0.0.1:1002"], "labels": {"rack": "r2"}}]"#,
    );
    wait_for(WAIT, "the added target", || {
        (instances(&sonde) == ["127.0.0.1:1000", "127.0.0.1:1001", "127.0.0.1:1002"]).then_some(())
    });
    wait_for(WAIT, "up of the added target", || {
        let up = instant(&sonde, r#"up{instance="127.0.0.1:1002"}"#, None);
        (up.len() == 1 && up[0].1 == 1.0 && up[0].0["rack"] == "r2").then_some(())
    });
    wait_for(WAIT, "up of 127.0.0.1:1001", || {
        (!instant(&sonde, r#"up{instance="127.0.0.1:1001"}"#, None).is_empty()).then_some(())
    });

    // Removing 1001 from its file: it leaves the targets list, its series go stale at
    // once (no 5-minute lookback), its past samples stay; 1000 keeps running untouched.
    let before_removal = now();
    let kept_before = collections(&sonde, "web/127.0.0.1:1000");
    write_atomic(&web, "- targets: ['127.0.0.1:1000']\n");
    wait_for(WAIT, "the removed target to leave", || {
        (instances(&sonde) == ["127.0.0.1:1000", "127.0.0.1:1002"]).then_some(())
    });
    let gone = wait_until(Duration::from_secs(5), || {
        instant(&sonde, r#"up{instance="127.0.0.1:1001"}"#, None).is_empty()
            && instant(&sonde, r#"synthetic_value{instance="127.0.0.1:1001"}"#, None).is_empty()
    });
    assert!(
        gone,
        "the removed target's series are not stale:\n{}",
        sonde.stderr_tail(30)
    );
    let past = instant(&sonde, r#"up{instance="127.0.0.1:1001"}"#, Some(before_removal));
    assert_eq!(past.len(), 1, "the samples before the removal are kept: {past:?}");
    let r = sonde.get_with_query(
        "/api/v1/query_range",
        &[
            ("query", r#"up{instance="127.0.0.1:1001"}"#),
            ("start", &format!("{:.3}", before_removal - 20.0)),
            ("end", &format!("{:.3}", now())),
            ("step", "1"),
        ],
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(
        wait_until(Duration::from_secs(5), || collections(&sonde, "web/127.0.0.1:1000")
            > kept_before),
        "the unchanged target kept its counters (it was not restarted)"
    );
    assert!(
        collections(&sonde, "web/127.0.0.1:1001") == 0.0,
        "gone from /metrics too"
    );

    // A file that no longer parses keeps the targets it gave, and the log says where.
    write_atomic(
        &dir.path().join("sd/more.json"),
        "[{\"targets\": [\"127.0.0.1:1002\",]}]",
    );
    assert!(
        wait_until(WAIT, || sonde.stderr().contains("more.json:1:")),
        "the broken file is logged with its position:\n{}",
        sonde.stderr_tail(30)
    );
    std::thread::sleep(REFRESH * 2);
    assert_eq!(instances(&sonde), ["127.0.0.1:1000", "127.0.0.1:1002"]);
    let m = sonde.metrics();
    assert_eq!(m.value("sonde_sd_discovered_targets", &[("entry", "web")]), Some(2.0));
    assert_eq!(m.value("sonde_sd_files", &[("entry", "web")]), Some(2.0));
    assert!(m.value("sonde_sd_file_read_errors_total", &[("entry", "web")]) >= Some(1.0));
    assert!(m.value("sonde_sd_updates_total", &[("entry", "web")]) >= Some(2.0));
}

/// The prometheus plugin, one instance per node_exporter in a file_sd file: each
/// exporter's metrics arrive with its address as `instance`, and a removed exporter's
/// `up` goes stale while the other keeps being scraped.
#[test]
fn file_sd_prometheus_plugin_scrapes_each_listed_exporter() {
    let a = External::node_exporter(&["loadavg"], &[]);
    let b = External::node_exporter(&["loadavg"], &[]);
    let (addr_a, addr_b) = (format!("127.0.0.1:{}", a.port), format!("127.0.0.1:{}", b.port));
    let dir = tempfile::Builder::new().prefix("sonde-e2e-file-sd-").tempdir().unwrap();
    let sd = dir.path().join("nodes.json");
    write_atomic(
        &sd,
        &format!(r#"[{{"targets": ["{addr_a}"], "labels": {{"role": "a"}}}}]"#),
    );
    let prometheus = toml_str(plugin("prometheus").display().to_string());
    std::fs::write(
        dir.path().join("plugins.toml"),
        format!(
            "[node]\nplugin = {prometheus}\ninterval = \"1s\"\nfile_sd = [\"nodes.json\"]\nfile_sd_refresh = \"1s\"\n"
        ),
    )
    .unwrap();
    let sonde = Sonde::start_with(SondeOptions {
        plugins_file: Some(dir.path().join("plugins.toml")),
        ..Default::default()
    });
    let up = |addr: &str| instant(&sonde, &format!(r#"up{{job="node",instance="{addr}"}}"#), None);
    let load = |addr: &str| instant(&sonde, &format!(r#"node_load1{{instance="{addr}",role!=""}}"#), None);
    wait_for(WAIT, "node_load1 of the first exporter", || {
        (!load(&addr_a).is_empty()).then_some(())
    });
    assert_eq!(up(&addr_a)[0].1, 1.0);

    write_atomic(
        &sd,
        &format!(r#"[{{"targets": ["{addr_b}"], "labels": {{"role": "b"}}}}]"#),
    );
    wait_for(WAIT, "node_load1 of the second exporter", || {
        (!load(&addr_b).is_empty()).then_some(())
    });
    assert!(
        wait_until(Duration::from_secs(5), || up(&addr_a).is_empty()
            && load(&addr_a).is_empty()),
        "the removed exporter's series are not stale"
    );
    assert_eq!(instances(&sonde), [addr_b]);
}

/// A file_sd file that does not parse at start-up is logged with its position but
/// does not stop sonde; the entry's other targets run, and fixing the file adds its.
#[test]
fn file_sd_broken_file_at_start_up_does_not_stop_sonde() {
    let dir = tempfile::Builder::new().prefix("sonde-e2e-file-sd-").tempdir().unwrap();
    let sd = dir.path().join("web.yml");
    write_atomic(&sd, "- targets: ['127.0.0.1:1001'\n");
    std::fs::write(
        dir.path().join("plugins.toml"),
        plugins_toml().replace("sd/*.yml", "web.yml"),
    )
    .unwrap();
    let sonde = Sonde::start_with(SondeOptions {
        plugins_file: Some(dir.path().join("plugins.toml")),
        ..Default::default()
    });
    sonde.wait_health("web", "up", WAIT);
    assert!(
        wait_until(WAIT, || sonde.stderr().contains("web.yml:2:")),
        "the broken file is logged with its position:\n{}",
        sonde.stderr_tail(30)
    );
    assert_eq!(instances(&sonde), ["127.0.0.1:1000"]);
    write_atomic(&sd, "- targets: ['127.0.0.1:1001']\n");
    wait_for(WAIT, "the fixed file's target", || {
        (instances(&sonde) == ["127.0.0.1:1000", "127.0.0.1:1001"]).then_some(())
    });
}

/// A target discovered after its plugin file was replaced (hot reload) runs the new
/// version, not the one the entry first loaded. The file goes from the synthetic
/// plugin (always up) to the prometheus plugin (down: nothing listens at the address).
#[test]
fn file_sd_target_added_after_a_hot_reload_runs_the_new_version() {
    let dir = tempfile::Builder::new().prefix("sonde-e2e-file-sd-").tempdir().unwrap();
    let wasm = dir.path().join("p.wasm");
    std::fs::copy(test_plugin("synthetic"), &wasm).unwrap();
    let sd = dir.path().join("sd.yml");
    write_atomic(&sd, "- targets: ['127.0.0.1:1']\n");
    std::fs::write(
        dir.path().join("plugins.toml"),
        "[web]\nplugin = \"p.wasm\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nfile_sd = [\"sd.yml\"]\nfile_sd_refresh = \"1s\"\n",
    )
    .unwrap();
    let sonde = Sonde::start_with(SondeOptions {
        plugins_file: Some(dir.path().join("plugins.toml")),
        ..Default::default()
    });
    sonde.wait_health("web", "up", WAIT);
    let tmp = dir.path().join("p.wasm.tmp");
    std::fs::copy(plugin("prometheus"), &tmp).unwrap();
    std::fs::rename(&tmp, &wasm).unwrap();
    sonde.wait_health("web", "down", WAIT);

    write_atomic(&sd, "- targets: ['127.0.0.1:1', '127.0.0.1:2']\n");
    let health = |t: &Value| t["health"].as_str().unwrap_or_default().to_string();
    let added = wait_for(WAIT, "the added target's first collection", || {
        let all = targets_by_name(&sonde);
        let (_, t) = all.into_iter().find(|(i, _)| i == "127.0.0.1:2")?;
        (health(&t) != "unknown").then_some(t)
    });
    assert_eq!(health(&added), "down", "it runs the reloaded plugin: {added}");
}
