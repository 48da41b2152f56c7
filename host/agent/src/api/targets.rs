//! `GET /api/v1/targets` in Prometheus's JSON format, so Grafana and scripts that
//! read Prometheus's targets page work against sonde.

use super::Shared;
use crate::config::units::PromDuration;
use crate::timefmt::rfc3339;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
pub struct Params {
    /// active, dropped or any (default any).
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

pub async fn handler(State(s): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let want_active = !matches!(p.state.as_deref(), Some("dropped"));
    let mut active = Vec::new();
    for t in s.targets.snapshot().iter().filter(|_| want_active) {
        if p.scrape_pool.as_ref().is_some_and(|pool| *pool != t.spec.entry) {
            continue;
        }
        let st = t.status.lock().unwrap().clone();
        let labels: Map<String, Value> = t.labels().into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let mut discovered = labels.clone();
        let address = t.spec.address.as_ref().unwrap_or(&t.spec.name);
        discovered.insert("__address__".into(), Value::String(address.clone()));
        discovered.insert(
            "__plugin__".into(),
            Value::String(t.spec.plugin_path.display().to_string()),
        );
        let last_scrape = st.last_scrape.map_or("0001-01-01T00:00:00Z".to_string(), rfc3339);
        active.push(json!({
            "discoveredLabels": discovered,
            "labels": labels,
            "scrapePool": t.spec.entry,
            "scrapeUrl": t.url(),
            "globalUrl": t.url(),
            "lastError": st.last_error,
            "lastScrape": last_scrape,
            "lastScrapeDuration": st.last_duration.as_secs_f64(),
            "health": st.health.as_str(),
            "scrapeInterval": PromDuration(t.interval).to_string(),
            "scrapeTimeout": PromDuration(t.timeout).to_string(),
        }));
    }
    let dropped: Vec<Value> = Vec::new();
    Json(json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": dropped}}))
}
