//! Rules end to end: an alert that fires in sonde reaches a real Alertmanager 0.25
//! with its labels and templated annotations and resolves there; pending/firing
//! state survives a restart (restored from `ALERTS_FOR_STATE`); recording rules
//! write their series; and `sonde check rules` accepts and rejects the same files as
//! `promtool check rules` 2.42 (tests/rules/).

use serde_json::Value;
use sonde_tests::alertmanager::Alertmanager;
use sonde_tests::{Sonde, SondeOptions, repo_root, run_sonde, test_plugin, toml_str, wait_for};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The synthetic plugin every second (sonde needs some plugin; the rules here mostly
/// use `vector()` so they do not depend on its values).
fn plugins_toml() -> String {
    let synthetic = toml_str(test_plugin("synthetic").display().to_string());
    format!(
        "[syn]\nplugin = {synthetic}\ninterval = \"1s\"\ntimeout = \"500ms\"\ninstance = \"box-1\"\n[syn.config]\nseries = 2\n"
    )
}

fn sonde_toml(rule_file: &Path, extra: &str) -> String {
    format!(
        "[rules]\nfiles = [{}]\nevaluation_interval = \"1s\"\nfor_grace_period = \"1s\"\n{extra}",
        toml_str(rule_file.display().to_string())
    )
}

fn start(rule_file: &Path, extra: &str, data_dir: Option<&Path>) -> Sonde {
    Sonde::start_with(SondeOptions {
        sonde_toml: Some(sonde_toml(rule_file, extra)),
        plugins_toml: Some(plugins_toml()),
        data_dir: data_dir.map(Path::to_path_buf),
        ..Default::default()
    })
}

fn api(sonde: &Sonde, path: &str) -> Value {
    let body = sonde.get_ok(path);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v["data"].clone()
}

fn sonde_alerts(sonde: &Sonde) -> Vec<Value> {
    api(sonde, "/api/v1/alerts")["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn rules_alert_reaches_alertmanager_and_resolves() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.yml");
    // Fires during the first 10 s of every 20 s, resolved during the other 10.
    std::fs::write(
        &rules,
        r#"groups:
  - name: e2e
    rules:
      - alert: Blinking
        expr: label_replace(vector(1), "instance", "box-1", "", "") and on () (vector(time() % 20) < 10)
        labels:
          severity: page
          owner: "team-{{ $labels.instance }}"
        annotations:
          summary: "{{ $labels.instance }} is blinking"
          description: "value {{ printf \"%.1f\" $value }}, {{ 0.256 | humanizePercentage }}{{ if gt $value 0.5 }} (high){{ end }}"
"#,
    )
    .unwrap();
    let extra = format!(
        "[alerting]\nresend_delay = \"1s\"\n[[alerting.alertmanagers]]\nurl = {}\n",
        toml_str(am.url())
    );
    let sonde = start(&rules, &extra, None);
    let alert = wait_for(Duration::from_secs(60), "the alert in Alertmanager", || {
        am.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "Blinking" && a["status"]["state"] == "active")
    });
    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "page", "{alert}");
    assert_eq!(labels["instance"], "box-1", "{alert}");
    assert_eq!(labels["owner"], "team-box-1", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "box-1 is blinking", "{alert}");
    assert_eq!(
        alert["annotations"]["description"], "value 1.0, 25.6% (high)",
        "{alert}"
    );
    assert!(
        alert["generatorURL"].as_str().unwrap().contains("/graph?g0.expr="),
        "{alert}"
    );
    // sonde's own view while it fires.
    let firing = sonde_alerts(&sonde);
    assert!(
        firing.iter().any(|a| a["labels"]["alertname"] == "Blinking"),
        "{firing:?}"
    );
    let groups = api(&sonde, "/api/v1/rules");
    assert_eq!(groups["groups"][0]["name"], "e2e", "{groups}");
    assert_eq!(groups["groups"][0]["rules"][0]["type"], "alerting", "{groups}");
    assert_eq!(groups["groups"][0]["rules"][0]["health"], "ok", "{groups}");
    // Resolved in Alertmanager once the condition clears: gone from the active list
    // (or listed with an end in the past).
    wait_for(Duration::from_secs(30), "the alert to resolve in Alertmanager", || {
        let active = am
            .alerts()
            .into_iter()
            .any(|a| a["labels"]["alertname"] == "Blinking" && a["status"]["state"] == "active");
        (!active).then_some(())
    });
    let m = sonde.get_ok("/metrics");
    assert!(m.contains("sonde_rule_evaluations_total{rule_group="), "{m}");
    assert!(m.contains("sonde_alertmanager_alerts_sent_total{alertmanager="), "{m}");
}

