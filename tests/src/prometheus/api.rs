//! Answers of the Prometheus query API (`/api/v1/query`, `/api/v1/query_range`),
//! parsed into values that can be compared: the same for Prometheus and for sonde.
//!
//! Comparison rules (what "the same answer" means for the differential test):
//! success vs error and the `errorType` must agree (and a few error messages that name
//! a PromQL semantic error must too); then the result type, the label sets, the
//! timestamps (exactly, in milliseconds) and the values (within [`REL_TOLERANCE`];
//! NaN equals NaN, ±Inf only itself). Range results must be in the same order
//! (Prometheus sorts them by labels); an instant vector is compared as a set unless the
//! query is `sort(...)`/`sort_desc(...)`, where the order of values must agree too.

use crate::http;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Largest relative difference of two values that still counts as equal.
pub const REL_TOLERANCE: f64 = 1e-9;

/// Error messages (substrings) whose presence in Prometheus's answer must be matched by
/// the other server: they name a semantic error a user would look up.
const KEY_ERRORS: &[&str] = &[
    "vector cannot contain metrics with the same labelset",
    "multiple matches for labels",
    "found duplicate series for the match group",
    "many-to-many matching not allowed",
];

pub type Labels = BTreeMap<String, String>;

/// One sample: milliseconds since the epoch and the value.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

#[derive(Debug, Clone)]
pub enum Data {
    Scalar(Point),
    String(i64, String),
    Vector(Vec<(Labels, Point)>),
    Matrix(Vec<(Labels, Vec<Point>)>),
}

#[derive(Debug, Clone)]
pub enum Answer {
    Success(Data),
    Error {
        error_type: String,
        error: String,
    },
    /// Not a Prometheus API answer at all (no connection, not JSON, wrong shape).
    Broken(String),
}

/// What to ask: an instant query at `time` or a range query; times in milliseconds.
#[derive(Debug, Clone, Copy)]
pub enum Params {
    Instant { time: i64 },
    Range { start: i64, end: i64, step: i64 },
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Params::Instant { time } => write!(f, "instant time={}", secs(*time)),
            Params::Range { start, end, step } => {
                write!(
                    f,
                    "range start={} end={} step={}",
                    secs(*start),
                    secs(*end),
                    secs(*step)
                )
            }
        }
    }
}

/// Milliseconds as the API's seconds (`1709245800.5`).
pub fn secs(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.3}", ms as f64 / 1000.0)
    }
}

/// `GET base+path` with these query pairs, parsed as an API answer.
pub fn get(base: &str, path: &str, pairs: &[(&str, &str)]) -> Answer {
    match http::get_with_query(&format!("{base}{path}"), pairs) {
        Ok(r) => parse_answer(r.status, &r.body),
        Err(e) => Answer::Broken(e),
    }
}

/// Runs `query` against the server at `base` (`http://127.0.0.1:port`).
pub fn query(base: &str, query: &str, params: Params) -> Answer {
    let (path, pairs) = match params {
        Params::Instant { time } => (
            "/api/v1/query",
            vec![("query", query.to_string()), ("time", secs(time))],
        ),
        Params::Range { start, end, step } => (
            "/api/v1/query_range",
            vec![
                ("query", query.to_string()),
                ("start", secs(start)),
                ("end", secs(end)),
                ("step", secs(step)),
            ],
        ),
    };
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    get(base, path, &pairs)
}

/// Parses an API body (any status).
pub fn parse_answer(status: u16, body: &str) -> Answer {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Answer::Broken(format!("HTTP {status}, not JSON ({e}): {}", abbreviate(body, 300))),
    };
    match v["status"].as_str() {
        Some("success") if status == 200 => match parse_data(&v["data"]) {
            Ok(d) => Answer::Success(d),
            Err(e) => Answer::Broken(format!("bad data ({e}): {}", abbreviate(body, 300))),
        },
        Some("error") if status != 200 => Answer::Error {
            error_type: v["errorType"].as_str().unwrap_or("<none>").to_string(),
            error: v["error"].as_str().unwrap_or("<none>").to_string(),
        },
        _ => Answer::Broken(format!("HTTP {status}: {}", abbreviate(body, 300))),
    }
}

