//! The built-in notifier against the real binary: alerts pushed through the
//! Alertmanager v2 API are grouped, routed (critical to a pager, the rest to a team
//! webhook and email), silenced, inhibited, retried after a failure, and neither lost
//! nor re-sent across a restart. Timing is only checked for order and counts, with
//! generous waits.

use serde_json::{Value, json};
use sonde_tests::sinks::{SmtpSink, WebhookSink};
use sonde_tests::{Sonde, SondeOptions, wait_for, wait_until};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

fn post(sonde: &Sonde, path: &str, body: Value) -> (u16, String) {
    let mut r = agent()
        .post(&sonde.url(path))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("POST");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
}

fn push(sonde: &Sonde, alerts: Value) {
    let (status, body) = post(sonde, "/api/v2/alerts", alerts);
    assert_eq!(status, 200, "{body}");
}

fn alert(name: &str, severity: &str, instance: &str) -> Value {
    json!({"labels": {"alertname": name, "severity": severity, "instance": instance},
           "annotations": {"summary": format!("{name} on {instance}")}})
}

/// sonde with this `[notifier]` and no rules (the default rules would add alerts).
fn start(notifier_toml: &str, data_dir: Option<PathBuf>) -> Sonde {
    start_with_rules(notifier_toml, "[rules]\nfiles = []\n", data_dir)
}

fn start_with_rules(notifier_toml: &str, rules_toml: &str, data_dir: Option<PathBuf>) -> Sonde {
    Sonde::start_with(SondeOptions {
        sonde_toml: Some(format!("{rules_toml}{notifier_toml}")),
        plugins_toml: Some(String::new()),
        data_dir,
        ..Default::default()
    })
}

/// Critical to the pager webhook, everything else to the team webhook (and email
/// when `smtp` is given), grouped by alertname.
fn config(pager: &WebhookSink, team: &WebhookSink, smtp: Option<&SmtpSink>, timers: &str) -> String {
    let email = smtp.map_or(String::new(), |s| {
        format!(
            "[[notifier.receivers.email_configs]]\nto = \"ops@example.com\"\nfrom = \"sonde@example.com\"\nsmarthost = \"127.0.0.1:{}\"\n",
            s.port
        )
    });
    format!(
        r#"[notifier.route]
receiver = "team"
group_by = ["alertname"]
{timers}
[[notifier.route.routes]]
matchers = ['severity="critical"']
receiver = "pager"

[[notifier.receivers]]
name = "pager"
[[notifier.receivers.webhook_configs]]
url = "{}"

[[notifier.receivers]]
name = "team"
[[notifier.receivers.webhook_configs]]
url = "{}"
{email}
[[notifier.inhibit_rules]]
source_matchers = ['alertname="NodeDown"']
target_matchers = ['severity="warning"']
equal = ["instance"]
"#,
        pager.url(),
        team.url()
    )
}

const FAST: &str = "group_wait = \"1s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"1h\"";

