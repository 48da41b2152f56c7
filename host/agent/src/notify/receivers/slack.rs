//! Slack incoming webhooks: a title and the alert list as text (mrkdwn).

use super::Message;
use crate::notify::config::{SlackConfig, read_secret};

pub async fn send(c: &SlackConfig, msg: &Message) -> Result<(), String> {
    let url = read_secret(&c.api_url_file, &c.api_url_env)?;
    let mut body = serde_json::json!({
        "text": format!("*{}*\n```{}```", msg.title(), msg.text()),
    });
    if let Some(ch) = &c.channel {
        body["channel"] = ch.clone().into();
    }
    super::http::post_json(&url, serde_json::to_vec(&body).map_err(|e| e.to_string())?).await
}
