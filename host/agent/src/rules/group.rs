//! One rule group at run time: its rules' state, one evaluation at a common timestamp
//! (recording rules append their series, alerting rules advance their alerts and
//! write `ALERTS` / `ALERTS_FOR_STATE`), staleness markers for series a rule stopped
//! producing, and the group's own statistics.

use super::alerting::{AlertingState, Env, Sample};
use super::file::{GroupSpec, RuleSpec};
use crate::alert::Alert;
use crate::storage::{STALE_NAN, SeriesRef, Storage, is_stale_nan};
use sonde_promql::{EngineOpts, Matcher, QueryValue};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Settings shared by every group.
pub struct EvalSettings {
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub resend_delay: Duration,
    pub for_grace_period: Duration,
    pub for_outage_tolerance: Duration,
}

pub struct Group {
    pub spec: GroupSpec,
    pub interval: Duration,
    pub rules: Mutex<Vec<RuleRuntime>>,
    pub stats: GroupStats,
}

#[derive(Default)]
pub struct GroupStats {
    pub evaluations: AtomicU64,
    pub failures: AtomicU64,
    pub missed: AtomicU64,
    pub last_duration_ns: AtomicU64,
    pub last_eval_ms: AtomicU64,
    pub duration_sum_ns: AtomicU64,
}

#[derive(Default)]
pub struct RuleRuntime {
    pub alerting: Option<AlertingState>,
    /// Series written by the last evaluation, to mark stale when they disappear.
    series: HashMap<Vec<(String, String)>, SeriesRef>,
    pub health: &'static str,
    pub last_error: String,
    pub last_eval_ms: i64,
    pub eval_seconds: f64,
}

impl Group {
    pub fn new(spec: GroupSpec, default_interval: Duration) -> Group {
        let rules = spec
            .rules
            .iter()
            .map(|r| RuleRuntime {
                alerting: r.alerting.then(AlertingState::default),
                health: "unknown",
                ..Default::default()
            })
            .collect();
        Group {
            interval: spec.interval.unwrap_or(default_interval),
            spec,
            rules: Mutex::new(rules),
            stats: GroupStats::default(),
        }
    }

    /// Takes over the state of `prev`'s rules that are unchanged here (same name,
    /// kind, expression, labels and annotations), as on a reload.
    pub fn adopt(&self, prev: &Group) {
        let mut old = prev.rules.lock().unwrap();
        let mut mine = self.rules.lock().unwrap();
        for (spec, rt) in self.spec.rules.iter().zip(mine.iter_mut()) {
            let same = prev.spec.rules.iter().position(|o| {
                o.name == spec.name
                    && o.alerting == spec.alerting
                    && o.expr == spec.expr
                    && o.labels == spec.labels
                    && o.annotations == spec.annotations
            });
            if let Some(i) = same
                && old[i].alerting.is_some() == spec.alerting
            {
                *rt = std::mem::take(&mut old[i]);
            }
        }
    }

    /// After a reload: the series of rules that were not adopted by a new group
    /// (removed or changed) get staleness markers, as Prometheus writes them.
    pub fn retire(&self, storage: &Storage, ts: i64) {
        for rt in self.rules.lock().unwrap().iter_mut() {
            write(storage, &mut rt.series, Vec::new(), ts);
        }
    }

    /// `file;name`, Prometheus's `rule_group` label.
    pub fn key(&self) -> String {
        format!("{};{}", self.spec.file.display(), self.spec.name)
    }