fn parse_data(d: &Value) -> Result<Data, String> {
    let result = &d["result"];
    Ok(match d["resultType"].as_str() {
        Some("scalar") => Data::Scalar(point(result)?),
        Some("string") => {
            let p = result
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("string is not [t, s]")?;
            let s = p[1].as_str().ok_or("string value is not a string")?;
            Data::String(time(&p[0])?, s.to_string())
        }
        Some("vector") => {
            let items = result.as_array().ok_or("vector result is not an array")?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push((labels(&item["metric"])?, point(&item["value"])?));
            }
            Data::Vector(out)
        }
        Some("matrix") => {
            let items = result.as_array().ok_or("matrix result is not an array")?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let values = item["values"].as_array().ok_or("series without values")?;
                let points = values.iter().map(point).collect::<Result<Vec<_>, _>>()?;
                out.push((labels(&item["metric"])?, points));
            }
            Data::Matrix(out)
        }
        other => return Err(format!("unknown resultType {other:?}")),
    })
}

fn labels(v: &Value) -> Result<Labels, String> {
    let obj = v.as_object().ok_or("metric is not an object")?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or("label value is not a string")?.to_string())))
        .collect()
}

fn time(v: &Value) -> Result<i64, String> {
    let t = v.as_f64().ok_or("timestamp is not a number")?;
    Ok((t * 1000.0).round() as i64)
}

fn point(v: &Value) -> Result<Point, String> {
    let p = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or("sample is not [t, \"v\"]")?;
    let s = p[1].as_str().ok_or("sample value is not a string")?;
    let v = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().map_err(|_| format!("sample value {s:?} is not a number"))?,
    };
    Ok(Point { t: time(&p[0])?, v })
}

/// Whether two values are the same for the test.
pub fn same_value(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() || a == b {
        return a == b;
    }
    (a - b).abs() <= REL_TOLERANCE * a.abs().max(b.abs())
}

/// Whether the query's result order is defined for an instant query: the outermost
/// expression is a call of `sort` or `sort_desc`.
pub fn instant_order_defined(query: &str) -> bool {
    let mut q = query.trim();
    while let Some(inner) = q.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        q = inner.trim();
    }
    let Some(args) = q.strip_prefix("sort_desc").or_else(|| q.strip_prefix("sort")) else {
        return false;
    };
    let args = args.trim_start();
    if !args.starts_with('(') {
        return false;
    }
    // The parenthesis after the name must close at the very end.
    let mut depth = 0;
    for (i, c) in args.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i == args.len() - 1;
                }
            }
            _ => {}
        }
    }
    false
}

/// The first difference between Prometheus's answer (`want`) and the other server's
/// (`got`), or `None` when they agree. `ordered` says whether an instant vector's
/// order is defined (see [`instant_order_defined`]).
pub fn diff(want: &Answer, got: &Answer, ordered: bool) -> Option<String> {
    match (want, got) {
        (_, Answer::Broken(e)) => Some(format!("broken answer: {e}")),
        (Answer::Broken(e), _) => Some(format!("the reference answer is broken: {e}")),
        (Answer::Error { .. }, Answer::Success(_)) => Some("expected an error, got success".into()),
        (Answer::Success(_), Answer::Error { .. }) => Some("expected success, got an error".into()),
        (
            Answer::Error {
                error_type: wt,
                error: we,
            },
            Answer::Error {
                error_type: gt,
                error: ge,
            },
        ) => {
            if wt != gt {
                return Some(format!("errorType {gt:?}, expected {wt:?}"));
            }
            KEY_ERRORS
                .iter()
                .find(|k| we.contains(*k) && !ge.contains(*k))
                .map(|k| format!("the error should say {k:?}"))
        }
        (Answer::Success(w), Answer::Success(g)) => diff_data(w, g, ordered),
    }
}

