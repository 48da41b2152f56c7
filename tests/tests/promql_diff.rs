//! The PromQL differential test: every query of tests/promql/queries.txt, as instant
//! queries at several times and as range queries over several grids, against
//! Prometheus 2.42 and sonde loaded with the same data (tests/src/prometheus/testdata.rs,
//! backfilled by `promtool` and by `sonde import`). Both HTTP APIs must give the same
//! answers (rules in tests/src/prometheus/api.rs).
//!
//! Every mismatch is reported, not just the first: a summary and one entry per
//! mismatching query on stderr, and the full report (every mismatching time or grid,
//! both answers) in `target/promql-diff/report.txt`, beside the data set (`data.om`).
//!
//! A second, smaller corpus (tests/promql/staleness.txt) runs over series with
//! staleness markers, loaded into Prometheus by remote write and into sonde's store
//! directly (OpenMetrics cannot carry markers); its report is `staleness-report.txt`.
//!
//! - `PROMQL_DIFF_FILTER=text`: only the queries containing `text` (or whose topic
//!   heading contains it), e.g. `PROMQL_DIFF_FILTER=histogram_quantile`.
//! - `PROMQL_DIFF_TARGET=prometheus`: compare Prometheus with a second Prometheus
//!   instead of sonde (checks the harness and the corpus themselves).

use sonde_tests::prometheus::api::{self, Answer, Data, Params};
use sonde_tests::prometheus::testdata::{self, END, START};
use sonde_tests::prometheus::{Prometheus, remote_write, sonde_import, start_sonde_on};
use sonde_tests::{Sonde, repo_root};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const CORPUS: &str = include_str!("../promql/queries.txt");

/// Queries over the staleness data set (series with staleness markers).
const STALENESS_CORPUS: &str = include_str!("../promql/staleness.txt");

/// The corpus must keep covering PromQL broadly.
const MIN_QUERIES: usize = 300;

/// Every function of Prometheus 2.42 (promql/parser/functions.go) and every aggregation:
/// each must be called somewhere in the corpus.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_sum",
    "histogram_fraction",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Concurrent queries (each asks both servers in turn): the machine has 2 cores.
const WORKERS: usize = 2;

/// One line of the corpus.
struct Query {
    line: usize,
    topic: String,
    text: String,
}

impl Query {
    /// Queries under a heading that mentions errors may fail in Prometheus; all others
    /// must succeed there (a typo in the corpus is caught by this).
    fn may_fail(&self) -> bool {
        self.topic.to_lowercase().contains("error")
    }
}

/// `## heading` starts a topic; other `#` lines and blank lines are comments.
fn corpus(text: &str) -> Vec<Query> {
    let mut topic = String::from("(no topic)");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(h) = line.strip_prefix("## ") {
            topic = h.trim().to_string();
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push(Query {
                line: i + 1,
                topic: topic.clone(),
                text: line.to_string(),
            });
        }
    }
    out
}

/// Where every query is evaluated: instant queries at the start of the data, inside it
/// (off the sample grid and on it, at midnight), at its end, within the lookback after
/// it and long after it; range queries over the data with a coarse step, over a wider
/// window with a step that does not divide it, and a short window at the sample step.
fn grid() -> Vec<Params> {
    let s = START * 1000;
    let e = END * 1000;
    vec![
        Params::Instant { time: s },
        Params::Instant { time: s + 4_023_500 },
        Params::Instant { time: s + 5_400_000 },
        Params::Instant { time: e },
        Params::Instant { time: e + 150_000 },
        Params::Instant { time: e + 3_600_000 },
        Params::Range {
            start: s,
            end: e,
            step: 60_000,
        },
        Params::Range {
            start: s - 600_000,
            end: e + 600_000,
            step: 420_000,
        },
        Params::Range {
            start: s + 5_000_000,
            end: s + 5_900_000,
            step: 15_000,
        },
    ]
}

/// One query's disagreement at one point of the grid.
struct Mismatch {
    params: Params,
    why: String,
    want: Answer,
    got: Answer,
}

