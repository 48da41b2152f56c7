//! `[notifier]` of sonde.toml: the routing tree, receivers and inhibition rules,
//! mirroring alertmanager.yml's concepts (route, receivers, inhibit_rules).

use super::matcher::Matcher;
use crate::config::units::PromDuration;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// Alerts pushed without `endsAt` resolve this long after their last update.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifierConfig {
    /// The URL of this sonde as people reach it; sent as `externalURL` and used in links.
    pub external_url: Option<String>,
    /// How long an alert pushed without `endsAt` stays firing without an update (default 5m).
    pub resolve_timeout: Option<PromDuration>,
    /// The root of the routing tree; it must name a receiver and matches every alert.
    pub route: RouteConfig,
    /// Where notifications go, by name.
    pub receivers: Vec<ReceiverConfig>,
    /// Mute alerts (targets) while other alerts (sources) fire.
    pub inhibit_rules: Vec<InhibitRuleConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Receiver of the alerts this route takes (inherited from the parent when unset).
    pub receiver: Option<String>,
    /// Alertmanager matchers, all of which an alert must satisfy:
    /// `severity="critical"`, `team!="db"`, `service=~"api|web"`, `env!~"dev.*"`.
    pub matchers: Vec<String>,
    /// Keep looking at the following sibling routes after this one matched.
    #[serde(rename = "continue")]
    pub continue_: bool,
    /// Labels that split alerts into notifications; `["..."]` groups by all labels
    /// (inherited when unset; the root's default is no label: one group).
    pub group_by: Option<Vec<String>>,
    /// How long to wait for more alerts before a new group's first notification (default 30s).
    pub group_wait: Option<PromDuration>,
    /// How long to wait before notifying about alerts added to a group already notified (default 5m).
    pub group_interval: Option<PromDuration>,
    /// How long to wait before repeating an unchanged notification (default 4h).
    pub repeat_interval: Option<PromDuration>,
    /// Child routes, tried in order; the first match wins unless it sets `continue`.
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    /// The name routes refer to.
    pub name: String,
    /// Alertmanager webhook receivers (JSON payload version 4).
    pub webhook_configs: Vec<WebhookConfig>,
    /// Slack incoming webhooks.
    pub slack_configs: Vec<SlackConfig>,
    /// Email over SMTP.
    pub email_configs: Vec<EmailConfig>,
    /// PagerDuty Events API v2.
    pub pagerduty_configs: Vec<PagerdutyConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where the JSON is POSTed (http or https).
    pub url: String,
    /// Also notify when alerts resolve (default true).
    pub send_resolved: Option<bool>,
    /// At most this many alerts per message (0 = all); the rest are counted in `truncatedAlerts`.
    pub max_alerts: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// File holding the incoming-webhook URL (it is a secret): its first line.
    pub api_url_file: Option<PathBuf>,
    /// Environment variable holding the incoming-webhook URL.
    pub api_url_env: Option<String>,
    /// Channel override (`#alerts`); the webhook's own channel when unset.
    pub channel: Option<String>,
    /// Also notify when alerts resolve (default false, as in Alertmanager).
    pub send_resolved: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// Recipients, comma-separated addresses.
    pub to: String,
    /// Sender address.
    pub from: String,
    /// SMTP server `host:port`.
    pub smarthost: String,
    /// Name sent in EHLO (default localhost).
    pub hello: Option<String>,
    /// STARTTLS: "always" (fail without it), "opportunistic" (when offered, the default)
    /// or "never".
    pub starttls: Option<StartTls>,
    /// SMTP AUTH PLAIN user (only over TLS unless `auth_without_tls`).
    pub auth_username: Option<String>,
    /// File holding the SMTP password (its first line).
    pub auth_password_file: Option<PathBuf>,
    /// Environment variable holding the SMTP password.
    pub auth_password_env: Option<String>,
    /// Allow AUTH on an unencrypted connection (e.g. to a relay on localhost).
    pub auth_without_tls: bool,
    /// Also notify when alerts resolve (default false, as in Alertmanager).
    pub send_resolved: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    Always,
    #[default]
    Opportunistic,
    Never,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerdutyConfig {
    /// File holding the integration's routing key (its first line).
    pub routing_key_file: Option<PathBuf>,
    /// Environment variable holding the routing key.
    pub routing_key_env: Option<String>,
    /// Events API endpoint (default https://events.pagerduty.com/v2/enqueue).
    pub url: Option<String>,
    /// `critical`, `error`, `warning` or `info` (default: the alerts' `severity` label
    /// when it is one of those, else `critical`).
    pub severity: Option<String>,
    /// Also resolve the incident when alerts resolve (default true).
    pub send_resolved: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InhibitRuleConfig {
    /// Matchers of the alerts that mute.
    pub source_matchers: Vec<String>,
    /// Matchers of the alerts that are muted.
    pub target_matchers: Vec<String>,
    /// Labels whose values must be equal in source and target.
    pub equal: Vec<String>,
}

/// One semantic problem: where (a dotted key path below `[notifier]`, array items by
/// index: `route.routes.0.receiver`) and what.
pub type Invalid = (String, String);

/// Parses a list of matchers, reporting each bad one at `path.<index>`.
pub fn matchers(list: &[String], errs: &mut Vec<Invalid>, path: &str) -> Vec<Matcher> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Matcher::parse(s)
                .map_err(|e| errs.push((format!("{path}.{i}"), e)))
                .ok()
        })
        .collect()
}

