//! statsd_exporter's mapping YAML (`defaults:` and `mappings:`), read with positions so
//! that every problem is reported as `file:line:col: message`, all at once.
//!
//! Fields and their checks follow statsd_exporter's `pkg/mapper` (it reads the file with
//! yaml.v2's `UnmarshalStrict`, so an unknown field is an error here too).

use crate::mapper::Template;
use regex::Regex;
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use std::sync::{Arc, LazyLock};

/// Prometheus' `DefBuckets`, statsd_exporter's default histogram buckets.
pub const DEF_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// client_golang's summary defaults (`DefMaxAge`, `DefAgeBuckets`) and statsd_exporter's
/// default objectives.
pub const DEF_MAX_AGE_MS: u64 = 10 * 60 * 1000;
pub const DEF_AGE_BUCKETS: u32 = 5;
pub const DEF_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
/// Most `age_buckets` accepted: each is a sketch in every summary series (memory).
pub const MAX_AGE_BUCKETS: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Observer,
}

impl MetricType {
    pub fn label(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Observer => "observer",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserverType {
    Summary,
    Histogram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchType {
    Glob,
    Regex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Map,
    Drop,
}

/// Summary options after defaults are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryOptions {
    pub quantiles: Vec<f64>,
    pub max_age_ms: u64,
    pub age_buckets: u32,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub observer_type: ObserverType,
    /// Whether `observer_type` (or the deprecated `timer_type`) was written: only then
    /// do mappings inherit it for statsd_exporter's option checks.
    pub observer_type_set: bool,
    pub match_type: MatchType,
    pub glob_disable_ordering: bool,
    pub ttl_ms: u64,
    pub summary: Arc<SummaryOptions>,
    pub buckets: Arc<[f64]>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            observer_type: ObserverType::Summary,
            observer_type_set: false,
            match_type: MatchType::Glob,
            glob_disable_ordering: false,
            ttl_ms: 0,
            summary: Arc::new(SummaryOptions {
                quantiles: DEF_QUANTILES.to_vec(),
                max_age_ms: DEF_MAX_AGE_MS,
                age_buckets: DEF_AGE_BUCKETS,
            }),
            buckets: Arc::from(&DEF_BUCKETS[..]),
        }
    }
}

#[derive(Debug)]
pub struct Mapping {
    pub match_: String,
    pub match_type: MatchType,
    /// Glob components, `None` for `*`.
    pub glob: Vec<Option<String>>,
    pub regex: Option<Regex>,
    pub name: Template,
    pub labels: Vec<(String, Template)>,
    pub honor_labels: bool,
    pub observer_type: ObserverType,
    pub help: Option<String>,
    pub action: Action,
    pub match_metric_type: Option<MetricType>,
    pub ttl_ms: u64,
    pub summary: Arc<SummaryOptions>,
    pub buckets: Arc<[f64]>,
    pub scale: Option<f64>,
}

#[derive(Debug, Default)]
pub struct MappingConfig {
    pub defaults: Defaults,
    pub mappings: Vec<Mapping>,
}

static METRIC_LINE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$").expect("valid")
});
static METRIC_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([a-zA-Z_]|(\$\{?\d+\}?))([a-zA-Z0-9_]|(\$\{?\d+\}?))*$").expect("valid"));
/// statsd_exporter's label name check: note the `+`, so one-letter names are refused.
static LABEL_NAME_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z_][a-zA-Z0-9_]+$").expect("valid"));

const TOP_FIELDS: &[&str] = &["defaults", "mappings"];
/// `timer_type`, `buckets` and `quantiles` are the deprecated spellings statsd_exporter
/// 0.22 to 0.28 still read (in `defaults` and in each mapping).
const DEFAULTS_FIELDS: &[&str] = &[
    "observer_type",
    "timer_type",
    "buckets",
    "quantiles",
    "match_type",
    "glob_disable_ordering",
    "ttl",
    "summary_options",
    "histogram_options",
];
const MAPPING_FIELDS: &[&str] = &[
    "match",
    "timer_type",
    "buckets",
    "quantiles",
    "name",
    "labels",
    "honor_labels",
    "observer_type",
    "match_type",
    "help",
    "action",
    "match_metric_type",
    "ttl",
    "summary_options",
    "histogram_options",
    "scale",
];
const SUMMARY_FIELDS: &[&str] = &["quantiles", "max_age", "age_buckets", "buf_cap"];
const HISTOGRAM_FIELDS: &[&str] = &[
    "buckets",
    "native_histogram_bucket_factor",
    "native_histogram_max_buckets",
];

