//! Rule files in Prometheus's YAML format, parsed with positions (saphyr: a maintained
//! YAML 1.2 parser whose nodes carry their line and column; serde_yaml is unmaintained
//! and its serde path loses positions) and validated like `promtool check rules` 2.42:
//! every problem is reported as `file:line:col: message`, all at once.

use super::template::Template;
use crate::config::Problem;
use crate::config::units::PromDuration;
use promql_parser::parser::Expr;
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One `groups:` entry.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub file: PathBuf,
    /// The group's own `interval`; the global evaluation interval when absent.
    pub interval: Option<Duration>,
    /// Most alerts or series one rule may produce (0: no limit).
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// `record` or `alert`.
    pub name: String,
    pub alerting: bool,
    pub expr: String,
    pub parsed: Expr,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

const GROUP_FIELDS: &[&str] = &["name", "interval", "limit", "rules"];
const RULE_FIELDS: &[&str] = &[
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// Reads and validates one rule file; problems are appended, valid groups returned.
pub fn load(path: &Path, problems: &mut Vec<Problem>) -> Vec<GroupSpec> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text, problems),
        Err(e) => {
            problems.push(Problem {
                file: path.into(),
                line: 0,
                col: 0,
                message: format!("cannot read rule file: {e}"),
            });
            Vec::new()
        }
    }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    fn report(&mut self, node: &MarkedYamlOwned, message: impl Into<String>) {
        let m = node.span.start;
        self.problems.push(Problem {
            file: self.path.into(),
            line: m.line(),
            col: m.col() + 1,
            message: message.into(),
        });
    }

    /// A scalar as the text a Go string field would receive.
    fn text_of(&mut self, node: &MarkedYamlOwned, what: &str) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
            YamlDataOwned::Value(ScalarOwned::Null) => Some(String::new()),
            YamlDataOwned::Value(_) | YamlDataOwned::Representation(..) => {
                let (a, b) = (node.span.start.index(), node.span.end.index());
                Some(
                    self.text
                        .chars()
                        .skip(a)
                        .take(b.saturating_sub(a))
                        .collect::<String>()
                        .trim()
                        .to_string(),
                )
            }
            _ => {
                self.report(node, format!("{what} must be a string"));
                None
            }
        }
    }

    fn map(&mut self, node: &MarkedYamlOwned, what: &str) -> Option<Vec<(MarkedYamlOwned, MarkedYamlOwned)>> {
        match &node.data {
            YamlDataOwned::Mapping(m) => Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            YamlDataOwned::Value(ScalarOwned::Null) => Some(Vec::new()),
            _ => {
                self.report(node, format!("{what} must be a mapping"));
                None
            }
        }
    }

    fn seq(&mut self, node: &MarkedYamlOwned, what: &str) -> Option<Vec<MarkedYamlOwned>> {
        match &node.data {
            YamlDataOwned::Sequence(s) => Some(s.clone()),
            YamlDataOwned::Value(ScalarOwned::Null) => Some(Vec::new()),
            _ => {
                self.report(node, format!("{what} must be a list"));
                None
            }
        }
    }

    fn duration(&mut self, node: &MarkedYamlOwned, what: &str) -> Option<Duration> {
        let s = self.text_of(node, what)?;
        match PromDuration::parse(&s) {
            Ok(d) => Some(d.0),
            Err(e) => {
                self.report(node, format!("{what}: not a valid duration string: {s:?} ({e})"));
                None
            }
        }
    }

    /// `labels:`/`annotations:` as a string map, names checked.
    fn string_map(&mut self, node: &MarkedYamlOwned, what: &str, labels: bool) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in self.map(node, what).unwrap_or_default() {
            let Some(name) = self.text_of(&k, what) else { continue };
            let Some(value) = self.text_of(&v, &format!("{what}.{name}")) else {
                continue;
            };
            if labels && (!is_label_name(&name) || name == "__name__") {
                self.report(&k, format!("invalid label name: {name}"));
            } else if !labels && !is_label_name(&name) {
                self.report(&k, format!("invalid annotation name: {name}"));
            }
            out.insert(name, value);
        }
        out
    }
}

pub fn is_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn is_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses one file's text.
pub fn parse(path: &Path, text: &str, problems: &mut Vec<Problem>) -> Vec<GroupSpec> {
    let docs = match MarkedYamlOwned::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let m = e.marker();
            problems.push(Problem {
                file: path.into(),
                line: m.line(),
                col: m.col() + 1,
                message: format!("YAML syntax: {}", e.info()),
            });
            return Vec::new();
        }
    };
    let mut cx = Ctx { path, text, problems };
    let Some(doc) = docs.first() else {
        return Vec::new();
    };
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for (k, v) in cx.map(doc, "a rule file").unwrap_or_default() {
        let key = cx.text_of(&k, "key").unwrap_or_default();
        if key != "groups" {
            cx.report(&k, format!("field {key} not found in rule file (only `groups:`)"));
            continue;
        }
        for g in cx.seq(&v, "groups").unwrap_or_default() {
            if let Some(g) = group(&mut cx, &g, &mut names) {
                groups.push(g);
            }
        }
    }
    groups
}

