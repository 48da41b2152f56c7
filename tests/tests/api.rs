//! The Prometheus HTTP API v1 as Grafana and promtool use it, against a real sonde
//! collecting from the synthetic test plugin: series and label lookups, metadata,
//! status endpoints, `format_query`, parameter errors (bodies and status codes as
//! Prometheus 2.42 answers them), GET and POST form bodies, query and query_range
//! results, cancellation, and `sonde query`.

use serde_json::{Value, json};
use sonde_tests::http::Response;
use sonde_tests::{Sonde, SondeOptions, run_sonde, test_plugin, toml_str, wait_for};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Three series `synthetic_value{i="0".."2",label0=...}` every second, job `syn`.
fn plugins_toml() -> String {
    let synthetic = toml_str(test_plugin("synthetic").display().to_string());
    format!(
        "[syn]\nplugin = {synthetic}\ninterval = \"1s\"\ntimeout = \"500ms\"\ninstance = \"box-1\"\n\
         [syn.config]\nseries = 3\nlabels = 1\n"
    )
}

/// sonde with five collections stored: every series has samples over the last 4 s.
fn start() -> Sonde {
    let sonde = Sonde::start_with(SondeOptions {
        sonde_toml: Some("[storage]\nretention = \"10d\"\n".into()),
        plugins_toml: Some(plugins_toml()),
        ..Default::default()
    });
    sonde.wait_health("syn", "up", Duration::from_secs(30));
    wait_for(Duration::from_secs(30), "five collections", || {
        let (_, v) = get(&sonde, "/api/v1/query", &[("query", "count_over_time(up[1m])")]);
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| *n >= 5.0)
    });
    sonde
}

fn parse(r: &Response, what: &str) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", r.body))
}

#[track_caller]
fn get(sonde: &Sonde, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let r = sonde.get_with_query(path, query);
    (r.status, parse(&r, path))
}

/// `POST path` with an `application/x-www-form-urlencoded` body, as Grafana sends it.
#[track_caller]
fn post(sonde: &Sonde, path: &str, form: &[(&str, &str)]) -> Response {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut resp = agent
        .post(&sonde.url(path))
        .send_form(form.iter().copied())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    Response {
        status: resp.status().as_u16(),
        body: resp.body_mut().read_to_string().expect("body"),
    }
}