/// Summary/histogram options as written, before defaults.
#[derive(Default)]
struct RawSummary {
    quantiles: Vec<f64>,
    max_age_ms: u64,
    age_buckets: u32,
}

struct Ctx<'a> {
    source: &'a str,
    text: &'a str,
    problems: Vec<String>,
}

type Node = MarkedYamlOwned;

impl Ctx<'_> {
    fn report(&mut self, node: &Node, msg: impl std::fmt::Display) {
        let m = node.span.start;
        self.problems
            .push(format!("{}:{}:{}: {msg}", self.source, m.line(), m.col() + 1));
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
            YamlDataOwned::Value(ScalarOwned::Null) => Some(String::new()),
            YamlDataOwned::Value(_) | YamlDataOwned::Representation(..) => {
                let (a, b) = (node.span.start.index(), node.span.end.index());
                let s: String = self.text.chars().skip(a).take(b.saturating_sub(a)).collect();
                Some(s.trim().to_string())
            }
            _ => {
                self.report(node, format!("{what} must be a string"));
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(*b),
            // yaml.v2 (YAML 1.1) also reads these as booleans.
            YamlDataOwned::Value(ScalarOwned::String(s)) => match s.as_str() {
                "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => Some(true),
                "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => Some(false),
                _ => {
                    self.report(node, format!("{what} must be true or false, not {s:?}"));
                    None
                }
            },
            _ => {
                self.report(node, format!("{what} must be true or false"));
                None
            }
        }
    }

    fn float(&mut self, node: &Node, what: &str) -> Option<f64> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(f)) => Some(f.into_inner()),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => Some(*i as f64),
            _ => {
                let t = self.text(node, what)?;
                self.report(node, format!("{what} must be a number, not {t:?}"));
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, what: &str) -> Option<u32> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::Integer(i)) if *i >= 0 && *i <= u32::MAX as i64 => Some(*i as u32),
            _ => {
                self.report(node, format!("{what} must be a non-negative integer"));
                None
            }
        }
    }

    fn duration_ms(&mut self, node: &Node, what: &str) -> Option<u64> {
        // yaml.v2 reads a time.Duration from a Go duration string, or an integer of
        // nanoseconds.
        if let YamlDataOwned::Value(ScalarOwned::Integer(ns)) = &node.data {
            return Some((*ns).max(0) as u64 / 1_000_000);
        }
        let s = self.text(node, what)?;
        match parse_go_duration_ms(&s) {
            Some(ms) => Some(ms),
            None => {
                self.report(
                    node,
                    format!("{what}: invalid duration {s:?} (use Go syntax such as 90s, 10m, 1h30m)"),
                );
                None
            }
        }
    }

    fn map(&mut self, node: &Node, what: &str, fields: &[&str]) -> Vec<(String, Node)> {
        let entries: Vec<(Node, Node)> = match &node.data {
            YamlDataOwned::Mapping(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            YamlDataOwned::Value(ScalarOwned::Null) => Vec::new(),
            _ => {
                self.report(node, format!("{what} must be a mapping"));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = self.text(&k, "key") else { continue };
            if !fields.is_empty() && !fields.contains(&key.as_str()) {
                self.report(
                    &k,
                    format!("field {key} not found in {what} (known: {})", fields.join(", ")),
                );
                continue;
            }
            out.push((key, v));
        }
        out
    }

    fn seq(&mut self, node: &Node, what: &str) -> Vec<Node> {
        match &node.data {
            YamlDataOwned::Sequence(s) => s.clone(),
            YamlDataOwned::Value(ScalarOwned::Null) => Vec::new(),
            _ => {
                self.report(node, format!("{what} must be a list"));
                Vec::new()
            }
        }
    }

    fn observer_type(&mut self, node: &Node) -> Option<Option<ObserverType>> {
        match self.text(node, "observer_type")?.as_str() {
            "histogram" => Some(Some(ObserverType::Histogram)),
            "summary" => Some(Some(ObserverType::Summary)),
            "" => Some(None),
            other => {
                self.report(node, format!("invalid observer type '{other}' (histogram or summary)"));
                None
            }
        }
    }

    fn match_type(&mut self, node: &Node) -> Option<MatchType> {
        match self.text(node, "match_type")?.as_str() {
            "glob" | "" => Some(MatchType::Glob),
            "regex" => Some(MatchType::Regex),
            other => {
                self.report(node, format!("invalid match type {other:?} (glob or regex)"));
                None
            }
        }
    }

    fn action(&mut self, node: &Node) -> Action {
        match self.text(node, "action").as_deref() {
            None | Some("map") | Some("") => Action::Map,
            Some("drop") => Action::Drop,
            Some(other) => {
                self.report(node, format!("invalid action type {other:?} (map or drop)"));
                Action::Map
            }
        }
    }

    fn metric_type(&mut self, node: &Node) -> Option<MetricType> {
        match self.text(node, "match_metric_type")?.as_str() {
            "" => None,
            "counter" => Some(MetricType::Counter),
            "gauge" => Some(MetricType::Gauge),
            "observer" => Some(MetricType::Observer),
            other => {
                self.report(
                    node,
                    format!("invalid metric type '{other}' (counter, gauge or observer)"),
                );
                None
            }
        }
    }

    fn summary(&mut self, node: &Node) -> RawSummary {
        let mut s = RawSummary::default();
        for (k, v) in self.map(node, "summary_options", SUMMARY_FIELDS) {
            match k.as_str() {
                "quantiles" => s.quantiles = self.quantiles(&v),
                "max_age" => s.max_age_ms = self.duration_ms(&v, "max_age").unwrap_or(0),
                "age_buckets" => {
                    s.age_buckets = self.uint(&v, "age_buckets").unwrap_or(0);
                    // Each age bucket is a sketch in every summary series.
                    if s.age_buckets > MAX_AGE_BUCKETS {
                        self.report(
                            &v,
                            format!("age_buckets {} is more than {MAX_AGE_BUCKETS}", s.age_buckets),
                        );
                    }
                }
                _ => {} // buf_cap: the sketch has no insert buffer
            }
        }
        s
    }

    /// A list of `{quantile, error}` objectives.
    fn quantiles(&mut self, node: &Node) -> Vec<f64> {
        let mut out = Vec::new();
        for q in self.seq(node, "quantiles") {
            for (qk, qv) in self.map(&q, "a quantile", &["quantile", "error"]) {
                if qk == "quantile"
                    && let Some(f) = self.float(&qv, "quantile")
                {
                    if (0.0..=1.0).contains(&f) {
                        out.push(f);
                    } else {
                        self.report(&qv, format!("quantile {f} is not between 0 and 1"));
                    }
                }
            }
        }
        // client_golang keeps objectives in a map: one per quantile.
        out.sort_by(f64::total_cmp);
        out.dedup();
        out
    }

    /// A list of histogram bucket bounds.
    fn bucket_list(&mut self, node: &Node) -> Vec<f64> {
        let mut out = Vec::new();
        for b in self.seq(node, "buckets") {
            if let Some(f) = self.float(&b, "bucket") {
                out.push(f);
            }
        }
        if out.windows(2).any(|w| w[0] >= w[1]) {
            self.report(node, "histogram buckets must be in increasing order");
        }
        out
    }

    fn buckets(&mut self, node: &Node) -> Vec<f64> {
        let mut out = Vec::new();
        for (k, v) in self.map(node, "histogram_options", HISTOGRAM_FIELDS) {
            if k == "buckets" {
                out = self.bucket_list(&v);
            }
            // native_histogram_*: sonde stores classic histograms only.
        }
        out
    }
}

fn summary_with_defaults(raw: RawSummary, d: &SummaryOptions) -> SummaryOptions {
    SummaryOptions {
        quantiles: if raw.quantiles.is_empty() {
            d.quantiles.clone()
        } else {
            raw.quantiles
        },
        max_age_ms: if raw.max_age_ms == 0 {
            d.max_age_ms
        } else {
            raw.max_age_ms
        },
        age_buckets: if raw.age_buckets == 0 {
            d.age_buckets
        } else {
            raw.age_buckets
        },
    }
}

/// Parses a mapping document; `source` names it in messages (the file path).
pub fn parse(source: &str, text: &str) -> Result<MappingConfig, Vec<String>> {
    let docs = match MarkedYamlOwned::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let m = e.marker();
            return Err(vec![format!(
                "{source}:{}:{}: YAML syntax: {}",
                m.line(),
                m.col() + 1,
                e.info()
            )]);
        }
    };
    let mut cx = Ctx {
        source,
        text,
        problems: Vec::new(),
    };
    let mut config = MappingConfig::default();
    let Some(doc) = docs.first() else {
        return Ok(config);
    };
    let top = cx.map(doc, "the mapping file", TOP_FIELDS);
    if let Some((_, d)) = top.iter().find(|(k, _)| k == "defaults") {
        config.defaults = defaults(&mut cx, d);
    }
    if let Some((_, m)) = top.iter().find(|(k, _)| k == "mappings") {
        for (i, node) in cx.seq(m, "mappings").iter().enumerate() {
            if let Some(m) = mapping(&mut cx, node, i, &config.defaults) {
                config.mappings.push(m);
            }
        }
    }
    if cx.problems.is_empty() {
        Ok(config)
    } else {
        Err(cx.problems)
    }
}

