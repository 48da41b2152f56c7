//! `GET /federate?match[]=<selector>`: the latest sample of every matching series as
//! text exposition, like Prometheus's federation endpoint (with real `# TYPE`s, since
//! sonde keeps the plugins' metadata).

use super::exposition::Writer;
use super::{Shared, api_error};
use crate::scrape::now_ms;
use crate::storage::{Labels, METRIC_NAME, is_stale_nan};
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// How far back a series' latest sample may lie and still be current (Prometheus's
/// default lookback delta).
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Parses one `match[]` selector into alternative matcher sets (a set per `or`).
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = parser::parse(s).map_err(|e| format!("invalid match[] {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "invalid match[] {s:?}: expected a series selector such as up{{job=\"node\"}}"
        ));
    };
    let name = vs.name.map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, &n));
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        sets.push(vs.matchers.matchers);
    } else {
        sets.extend(vs.matchers.or_matchers);
    }
    for set in &mut sets {
        set.extend(name.clone());
    }
    Ok(sets)
}

pub async fn handler(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let mut selectors = Vec::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        if k == "match[]" {
            match parse_selector(&v) {
                Ok(sets) => selectors.extend(sets),
                Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_data", e).into_response(),
            }
        }
    }
    let now = now_ms(SystemTime::now());
    // family → (labels → latest sample)
    let mut by_family: BTreeMap<String, BTreeMap<Labels, (i64, f64)>> = BTreeMap::new();
    for matchers in &selectors {
        for (labels, samples) in s.head.select(matchers, now - LOOKBACK_MS, now) {
            let Some(&(t, v)) = samples.last() else { continue };
            if is_stale_nan(v) {
                continue;
            }
            let family = s
                .head
                .metadata(labels.metric_name())
                .map_or(labels.metric_name().to_string(), |m| m.family.to_string());
            by_family.entry(family).or_default().insert(labels, (t, v));
        }
    }
    let mut w = Writer::default();
    for (family, series) in &by_family {
        let kind = s
            .head
            .metadata(family)
            .map_or_else(|| "untyped".to_string(), |m| m.kind);
        w.family(family, &kind, "");
        for (labels, (t, v)) in series {
            w.sample(labels.metric_name(), labels.iter(), *v, Some(*t));
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        w.out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_select_series() {
        let (_dir, head) = crate::storage::test_storage();
        let r = head.get_or_create(&[("__name__", "up"), ("job", "syn")]).unwrap();
        head.append(&[(r, 1000, 1.0)]).unwrap();
        for sel in [r#"{job="syn"}"#, r#"up"#, r#"up{job=~"s.*"}"#] {
            let sets = parse_selector(sel).unwrap();
            assert_eq!(head.select(&sets[0], 0, 2000).len(), 1, "{sel}: {sets:?}");
        }
        let sets = parse_selector(r#"up{job="other"}"#).unwrap();
        assert!(head.select(&sets[0], 0, 2000).is_empty());
    }
}
