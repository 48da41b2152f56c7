//! The django plugin against a real Django site with django-prometheus (tests/django,
//! served by runserver): known traffic (7×200, 3×404, 2×500 from an exception, 4
//! slow requests) must come out of sonde's PromQL API exactly (responses by status,
//! latency buckets, counts), equal to what the site itself exposes, and the
//! dashboard queries of docs/django.md must answer with data.

use serde_json::Value;
use sonde_tests::django::DjangoApp;
use sonde_tests::{Exposition, Sonde, exposition, http, wait_for};
use std::time::Duration;

/// The site's slow view sleeps this long (tests/django/testsite/views.py).
const SLOW_SECONDS: f64 = 0.3;

const LATENCY: &str = "django_http_requests_latency_seconds_by_view_method";
const BY_STATUS: &str = "django_http_responses_total_by_status_total";
const BY_STATUS_VIEW: &str = "django_http_responses_total_by_status_view_method_total";

/// The PromQL panels of docs/django.md.
const REQUEST_RATE: &str = "sum(rate(django_http_requests_total_by_view_transport_method_total[5m]))";
const P95: &str = "histogram_quantile(0.95, sum by (le, view) (rate(django_http_requests_latency_seconds_by_view_method_bucket[5m])))";
const ERROR_RATE: &str = "sum(rate(django_http_responses_total_by_status_total{status=~\"5..\"}[5m])) / sum(rate(django_http_responses_total_by_status_total[5m]))";
const BY_STATUS_RATE: &str = "sum by (status) (rate(django_http_responses_total_by_status_total[5m]))";