fn defaults(cx: &mut Ctx, node: &Node) -> Defaults {
    let mut d = Defaults::default();
    let mut summary = RawSummary::default();
    let (mut timer_type, mut legacy_buckets, mut legacy_quantiles) = (None, Vec::new(), Vec::new());
    for (k, v) in cx.map(node, "defaults", DEFAULTS_FIELDS) {
        match k.as_str() {
            "observer_type" => {
                if let Some(t) = cx.observer_type(&v) {
                    d.observer_type = t.unwrap_or(ObserverType::Summary);
                    d.observer_type_set = true;
                }
            }
            "timer_type" => timer_type = cx.observer_type(&v).flatten(),
            "buckets" => legacy_buckets = cx.bucket_list(&v),
            "quantiles" => legacy_quantiles = cx.quantiles(&v),
            "match_type" => d.match_type = cx.match_type(&v).unwrap_or(MatchType::Glob),
            "glob_disable_ordering" => d.glob_disable_ordering = cx.bool(&v, "glob_disable_ordering").unwrap_or(false),
            "ttl" => d.ttl_ms = cx.duration_ms(&v, "ttl").unwrap_or(0),
            "summary_options" => summary = cx.summary(&v),
            "histogram_options" => {
                let b = cx.buckets(&v);
                if !b.is_empty() {
                    d.buckets = b.into();
                }
            }
            _ => {}
        }
    }
    if let (false, Some(t)) = (d.observer_type_set, timer_type) {
        d.observer_type = t;
        d.observer_type_set = true;
    }
    // statsd_exporter: the deprecated lists stand in for empty `*_options` ones.
    if summary.quantiles.is_empty() && !legacy_quantiles.is_empty() {
        summary = RawSummary {
            quantiles: legacy_quantiles,
            ..RawSummary::default()
        };
    }
    if d.buckets[..] == DEF_BUCKETS[..] && !legacy_buckets.is_empty() {
        d.buckets = legacy_buckets.into();
    }
    d.summary = Arc::new(summary_with_defaults(summary, &d.summary));
    d
}