/// Everything found about one query.
#[derive(Default)]
struct Outcome {
    mismatches: Vec<Mismatch>,
    /// Prometheus failed where the corpus says it should not (or never failed where
    /// it says it should): a problem of the corpus, not of the server under test.
    corpus_problem: Option<String>,
    /// Prometheus returned no data at any point of the grid.
    empty: bool,
}

fn check(q: &Query, reference: &str, target: &str) -> Outcome {
    let ordered = api::instant_order_defined(&q.text);
    let mut out = Outcome::default();
    let (mut errors, mut data) = (0, false);
    for params in grid() {
        let want = api::query(reference, &q.text, params);
        let got = api::query(target, &q.text, params);
        match &want {
            Answer::Error { error, .. } => {
                errors += 1;
                if !q.may_fail() && out.corpus_problem.is_none() {
                    out.corpus_problem = Some(format!("Prometheus fails ({params}): {error}"));
                }
            }
            Answer::Success(d) => data |= !is_empty(d),
            Answer::Broken(_) => {}
        }
        let ordered = ordered && matches!(params, Params::Instant { .. });
        if let Some(why) = api::diff(&want, &got, ordered) {
            out.mismatches.push(Mismatch { params, why, want, got });
        }
    }
    out.empty = !data && !q.may_fail();
    if q.may_fail() && errors == 0 && out.corpus_problem.is_none() {
        out.corpus_problem = Some("listed under errors, but Prometheus never fails".into());
    }
    out
}

fn is_empty(d: &Data) -> bool {
    match d {
        Data::Vector(v) => v.is_empty(),
        Data::Matrix(m) => m.is_empty(),
        Data::Scalar(_) | Data::String(..) => false,
    }
}

/// The kind of a mismatch, for the summary.
fn category(why: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("broken answer", "no valid API answer"),
        ("expected an error", "succeeded, Prometheus fails"),
        ("expected success", "failed, Prometheus succeeds"),
        ("errorType", "different errorType"),
        ("the error should say", "different error message"),
        ("resultType", "different resultType"),
        ("order:", "different order"),
        ("series, expected", "different series"),
        ("points, expected", "different number of points"),
        ("timestamp", "different timestamps"),
        ("value", "different values"),
    ];
    KINDS.iter().find(|(k, _)| why.contains(k)).map_or("other", |(_, c)| c)
}

/// `target/promql-diff/<name>`: reports and the data set.
fn out_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from);
    target.join("promql-diff").join(name)
}

/// Writes the full report, prints the summary; the number of failing queries.
fn report(queries: &[Query], outcomes: &[Outcome], target_name: &str, elapsed: f64, path: &Path) -> usize {
    let mut full = String::new();
    let mut short = String::new();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_topic: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let (mut failing, mut corpus_problems, mut empty) = (0, 0, 0);
    for (q, o) in queries.iter().zip(outcomes) {
        let topic = by_topic.entry(q.topic.as_str()).or_default();
        topic.1 += 1;
        empty += o.empty as usize;
        if let Some(p) = &o.corpus_problem {
            corpus_problems += 1;
            let _ = writeln!(short, "CORPUS line {}: {}\n    {p}", q.line, q.text);
            let _ = writeln!(full, "CORPUS line {}: {}\n    {p}\n", q.line, q.text);
        }
        if o.empty {
            let _ = writeln!(
                full,
                "EMPTY line {}: {} (no data from Prometheus anywhere)\n",
                q.line, q.text
            );
        }
        if o.mismatches.is_empty() {
            continue;
        }
        failing += 1;
        topic.0 += 1;
        let first = &o.mismatches[0];
        *by_category.entry(category(&first.why)).or_default() += 1;
        let _ = writeln!(
            short,
            "#{} [{}] {}\n  {} of {} evaluations differ; first: {}: {}\n    prometheus: {}\n    {target_name}: {}",
            q.line,
            q.topic,
            q.text,
            o.mismatches.len(),
            grid().len(),
            first.params,
            first.why,
            api::summarize(&first.want, 3, 4),
            api::summarize(&first.got, 3, 4),
        );
        let _ = writeln!(full, "#{} [{}] {}", q.line, q.topic, q.text);
        for m in &o.mismatches {
            let _ = writeln!(
                full,
                "  {}: {}\n    prometheus: {}\n    {target_name}: {}",
                m.params,
                m.why,
                api::summarize(&m.want, 10, 12),
                api::summarize(&m.got, 10, 12)
            );
        }
        full.push('\n');
    }
    let mut summary = format!(
        "PromQL differential test against {target_name}: {} queries × {} evaluations in {elapsed:.1} s; \
         {failing} queries differ, {corpus_problems} corpus problems, {empty} queries return no data anywhere\n",
        queries.len(),
        grid().len()
    );
    if failing > 0 {
        summary.push_str("mismatching queries by kind of first difference:\n");
        for (c, n) in &by_category {
            let _ = writeln!(summary, "  {n:5}  {c}");
        }
        summary.push_str("by topic (differ / queries):\n");
        for (t, (bad, all)) in &by_topic {
            if *bad > 0 {
                let _ = writeln!(summary, "  {bad:4} / {all:<4} {t}");
            }
        }
    }
    let _ = std::fs::create_dir_all(path.parent().expect("report dir"));
    std::fs::write(path, format!("{summary}\n{full}")).expect("write the report");
    eprintln!("{short}\n{summary}full report: {}", path.display());
    failing + corpus_problems
}