fn group(cx: &mut Ctx, node: &MarkedYamlOwned, names: &mut HashSet<String>) -> Option<GroupSpec> {
    let before = cx.problems.len();
    let mut g = GroupSpec {
        name: String::new(),
        file: cx.path.into(),
        interval: None,
        limit: 0,
        rules: Vec::new(),
    };
    let mut rule_nodes = Vec::new();
    let mut name_node = node.clone();
    for (k, v) in cx.map(node, "a group")? {
        let key = cx.text_of(&k, "key").unwrap_or_default();
        match key.as_str() {
            "name" => {
                g.name = cx.text_of(&v, "name").unwrap_or_default();
                name_node = v;
            }
            "interval" => g.interval = cx.duration(&v, "interval"),
            "limit" => match cx.text_of(&v, "limit").map(|s| s.parse::<usize>()) {
                Some(Ok(n)) => g.limit = n,
                Some(Err(_)) => cx.report(&v, "limit must be a non-negative integer"),
                None => {}
            },
            "rules" => rule_nodes = cx.seq(&v, "rules").unwrap_or_default(),
            other => cx.report(
                &k,
                format!(
                    "field {other} not found in rule group (expected one of {})",
                    GROUP_FIELDS.join(", ")
                ),
            ),
        }
    }
    if g.name.is_empty() {
        cx.report(&name_node, "Groupname must not be empty");
    } else if !names.insert(g.name.clone()) {
        cx.report(
            &name_node,
            format!("{:?}: groupname is repeated in the same file", g.name),
        );
    }
    for r in &rule_nodes {
        if let Some(r) = rule(cx, r, &g.name) {
            g.rules.push(r);
        }
    }
    (cx.problems.len() == before).then_some(g)
}