fn diff_data(want: &Data, got: &Data, ordered: bool) -> Option<String> {
    match (want, got) {
        (Data::Scalar(w), Data::Scalar(g)) => diff_point(w, g).map(|d| format!("scalar: {d}")),
        (Data::String(wt, ws), Data::String(gt, gs)) => {
            (wt != gt || ws != gs).then(|| format!("string ({}, {gs:?}), expected ({}, {ws:?})", secs(*gt), secs(*wt)))
        }
        (Data::Vector(w), Data::Vector(g)) => diff_vector(w, g, ordered),
        (Data::Matrix(w), Data::Matrix(g)) => diff_matrix(w, g),
        _ => Some(format!("resultType {}, expected {}", kind(got), kind(want))),
    }
}

fn kind(d: &Data) -> &'static str {
    match d {
        Data::Scalar(_) => "scalar",
        Data::String(..) => "string",
        Data::Vector(_) => "vector",
        Data::Matrix(_) => "matrix",
    }
}

fn diff_point(w: &Point, g: &Point) -> Option<String> {
    if w.t != g.t {
        Some(format!("timestamp {}, expected {}", secs(g.t), secs(w.t)))
    } else if !same_value(w.v, g.v) {
        Some(format!(
            "value {} at {}, expected {}",
            fmt_value(g.v),
            secs(g.t),
            fmt_value(w.v)
        ))
    } else {
        None
    }
}

fn diff_vector(want: &[(Labels, Point)], got: &[(Labels, Point)], ordered: bool) -> Option<String> {
    let w: BTreeMap<&Labels, &Point> = want.iter().map(|(l, p)| (l, p)).collect();
    let g: BTreeMap<&Labels, &Point> = got.iter().map(|(l, p)| (l, p)).collect();
    if g.len() != got.len() {
        return Some("the vector has the same label set twice".into());
    }
    if let Some(d) = diff_label_sets(w.keys().copied(), g.keys().copied()) {
        return Some(d);
    }
    for (l, wp) in &w {
        if let Some(d) = diff_point(wp, g[l]) {
            return Some(format!("{}: {d}", fmt_labels(l)));
        }
    }
    if ordered {
        // Ties may come in any order: compare the value sequence, not the labels.
        for (i, ((_, wp), (gl, gp))) in want.iter().zip(got).enumerate() {
            if !same_value(wp.v, gp.v) {
                return Some(format!(
                    "order: element {i} is {} = {}, expected value {}",
                    fmt_labels(gl),
                    fmt_value(gp.v),
                    fmt_value(wp.v)
                ));
            }
        }
    }
    None
}

fn diff_matrix(want: &[(Labels, Vec<Point>)], got: &[(Labels, Vec<Point>)]) -> Option<String> {
    let w: BTreeMap<&Labels, &Vec<Point>> = want.iter().map(|(l, p)| (l, p)).collect();
    let g: BTreeMap<&Labels, &Vec<Point>> = got.iter().map(|(l, p)| (l, p)).collect();
    if g.len() != got.len() {
        return Some("the matrix has the same label set twice".into());
    }
    if let Some(d) = diff_label_sets(w.keys().copied(), g.keys().copied()) {
        return Some(d);
    }
    for (l, wp) in &w {
        let gp = g[l];
        for (a, b) in wp.iter().zip(gp.iter()) {
            if let Some(d) = diff_point(a, b) {
                return Some(format!("{}: {d}", fmt_labels(l)));
            }
        }
        if wp.len() != gp.len() {
            let (longer, which) = if gp.len() > wp.len() {
                (gp, "extra")
            } else {
                (*wp, "missing")
            };
            let first = longer[wp.len().min(gp.len())];
            return Some(format!(
                "{}: {} points, expected {} ({which} from {})",
                fmt_labels(l),
                gp.len(),
                wp.len(),
                secs(first.t)
            ));
        }
    }
    let order_w: Vec<&Labels> = want.iter().map(|(l, _)| l).collect();
    let order_g: Vec<&Labels> = got.iter().map(|(l, _)| l).collect();
    if order_w != order_g {
        let i = order_w.iter().zip(&order_g).position(|(a, b)| a != b).unwrap_or(0);
        return Some(format!(
            "order: series {i} is {}, expected {} (range results are sorted by labels)",
            fmt_labels(order_g[i]),
            fmt_labels(order_w[i])
        ));
    }
    None
}