/// The server under test, kept alive while it is queried.
enum Target {
    Sonde(Sonde),
    Prometheus(Prometheus),
}

/// Prometheus and the server under test, loaded with the data set.
struct Servers {
    reference: Prometheus,
    target: Target,
    _dir: tempfile::TempDir,
}

impl Servers {
    /// Writes the data set to `file` and loads it into both servers.
    fn start(file: &Path) -> Servers {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = testdata::generate();
        std::fs::create_dir_all(file.parent().expect("a file in a directory")).expect("create the data set's dir");
        std::fs::write(file, &data.openmetrics).expect("write the data set");
        let started = Instant::now();
        let reference = Prometheus::start_with_openmetrics(file);
        let against_prometheus = std::env::var("PROMQL_DIFF_TARGET").is_ok_and(|t| t == "prometheus");
        let target = if against_prometheus {
            Target::Prometheus(Prometheus::start_with_openmetrics(file))
        } else {
            let sonde_data = dir.path().join("sonde-data");
            sonde_import(file, &sonde_data);
            Target::Sonde(start_sonde_on(sonde_data))
        };
        eprintln!(
            "data set: {} series, {} samples; both servers ready in {:.1} s",
            data.series,
            data.samples,
            started.elapsed().as_secs_f64()
        );
        Servers {
            reference,
            target,
            _dir: dir,
        }
    }

    fn target_url(&self) -> String {
        match &self.target {
            Target::Sonde(s) => s.url(""),
            Target::Prometheus(p) => p.url(""),
        }
    }

    fn target_name(&self) -> &'static str {
        match &self.target {
            Target::Sonde(_) => "sonde",
            Target::Prometheus(_) => "prometheus#2",
        }
    }
}

/// The corpus's queries that `PROMQL_DIFF_FILTER` selects (all without it).
fn selected(text: &str) -> Vec<Query> {
    let filter = std::env::var("PROMQL_DIFF_FILTER").unwrap_or_default();
    corpus(text)
        .into_iter()
        .filter(|q| q.text.contains(&filter) || q.topic.contains(&filter))
        .collect()
}

/// Checks `queries` on both servers (in parallel), reports to stderr and `report`; the
/// number of failing queries.
fn run_corpus(
    queries: &[Query],
    reference_url: &str,
    target_url: &str,
    target_name: &str,
    report_file: &Path,
) -> usize {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..queries.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(q) = queries.get(i) else { break };
                    let o = check(q, reference_url, target_url);
                    results.lock().expect("results")[i] = Some(o);
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|o| o.expect("every query ran"))
        .collect();
    report(
        queries,
        &outcomes,
        target_name,
        started.elapsed().as_secs_f64(),
        report_file,
    )
}