#[test]
fn rules_firing_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: restart\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1)\n        for: 3s\n        labels:\n          severity: info\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let firing = |sonde: &Sonde| {
        sonde_alerts(sonde)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "AlwaysOn" && a["state"] == "firing")
    };
    let sonde = start(&rules, "", Some(&data));
    let before = wait_for(Duration::from_secs(30), "AlwaysOn firing", || firing(&sonde));
    // ALERTS_FOR_STATE is written from the second evaluation on; let a few land.
    std::thread::sleep(Duration::from_secs(2));
    drop(sonde);
    std::thread::sleep(Duration::from_secs(2));
    let sonde = start(&rules, "", Some(&data));
    let after = wait_for(Duration::from_secs(30), "AlwaysOn firing again", || firing(&sonde));
    // ALERTS_FOR_STATE holds whole seconds (as in Prometheus): compare those.
    let secs = |a: &Value| a["activeAt"].as_str().unwrap()[..19].to_string();
    assert_eq!(
        secs(&after),
        secs(&before),
        "activeAt must survive the restart: before {before}, after {after}"
    );
    // The for-state series themselves, as Prometheus writes them.
    let q = sonde.get_with_query("/api/v1/query", &[("query", "ALERTS{alertname=\"AlwaysOn\"}")]);
    assert!(q.body.contains("\"alertstate\":\"firing\""), "{}", q.body);
}

#[test]
fn rules_recording_rules_write_series() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rec.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: rec\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n        labels:\n          source: rule\n",
    )
    .unwrap();
    let sonde = start(&rules, "", None);
    let v = wait_for(Duration::from_secs(30), "job:up:sum", || {
        let r = sonde.get_with_query("/api/v1/query", &[("query", "job:up:sum")]);
        let v: Value = serde_json::from_str(&r.body).ok()?;
        v["data"]["result"].as_array().filter(|a| !a.is_empty()).cloned()
    });
    assert_eq!(v[0]["metric"]["job"], "syn", "{v:?}");
    assert_eq!(v[0]["metric"]["source"], "rule", "{v:?}");
    assert_eq!(v[0]["value"][1], "1", "{v:?}");
    let rules = api(&sonde, "/api/v1/rules?type=record");
    assert_eq!(rules["groups"][0]["rules"][0]["type"], "recording", "{rules}");
}

