//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values` (Grafana's metric
//! browser and label autocomplete) over blocks and head, and `/api/v1/metadata` from the
//! plugins' `# TYPE`/`# HELP`/`# UNIT`.

use super::params::{Form, parse_time_param};
use super::{ApiError, blocking, json, success};
use crate::api::Shared;
use crate::storage::METRIC_NAME;
use axum::extract::{Path, State};
use axum::response::Response;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;
use sonde_tsdb::postings::matcher_matches;
use std::collections::{BTreeMap, BTreeSet};

const EMPTY_MATCHERS: &str = "match[] must contain at least one non-empty matcher";

/// The `match[]` selectors as matcher sets (one per selector, or per `or` branch),
/// with Prometheus's check that a selector cannot match every series. The error is
/// the bare reason: `/series` says which parameter, `/labels` does not (as in 2.42).
fn matcher_sets(form: &Form) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::new();
    for s in form.all("match[]") {
        // promql-parser refuses an all-empty selector itself; say it as Prometheus does.
        let parsed = sonde_promql::parse(s).map_err(|e| match e.message().contains("at least one non-empty matcher") {
            true => EMPTY_MATCHERS.to_string(),
            false => e.message().to_string(),
        });
        let Expr::VectorSelector(vs) = parsed? else {
            return Err(format!("{s:?} is not a series selector such as up{{job=\"node\"}}"));
        };
        let name = vs.name.map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, &n));
        let mut alternatives = if vs.matchers.or_matchers.is_empty() {
            vec![vs.matchers.matchers]
        } else {
            vs.matchers.or_matchers
        };
        for set in &mut alternatives {
            set.extend(name.clone());
            if set.iter().all(|m| matcher_matches(m, "")) {
                return Err(EMPTY_MATCHERS.into());
            }
        }
        sets.extend(alternatives);
    }
    Ok(sets)
}

/// `start`/`end` of the lookups: unbounded by default.
fn time_range(form: &Form) -> Result<(i64, i64), ApiError> {
    Ok((
        parse_time_param(form, "start", i64::MIN)?,
        parse_time_param(form, "end", i64::MAX)?,
    ))
}

pub async fn series(State(s): State<Shared>, form: Form) -> Result<Response, ApiError> {
    if form.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&form)?;
    let sets = matcher_sets(&form).map_err(|e| ApiError::invalid_param("match[]", e))?;
    let storage = s.head.clone();
    let found = blocking(move || storage.db().series(&sets, start, end)).await?;
    Ok(success(found.len() * 64, |out| {
        out.push(b'[');
        for (i, l) in found.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::labels(out, l);
        }
        out.push(b']');
    }))
}

pub async fn label_names(State(s): State<Shared>, form: Form) -> Result<Response, ApiError> {
    let (start, end) = time_range(&form)?;
    let sets = matcher_sets(&form).map_err(ApiError::bad_data)?;
    let storage = s.head.clone();
    let names = blocking(move || storage.db().label_names(&sets, start, end)).await?;
    Ok(success(names.len() * 16, |out| json::strings(out, &names)))
}

/// A label name as Prometheus 2.42 accepts it (`model.LabelNameRE`).
fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub async fn label_values(State(s): State<Shared>, Path(name): Path<String>, form: Form) -> Result<Response, ApiError> {
    if !valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = time_range(&form)?;
    let sets = matcher_sets(&form).map_err(ApiError::bad_data)?;
    let storage = s.head.clone();
    let values = blocking(move || storage.db().label_values(&name, &sets, start, end)).await?;
    Ok(success(values.len() * 16, |out| json::strings(out, &values)))
}

/// Prometheus's name for a type: the text format's `untyped` is `unknown`.
fn type_name(kind: &str) -> &str {
    match kind {
        "untyped" | "" => "unknown",
        k => k,
    }
}

/// `/api/v1/metadata[?metric=<family>][&limit=<n>]`: per family (the `# TYPE` name,
/// `http_request_duration_seconds` rather than its `_bucket` series), every distinct
/// type/help/unit seen.
pub async fn metadata(State(s): State<Shared>, form: Form) -> Result<Response, ApiError> {
    let limit: Option<usize> = match form.get("limit") {
        "" => None,
        l => match l.parse::<i64>() {
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return Err(ApiError::bad_data("limit must be a number")),
        },
    };
    let metric = form.get("metric").to_string();
    let mut families: BTreeMap<String, BTreeSet<(String, String, String)>> = BTreeMap::new();
    for (_, m) in s.head.all_metadata() {
        if !metric.is_empty() && m.family != metric {
            continue;
        }
        families
            .entry(m.family)
            .or_default()
            .insert((type_name(&m.kind).to_string(), m.help, m.unit));
    }
    let take = limit.unwrap_or(usize::MAX);
    Ok(success(families.len() * 96, |out| {
        out.push(b'{');
        for (i, (family, entries)) in families.iter().take(take).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::string(out, family);
            out.extend_from_slice(b":[");
            for (j, (kind, help, unit)) in entries.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"type\":");
                json::string(out, kind);
                out.extend_from_slice(b",\"help\":");
                json::string(out, help);
                out.extend_from_slice(b",\"unit\":");
                json::string(out, unit);
                out.push(b'}');
            }
            out.push(b']');
        }
        out.push(b'}');
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn match_params() {
        let sets = matcher_sets(&form(&[("match[]", "up"), ("match[]", r#"{job="a"}"#)])).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].len(), 1, "the metric name is a matcher");
        let err = matcher_sets(&form(&[("match[]", r#"{job=~".*"}"#)])).unwrap_err();
        assert_eq!(err, "match[] must contain at least one non-empty matcher");
        assert!(matcher_sets(&form(&[("match[]", "up + 1")])).is_err());
        assert!(matcher_sets(&form(&[("match[]", "up{")])).is_err());
    }

    #[test]
    fn label_names_like_prometheus() {
        for ok in ["__name__", "job", "a1", "_"] {
            assert!(valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "é"] {
            assert!(!valid_label_name(bad), "{bad}");
        }
    }
}