fn diff_label_sets<'a>(
    want: impl Iterator<Item = &'a Labels>,
    got: impl Iterator<Item = &'a Labels>,
) -> Option<String> {
    let want: Vec<&Labels> = want.collect();
    let got: Vec<&Labels> = got.collect();
    let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).collect();
    let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut s = format!("{} series, expected {}", got.len(), want.len());
    if let Some(l) = missing.first() {
        let _ = write!(s, "; {} missing, e.g. {}", missing.len(), fmt_labels(l));
    }
    if let Some(l) = extra.first() {
        let _ = write!(s, "; {} unexpected, e.g. {}", extra.len(), fmt_labels(l));
    }
    Some(s)
}

pub fn fmt_labels(l: &Labels) -> String {
    let name = l.get("__name__").map_or("", |s| s.as_str());
    let rest: Vec<String> = l
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

fn abbreviate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// A short human-readable rendering of an answer for reports: at most `max_series`
/// series and `max_points` points per series.
pub fn summarize(a: &Answer, max_series: usize, max_points: usize) -> String {
    let pts = |ps: &[Point]| {
        let mut s: Vec<String> = ps
            .iter()
            .take(max_points)
            .map(|p| format!("{}@{}", fmt_value(p.v), secs(p.t)))
            .collect();
        if ps.len() > max_points {
            s.push(format!("… {} points", ps.len()));
        }
        s.join(" ")
    };
    match a {
        Answer::Broken(e) => format!("BROKEN {e}"),
        Answer::Error { error_type, error } => format!("error {error_type}: {}", abbreviate(error, 200)),
        Answer::Success(Data::Scalar(p)) => format!("scalar {}", pts(&[*p])),
        Answer::Success(Data::String(t, s)) => format!("string {s:?}@{}", secs(*t)),
        Answer::Success(Data::Vector(v)) => {
            let mut s = format!("vector of {}", v.len());
            for (l, p) in v.iter().take(max_series) {
                let _ = write!(s, "\n      {} {}", fmt_labels(l), pts(&[*p]));
            }
            if v.len() > max_series {
                let _ = write!(s, "\n      …");
            }
            s
        }
        Answer::Success(Data::Matrix(m)) => {
            let mut s = format!("matrix of {}", m.len());
            for (l, p) in m.iter().take(max_series) {
                let _ = write!(s, "\n      {} [{}] {}", fmt_labels(l), p.len(), pts(p));
            }
            if m.len() > max_series {
                let _ = write!(s, "\n      …");
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_detection() {
        assert!(instant_order_defined("sort(x)"));
        assert!(instant_order_defined(" (sort_desc(rate(x[5m]))) "));
        assert!(!instant_order_defined("sort(x) + sort(y)"));
        assert!(!instant_order_defined("sum(x)"));
        assert!(!instant_order_defined("sorted_thing"));
    }

    #[test]
    fn values() {
        assert!(same_value(f64::NAN, f64::NAN));
        assert!(!same_value(f64::NAN, 1.0));
        assert!(same_value(f64::INFINITY, f64::INFINITY));
        assert!(!same_value(f64::INFINITY, f64::NEG_INFINITY));
        assert!(same_value(1.0, 1.0 + 1e-12));
        assert!(!same_value(1.0, 1.0001));
        assert!(same_value(0.0, -0.0));
    }

    #[test]
    fn answers() {
        let a = parse_answer(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"NaN"]}]}}"#,
        );
        let Answer::Success(Data::Vector(v)) = &a else {
            panic!("{a:?}")
        };
        assert_eq!(v[0].1.t, 1500);
        let e = parse_answer(400, r#"{"status":"error","errorType":"bad_data","error":"x"}"#);
        assert!(matches!(e, Answer::Error { .. }));
        assert!(diff(&a, &a, false).is_none());
        assert!(diff(&a, &e, false).is_some());
    }
}
