//! Alertmanager's webhook receiver: the [`Message`] as JSON.

use super::Message;
use crate::notify::config::WebhookConfig;

pub async fn send(c: &WebhookConfig, msg: &Message) -> Result<(), String> {
    let mut m = msg.clone();
    if c.max_alerts > 0 && m.alerts.len() > c.max_alerts {
        m.truncated_alerts = m.alerts.len() - c.max_alerts;
        m.alerts.truncate(c.max_alerts);
    }
    let body = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
    super::http::post_json(&c.url, body).await
}
