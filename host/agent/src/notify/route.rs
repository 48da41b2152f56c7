//! The routing tree resolved from the config: each node with its inherited options,
//! and which leaves an alert goes to (Alertmanager's depth-first matching).

use super::config::{self, RouteConfig};
use super::matcher::{Matcher, all_match};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RouteOpts {
    pub receiver: String,
    /// None = all labels (`["..."]`).
    pub group_by: Option<Vec<String>>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

#[derive(Debug)]
pub struct Route {
    /// Position in the tree (`0`, `0.1`, ...): part of the group key.
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub continue_: bool,
    pub opts: RouteOpts,
    pub routes: Vec<Route>,
}

impl Route {
    /// The root from a validated config.
    pub fn root(cfg: &RouteConfig) -> Route {
        let opts = RouteOpts {
            receiver: cfg.receiver.clone().unwrap_or_default(),
            group_by: Some(Vec::new()),
            group_wait: config::DEFAULT_GROUP_WAIT,
            group_interval: config::DEFAULT_GROUP_INTERVAL,
            repeat_interval: config::DEFAULT_REPEAT_INTERVAL,
        };
        Route::build(cfg, &opts, "0".into())
    }

    fn build(cfg: &RouteConfig, parent: &RouteOpts, id: String) -> Route {
        let opts = RouteOpts {
            receiver: cfg.receiver.clone().unwrap_or_else(|| parent.receiver.clone()),
            group_by: match &cfg.group_by {
                Some(g) if g.iter().any(|l| l == "...") => None,
                Some(g) => Some(g.clone()),
                None => parent.group_by.clone(),
            },
            group_wait: cfg.group_wait.map_or(parent.group_wait, |d| d.0),
            group_interval: cfg.group_interval.map_or(parent.group_interval, |d| d.0),
            repeat_interval: cfg.repeat_interval.map_or(parent.repeat_interval, |d| d.0),
        };
        let routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, c)| Route::build(c, &opts, format!("{id}.{i}")))
            .collect();
        Route {
            matchers: config::matchers(&cfg.matchers, &mut Vec::new(), ""),
            continue_: cfg.continue_,
            id,
            opts,
            routes,
        }
    }

    /// The routes that take an alert with these labels.
    pub fn matching<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        if !all_match(&self.matchers, labels) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in &self.routes {
            let m = c.matching(labels);
            let matched = !m.is_empty();
            out.extend(m);
            if matched && !c.continue_ {
                break;
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// The labels this route groups an alert by.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.opts.group_by {
            None => labels.clone(),
            Some(g) => labels
                .iter()
                .filter(|(k, _)| g.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_routes_inherit_and_continue() {
        let cfg: crate::notify::config::NotifierConfig = toml::from_str(
            r#"
            [route]
            receiver = "team"
            group_by = ["alertname"]
            group_wait = "1s"
            [[route.routes]]
            matchers = ['severity="critical"']
            receiver = "pager"
            continue = true
            [[route.routes]]
            matchers = ['severity=~"critical|warning"']
            group_by = ["..."]
            "#,
        )
        .unwrap();
        let root = Route::root(&cfg.route);
        let l = |s: &str| {
            BTreeMap::from([
                ("severity".to_string(), s.to_string()),
                ("alertname".into(), "A".into()),
            ])
        };
        let r: Vec<_> = root
            .matching(&l("critical"))
            .iter()
            .map(|r| (r.id.clone(), r.opts.receiver.clone()))
            .collect();
        assert_eq!(
            r,
            [("0.0".to_string(), "pager".to_string()), ("0.1".into(), "team".into())]
        );
        let r = root.matching(&l("info"));
        assert_eq!(r[0].id, "0");
        let w = root.matching(&l("warning"));
        assert_eq!(w[0].opts.group_wait, Duration::from_secs(1));
        assert_eq!(w[0].group_labels(&l("warning")).len(), 2);
    }
}
