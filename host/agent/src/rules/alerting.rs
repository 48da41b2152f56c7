//! One alerting rule's state: its active alerts moving inactive → pending → firing →
//! resolved with `for` and `keep_firing_for`, as Prometheus's `AlertingRule.Eval`
//! does, the `ALERTS` / `ALERTS_FOR_STATE` samples it writes, which alerts need
//! (re)sending, and the restore of `for` state after a restart.

use super::file::RuleSpec;
use super::template::{self, Data};
use crate::alert::Alert;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How long a resolved alert is kept (and re-sent as resolved), like Prometheus.
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    pub value: f64,
    /// All times in ms since the epoch; 0 = never.
    pub active_at: i64,
    pub fired_at: i64,
    pub resolved_at: i64,
    pub last_sent_at: i64,
    pub keep_firing_since: i64,
}

/// What one alerting rule remembers between evaluations.
#[derive(Debug, Default)]
pub struct AlertingState {
    pub active: HashMap<BTreeMap<String, String>, ActiveAlert>,
    /// Set once the `for` state was restored (or restoring was not needed); only
    /// then are `ALERTS` and `ALERTS_FOR_STATE` written, as in Prometheus.
    pub restored: bool,
}

/// A series as rules produce it: labels (with `__name__` where it has one) and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// Environment of template expansion.
pub struct Env<'a> {
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
}

impl AlertingState {
    /// Applies one evaluation's result at `ts`; returns the series to write
    /// (`ALERTS`, `ALERTS_FOR_STATE`) as (labels, value), or an error.
    pub fn eval(
        &mut self,
        rule: &RuleSpec,
        limit: usize,
        result: Vec<Sample>,
        ts: i64,
        env: &Env,
    ) -> Result<Vec<Sample>, String> {
        let hold = rule.for_.as_millis() as i64;
        let keep = rule.keep_firing_for.as_millis() as i64;
        let mut seen: HashMap<BTreeMap<String, String>, ()> = HashMap::new();
        let mut fresh = Vec::new();
        let tname = format!("__alert_{}", rule.name);
        for (series, value) in result {
            let data = Data {
                labels: &series,
                external_labels: env.external_labels,
                external_url: env.external_url,
                value,
            };
            let expand = |text: &str| {
                template::expand(&tname, text, &data).unwrap_or_else(|e| {
                    tracing::warn!(rule = %rule.name, "template expansion failed: {e}");
                    format!("<error expanding template: {e}>")
                })
            };
            let mut labels = series.clone();
            for (k, v) in &rule.labels {
                labels.insert(k.clone(), expand(v));
            }
            labels.insert("alertname".into(), rule.name.clone());
            let annotations: BTreeMap<String, String> =
                rule.annotations.iter().map(|(k, v)| (k.clone(), expand(v))).collect();
            if seen.insert(labels.clone(), ()).is_some() {
                return Err("vector contains metrics with the same labelset after applying alert labels".into());
            }
            fresh.push((labels, annotations, value));
        }
        for (labels, annotations, value) in fresh {
            match self.active.get_mut(&labels) {
                Some(a) if a.state != State::Inactive => {
                    a.value = value;
                    a.annotations = annotations;
                }
                _ => {
                    self.active.insert(
                        labels.clone(),
                        ActiveAlert {
                            labels,
                            annotations,
                            state: State::Pending,
                            value,
                            active_at: ts,
                            fired_at: 0,
                            resolved_at: 0,
                            last_sent_at: 0,
                            keep_firing_since: 0,
                        },
                    );
                }
            }
        }
        let mut out = Vec::new();
        let mut active_pending = 0;
        let mut remove = Vec::new();
        for (fp, a) in self.active.iter_mut() {
            if !seen.contains_key(fp) {
                let mut keep_firing = false;
                if a.state == State::Firing && keep > 0 {
                    if a.keep_firing_since == 0 {
                        a.keep_firing_since = ts;
                    }
                    keep_firing = ts - a.keep_firing_since < keep;
                }
                if a.state == State::Pending || (a.resolved_at != 0 && ts - a.resolved_at > RESOLVED_RETENTION_MS) {
                    remove.push(fp.clone());
                }
                if a.state != State::Inactive && !keep_firing {
                    a.state = State::Inactive;
                    a.resolved_at = ts;
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = 0;
            }
            active_pending += 1;
            if a.state == State::Pending && ts - a.active_at >= hold {
                a.state = State::Firing;
                a.fired_at = ts;
            }
            if self.restored {
                let mut l = a.labels.clone();
                l.insert("__name__".into(), "ALERTS".into());
                l.insert("alertstate".into(), a.state.as_str().into());
                out.push((l, 1.0));
                let mut l = a.labels.clone();
                l.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                out.push((l, (a.active_at / 1000) as f64));
            }
        }
        for fp in remove {
            self.active.remove(&fp);
        }
        if limit > 0 && active_pending > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {active_pending} alerts"));
        }
        Ok(out)
    }