#[test]
fn promql_matches_prometheus() {
    let queries = selected(CORPUS);
    if queries.is_empty() {
        eprintln!("no query of queries.txt matches PROMQL_DIFF_FILTER");
        return;
    }
    // Kept beside the report, to reproduce a case by hand with promtool and prometheus.
    let servers = Servers::start(&out_path("data.om"));
    let report_file = out_path("report.txt");
    let failing = run_corpus(
        &queries,
        &servers.reference.url(""),
        &servers.target_url(),
        servers.target_name(),
        &report_file,
    );
    assert_eq!(
        failing,
        0,
        "{failing} queries differ from Prometheus or are wrong in the corpus (report: {})",
        report_file.display()
    );
}

/// The same over series with staleness markers, which only remote write (Prometheus)
/// and the store itself (sonde) can load.
#[test]
fn promql_with_staleness_matches_prometheus() {
    let queries = selected(STALENESS_CORPUS);
    if queries.is_empty() {
        eprintln!("no query of staleness.txt matches PROMQL_DIFF_FILTER");
        return;
    }
    let series = testdata::staleness();
    let reference = Prometheus::start_empty(&["--web.enable-remote-write-receiver"]);
    remote_write::to_prometheus(&reference.url(""), &series);
    let dir = tempfile::tempdir().expect("temp dir");
    let target = if std::env::var("PROMQL_DIFF_TARGET").is_ok_and(|t| t == "prometheus") {
        let p = Prometheus::start_empty(&["--web.enable-remote-write-receiver"]);
        remote_write::to_prometheus(&p.url(""), &series);
        Target::Prometheus(p)
    } else {
        let data = dir.path().join("sonde-data");
        remote_write::to_sonde_store(&data, &series);
        Target::Sonde(start_sonde_on(data))
    };
    let (target_url, target_name) = match &target {
        Target::Sonde(s) => (s.url(""), "sonde"),
        Target::Prometheus(p) => (p.url(""), "prometheus#2"),
    };
    for (name, url) in [("prometheus", reference.url("")), (target_name, target_url.clone())] {
        assert_markers_loaded(name, &url);
    }
    let report_file = out_path("staleness-report.txt");
    let failing = run_corpus(&queries, &reference.url(""), &target_url, target_name, &report_file);
    assert_eq!(
        failing,
        0,
        "{failing} staleness queries differ from Prometheus or are wrong in the corpus (report: {})",
        report_file.display()
    );
}

/// A marker hides a series at once; a series that just stops stays for the lookback.
#[track_caller]
fn assert_markers_loaded(name: &str, url: &str) {
    let at = Params::Instant {
        time: (START + 301 * 15) * 1000,
    };
    let ended = api::query(url, "stale_gauge{case=\"ends_stale\"}", at);
    let stopped = api::query(url, "stale_gauge{case=\"no_marker\"}", at);
    let len = |a: &Answer| match a {
        Answer::Success(Data::Vector(v)) => Some(v.len()),
        _ => None,
    };
    assert_eq!(
        (len(&ended), len(&stopped)),
        (Some(0), Some(1)),
        "{name} did not load the staleness markers: {} / {}",
        api::summarize(&ended, 2, 2),
        api::summarize(&stopped, 2, 2)
    );
}

/// The corpus itself: large enough, no query twice. (That every query outside an
/// errors heading succeeds in Prometheus is checked by the test above.)
#[test]
fn corpus_is_broad_and_has_no_duplicates() {
    for text in [CORPUS, STALENESS_CORPUS] {
        let mut seen = BTreeMap::new();
        for q in corpus(text) {
            if let Some(first) = seen.insert(q.text.clone(), q.line) {
                panic!("line {} repeats line {first}: {}", q.line, q.text);
            }
        }
    }
    let queries = corpus(CORPUS);
    assert!(queries.len() >= MIN_QUERIES, "the corpus has {} queries", queries.len());
    let uncalled: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|f| !queries.iter().any(|q| calls(&q.text, f)))
        .collect();
    assert!(uncalled.is_empty(), "the corpus never calls {uncalled:?}");
}

