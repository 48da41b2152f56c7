//! PagerDuty Events API v2: one `trigger` (or `resolve`) event per group, deduplicated
//! by the group key, as Alertmanager sends them.

use super::Message;
use crate::notify::config::{PagerdutyConfig, read_secret};

const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub async fn send(c: &PagerdutyConfig, msg: &Message) -> Result<(), String> {
    let key = read_secret(&c.routing_key_file, &c.routing_key_env)?;
    let severity = c
        .severity
        .clone()
        .unwrap_or_else(|| match msg.common_labels.get("severity").map(String::as_str) {
            Some(s @ ("critical" | "error" | "warning" | "info")) => s.to_string(),
            _ => "critical".into(),
        });
    let mut summary = msg.title();
    // PagerDuty rejects summaries over 1024 characters.
    summary.truncate(1024);
    let body = serde_json::json!({
        "routing_key": key,
        "event_action": if msg.status == "firing" { "trigger" } else { "resolve" },
        "dedup_key": format!("{:x}", sha_like(&msg.group_key)),
        "payload": {
            "summary": summary,
            "source": msg.external_url,
            "severity": severity,
            "custom_details": { "firing": msg.text(), "num_firing": msg.alerts.iter().filter(|a| a.status == "firing").count() },
        },
        "client": "sonde",
        "client_url": msg.external_url,
    });
    let url = c.url.as_deref().unwrap_or(DEFAULT_URL);
    super::http::post_json(url, serde_json::to_vec(&body).map_err(|e| e.to_string())?).await
}

/// A stable 64-bit key from the group key (PagerDuty limits dedup keys to 255 chars).
fn sha_like(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