    /// The alerts to send now (Prometheus's `needsSending` + `sendAlerts`).
    pub fn due(&mut self, ts: i64, resend_delay: Duration, interval: Duration, generator_url: &str) -> Vec<Alert> {
        let resend = resend_delay.as_millis() as i64;
        let valid_for = 4 * resend_delay.max(interval).as_millis() as i64;
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.state == State::Pending {
                continue;
            }
            let needs = (a.resolved_at != 0 && a.resolved_at > a.last_sent_at) || a.last_sent_at + resend <= ts;
            if !needs {
                continue;
            }
            a.last_sent_at = ts;
            let ends = if a.state == State::Inactive {
                a.resolved_at
            } else {
                ts + valid_for
            };
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: ms_time(a.fired_at),
                ends_at: ms_time(ends),
                generator_url: generator_url.to_string(),
            });
        }
        out
    }

    /// Restores `active_at` of pending alerts from the newest `ALERTS_FOR_STATE` sample
    /// of each (`last`: labels without `__name__` → (sample time, value)), as
    /// Prometheus's `RestoreForState` does with its outage tolerance and grace period.
    pub fn restore(
        &mut self,
        rule: &RuleSpec,
        ts: i64,
        grace: Duration,
        last: &HashMap<BTreeMap<String, String>, (i64, f64)>,
    ) -> usize {
        self.restored = true;
        let hold = rule.for_.as_millis() as i64;
        if hold == 0 || rule.for_ < grace {
            return 0;
        }
        let grace = grace.as_millis() as i64;
        let mut n = 0;
        for a in self.active.values_mut() {
            let Some(&(down_at, v)) = last.get(&a.labels) else {
                continue;
            };
            let restored = (v as i64) * 1000;
            let spent = down_at - restored;
            let remaining = hold - spent;
            a.active_at = if remaining <= 0 {
                restored
            } else if remaining < grace {
                ts + grace - hold
            } else {
                restored + (ts - down_at)
            };
            n += 1;
        }
        n
    }

    pub fn state(&self) -> State {
        self.active.values().map(|a| a.state).max().unwrap_or(State::Inactive)
    }
}

pub fn ms_time(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_s: u64, keep_s: u64) -> RuleSpec {
        RuleSpec {
            name: "A".into(),
            alerting: true,
            expr: "up == 0".into(),
            parsed: sonde_promql::parse("up == 0").unwrap(),
            for_: Duration::from_secs(for_s),
            keep_firing_for: Duration::from_secs(keep_s),
            labels: [("severity".to_string(), "page".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "{{ $labels.instance }} at {{ $value }}".to_string(),
            )]
            .into(),
        }
    }

    fn series() -> Vec<Sample> {
        vec![([("instance".to_string(), "a".to_string())].into(), 0.0)]
    }

    #[test]
    fn rules_alert_goes_pending_firing_resolved() {
        let (e, u) = (BTreeMap::new(), "");
        let env = Env {
            external_labels: &e,
            external_url: u,
        };
        let r = rule(60, 0);
        let mut s = AlertingState {
            restored: true,
            ..Default::default()
        };
        let out = s.eval(&r, 0, series(), 0, &env).unwrap();
        assert_eq!(s.state(), State::Pending);
        assert!(out.iter().any(|(l, _)| l["alertstate"] == "pending"));
        assert!(
            s.due(0, Duration::from_secs(60), Duration::from_secs(15), "")
                .is_empty()
        );
        s.eval(&r, 0, series(), 60_000, &env).unwrap();
        assert_eq!(s.state(), State::Firing);
        let sent = s.due(60_000, Duration::from_secs(60), Duration::from_secs(15), "");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].labels["alertname"], "A");
        assert_eq!(sent[0].labels["severity"], "page");
        assert_eq!(sent[0].annotations["summary"], "a at 0");
        // Not re-sent before the resend delay.
        s.eval(&r, 0, series(), 75_000, &env).unwrap();
        assert!(
            s.due(75_000, Duration::from_secs(60), Duration::from_secs(15), "")
                .is_empty()
        );
        // Resolved: sent once more with ends_at = resolution time.
        s.eval(&r, 0, vec![], 90_000, &env).unwrap();
        assert_eq!(s.state(), State::Inactive);
        let sent = s.due(90_000, Duration::from_secs(60), Duration::from_secs(15), "");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].ends_at, ms_time(90_000));
    }

    #[test]
    fn rules_keep_firing_for_holds_a_firing_alert() {
        let (e, u) = (BTreeMap::new(), "");
        let env = Env {
            external_labels: &e,
            external_url: u,
        };
        let r = rule(0, 30);
        let mut s = AlertingState::default();
        s.eval(&r, 0, series(), 0, &env).unwrap();
        assert_eq!(s.state(), State::Firing);
        s.eval(&r, 0, vec![], 10_000, &env).unwrap();
        assert_eq!(s.state(), State::Firing);
        s.eval(&r, 0, vec![], 40_000, &env).unwrap();
        assert_eq!(s.state(), State::Inactive);
    }

    #[test]
    fn rules_restore_keeps_active_at_of_a_firing_alert() {
        let (e, u) = (BTreeMap::new(), "");
        let env = Env {
            external_labels: &e,
            external_url: u,
        };
        let r = rule(60, 0);
        let mut s = AlertingState::default();
        s.eval(&r, 0, series(), 500_000, &env).unwrap();
        let key = s.active.keys().next().unwrap().clone();
        // Was active since t=100 s, still reported at 400 s (firing), down until 500 s.
        let last = [(key.clone(), (400_000, 100.0))].into();
        assert_eq!(s.restore(&r, 500_000, Duration::from_secs(10), &last), 1);
        assert_eq!(s.active[&key].active_at, 100_000);
        s.eval(&r, 0, series(), 501_000, &env).unwrap();
        assert_eq!(s.state(), State::Firing);
        // Pending for 20 s of 60 when it went down for 100 s: 40 s still to wait.
        let mut s = AlertingState::default();
        s.eval(&r, 0, series(), 500_000, &env).unwrap();
        let last = [(key.clone(), (400_000, 380.0))].into();
        s.restore(&r, 500_000, Duration::from_secs(10), &last);
        assert_eq!(s.active[&key].active_at, 480_000);
    }
}