fn rule(cx: &mut Ctx, node: &MarkedYamlOwned, group: &str) -> Option<RuleSpec> {
    let before = cx.problems.len();
    let (mut record, mut alert, mut expr) = (None, None, None);
    let (mut for_, mut keep, mut labels, mut annotations) = (None, None, None, None);
    for (k, v) in cx.map(node, "a rule")? {
        let key = cx.text_of(&k, "key").unwrap_or_default();
        match key.as_str() {
            "record" => record = cx.text_of(&v, "record").map(|s| (s, v.clone())),
            "alert" => alert = cx.text_of(&v, "alert").map(|s| (s, v.clone())),
            "expr" => expr = cx.text_of(&v, "expr").map(|s| (s, v.clone())),
            "for" => for_ = cx.duration(&v, "for").map(|d| (d, k.clone())),
            "keep_firing_for" => keep = cx.duration(&v, "keep_firing_for").map(|d| (d, k.clone())),
            "labels" => labels = Some(cx.string_map(&v, "labels", true)),
            "annotations" => annotations = Some((cx.string_map(&v, "annotations", false), k.clone(), v.clone())),
            other => cx.report(
                &k,
                format!(
                    "field {other} not found in rule (expected one of {})",
                    RULE_FIELDS.join(", ")
                ),
            ),
        }
    }
    let name = match (&record, &alert) {
        (Some(_), Some((_, n))) => {
            cx.report(n, "only one of 'record' and 'alert' must be set");
            return None;
        }
        (None, None) => {
            cx.report(node, "one of 'record' or 'alert' must be set");
            return None;
        }
        (Some((r, n)), None) => {
            if !is_metric_name(r) {
                cx.report(n, format!("invalid recording rule name: {r}"));
            }
            if let Some((_, k)) = &for_ {
                cx.report(k, "invalid field 'for' in recording rule");
            }
            if let Some((_, k)) = &keep {
                cx.report(k, "invalid field 'keep_firing_for' in recording rule");
            }
            if let Some((_, k, _)) = &annotations {
                cx.report(k, "invalid field 'annotations' in recording rule");
            }
            r.clone()
        }
        (None, Some((a, n))) => {
            if a.is_empty() {
                cx.report(n, "one of 'record' or 'alert' must be set");
            }
            a.clone()
        }
    };
    let Some((expr, expr_node)) = expr.filter(|(e, _)| !e.trim().is_empty()) else {
        cx.report(
            node,
            format!("field 'expr' must be set in rule (group {group:?}, rule {name:?})"),
        );
        return None;
    };
    let parsed = match sonde_promql::parse(&expr) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.report(&expr_node, format!("could not parse expression: {}", e.message()));
            None
        }
    };
    let labels = labels.unwrap_or_default();
    let (annotations, _, ann_node) = annotations.unwrap_or((BTreeMap::new(), node.clone(), node.clone()));
    if alert.is_some() {
        let tname = format!("__alert_{name}");
        for (what, map, at) in [("label", &labels, node), ("annotation", &annotations, &ann_node)] {
            for (k, v) in map {
                if let Err(e) = Template::parse(&tname, v) {
                    cx.report(at, format!("{what} {k:?}: {e}"));
                }
            }
        }
    }
    if cx.problems.len() > before {
        return None;
    }
    Some(RuleSpec {
        name,
        alerting: alert.is_some(),
        expr,
        parsed: parsed?,
        for_: for_.map_or(Duration::ZERO, |d| d.0),
        keep_firing_for: keep.map_or(Duration::ZERO, |d| d.0),
        labels,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Vec<GroupSpec>, Vec<String>) {
        let mut p = Vec::new();
        let g = parse(Path::new("r.yml"), text, &mut p);
        (g, p.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn rules_file_parses_groups_and_rules() {
        let (g, p) = check(
            "groups:\n- name: a\n  interval: 30s\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    labels:\n      severity: critical\n    annotations:\n      summary: '{{ $labels.instance }} down'\n",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(g[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(g[0].rules.len(), 2);
        let a = &g[0].rules[1];
        assert!(a.alerting);
        assert_eq!(a.for_, Duration::from_secs(300));
        assert_eq!(a.keep_firing_for, Duration::from_secs(60));
        assert_eq!(a.labels["severity"], "critical");
    }

    #[test]
    fn rules_file_problems_have_positions() {
        let (_, p) = check(
            "groups:\n- name: a\n  rules:\n  - record: 'bad name'\n    expr: up\n    for: 1m\n- name: a\n  rules:\n  - alert: X\n    expr: up ==\n    bogus: 1\n    annotations:\n      s: '{{ nosuch }}'\n",
        );
        let all = p.join("\n");
        for needle in [
            "r.yml:4:13: invalid recording rule name: bad name",
            "r.yml:6:5: invalid field 'for' in recording rule",
            "r.yml:7:9: \"a\": groupname is repeated",
            "r.yml:10:11: could not parse expression",
            "r.yml:11:5: field bogus not found in rule",
            "function \"nosuch\" not defined",
        ] {
            assert!(all.contains(needle), "{needle} not in\n{all}");
        }
    }

    #[test]
    fn rules_file_yaml_syntax_error_has_position() {
        let (_, p) = check("groups:\n- name: a\n  rules: [\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("r.yml:"), "{p:?}");
    }

    /// The shipped TargetDown leaves a Postgres/Redis outage (which also takes its
    /// target down) to PostgresDown/RedisDown: one page per outage.
    #[test]
    fn rules_default_target_down_leaves_database_outages_to_their_own_alerts() {
        use sonde_promql::{Labels, Matcher, Querier, QueryValue};
        use std::sync::Arc;
        struct Mem(Vec<(Labels, Vec<(i64, f64)>)>);
        impl Querier for Mem {
            fn select(&self, m: &[Matcher], _: i64, _: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
                self.0
                    .iter()
                    .filter(|(l, _)| m.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or(""))))
                    .cloned()
                    .collect()
            }
        }
        let series = |name: &str, job: &str, v: f64| {
            let pairs = [("__name__", name), ("instance", "h:1"), ("job", job)];
            let l = Labels::from_pairs(pairs.iter().map(|(n, v)| (Arc::from(*n), Arc::from(*v))).collect());
            (l, vec![(1000, v)])
        };
        let db = Mem(vec![
            series("up", "pg", 0.0),
            series("pg_up", "pg", 0.0),
            series("up", "redis", 0.0),
            series("redis_up", "redis", 0.0),
            series("up", "node", 0.0),
            series("up", "web", 1.0),
        ]);
        let mut p = Vec::new();
        let groups = parse(Path::new("default.yml"), super::super::DEFAULT_RULES, &mut p);
        assert!(p.is_empty(), "{p:?}");
        let rule = groups[0]
            .rules
            .iter()
            .find(|r| r.name == "TargetDown")
            .expect("TargetDown");
        let QueryValue::Vector(v) = sonde_promql::instant_query(&db, &rule.parsed, 1000, &Default::default()).unwrap()
        else {
            panic!("a vector")
        };
        let jobs: Vec<&str> = v.iter().map(|(l, _, _)| l.get("job").unwrap()).collect();
        assert_eq!(jobs, ["node"]);
    }
}