fn mapping(cx: &mut Ctx, node: &Node, index: usize, d: &Defaults) -> Option<Mapping> {
    let before = cx.problems.len();
    let fields = cx.map(node, "a mapping", MAPPING_FIELDS);
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let match_ = get("match").and_then(|v| cx.text(v, "match")).unwrap_or_default();
    let name = get("name").and_then(|v| cx.text(v, "name")).unwrap_or_default();
    if name.is_empty() {
        cx.report(
            node,
            format!("mapping {index} (match {match_:?}) didn't set a metric name"),
        );
    } else if !METRIC_NAME_RE.is_match(&name) {
        cx.report(
            get("name").unwrap_or(node),
            format!("metric name '{name}' is not a valid metric name (letters, digits, '_' and $n)"),
        );
    }
    let match_type = get("match_type").and_then(|v| cx.match_type(v)).unwrap_or(d.match_type);
    let (glob, regex) = matcher(cx, &match_, match_type, get("match").unwrap_or(node));
    let captures = glob.iter().filter(|f| f.is_none()).count();
    let mut labels = Vec::new();
    if let Some(v) = get("labels") {
        for (k, val) in cx.map(v, "labels", &[]) {
            if !LABEL_NAME_RE.is_match(&k) {
                cx.report(v, format!("invalid label key: {k}"));
                continue;
            }
            let Some(val) = cx.text(&val, "label value") else {
                continue;
            };
            labels.push((k, Template::new(&val, match_type, captures)));
        }
    }
    let explicit_observer = get("observer_type")
        .and_then(|v| cx.observer_type(v))
        .flatten()
        .or_else(|| get("timer_type").and_then(|v| cx.observer_type(v)).flatten());
    let observer_type = explicit_observer.unwrap_or(d.observer_type);
    let checked_observer = explicit_observer.or(d.observer_type_set.then_some(d.observer_type));
    let raw_summary = get("summary_options").map(|v| cx.summary(v));
    let raw_buckets = get("histogram_options").map(|v| cx.buckets(v));
    let legacy_quantiles = get("quantiles").map(|v| cx.quantiles(v));
    let legacy_buckets = get("buckets").map(|v| cx.bucket_list(v));
    if legacy_quantiles.is_some() && raw_summary.as_ref().is_some_and(|s| !s.quantiles.is_empty()) {
        cx.report(
            node,
            format!("cannot use quantiles in both the top level and summary options at the same time in {match_}"),
        );
    }
    if legacy_buckets.is_some() && raw_buckets.as_ref().is_some_and(|b| !b.is_empty()) {
        cx.report(
            node,
            format!("cannot use buckets in both the top level and histogram options at the same time in {match_}"),
        );
    }
    if checked_observer == Some(ObserverType::Histogram) && raw_summary.is_some() {
        cx.report(
            node,
            "cannot use histogram observer and summary options at the same time",
        );
    }
    if checked_observer == Some(ObserverType::Summary) && raw_buckets.is_some() {
        cx.report(
            node,
            "cannot use summary observer and histogram options at the same time",
        );
    }
    let mut raw_summary = raw_summary;
    if let Some(q) = legacy_quantiles.filter(|q| !q.is_empty()) {
        raw_summary.get_or_insert_with(RawSummary::default).quantiles = q;
    }
    let raw_buckets = legacy_buckets.filter(|b| !b.is_empty()).or(raw_buckets);
    let action = get("action").map_or(Action::Map, |v| cx.action(v));
    let match_metric_type = get("match_metric_type").and_then(|v| cx.metric_type(v));
    let ttl = get("ttl").and_then(|v| cx.duration_ms(v, "ttl")).unwrap_or(0);
    let honor_labels = get("honor_labels")
        .and_then(|v| cx.bool(v, "honor_labels"))
        .unwrap_or(false);
    let help = get("help").and_then(|v| cx.text(v, "help")).filter(|h| !h.is_empty());
    let scale = get("scale").and_then(|v| cx.float(v, "scale"));
    if cx.problems.len() > before {
        return None;
    }
    Some(Mapping {
        name: Template::new(&name, match_type, captures),
        match_,
        match_type,
        glob,
        regex,
        labels,
        honor_labels,
        observer_type,
        help,
        action,
        match_metric_type,
        ttl_ms: if ttl == 0 { d.ttl_ms } else { ttl },
        summary: match raw_summary {
            Some(raw) => Arc::new(summary_with_defaults(raw, &d.summary)),
            None => d.summary.clone(),
        },
        buckets: match raw_buckets {
            Some(b) if !b.is_empty() => b.into(),
            _ => d.buckets.clone(),
        },
        scale,
    })
}