#[track_caller]
fn ok_data(sonde: &Sonde, path: &str, query: &[(&str, &str)]) -> Value {
    let (status, v) = get(sonde, path, query);
    assert_eq!(
        (status, &v["status"]),
        (200, &json!("success")),
        "{path} {query:?}: {v}"
    );
    v["data"].clone()
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn series_labels_and_metadata() {
    let sonde = start();
    let labels = ok_data(&sonde, "/api/v1/labels", &[]);
    assert_eq!(labels, json!(["__name__", "i", "instance", "job", "label0"]));
    let names = ok_data(&sonde, "/api/v1/label/__name__/values", &[]);
    let names: Vec<&str> = names.as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    for want in [
        "synthetic_value",
        "synthetic_guest_seconds",
        "up",
        "scrape_duration_seconds",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted, each once: {names:?}");
    assert_eq!(ok_data(&sonde, "/api/v1/label/i/values", &[]), json!(["0", "1", "2"]));
    assert_eq!(
        ok_data(
            &sonde,
            "/api/v1/label/i/values",
            &[("match[]", r#"synthetic_value{i=~"1|2"}"#)]
        ),
        json!(["1", "2"])
    );
    assert_eq!(
        ok_data(&sonde, "/api/v1/labels", &[("match[]", "up")]),
        json!(["__name__", "instance", "job"])
    );

    let series = ok_data(
        &sonde,
        "/api/v1/series",
        &[("match[]", r#"synthetic_value{i="1"}"#), ("match[]", "up")],
    );
    assert_eq!(
        series,
        json!([
            {"__name__": "synthetic_value", "i": "1", "instance": "box-1", "job": "syn", "label0": "value-0-abcdefgh"},
            {"__name__": "up", "instance": "box-1", "job": "syn"},
        ])
    );
    let form = post(
        &sonde,
        "/api/v1/series",
        &[("match[]", r#"synthetic_value{i="1"}"#), ("match[]", "up")],
    );
    assert_eq!(
        (form.status, parse(&form, "POST series")["data"].clone()),
        (200, series)
    );
    let past = ok_data(
        &sonde,
        "/api/v1/series",
        &[("match[]", "up"), ("start", "1000"), ("end", "2000")],
    );
    assert_eq!(past, json!([]), "no samples in 1970");
    let past = ok_data(
        &sonde,
        "/api/v1/label/__name__/values",
        &[("start", "1000"), ("end", "2000")],
    );
    assert_eq!(past, json!([]), "no samples in 1970");

    let meta = ok_data(&sonde, "/api/v1/metadata", &[]);
    assert_eq!(
        meta["synthetic_value"],
        json!([{"type": "gauge", "help": "A synthetic gauge.", "unit": ""}]),
        "{meta}"
    );
    assert_eq!(meta["up"][0]["type"], "gauge", "{meta}");
    let one = ok_data(&sonde, "/api/v1/metadata", &[("metric", "synthetic_value")]);
    assert_eq!(one.as_object().unwrap().len(), 1, "{one}");
    let limited = ok_data(&sonde, "/api/v1/metadata", &[("limit", "2")]);
    assert_eq!(limited.as_object().unwrap().len(), 2, "{limited}");
}

#[test]
fn status_endpoints_and_format_query() {
    let sonde = start();
    let build = ok_data(&sonde, "/api/v1/status/buildinfo", &[]);
    let version = build["version"].as_str().unwrap();
    assert!(
        version.starts_with("2.42.0+sonde."),
        "a semver Grafana compares as Prometheus 2.42: {build}"
    );
    assert!(
        build.get("features").is_none() && build.get("application").is_none(),
        "Grafana takes a buildinfo with features for Mimir: {build}"
    );
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(build[key].is_string(), "{key}: {build}");
    }

    let config = ok_data(&sonde, "/api/v1/status/config", &[]);
    let yaml = config["yaml"].as_str().unwrap();
    for want in [
        "[syn]",
        "retention = \"10d\"",
        &format!("listen = \"127.0.0.1:{}\"", sonde.port),
    ] {
        assert!(yaml.contains(want), "{want} missing from the config:\n{yaml}");
    }
    let flags = ok_data(&sonde, "/api/v1/status/flags", &[]);
    assert_eq!(flags["listen"], format!("127.0.0.1:{}", sonde.port), "{flags}");
    let rt = ok_data(&sonde, "/api/v1/status/runtimeinfo", &[]);
    assert_eq!(rt["storageRetention"], "10d", "{rt}");
    assert_eq!(rt["reloadConfigSuccess"], true, "{rt}");
    assert!(rt["startTime"].as_str().unwrap().ends_with('Z'), "{rt}");
    assert_eq!(rt["CWD"], sonde.dir().display().to_string(), "{rt}");

    let pretty = ok_data(
        &sonde,
        "/api/v1/format_query",
        &[("query", "sum(rate(x{a=\"b\"}[5m]))by(job)")],
    );
    assert_eq!(pretty, "sum by (job) (rate(x{a=\"b\"}[5m]))");
    let r = post(&sonde, "/api/v1/format_query", &[("query", "up  +  1")]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"status":"success","data":"up + 1"}"#)
    );
}

/// A request (path, parameters) and the status and body Prometheus 2.42 answers it with.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);

/// Each answer as Prometheus 2.42 gives it, byte for byte (recorded from 2.42.0).
#[test]
fn parameter_errors_like_prometheus() {
    let sonde = start();
    let cases: &[Case] = &[
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "10"), ("end", "5"), ("step", "1")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"end\": end timestamp must not be before start time"}"#,
        ),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "1"), ("end", "5"), ("step", "0")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"}"#,
        ),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "0"), ("end", "100000"), ("step", "1")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}"#,
        ),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "abc"), ("end", "5"), ("step", "1")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": cannot parse \"abc\" to a valid timestamp"}"#,
        ),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "1"), ("end", "2"), ("step", "x")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"step\": cannot parse \"x\" to a valid duration"}"#,
        ),
        (
            "/api/v1/query",
            &[("query", "up"), ("time", "abc")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp"}"#,
        ),
        (
            "/api/v1/query",
            &[("query", "up"), ("timeout", "abc")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"timeout\": cannot parse \"abc\" to a valid duration"}"#,
        ),
        (
            "/api/v1/series",
            &[],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#,
        ),
        (
            "/api/v1/series",
            &[("match[]", r#"{a=~".*"}"#)],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"match[]\": match[] must contain at least one non-empty matcher"}"#,
        ),
        (
            "/api/v1/labels",
            &[("match[]", r#"{a=~".*"}"#)],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"match[] must contain at least one non-empty matcher"}"#,
        ),
        (
            "/api/v1/series",
            &[("match[]", "up"), ("start", "x")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": Invalid time value for 'start': cannot parse \"x\" to a valid timestamp"}"#,
        ),
        (
            "/api/v1/label/1x/values",
            &[],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid label name: \"1x\""}"#,
        ),
        (
            "/api/v1/metadata",
            &[("limit", "x")],
            400,
            r#"{"status":"error","errorType":"bad_data","error":"limit must be a number"}"#,
        ),
        (
            "/api/v1/query_exemplars",
            &[("query", "up")],
            200,
            r#"{"status":"success","data":[]}"#,
        ),
    ];
    let mut wrong = Vec::new();
    for (path, query, status, body) in cases {
        let r = sonde.get_with_query(path, query);
        if (r.status, r.body.as_str()) != (*status, *body) {
            wrong.push(format!(
                "GET {path} {query:?}\n  want {status} {body}\n  got  {} {}",
                r.status, r.body
            ));
        }
        let p = post(&sonde, path, query);
        if !path.contains("/label/") && !path.contains("metadata") && (p.status, p.body.as_str()) != (*status, *body) {
            wrong.push(format!(
                "POST {path} {query:?}\n  want {status} {body}\n  got  {} {}",
                p.status, p.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The query text itself is the evaluator's to word; the class and code are ours.
    let (status, v) = get(&sonde, "/api/v1/query", &[("query", "up{")]);
    assert_eq!((status, &v["errorType"]), (400, &json!("bad_data")), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{v}"
    );
}

#[test]
fn query_and_query_range_answers() {
    let sonde = start();
    let v = ok_data(&sonde, "/api/v1/query", &[("query", r#"synthetic_value{i="1"}"#)]);
    assert_eq!(v["resultType"], "vector", "{v}");
    let result = v["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(
        result[0]["metric"],
        json!({"__name__": "synthetic_value", "i": "1", "instance": "box-1", "job": "syn", "label0": "value-0-abcdefgh"})
    );
    let (t, value) = (&result[0]["value"][0], &result[0]["value"][1]);
    assert!((t.as_f64().unwrap() - now_s()).abs() < 30.0, "time is now: {v}");
    assert!(value.as_str().unwrap().parse::<f64>().unwrap() >= 2.0, "{v}");

    let at = ok_data(
        &sonde,
        "/api/v1/query",
        &[("query", "time()"), ("time", "2015-07-01T20:10:51.781Z")],
    );
    assert_eq!(
        at,
        json!({"resultType": "scalar", "result": [1435781451.781, "1435781451.781"]})
    );
    let s = ok_data(
        &sonde,
        "/api/v1/query",
        &[("query", "\"a<b\""), ("time", "1435781451.5")],
    );
    assert_eq!(s, json!({"resultType": "string", "result": [1435781451.5, "a<b"]}));
    let r = sonde.get_with_query("/api/v1/query", &[("query", "vector(1e-7)"), ("time", "1435781451.5")]);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1435781451.500,"1e-07"]}]}}"#,
        "Prometheus's number formats"
    );

    let end = now_s().floor();
    let (start, end) = ((end - 4.0).to_string(), end.to_string());
    let range = [
        ("query", r#"synthetic_value{i=~"0|2"}"#),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", "1s"),
    ];
    let m = ok_data(&sonde, "/api/v1/query_range", &range);
    assert_eq!(m["resultType"], "matrix", "{m}");
    let series = m["result"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{m}");
    assert_eq!(series[0]["metric"]["i"], "0", "sorted by labels: {m}");
    let values = series[1]["values"].as_array().unwrap();
    assert!(
        (4..=5).contains(&values.len()),
        "5 steps of 1s in 4s, the first may precede the data: {m}"
    );
    let times: Vec<f64> = values.iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 1.0), "{times:?}");
    assert_eq!(*times.last().unwrap(), end.parse::<f64>().unwrap());
    let posted = post(&sonde, "/api/v1/query_range", &range);
    assert_eq!(parse(&posted, "POST query_range")["data"], m, "POST form = GET");

    let empty = ok_data(
        &sonde,
        "/api/v1/query_range",
        &[("query", "nothing_here"), ("start", "1"), ("end", "2"), ("step", "1")],
    );
    assert_eq!(empty, json!({"resultType": "matrix", "result": []}));
}

/// A query that is still running at its `timeout` fails with Prometheus's timeout error
/// (503). The deadline is made to pass before evaluation starts (`timeout=0`, which
/// Prometheus also answers with a timeout): how long a real query takes depends on the
/// machine. That a long evaluation is stopped at its deadline, and that a client going
/// away stops its query, is tested beside the handler.
#[test]
fn a_query_past_its_timeout_fails() {
    let sonde = start();
    let t0 = Instant::now();
    let r = sonde.get_with_query(
        "/api/v1/query",
        &[("query", "count_over_time(vector(1)[1d:1s])"), ("timeout", "0")],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            503,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#
        )
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    // The same query with time to run answers.
    let r = sonde.get_with_query(
        "/api/v1/query",
        &[("query", "count_over_time(vector(1)[1d:1s])"), ("timeout", "30s")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn sonde_query_prints_tables() {
    let sonde = start();
    let server = sonde.url("");
    let out = run_sonde(
        sonde.dir(),
        &["query", "--server", &server, r#"synthetic_value{i=~"0|1"}"#],
    );
    assert!(out.status.success(), "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].starts_with(r#"synthetic_value{i="0", instance="box-1", job="syn", label0="value-0-abcdefgh"}  "#),
        "{}",
        out.stdout
    );
    let value: f64 = lines[1].rsplit(' ').next().unwrap().parse().expect("a number last");
    assert!(value >= 2.0, "{}", out.stdout);

    let out = run_sonde(
        sonde.dir(),
        &[
            "query",
            "--listen",
            &format!("127.0.0.1:{}", sonde.port),
            "up",
            "--start",
            &(now_s() - 4.0).to_string(),
            "--step",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], r#"up{instance="box-1", job="syn"}"#, "{}", out.stdout);
    assert!((2..=3).contains(&(lines.len() - 1)), "2 or 3 points: {}", out.stdout);
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  ") && l.ends_with("  1")),
        "{}",
        out.stdout
    );

    let scalar = run_sonde(sonde.dir(), &["query", "--server", &server, "1+1"]);
    assert_eq!(scalar.stdout, "2\n", "{}", scalar.all());

    let bad = run_sonde(sonde.dir(), &["query", "--server", &server, "up{"]);
    assert_eq!(bad.status.code(), Some(1), "{}", bad.all());
    assert!(bad.stdout.is_empty(), "{}", bad.all());
    assert!(
        bad.stderr.starts_with("error: bad_data: invalid parameter \"query\": "),
        "{}",
        bad.stderr
    );
    let unreachable = run_sonde(sonde.dir(), &["query", "--server", "http://127.0.0.1:1", "up"]);
    assert_eq!(unreachable.status.code(), Some(1), "{}", unreachable.all());
    assert!(
        unreachable.stderr.contains("cannot reach sonde at http://127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );
}