    /// Evaluates every rule at `ts` (ms); returns the alerts to deliver.
    pub fn eval(&self, storage: &Storage, ts: i64, s: &EvalSettings) -> Vec<Alert> {
        let started = Instant::now();
        let env = Env {
            external_labels: &s.external_labels,
            external_url: &s.external_url,
        };
        let opts = EngineOpts {
            default_subquery_step_ms: self.interval.as_millis() as i64,
            ..EngineOpts::default()
        };
        let mut rules = self.rules.lock().unwrap();
        let mut alerts = Vec::new();
        for (spec, rt) in self.spec.rules.iter().zip(rules.iter_mut()) {
            let t0 = Instant::now();
            let _span = tracing::debug_span!("rule", group = %self.spec.name, rule = %spec.name).entered();
            self.stats.evaluations.fetch_add(1, Ordering::Relaxed);
            let outcome = sonde_promql::instant_query(storage, &spec.parsed, ts, &opts)
                .map_err(|e| e.message().to_string())
                .and_then(vector)
                .and_then(|v| self.apply(spec, rt, v, ts, &env));
            let out = match outcome {
                Ok(out) => {
                    rt.health = "ok";
                    rt.last_error.clear();
                    out
                }
                Err(e) => {
                    tracing::warn!(group = %self.spec.name, rule = %spec.name, "rule evaluation failed: {e}");
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    rt.health = "err";
                    rt.last_error = e;
                    Vec::new()
                }
            };
            write(storage, &mut rt.series, out, ts);
            if let Some(a) = &mut rt.alerting {
                let url = generator_url(&s.external_url, &spec.expr);
                alerts.extend(a.due(ts, s.resend_delay, self.interval, &url));
            }
            rt.last_eval_ms = ts;
            rt.eval_seconds = t0.elapsed().as_secs_f64();
        }
        let took = started.elapsed().as_nanos() as u64;
        self.stats.last_duration_ns.store(took, Ordering::Relaxed);
        self.stats.duration_sum_ns.fetch_add(took, Ordering::Relaxed);
        self.stats.last_eval_ms.store(ts as u64, Ordering::Relaxed);
        if took > self.interval.as_nanos() as u64 {
            self.stats.missed.fetch_add(1, Ordering::Relaxed);
        }
        for a in &mut alerts {
            for (k, v) in &s.external_labels {
                a.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        alerts
    }

    /// One rule's result → the series to write.
    fn apply(
        &self,
        spec: &RuleSpec,
        rt: &mut RuleRuntime,
        v: Vec<Sample>,
        ts: i64,
        env: &Env,
    ) -> Result<Vec<Sample>, String> {
        if let Some(a) = &mut rt.alerting {
            let v = v
                .into_iter()
                .map(|(mut l, x)| {
                    l.remove("__name__");
                    (l, x)
                })
                .collect();
            return a.eval(spec, self.spec.limit, v, ts, env);
        }
        let mut out = Vec::with_capacity(v.len());
        let mut seen = std::collections::HashSet::new();
        for (mut l, x) in v {
            l.insert("__name__".into(), spec.name.clone());
            for (k, val) in &spec.labels {
                if val.is_empty() {
                    l.remove(k);
                } else {
                    l.insert(k.clone(), val.clone());
                }
            }
            if !seen.insert(l.clone()) {
                return Err("vector contains metrics with the same labelset after applying rule labels".into());
            }
            out.push((l, x));
        }
        if self.spec.limit > 0 && out.len() > self.spec.limit {
            return Err(format!(
                "exceeded limit of {} with {} series",
                self.spec.limit,
                out.len()
            ));
        }
        Ok(out)
    }

    /// After the first evaluation since start: restores `for` state from the newest
    /// `ALERTS_FOR_STATE` samples no older than the outage tolerance.
    pub fn restore(&self, storage: &Storage, ts: i64, s: &EvalSettings) {
        let mut rules = self.rules.lock().unwrap();
        for (spec, rt) in self.spec.rules.iter().zip(rules.iter_mut()) {
            let Some(a) = rt.alerting.as_mut().filter(|a| !a.restored) else {
                continue;
            };
            let matchers = [
                Matcher::new(promql_parser::label::MatchOp::Equal, "__name__", "ALERTS_FOR_STATE"),
                Matcher::new(promql_parser::label::MatchOp::Equal, "alertname", &spec.name),
            ];
            let mint = ts - s.for_outage_tolerance.as_millis() as i64;
            let mut last = HashMap::new();
            for (labels, samples) in storage.select(&matchers, mint, ts) {
                let Some(&(t, v)) = samples.iter().rev().find(|(_, v)| !is_stale_nan(*v)) else {
                    continue;
                };
                let l: BTreeMap<String, String> = labels
                    .iter()
                    .filter(|(n, _)| *n != "__name__")
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                last.insert(l, (t, v));
            }
            let n = a.restore(spec, ts, s.for_grace_period, &last);
            if n > 0 {
                tracing::info!(group = %self.spec.name, rule = %spec.name, alerts = n, "restored `for` state");
            }
        }
    }
}

fn vector(v: QueryValue) -> Result<Vec<Sample>, String> {
    match v {
        QueryValue::Vector(s) => Ok(s
            .into_iter()
            .map(|(l, _, x)| (l.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(), x))
            .collect()),
        QueryValue::Scalar(_, x) => Ok(vec![(BTreeMap::new(), x)]),
        other => Err(format!(
            "rule result is a {}, not a vector or scalar",
            other.type_name()
        )),
    }
}

/// Appends one evaluation's series; series written last time and not now get a
/// staleness marker.
fn write(storage: &Storage, prev: &mut HashMap<Vec<(String, String)>, SeriesRef>, out: Vec<Sample>, ts: i64) {
    let mut next = HashMap::with_capacity(out.len());
    let mut samples = Vec::with_capacity(out.len() + prev.len());
    for (labels, v) in out {
        let key: Vec<(String, String)> = labels.into_iter().collect();
        let r = match prev.remove(&key) {
            Some(r) => r,
            None => {
                let pairs: Vec<(&str, &str)> = key.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                match storage.get_or_create(&pairs) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("rule output lost: {e}");
                        continue;
                    }
                }
            }
        };
        samples.push((r, ts, v));
        next.insert(key, r);
    }
    let gone: Vec<SeriesRef> = prev.drain().map(|(_, r)| r).collect();
    samples.extend(gone.iter().map(|r| (*r, ts, STALE_NAN)));
    if let Err(e) = storage.append(&samples) {
        tracing::warn!("rule output lost: {e}");
    }
    for r in gone {
        storage.release(r);
    }
    *prev = next;
}

/// A link to the expression in a Prometheus-style UI.
pub fn generator_url(base: &str, expr: &str) -> String {
    let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!("{}/graph?g0.expr={q}&g0.tab=1", base.trim_end_matches('/'))
}