/// A `match:` as glob components (`None` for `*`) or a compiled regex.
fn matcher(cx: &mut Ctx, match_: &str, match_type: MatchType, at: &Node) -> (Vec<Option<String>>, Option<Regex>) {
    match match_type {
        MatchType::Glob if METRIC_LINE_RE.is_match(match_) => {
            let glob = match_.split('.').map(|f| (f != "*").then(|| f.to_string())).collect();
            (glob, None)
        }
        MatchType::Glob => {
            cx.report(
                at,
                format!("invalid match: {match_:?} (glob: dot-separated names or *)"),
            );
            (Vec::new(), None)
        }
        MatchType::Regex => match Regex::new(match_) {
            Ok(r) => (Vec::new(), Some(r)),
            Err(e) => {
                cx.report(at, format!("invalid regex {match_} in mapping: {e}"));
                (Vec::new(), None)
            }
        },
    }
}

/// Go's `time.ParseDuration`, in whole milliseconds.
pub fn parse_go_duration_ms(s: &str) -> Option<u64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ns += n * unit;
    }
    if neg {
        return Some(0); // a negative TTL never expires anything, like 0
    }
    Some((total_ns / 1e6) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration_ms("10m"), Some(600_000));
        assert_eq!(parse_go_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_go_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_go_duration_ms("0"), Some(0));
        assert_eq!(parse_go_duration_ms("10"), None);
        assert_eq!(parse_go_duration_ms("1d"), None);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let yaml = "defaults:\n  ttl: 10x\nmappings:\n- match: a.*\n  name: ok\n  labelz: {}\n- match: 'b.*'\n  name: \"b\"\n  labels:\n    x: \"$1\"\n- match: c\n  name: c\n  observer_type: histogram\n  summary_options: {}\n";
        let errs = parse("m.yml", yaml).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with("m.yml:2:8: ttl: invalid duration"), "{}", errs[0]);
        assert!(
            errs[1].starts_with("m.yml:6:3: field labelz not found in a mapping"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].starts_with("m.yml:10:5: invalid label key: x") || errs[2].contains("invalid label key: x"),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].contains("cannot use histogram observer and summary options"),
            "{}",
            errs[3]
        );
    }

    #[test]
    fn defaults_flow_into_mappings() {
        let yaml = "defaults:\n  observer_type: histogram\n  ttl: 1m\n  histogram_options:\n    buckets: [1, 2]\nmappings:\n- match: a.*\n  name: a\n- match: b\n  name: b\n  ttl: 5s\n  observer_type: summary\n  summary_options:\n    quantiles: [{quantile: 0.75, error: 0.01}]\n";
        let c = parse("m", yaml).unwrap();
        assert_eq!(c.mappings[0].observer_type, ObserverType::Histogram);
        assert_eq!(&*c.mappings[0].buckets, &[1.0, 2.0]);
        assert_eq!(c.mappings[0].ttl_ms, 60_000);
        assert_eq!(c.mappings[1].ttl_ms, 5_000);
        assert_eq!(c.mappings[1].summary.quantiles, vec![0.75]);
        assert_eq!(c.mappings[1].summary.max_age_ms, DEF_MAX_AGE_MS);
    }

    #[test]
    fn bad_globs_and_regexes_are_refused() {
        let errs = parse(
            "m",
            "mappings:\n- match: a.b*\n  name: x\n- match: '('\n  match_type: regex\n  name: y\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].contains("invalid match"));
        assert!(errs[1].contains("invalid regex"));
    }
}
