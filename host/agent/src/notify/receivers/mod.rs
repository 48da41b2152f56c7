//! Integrations: one module per kind of receiver, each turning a [`Message`] (the
//! Alertmanager webhook payload) into its own request.

mod email;
pub(crate) mod http;
mod pagerduty;
mod slack;
mod webhook;

use super::config::ReceiverConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// One alert as the webhook payload carries it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAlert {
    pub status: &'static str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Alertmanager's webhook payload (version 4); every integration renders from it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub version: &'static str,
    pub group_key: String,
    pub truncated_alerts: usize,
    pub status: &'static str,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<MessageAlert>,
}

impl Message {
    /// A one-line title: `[FIRING:2] HighLoad (instance="a")`.
    pub fn title(&self) -> String {
        let firing = self.alerts.iter().filter(|a| a.status == "firing").count();
        let mut t = match self.status {
            "firing" => format!("[FIRING:{firing}]"),
            _ => "[RESOLVED]".into(),
        };
        if let Some(n) = self.common_labels.get("alertname") {
            t.push(' ');
            t.push_str(n);
        }
        let rest: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        if !rest.is_empty() {
            t.push_str(&format!(" ({})", rest.join(" ")));
        }
        t
    }

    /// A plain-text body listing every alert with its labels and annotations.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for a in &self.alerts {
            s.push_str(&format!("[{}] ", a.status.to_uppercase()));
            let l: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            s.push_str(&l.join(" "));
            s.push('\n');
            for (k, v) in &a.annotations {
                s.push_str(&format!("  {k}: {v}\n"));
            }
            s.push_str(&format!("  since {}", a.starts_at));
            if a.status == "resolved" {
                s.push_str(&format!(", resolved {}", a.ends_at));
            }
            s.push('\n');
            if !a.generator_url.is_empty() {
                s.push_str(&format!("  source: {}\n", a.generator_url));
            }
        }
        s
    }
}

/// One configured integration of a receiver.
pub enum Integration {
    Webhook(super::config::WebhookConfig),
    Slack(super::config::SlackConfig),
    Email(super::config::EmailConfig),
    Pagerduty(super::config::PagerdutyConfig),
}

impl Integration {
    pub fn from_config(r: &ReceiverConfig) -> Vec<Integration> {
        let mut v: Vec<Integration> = r.webhook_configs.iter().cloned().map(Integration::Webhook).collect();
        v.extend(r.slack_configs.iter().cloned().map(Integration::Slack));
        v.extend(r.email_configs.iter().cloned().map(Integration::Email));
        v.extend(r.pagerduty_configs.iter().cloned().map(Integration::Pagerduty));
        v
    }

    /// The `integration` label of the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::Slack(_) => "slack",
            Integration::Email(_) => "email",
            Integration::Pagerduty(_) => "pagerduty",
        }
    }

    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Webhook(c) => c.send_resolved.unwrap_or(true),
            Integration::Slack(c) => c.send_resolved.unwrap_or(false),
            Integration::Email(c) => c.send_resolved.unwrap_or(false),
            Integration::Pagerduty(c) => c.send_resolved.unwrap_or(true),
        }
    }

    /// One delivery attempt; Err says why (and whether retrying can help is left to
    /// the caller: every error is retried until the group's next flush).
    pub async fn notify(&self, msg: &Message) -> Result<(), String> {
        match self {
            Integration::Webhook(c) => webhook::send(c, msg).await,
            Integration::Slack(c) => slack::send(c, msg).await,
            Integration::Email(c) => email::send(c, msg).await,
            Integration::Pagerduty(c) => pagerduty::send(c, msg).await,
        }
    }
}