/// `/api/v1/query` → (labels, value) of each element of the instant vector.
#[track_caller]
fn query(sonde: &Sonde, q: &str) -> Vec<(Value, f64)> {
    let r = sonde.get_with_query("/api/v1/query", &[("query", q)]);
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{q}: not JSON ({e}): {}", r.body));
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: no result list: {v}"))
        .iter()
        .map(|e| {
            let value = e["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            (e["metric"].clone(), value)
        })
        .collect()
}

/// The one value of `q`, when the result has exactly one element.
fn scalar(sonde: &Sonde, q: &str) -> Option<f64> {
    let r = query(sonde, q);
    (r.len() == 1).then(|| r[0].1)
}

/// Waits until `q` answers `want`.
#[track_caller]
fn wait_value(sonde: &Sonde, q: &str, want: f64) {
    let mut last = None;
    let ok = sonde_tests::wait_until(Duration::from_secs(30), || {
        last = scalar(sonde, q);
        last == Some(want)
    });
    assert!(ok, "{q} should reach {want}; last answer {last:?}");
}

fn entry(app: &DjangoApp) -> String {
    format!(
        "[django]\nplugin = \"django\"\ninterval = \"1s\"\ntimeout = \"1s\"\ntargets = [\"{}\"]\n",
        app.addr()
    )
}

fn send(app: &DjangoApp, path: &str, times: usize, status: u16) {
    for _ in 0..times {
        assert_eq!(app.get(path), status, "GET {path}");
    }
}

#[test]
fn django_traffic_reaches_sonde_exactly() {
    let app = DjangoApp::start();
    let sonde = Sonde::start(&entry(&app));
    let target = sonde.wait_health("django", "up", Duration::from_secs(60));
    assert_eq!(target["labels"]["instance"], app.addr());

    // One request per view first, so that every series exists in sonde before the
    // rest of the traffic: rate() then sees the increase.
    send(&app, "/ok", 1, 200);
    send(&app, "/missing", 1, 404);
    send(&app, "/boom", 1, 500);
    send(&app, "/slow", 1, 200);
    for view in ["ok", "missing", "boom", "slow"] {
        wait_value(&sonde, &format!("{BY_STATUS_VIEW}{{view=\"{view}\"}}"), 1.0);
    }
    send(&app, "/ok", 6, 200);
    send(&app, "/missing", 2, 404);
    send(&app, "/boom", 1, 500);
    send(&app, "/slow", 3, 200);

    // Responses by status and view: exactly the traffic.
    for (view, status, n) in [
        ("ok", "200", 7.0),
        ("missing", "404", 3.0),
        ("boom", "500", 2.0),
        ("slow", "200", 4.0),
    ] {
        wait_value(
            &sonde,
            &format!("{BY_STATUS_VIEW}{{view=\"{view}\",status=\"{status}\",method=\"GET\"}}"),
            n,
        );
    }
    // By status alone: /metrics scrapes count as 200s too.
    wait_value(&sonde, &format!("{BY_STATUS}{{status=\"404\"}}"), 3.0);
    wait_value(&sonde, &format!("{BY_STATUS}{{status=\"500\"}}"), 2.0);
    let ok = scalar(&sonde, &format!("{BY_STATUS}{{status=\"200\"}}")).expect("status 200 series");
    assert!(ok >= 11.0, "200s: {ok}, at least 7 + 4 sent");

    // The latency histogram of the slow view: nothing at or under 0.25 s, all 4 by 0.5 s
    // unless the machine is very busy; the count and sum are exact.
    let bucket = |le: &str| scalar(&sonde, &format!("{LATENCY}_bucket{{view=\"slow\",le=\"{le}\"}}"));
    assert_eq!(bucket("0.25"), Some(0.0));
    assert_eq!(bucket("+Inf"), Some(4.0));
    let in_half_second = bucket("0.5").expect("le=0.5 bucket");
    assert!((1.0..=4.0).contains(&in_half_second), "le=0.5: {in_half_second}");
    wait_value(&sonde, &format!("{LATENCY}_count{{view=\"slow\"}}"), 4.0);
    let sum = scalar(&sonde, &format!("{LATENCY}_sum{{view=\"slow\"}}")).expect("sum");
    assert!(sum >= 4.0 * SLOW_SECONDS, "slow sum {sum}");
    assert_eq!(scalar(&sonde, &format!("{LATENCY}_count{{view=\"ok\"}}")), Some(7.0));
    // django-prometheus 2.5 observes the latency of a view that raises twice (in
    // process_exception and again in process_response).
    assert_eq!(
        scalar(&sonde, &format!("{LATENCY}_count{{view=\"missing\"}}")),
        Some(6.0)
    );
    assert_eq!(scalar(&sonde, &format!("{LATENCY}_count{{view=\"boom\"}}")), Some(4.0));
    let exceptions = "django_http_exceptions_total_by_type_total";
    assert_eq!(scalar(&sonde, &format!("{exceptions}{{type=\"Http404\"}}")), Some(3.0));
    assert_eq!(
        scalar(&sonde, &format!("{exceptions}{{type=\"RuntimeError\"}}")),
        Some(2.0)
    );

    // Sonde's copy equals the site's own page for every series of the four views.
    let page = http::get(&app.url("/metrics")).expect("Django /metrics");
    let theirs = exposition::parse(&page.body).expect("Django's page parses");
    let ours = next_collection(&sonde);
    let mut compared = 0;
    for s in theirs.samples.iter().filter(|s| {
        matches!(s.label("view"), Some("ok" | "missing" | "boom" | "slow")) && !s.name.ends_with("_created")
    }) {
        let labels: Vec<(&str, &str)> = s.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mine = ours.value(&s.name, &labels);
        assert_eq!(
            mine,
            Some(s.value),
            "{}{:?}: sonde has {mine:?}, Django {}",
            s.name,
            s.labels,
            s.value
        );
        compared += 1;
    }
    assert!(compared >= 4 * 17, "only {compared} series compared");
    for family in [LATENCY, BY_STATUS, BY_STATUS_VIEW] {
        assert_eq!(ours.types.get(family), theirs.types.get(family), "type of {family}");
    }

    // The dashboard's panels answer with data.
    let rate = scalar(&sonde, REQUEST_RATE).expect("request rate");
    assert!(rate > 0.0, "request rate {rate}");
    let p95: Vec<(Value, f64)> = query(&sonde, P95);
    let slow = p95
        .iter()
        .find(|(m, _)| m["view"] == "slow")
        .unwrap_or_else(|| panic!("no p95 for the slow view: {p95:?}"))
        .1;
    // Between the 0.25 and 0.5 s bounds, or one bucket up when the machine is busy.
    assert!(slow > 0.25 && slow <= 0.75, "p95 of the slow view {slow}");
    let errors = scalar(&sonde, ERROR_RATE).expect("error rate");
    assert!(errors > 0.0 && errors < 1.0, "5xx share {errors}");
    let by_status: Vec<String> = query(&sonde, BY_STATUS_RATE)
        .iter()
        .map(|(m, _)| m["status"].as_str().unwrap_or("").to_string())
        .collect();
    for status in ["200", "404", "500"] {
        assert!(
            by_status.iter().any(|s| s == status),
            "{status} missing in {by_status:?}"
        );
    }
}

/// Everything of job django after one more collection.
fn next_collection(sonde: &Sonde) -> Exposition {
    let before = sonde.target("django").expect("target")["lastScrape"].clone();
    wait_for(Duration::from_secs(20), "the next collection", || {
        (sonde.target("django").expect("target")["lastScrape"] != before).then_some(())
    });
    sonde.federate(&["{job=\"django\"}"])
}

#[test]
fn the_django_plugin_reports_a_site_that_is_down() {
    let app = DjangoApp::start();
    let sonde = Sonde::start(&entry(&app));
    sonde.wait_health("django", "up", Duration::from_secs(60));
    drop(app);
    let target = sonde.wait_health("django", "down", Duration::from_secs(30));
    let err = target["lastError"].as_str().unwrap_or("");
    assert!(
        err.contains("connection refused") || err.contains("Connection"),
        "lastError: {err}"
    );
}