#[test]
fn notify_groups_and_routes_critical_to_the_pager_and_mails_the_team() {
    let (pager, team, smtp) = (WebhookSink::start(), WebhookSink::start(), SmtpSink::start());
    let sonde = start(&config(&pager, &team, Some(&smtp), FAST), None);
    push(
        &sonde,
        json!([
            alert("HighLoad", "warning", "a"),
            alert("HighLoad", "warning", "b"),
            alert("HighLoad", "warning", "c"),
            alert("DiskFull", "critical", "a")
        ]),
    );
    let t = wait_for(WAIT, "the team notification", || team.bodies().first().cloned());
    assert_eq!(t["version"], "4");
    assert_eq!(t["receiver"], "team");
    assert_eq!(t["status"], "firing");
    assert_eq!(t["groupLabels"], json!({"alertname": "HighLoad"}));
    assert_eq!(
        t["commonLabels"],
        json!({"alertname": "HighLoad", "severity": "warning"})
    );
    assert_eq!(t["alerts"].as_array().unwrap().len(), 3, "{t}");
    assert!(t["groupKey"].is_string() && t["externalURL"].is_string());
    let p = wait_for(WAIT, "the pager notification", || pager.bodies().first().cloned());
    assert_eq!(p["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(p["alerts"][0]["labels"]["alertname"], "DiskFull");
    let mail = wait_for(WAIT, "the email", || smtp.messages().first().cloned());
    assert!(mail.contains("Subject: [FIRING:3] HighLoad"), "{mail}");
    assert!(mail.contains("HighLoad on b"), "{mail}");
    // One notification per group: nothing more arrives while nothing changes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(team.bodies().len(), 1);
    assert_eq!(pager.bodies().len(), 1);
    let (_, alerts) = (
        0,
        agent()
            .get(&sonde.url("/api/v2/alerts"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&alerts)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn notify_group_interval_adds_and_resolves_in_order_and_repeat_interval_repeats() {
    let (pager, team) = (WebhookSink::start(), WebhookSink::start());
    let timers = "group_wait = \"1s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"4s\"";
    let sonde = start(&config(&pager, &team, None, timers), None);
    push(&sonde, json!([alert("HighLoad", "warning", "a")]));
    wait_for(WAIT, "the first notification", || team.bodies().first().cloned());
    push(&sonde, json!([alert("HighLoad", "warning", "b")]));
    let second = wait_for(WAIT, "the added alert", || team.bodies().get(1).cloned());
    assert_eq!(second["alerts"].as_array().unwrap().len(), 2, "{second}");
    // Unchanged: repeated after repeat_interval.
    let third = wait_for(WAIT, "the repeat", || team.bodies().get(2).cloned());
    assert_eq!(third["alerts"].as_array().unwrap().len(), 2, "{third}");
    let mut resolved = alert("HighLoad", "warning", "a");
    resolved["endsAt"] = json!("2020-01-01T00:00:00Z");
    resolved["startsAt"] = json!("2019-12-31T00:00:00Z");
    push(&sonde, json!([resolved]));
    let r = wait_for(WAIT, "the resolved alert", || {
        team.bodies().into_iter().find(|b| {
            b["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["status"] == "resolved")
        })
    });
    assert_eq!(r["status"], "firing", "b still fires: {r}");
}

#[test]
fn notify_silence_and_inhibition_suppress() {
    let (pager, team) = (WebhookSink::start(), WebhookSink::start());
    let sonde = start(&config(&pager, &team, None, FAST), None);
    let (status, body) = post(
        &sonde,
        "/api/v2/silences",
        json!({"matchers": [{"name": "alertname", "value": "Noisy", "isRegex": false, "isEqual": true}],
               "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "test", "comment": "quiet"}),
    );
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    // NodeDown on x inhibits warnings on x, not on y.
    push(
        &sonde,
        json!([
            alert("Noisy", "warning", "z"),
            alert("NodeDown", "critical", "x"),
            alert("HighLoad", "warning", "x"),
            alert("HighLoad", "warning", "y")
        ]),
    );
    wait_for(WAIT, "the pager notification", || pager.bodies().first().cloned());
    let t = wait_for(WAIT, "the team notification", || team.bodies().first().cloned());
    std::thread::sleep(Duration::from_secs(3));
    let names: Vec<String> = team
        .bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().unwrap().clone())
        .map(|a| {
            format!(
                "{}/{}",
                a["labels"]["alertname"].as_str().unwrap(),
                a["labels"]["instance"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["HighLoad/y"], "{t}");
    let m = sonde.get_ok("/metrics");
    assert!(m.contains("sonde_silences{state=\"active\"} 1"), "{m}");
    assert!(m.contains("sonde_alerts{state=\"suppressed\"} 2"), "{m}");
    // Expiring the silence lets Noisy through.
    let r = agent()
        .delete(&sonde.url(&format!("/api/v2/silence/{id}")))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    wait_for(WAIT, "Noisy after the silence expired", || {
        team.bodies()
            .into_iter()
            .find(|b| b["commonLabels"]["alertname"] == "Noisy")
    });
}

#[test]
fn notify_restart_neither_loses_a_pending_nor_resends_a_delivered_notification() {
    let (pager, team) = (WebhookSink::start(), WebhookSink::start());
    let keep = tempfile::tempdir().unwrap();
    let data = keep.path().join("data");
    let slow = "group_wait = \"6s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"1h\"";
    let cfg = config(&pager, &team, None, slow);
    let mut sonde = start(&cfg, Some(data.clone()));
    push(&sonde, json!([alert("Delivered", "critical", "a")]));
    wait_for(WAIT, "the first notification", || pager.bodies().first().cloned());
    push(&sonde, json!([alert("Pending", "warning", "a")]));
    sonde
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(20))
        .expect("sonde stops");
    assert!(team.bodies().is_empty(), "stopped before group_wait");
    let sonde = start(&cfg, Some(data));
    let t = wait_for(WAIT, "the pending notification after the restart", || {
        team.bodies().first().cloned()
    });
    assert_eq!(t["commonLabels"]["alertname"], "Pending");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(pager.bodies().len(), 1, "the delivered notification was sent again");
    drop(sonde);
}

#[test]
fn notify_failing_receiver_is_retried_and_counted() {
    let (pager, team) = (WebhookSink::start(), WebhookSink::start());
    team.fail_next(2);
    let sonde = start(&config(&pager, &team, None, FAST), None);
    push(&sonde, json!([alert("HighLoad", "warning", "a")]));
    wait_for(WAIT, "the notification after two failures", || {
        team.bodies().first().cloned()
    });
    assert!(team.requests.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(
        wait_until(WAIT, || {
            let m = sonde.get_ok("/metrics");
            m.contains("sonde_notification_requests_failed_total{receiver=\"team\",integration=\"webhook\"} 2")
                && m.contains("sonde_notifications_total{receiver=\"team\",integration=\"webhook\"} 1")
                && m.contains("sonde_notification_latency_seconds_count{receiver=\"team\",integration=\"webhook\"} 3")
        }),
        "{}",
        sonde.get_ok("/metrics")
    );
}

#[test]
fn notify_config_errors_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sonde.toml"),
        "[notifier.route]\nreceiver = \"nobody\"\nmatchers = ['a~b']\nbogus = 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("plugins.toml"), "").unwrap();
    let out = sonde_tests::run_sonde(
        dir.path(),
        &["check", "--config", "sonde.toml", "--plugins", "plugins.toml"],
    );
    let all = out.all();
    assert!(
        all.contains("sonde.toml:4:1") && all.contains("unknown field `bogus`"),
        "{all}"
    );
}

#[test]
fn notify_semantic_config_errors_point_at_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[notifier.route]\nreceiver = \"team\"\n[[notifier.route.routes]]\nreceiver = \"nobody\"\nmatchers = ['severity=\"critical\"', 'a~b']\n\
                [[notifier.receivers]]\nname = \"team\"\n[[notifier.receivers.slack_configs]]\napi_url_env = \"SONDE_TEST_SURELY_UNSET\"\n";
    std::fs::write(dir.path().join("sonde.toml"), toml).unwrap();
    std::fs::write(dir.path().join("plugins.toml"), "").unwrap();
    let out = sonde_tests::run_sonde(
        dir.path(),
        &["check", "--config", "sonde.toml", "--plugins", "plugins.toml"],
    );
    let all = out.all();
    assert!(
        all.contains("sonde.toml:4:12: [notifier] receiver \"nobody\" is not defined"),
        "{all}"
    );
    assert!(all.contains("sonde.toml:5:36: [notifier] matcher \"a~b\""), "{all}");
    assert!(
        all.contains("sonde.toml:9:15: [notifier] environment variable SONDE_TEST_SURELY_UNSET"),
        "{all}"
    );
}

#[test]
fn notify_slack_and_pagerduty_payloads() {
    let (slack, pd) = (WebhookSink::start(), WebhookSink::start());
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pd-key");
    std::fs::write(&key, "R0UTINGKEY\n").unwrap();
    let url = dir.path().join("slack-url");
    std::fs::write(&url, slack.url()).unwrap();
    let cfg = format!(
        r##"[notifier.route]
receiver = "all"
group_by = ["alertname"]
{FAST}
[[notifier.receivers]]
name = "all"
[[notifier.receivers.slack_configs]]
api_url_file = {}
channel = "#alerts"
[[notifier.receivers.pagerduty_configs]]
routing_key_file = {}
url = "{}"
"##,
        sonde_tests::toml_str(url.display().to_string()),
        sonde_tests::toml_str(key.display().to_string()),
        pd.url()
    );
    let sonde = start(&cfg, None);
    push(&sonde, json!([alert("DiskFull", "critical", "a")]));
    let s = wait_for(WAIT, "the Slack message", || slack.bodies().first().cloned());
    assert_eq!(s["channel"], "#alerts");
    assert!(s["text"].as_str().unwrap().contains("[FIRING:1] DiskFull"), "{s}");
    let p = wait_for(WAIT, "the PagerDuty event", || pd.bodies().first().cloned());
    assert_eq!(p["routing_key"], "R0UTINGKEY");
    assert_eq!(p["event_action"], "trigger");
    assert_eq!(p["payload"]["severity"], "critical");
    let mut resolved = alert("DiskFull", "critical", "a");
    resolved["endsAt"] = json!("2020-01-01T00:00:00Z");
    resolved["startsAt"] = json!("2019-01-01T00:00:00Z");
    push(&sonde, json!([resolved]));
    let r = wait_for(WAIT, "the PagerDuty resolve", || pd.bodies().get(1).cloned());
    assert_eq!(r["event_action"], "resolve");
    assert_eq!(r["dedup_key"], p["dedup_key"]);
}

#[test]
fn notify_receives_the_rule_evaluators_alerts() {
    let (pager, team) = (WebhookSink::start(), WebhookSink::start());
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: t\n  interval: 1s\n  rules:\n  - alert: AlwaysOn\n    expr: vector(1)\n    labels:\n      severity: critical\n    annotations:\n      summary: always on\n",
    )
    .unwrap();
    let rules_toml = format!(
        "[rules]\nfiles = [{}]\n",
        sonde_tests::toml_str(rules.display().to_string())
    );
    let _sonde = start_with_rules(&config(&pager, &team, None, FAST), &rules_toml, None);
    let p = wait_for(WAIT, "the rule's alert at the pager", || {
        pager.bodies().first().cloned()
    });
    assert_eq!(p["alerts"][0]["labels"]["alertname"], "AlwaysOn");
    assert_eq!(p["alerts"][0]["annotations"]["summary"], "always on");
}

/// amtool (from the prometheus-alertmanager package, as scripts/test installs it).
fn amtool(sonde: &Sonde, args: &[&str]) -> String {
    let url = format!("--alertmanager.url=http://127.0.0.1:{}", sonde.port);
    let out = std::process::Command::new("amtool")
        .arg(&url)
        .args(args)
        .output()
        .expect("amtool is missing: install prometheus-alertmanager (scripts/test does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "amtool {args:?}: {text}");
    text
}

#[test]
fn notify_amtool_adds_queries_and_expires_silences_and_alerts() {
    let (pager, team) = (WebhookSink::start(), WebhookSink::start());
    let sonde = start(&config(&pager, &team, None, FAST), None);
    amtool(
        &sonde,
        &["alert", "add", "alertname=Foo", "severity=warning", "instance=a"],
    );
    amtool(
        &sonde,
        &["alert", "add", "alertname=Bar", "severity=warning", "instance=b"],
    );
    let id = amtool(&sonde, &["silence", "add", "alertname=Foo", "-c", "deploy", "-a", "me"]);
    let id = id.trim();
    assert!(amtool(&sonde, &["silence", "query"]).contains(id));
    // Only Bar is active; Foo is silenced.
    let q = amtool(&sonde, &["alert", "query"]);
    assert!(q.contains("Bar") && !q.contains("Foo"), "{q}");
    assert!(amtool(&sonde, &["alert", "query", "--silenced"]).contains("Foo"));
    let t = wait_for(WAIT, "Bar's notification", || team.bodies().first().cloned());
    assert_eq!(t["commonLabels"]["alertname"], "Bar");
    amtool(&sonde, &["silence", "expire", id]);
    assert!(amtool(&sonde, &["silence", "query", "--expired"]).contains(id));
    wait_for(WAIT, "Foo after its silence expired", || {
        team.bodies()
            .into_iter()
            .find(|b| b["commonLabels"]["alertname"] == "Foo")
    });
}
