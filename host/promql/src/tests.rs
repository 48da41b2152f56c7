//! Evaluator tests over an in-memory querier. Expected values are worked out by hand
//! from Prometheus 2.42's documented semantics (the differential test in
//! tests/tests/promql_diff.rs checks the same against a real Prometheus).

use crate::{EngineOpts, Labels, Matcher, Querier, QueryValue, SeriesSamples, instant_query, parse, range_query};
use std::sync::Arc;

const STALE: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

struct Mem(Vec<SeriesSamples>);

impl Querier for Mem {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let mut out: Vec<_> = self
            .0
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or(""))))
            .map(|(l, s)| {
                (
                    l.clone(),
                    s.iter().copied().filter(|(t, _)| *t >= mint && *t <= maxt).collect(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn labels(s: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(s.iter().map(|(n, v)| (Arc::from(*n), Arc::from(*v))).collect())
}

fn series(name: &str, extra: &[(&str, &str)], samples: &[(i64, f64)]) -> (Labels, Vec<(i64, f64)>) {
    let mut l = vec![("__name__", name)];
    l.extend_from_slice(extra);
    (labels(&l), samples.to_vec())
}

/// Samples every `step_s` seconds from 0 to `end_s`, value `f(t_seconds)`.
fn every(step_s: i64, end_s: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..=end_s / step_s)
        .map(|i| (i * step_s * 1000, f(i * step_s)))
        .collect()
}

fn instant(db: &Mem, q: &str, t_s: i64) -> Result<Vec<(String, f64)>, crate::Error> {
    let e = parse(q)?;
    match instant_query(db, &e, t_s * 1000, &EngineOpts::default())? {
        QueryValue::Vector(v) => {
            let mut out: Vec<(String, f64)> = v.into_iter().map(|(l, _, v)| (format!("{l:?}"), v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        }
        QueryValue::Scalar(_, v) => Ok(vec![("scalar".into(), v)]),
        other => panic!("unexpected {other:?}"),
    }
}

fn one(db: &Mem, q: &str, t_s: i64) -> f64 {
    let v = instant(db, q, t_s).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(v.len(), 1, "{q} at {t_s}: {v:?}");
    v[0].1
}

fn empty(db: &Mem, q: &str, t_s: i64) -> bool {
    instant(db, q, t_s).unwrap_or_else(|e| panic!("{q}: {e}")).is_empty()
}

fn db() -> Mem {
    Mem(vec![
        // A counter rising 1 per second, sampled every 10 s for an hour.
        series("c", &[("job", "a"), ("i", "1")], &every(10, 3600, |t| t as f64)),
        series("c", &[("job", "a"), ("i", "2")], &every(10, 3600, |t| 2.0 * t as f64)),
        series("c", &[("job", "b"), ("i", "1")], &every(10, 3600, |t| 3.0 * t as f64)),
        series("info", &[("job", "a"), ("team", "x")], &every(10, 3600, |_| 1.0)),
        series("info", &[("job", "b"), ("team", "y")], &every(10, 3600, |_| 1.0)),
        // A gauge that stops at 100 s with a stale marker at 110 s.
        series("g", &[], &[(0, 1.0), (50, 2.0), (100_000, 5.0), (110_000, STALE)]),
        // A gauge with a gap.
        series("gap", &[], &[(0, 7.0), (600_000, 8.0)]),
    ])
}

#[test]
fn lookback_is_five_minutes_inclusive_and_stale_markers_end_a_series() {
    let db = db();
    assert_eq!(one(&db, "gap", 300), 7.0, "a sample exactly lookback old still counts");
    assert!(empty(&db, "gap", 301), "older than lookback is gone");
    assert_eq!(one(&db, "gap", 600), 8.0);
    assert_eq!(one(&db, "g", 100), 5.0);
    assert!(empty(&db, "g", 110), "the stale marker hides the series");
    assert!(empty(&db, "g", 200));
}

#[test]
fn offset_and_at_move_the_evaluation_time() {
    let db = db();
    assert_eq!(one(&db, r#"c{job="a",i="1"} offset 1m"#, 600), 540.0);
    assert_eq!(one(&db, r#"c{job="a",i="1"} offset -1m"#, 600), 660.0);
    assert_eq!(one(&db, r#"c{job="a",i="1"} @ 100"#, 600), 100.0);
    assert_eq!(one(&db, r#"c{job="a",i="1"} @ 100 offset 50s"#, 600), 50.0);
    // @ start() / end() of a range query: every step sees the same value.
    let e = parse(r#"c{job="a",i="1"} @ end()"#).unwrap();
    let QueryValue::Matrix(m) = range_query(&db, &e, 0, 600_000, 60_000, &EngineOpts::default()).unwrap() else {
        panic!()
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].1.iter().all(|(_, v)| *v == 600.0), "{:?}", m[0].1);
    assert_eq!(m[0].1.len(), 11);
}

#[test]
fn rate_drops_the_name_and_last_over_time_keeps_it() {
    let db = db();
    let v = instant(&db, r#"rate(c{job="a",i="1"}[5m])"#, 600).unwrap();
    assert_eq!(v[0].0, r#"{i="1",job="a"}"#);
    assert!((v[0].1 - 1.0).abs() < 1e-12, "{v:?}");
    let v = instant(&db, r#"last_over_time(c{job="a",i="1"}[5m])"#, 605).unwrap();
    assert_eq!(v, vec![(r#"c{i="1",job="a"}"#.to_string(), 600.0)]);
}

#[test]
fn range_function_duplicates_are_an_error_even_without_overlap() {
    let db = Mem(vec![
        series("x", &[("a", "1")], &[(0, 1.0), (10_000, 2.0)]),
        series("y", &[("a", "1")], &[(1_000_000, 1.0), (1_010_000, 2.0)]),
    ]);
    let e = parse(r#"rate({__name__=~"x|y"}[1m])"#).unwrap();
    let r = range_query(&db, &e, 0, 1_010_000, 10_000, &EngineOpts::default());
    assert_eq!(r.unwrap_err().error_type(), "execution");
    // Element-wise functions only fail where both are present at the same step.
    let e = parse(r#"abs({__name__=~"x|y"})"#).unwrap();
    let opts = EngineOpts {
        lookback_ms: 30_000,
        ..EngineOpts::default()
    };
    let QueryValue::Matrix(m) = range_query(&db, &e, 0, 1_010_000, 10_000, &opts).unwrap() else {
        panic!()
    };
    assert_eq!(m.len(), 1, "merged into one series");
    assert_eq!(m[0].1.first(), Some(&(0, 1.0)));
    assert_eq!(m[0].1.last(), Some(&(1_010_000, 2.0)));
}

#[test]
fn aggregations_group_by_and_without() {
    let db = db();
    assert_eq!(one(&db, "sum(c)", 100), 600.0);
    let v = instant(&db, "sum by (job) (c)", 100).unwrap();
    assert_eq!(v, vec![(r#"{job="a"}"#.into(), 300.0), (r#"{job="b"}"#.into(), 300.0)]);
    let v = instant(&db, "max without (i) (c)", 100).unwrap();
    assert_eq!(v, vec![(r#"{job="a"}"#.into(), 200.0), (r#"{job="b"}"#.into(), 300.0)]);
    assert_eq!(one(&db, "count(c)", 100), 3.0);
    assert_eq!(one(&db, "avg(c)", 100), 200.0);
    assert_eq!(
        one(&db, "stdvar(c)", 100),
        (100.0f64.powi(2) + 0.0 + 100.0f64.powi(2)) / 3.0
    );
    assert_eq!(one(&db, "group(c)", 100), 1.0);
    let v = instant(&db, "topk(1, c)", 100).unwrap();
    assert_eq!(v, vec![(r#"c{i="1",job="b"}"#.into(), 300.0)]);
    let v = instant(&db, "bottomk by (job) (1, c)", 100).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0], (r#"c{i="1",job="a"}"#.into(), 100.0));
    let v = instant(&db, r#"count_values("v", c)"#, 100).unwrap();
    assert_eq!(v.len(), 3);
    assert!(v.contains(&(r#"{v="200"}"#.into(), 1.0)), "{v:?}");
}

#[test]
fn vector_matching_and_errors() {
    let db = db();
    let v = instant(&db, r#"c * on (job) group_left (team) info"#, 100).unwrap();
    assert_eq!(v.len(), 3);
    assert!(v.contains(&(r#"{i="2",job="a",team="x"}"#.into(), 200.0)), "{v:?}");
    // One-to-one with two left series per match group.
    let e = instant(&db, r#"c * on (job) info"#, 100).unwrap_err();
    assert!(e.message().contains("multiple matches for labels"), "{e}");
    // Duplicates on the "one" side.
    let e = instant(&db, r#"info * on (job) group_left c"#, 100).unwrap_err();
    assert!(
        e.message().contains("found duplicate series for the match group"),
        "{e}"
    );
    // Comparison filters keep the left value and name; bool gives 0/1 without name.
    let v = instant(&db, r#"c > 150"#, 100).unwrap();
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|(l, _)| l.starts_with("c{")));
    let v = instant(&db, r#"c > bool 150"#, 100).unwrap();
    assert_eq!(v.iter().map(|x| x.1).sum::<f64>(), 2.0);
    assert!(v.iter().all(|(l, _)| l.starts_with('{')));
    assert_eq!(one(&db, "2 ^ 3 ^ 2", 0), 512.0, "^ is right-associative");
}

#[test]
fn set_operators() {
    let db = db();
    assert_eq!(instant(&db, r#"c and on (job) info{team="x"}"#, 100).unwrap().len(), 2);
    assert_eq!(
        instant(&db, r#"c unless on (job) info{team="x"}"#, 100).unwrap().len(),
        1
    );
    let v = instant(&db, r#"info or c"#, 100).unwrap();
    assert_eq!(v.len(), 5);
    let v = instant(&db, r#"c{job="a"} or c"#, 100).unwrap();
    assert_eq!(v.len(), 3);
}

#[test]
fn absent_and_scalar() {
    let db = db();
    let v = instant(&db, r#"absent(nope{job="x", a=~"y"})"#, 100).unwrap();
    assert_eq!(v, vec![(r#"{job="x"}"#.into(), 1.0)]);
    assert!(empty(&db, "absent(c)", 100));
    assert_eq!(one(&db, r#"scalar(c{job="b"})"#, 100), 300.0);
    assert!(one(&db, "scalar(c)", 100).is_nan());
    assert_eq!(one(&db, "time()", 100), 100.0);
    assert_eq!(one(&db, "vector(1) + 1", 100), 2.0);
}

#[test]
fn subqueries_align_to_their_step() {
    let db = db();
    // Steps at 60, 120, ..., 600: ten values of c{job="a",i="1"}.
    assert_eq!(one(&db, r#"count_over_time(c{job="a",i="1"}[10m:1m])"#, 630), 10.0);
    // The window is closed: with t = 600 the step at 0 is included.
    assert_eq!(one(&db, r#"count_over_time(c{job="a",i="1"}[10m:1m])"#, 600), 11.0);
    assert_eq!(
        one(&db, r#"max_over_time(c{job="a",i="1"}[10m:1m] offset 1m)"#, 630),
        540.0
    );
}

#[test]
fn timestamp_of_a_selector_is_the_sample_time() {
    let db = db();
    assert_eq!(one(&db, r#"timestamp(c{job="a",i="1"})"#, 105), 100.0);
    assert_eq!(one(&db, r#"timestamp(c{job="a",i="1"} + 0)"#, 105), 105.0);
}

#[test]
fn functions_outside_prometheus_2_42_are_refused() {
    assert_eq!(parse("mad_over_time(c[5m])").unwrap_err().error_type(), "bad_data");
    assert_eq!(parse("limitk(1, c)").unwrap_err().error_type(), "bad_data");
    assert!(parse("holt_winters(c[5m], 0.5, 0.5)").is_ok());
}

#[test]
fn limits_cancel_and_count_samples() {
    let db = db();
    let e = parse("c").unwrap();
    let opts = EngineOpts {
        max_samples: 2,
        ..EngineOpts::default()
    };
    let err = instant_query(&db, &e, 100_000, &opts).unwrap_err();
    assert_eq!(err.error_type(), "execution");
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let opts = EngineOpts {
        cancel: Some(cancel),
        ..EngineOpts::default()
    };
    assert_eq!(
        instant_query(&db, &e, 100_000, &opts).unwrap_err().error_type(),
        "canceled"
    );
}

#[test]
fn durations_must_have_units_as_in_2_42() {
    for bad in [
        "c offset 5",
        "c[5]",
        "rate(c[5m:1])[1m:]",
        "c offset -5",
        "max_over_time(c[1m+1m])",
    ] {
        assert_eq!(parse(bad).map(|_| ()).unwrap_err().error_type(), "bad_data", "{bad}");
    }
    for good in [
        "c offset 5m",
        "c offset -1h30m",
        "rate(c[5m])",
        "max_over_time(rate(c[1m])[10m:])",
        "max_over_time(c[10m:30s] offset 1m)",
        r#"c{a="[5]", b="offset 5"}"#,
        "sum by (offset) (c)",
    ] {
        assert!(parse(good).is_ok(), "{good}: {:?}", parse(good).err());
    }
    assert!(
        parse(r#"c{a=~"(?<x>a)"}"#).is_err(),
        "Go's regexp has no (?<name>...) groups"
    );
}

#[test]
fn a_subquery_grid_beyond_the_sample_limit_fails_before_allocating() {
    let db = db();
    let e = parse("count_over_time(vector(1)[2d:1ms])").unwrap();
    let err = instant_query(&db, &e, 0, &EngineOpts::default()).unwrap_err();
    assert_eq!(err.error_type(), "execution", "{err}");
    assert!(err.message().contains("too many samples"), "{err}");
}

#[test]
fn a_passed_deadline_stops_the_query_with_a_timeout() {
    let db = db();
    let e = parse("count_over_time(vector(1)[1d:1s])").unwrap();
    let opts = EngineOpts {
        timeout: std::time::Duration::ZERO,
        ..EngineOpts::default()
    };
    let err = instant_query(&db, &e, 0, &opts).unwrap_err();
    assert_eq!((err.error_type(), err.http_status()), ("timeout", 503), "{err}");
    assert!(instant_query(&db, &e, 0, &EngineOpts::default()).is_ok());
}