/// Whether `query` calls `name` (`name(` or `name by (...)`/`name without (...)` not
/// preceded by an identifier character).
fn calls(query: &str, name: &str) -> bool {
    query.match_indices(name).any(|(i, _)| {
        let before = query[..i].chars().next_back();
        let after = query[i + name.len()..].trim_start();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && (after.starts_with('(') || after.starts_with("by") || after.starts_with("without"))
    })
}

/// How the query API reads its parameters: times as Unix seconds or RFC 3339, steps as
/// seconds or durations, and which combinations are errors.
#[test]
fn api_parameters_match_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = Servers::start(&dir.path().join("data.om"));
    let (reference, target) = (servers.reference.url(""), servers.target_url());
    let q = ("query", "sum by (job) (rate(http_requests_total[5m]))");
    let (s, e) = (START.to_string(), END.to_string());
    let (s, e) = (s.as_str(), e.as_str());
    let too_many = (START + 11_001).to_string();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/api/v1/query", vec![q, ("time", "2024-03-01T00:00:00Z")]),
        ("/api/v1/query", vec![q, ("time", "2024-03-01T01:00:00.5+01:00")]),
        ("/api/v1/query", vec![q, ("time", "2024-03-01T00:00:00.123Z")]),
        ("/api/v1/query", vec![q, ("time", "1709251200.123")]),
        ("/api/v1/query", vec![q, ("time", "9999999999")]),
        ("/api/v1/query", vec![q, ("time", e), ("timeout", "30s")]),
        (
            "/api/v1/query",
            vec![("query", "queue_length"), ("time", "1709251200.5")],
        ),
        ("/api/v1/query", vec![q, ("time", "yesterday")]),
        ("/api/v1/query", vec![("time", e)]),
        ("/api/v1/query", vec![("query", ""), ("time", e)]),
        ("/api/v1/query_range", vec![q, ("start", s), ("end", e), ("step", "1m")]),
        (
            "/api/v1/query_range",
            vec![q, ("start", s), ("end", e), ("step", "5m30s")],
        ),
        (
            "/api/v1/query_range",
            vec![q, ("start", s), ("end", e), ("step", "60.5")],
        ),
        ("/api/v1/query_range", vec![q, ("start", s), ("end", e), ("step", "1d")]),
        (
            "/api/v1/query_range",
            vec![
                q,
                ("start", "2024-02-29T23:00:00Z"),
                ("end", "2024-03-01T00:30:00.5Z"),
                ("step", "7.5"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![q, ("start", "1709250000.5"), ("end", "1709250600"), ("step", "30")],
        ),
        ("/api/v1/query_range", vec![q, ("start", e), ("end", e), ("step", "15")]),
        ("/api/v1/query_range", vec![q, ("start", e), ("end", s), ("step", "15")]),
        ("/api/v1/query_range", vec![q, ("start", s), ("end", e), ("step", "0")]),
        (
            "/api/v1/query_range",
            vec![q, ("start", s), ("end", e), ("step", "-60")],
        ),
        ("/api/v1/query_range", vec![q, ("start", s), ("end", e)]),
        ("/api/v1/query_range", vec![q, ("end", e), ("step", "60")]),
        (
            "/api/v1/query_range",
            vec![q, ("start", s), ("end", &too_many), ("step", "1")],
        ),
        (
            "/api/v1/query_range",
            vec![q, ("start", s), ("end", e), ("step", "1m"), ("timeout", "1m")],
        ),
    ];
    let mut failures = Vec::new();
    for (path, pairs) in &cases {
        let want = api::get(&reference, path, pairs);
        let got = api::get(&target, path, pairs);
        if let Some(why) = api::diff(&want, &got, false) {
            failures.push(format!(
                "{path} {pairs:?}: {why}\n    prometheus: {}\n    {}: {}",
                api::summarize(&want, 3, 4),
                servers.target_name(),
                api::summarize(&got, 3, 4)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} parameter cases differ from Prometheus:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