/// Every file in tests/rules/ and the shipped rules/default.yml: sonde and promtool
/// agree on accept/reject, and on the "SUCCESS: N rules found" count.
#[test]
fn rules_check_rules_matches_promtool() {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files.push(repo_root().join("rules/default.yml"));
    assert!(files.len() > 10);
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let p = Command::new("promtool")
            .args(["check", "rules"])
            .arg(f)
            .output()
            .expect("promtool (scripts/test installs Debian's prometheus)");
        let s = run_sonde(f.parent().unwrap(), &["check", "rules", f.to_str().unwrap()]);
        let p_ok = p.status.success();
        // keep_firing_for came with Prometheus 2.43, but Debian's 2.42 build accepts
        // it as well; sonde accepts it (it implements it).
        let expect_ok = !name.starts_with("invalid_");
        if p_ok != expect_ok || s.status.success() != expect_ok {
            failures.push(format!(
                "{name}: promtool ok={p_ok} sonde ok={} (expected {expect_ok})\n{}",
                s.status.success(),
                s.all()
            ));
            continue;
        }
        if expect_ok {
            let count = |out: &str| {
                out.lines()
                    .find(|l| l.contains("SUCCESS"))
                    .map(str::trim)
                    .map(String::from)
            };
            let pout = String::from_utf8_lossy(&p.stdout).to_string();
            assert_eq!(count(&s.stdout), count(&pout), "{name}");
        } else {
            // Every problem has a position.
            assert!(
                s.stderr.lines().any(|l| l.contains(&format!("{name}:"))),
                "{name}: {}",
                s.stderr
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `[rules]` and `[alerting]` mistakes and broken rule files are reported by
/// `sonde check` with file:line:col, all at once.
#[test]
fn rules_config_problems_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), plugins_toml()).unwrap();
    std::fs::write(
        dir.path().join("sonde.toml"),
        "[rules]\nfilez = []\n[[alerting.alertmanagers]]\nurl = \"https://am:9093\"\n",
    )
    .unwrap();
    let out = run_sonde(
        dir.path(),
        &["check", "--config", "sonde.toml", "--plugins", "plugins.toml"],
    );
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.all().contains("sonde.toml:2:1: unknown field `filez`"),
        "{}",
        out.all()
    );
    // A rule file with a problem, named relative to sonde.toml.
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/bad.yml"),
        "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up ==\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("sonde.toml"), "[rules]\nfiles = [\"rules/*.yml\"]\n").unwrap();
    let out = run_sonde(
        dir.path(),
        &["check", "--config", "sonde.toml", "--plugins", "plugins.toml"],
    );
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.all().contains("rules/bad.yml:5:15: could not parse expression"),
        "{}",
        out.all()
    );
    std::fs::write(dir.path().join("rules/bad.yml"), "groups: []\n").unwrap();
    let out = run_sonde(
        dir.path(),
        &["check", "--config", "sonde.toml", "--plugins", "plugins.toml"],
    );
    assert!(out.status.success(), "{}", out.all());
}

/// `POST /-/reload` and SIGHUP read the rule files again: unchanged rules keep their
/// state (a firing alert keeps its activeAt), new ones appear, and a broken file is
/// refused with its problems while the running rules stay.
#[test]
fn rules_reload_keeps_unchanged_rules_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.yml");
    let one = "groups:\n  - name: g\n    rules:\n      - alert: Stays\n        expr: vector(1)\n";
    std::fs::write(&rules, one).unwrap();
    let sonde = start(&rules, "", None);
    let stays = |sonde: &Sonde| {
        sonde_alerts(sonde)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "Stays" && a["state"] == "firing")
    };
    let before = wait_for(Duration::from_secs(30), "Stays firing", || stays(&sonde));
    std::fs::write(
        &rules,
        format!("{one}      - record: added:sum\n        expr: sum(up)\n"),
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let r = agent.post(&sonde.url("/-/reload")).send_empty().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let names = |sonde: &Sonde| -> Vec<String> {
        api(sonde, "/api/v1/rules")["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&sonde), ["Stays", "added:sum"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after = stays(&sonde).expect("Stays still firing after the reload");
    assert_eq!(after["activeAt"], before["activeAt"], "{before} vs {after}");
    // A broken file: refused, the problems named, the running rules kept.
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up ==\n",
    )
    .unwrap();
    let mut r = agent.post(&sonde.url("/-/reload")).send_empty().unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body = r.body_mut().read_to_string().unwrap();
    assert!(body.contains("alerts.yml:5:15: could not parse expression"), "{body}");
    assert_eq!(names(&sonde), ["Stays", "added:sum"]);
    // SIGHUP does the same as /-/reload.
    std::fs::write(&rules, one.replace("Stays", "Renamed")).unwrap();
    // SAFETY: kill(2) on the pid of the sonde child this test started.
    unsafe { libc::kill(sonde.pid() as libc::pid_t, libc::SIGHUP) };
    wait_for(Duration::from_secs(10), "the SIGHUP reload", || {
        (names(&sonde) == ["Renamed"]).then_some(())
    });
    // The removed recording rule's series went stale at once (no 5 m lookback).
    wait_for(Duration::from_secs(10), "added:sum to go stale", || {
        let r = sonde.get_with_query("/api/v1/query", &[("query", "added:sum")]);
        r.body.contains("\"result\":[]").then_some(())
    });
}