impl NotifierConfig {
    /// Every semantic problem, each with the key path it is about.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut errs: Vec<Invalid> = Vec::new();
        let mut names = BTreeSet::new();
        for (ri, r) in self.receivers.iter().enumerate() {
            let at = |k: &str| format!("receivers.{ri}.{k}");
            if r.name.is_empty() {
                errs.push((format!("receivers.{ri}"), "this receiver has no `name`".into()));
            } else if !names.insert(r.name.as_str()) {
                errs.push((at("name"), format!("receiver {:?} is defined twice", r.name)));
            }
            for (i, w) in r.webhook_configs.iter().enumerate() {
                check_url(&w.url, &at(&format!("webhook_configs.{i}.url")), &mut errs);
            }
            for (i, s) in r.slack_configs.iter().enumerate() {
                check_secret(
                    &s.api_url_file,
                    &s.api_url_env,
                    true,
                    &at(&format!("slack_configs.{i}")),
                    "api_url",
                    &mut errs,
                );
            }
            for (i, p) in r.pagerduty_configs.iter().enumerate() {
                let base = at(&format!("pagerduty_configs.{i}"));
                check_secret(
                    &p.routing_key_file,
                    &p.routing_key_env,
                    true,
                    &base,
                    "routing_key",
                    &mut errs,
                );
                if let Some(u) = &p.url {
                    check_url(u, &format!("{base}.url"), &mut errs);
                }
            }
            for (i, e) in r.email_configs.iter().enumerate() {
                let base = at(&format!("email_configs.{i}"));
                if e.to.trim().is_empty() || e.from.trim().is_empty() {
                    errs.push((base.clone(), "`to` and `from` are required".into()));
                }
                if !e.smarthost.contains(':') {
                    errs.push((
                        format!("{base}.smarthost"),
                        format!("smarthost {:?} must be host:port", e.smarthost),
                    ));
                }
                check_secret(
                    &e.auth_password_file,
                    &e.auth_password_env,
                    e.auth_username.is_some(),
                    &base,
                    "auth_password",
                    &mut errs,
                );
            }
        }
        if self.route.receiver.is_none() {
            errs.push((
                "route".into(),
                "[notifier.route] needs a `receiver`: the one that gets alerts no child route takes".into(),
            ));
        }
        check_route(&self.route, &names, "route", &mut errs);
        for (i, r) in self.inhibit_rules.iter().enumerate() {
            matchers(
                &r.source_matchers,
                &mut errs,
                &format!("inhibit_rules.{i}.source_matchers"),
            );
            matchers(
                &r.target_matchers,
                &mut errs,
                &format!("inhibit_rules.{i}.target_matchers"),
            );
        }
        errs
    }
}

fn check_route(r: &RouteConfig, names: &BTreeSet<&str>, path: &str, errs: &mut Vec<Invalid>) {
    if let Some(rcv) = &r.receiver
        && !names.contains(rcv.as_str())
    {
        errs.push((
            format!("{path}.receiver"),
            format!("receiver {rcv:?} is not defined in [[notifier.receivers]]"),
        ));
    }
    matchers(&r.matchers, errs, &format!("{path}.matchers"));
    for (n, d) in [
        ("group_interval", r.group_interval),
        ("repeat_interval", r.repeat_interval),
    ] {
        if d.is_some_and(|d| d.0.is_zero()) {
            errs.push((format!("{path}.{n}"), format!("{n} must be more than 0")));
        }
    }
    for (i, c) in r.routes.iter().enumerate() {
        check_route(c, names, &format!("{path}.routes.{i}"), errs);
    }
}

fn check_url(u: &str, path: &str, errs: &mut Vec<Invalid>) {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        errs.push((path.into(), format!("{u:?} must start with http:// or https://")));
    }
}

fn check_secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
    required: bool,
    base: &str,
    key: &str,
    errs: &mut Vec<Invalid>,
) {
    match (file, env) {
        (Some(_), Some(_)) => errs.push((
            format!("{base}.{key}_env"),
            format!("set {key}_file or {key}_env, not both"),
        )),
        (Some(f), None) => {
            if let Err(e) = std::fs::metadata(f) {
                errs.push((
                    format!("{base}.{key}_file"),
                    format!("cannot read {}: {e}", f.display()),
                ));
            }
        }
        (None, Some(v)) if std::env::var_os(v).is_none() => errs.push((
            format!("{base}.{key}_env"),
            format!("environment variable {v} is not set"),
        )),
        (None, None) if required => errs.push((
            base.into(),
            format!("set {key}_file or {key}_env (secrets are never written inline)"),
        )),
        _ => {}
    }
}

/// Reads a secret from its file (first line) or environment variable, at send time
/// so a rotated secret is picked up without a restart.
pub fn read_secret(file: &Option<PathBuf>, env: &Option<String>) -> Result<String, String> {
    match (file, env) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map(|s| s.lines().next().unwrap_or("").trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", f.display())),
        (None, Some(v)) => std::env::var(v).map_err(|_| format!("environment variable {v} is not set")),
        (None, None) => Ok(String::new()),
    }
}
