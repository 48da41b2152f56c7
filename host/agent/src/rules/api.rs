//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's JSON (Grafana's alerting and
//! Explore read them).

use super::Manager;
use super::alerting::{ActiveAlert, State, ms_time};
use crate::timefmt::rfc3339;
use serde_json::{Value, json};
use std::time::Duration;

fn alert_json(a: &ActiveAlert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(ms_time(a.active_at)),
        "value": format_e(a.value),
    })
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, how Prometheus writes an alert's value.
fn format_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let e: i32 = e.parse().expect("exponent");
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

/// `data` of `/api/v1/alerts`: every pending or firing alert.
pub fn alerts(m: &Manager) -> Value {
    let mut out = Vec::new();
    for g in &m.groups() {
        for rt in g.rules.lock().unwrap().iter() {
            if let Some(a) = &rt.alerting {
                let mut v: Vec<&ActiveAlert> = a.active.values().filter(|a| a.state != State::Inactive).collect();
                v.sort_by(|x, y| x.labels.cmp(&y.labels));
                out.extend(v.into_iter().map(alert_json));
            }
        }
    }
    json!({ "alerts": out })
}

/// `data` of `/api/v1/rules`; `kind` = `alert` or `record` filters like Prometheus's `type`.
pub fn rules(m: &Manager, kind: Option<&str>) -> Value {
    let mut groups = Vec::new();
    for g in &m.groups() {
        let rts = g.rules.lock().unwrap();
        let mut rules = Vec::new();
        for (spec, rt) in g.spec.rules.iter().zip(rts.iter()) {
            let last = if rt.last_eval_ms == 0 {
                "0001-01-01T00:00:00Z".to_string()
            } else {
                rfc3339(ms_time(rt.last_eval_ms))
            };
            match &rt.alerting {
                Some(a) if kind != Some("record") => {
                    let mut active: Vec<&ActiveAlert> =
                        a.active.values().filter(|a| a.state != State::Inactive).collect();
                    active.sort_by(|x, y| x.labels.cmp(&y.labels));
                    rules.push(json!({
                        "state": a.state().as_str(),
                        "name": spec.name,
                        "query": spec.expr,
                        "duration": spec.for_.as_secs_f64(),
                        "keepFiringFor": spec.keep_firing_for.as_secs_f64(),
                        "labels": spec.labels,
                        "annotations": spec.annotations,
                        "alerts": active.into_iter().map(alert_json).collect::<Vec<_>>(),
                        "health": rt.health,
                        "lastError": rt.last_error,
                        "evaluationTime": rt.eval_seconds,
                        "lastEvaluation": last,
                        "type": "alerting",
                    }));
                }
                None if kind != Some("alert") => rules.push(json!({
                    "name": spec.name,
                    "query": spec.expr,
                    "labels": spec.labels,
                    "health": rt.health,
                    "lastError": rt.last_error,
                    "evaluationTime": rt.eval_seconds,
                    "lastEvaluation": last,
                    "type": "recording",
                })),
                _ => {}
            }
        }
        if kind.is_some() && rules.is_empty() {
            continue;
        }
        let st = &g.stats;
        let last_ms = st.last_eval_ms.load(std::sync::atomic::Ordering::Relaxed) as i64;
        groups.push(json!({
            "name": g.spec.name,
            "file": g.spec.file.display().to_string(),
            "rules": rules,
            "interval": secs(g.interval),
            "limit": g.spec.limit,
            "evaluationTime": st.last_duration_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9,
            "lastEvaluation": if last_ms == 0 { "0001-01-01T00:00:00Z".to_string() } else { rfc3339(ms_time(last_ms)) },
        }));
    }
    json!({ "groups": groups })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_alert_values_are_written_like_go() {
        assert_eq!(super::format_e(1.0), "1e+00");
        assert_eq!(super::format_e(85.25), "8.525e+01");
        assert_eq!(super::format_e(0.001), "1e-03");
    }
}
