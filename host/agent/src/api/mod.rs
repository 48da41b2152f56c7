//! The HTTP server: health and readiness, sonde's own `/metrics`, the federation
//! endpoint and the Prometheus v1 API subset implemented so far.

mod exposition;
mod federate;
pub mod prom;
mod selfmetrics;
mod targets;

pub use exposition::format_value;
pub use federate::parse_selector;

use crate::scrape::TargetSet;
use crate::storage::Storage;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

pub struct AppState {
    /// Rule groups, for `/api/v1/rules`, `/api/v1/alerts` and `/metrics`.
    pub rules: Arc<crate::rules::Manager>,
    /// The built-in notifier, when `[notifier]` is configured.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// The targets being scraped; discovery adds and removes some at run time.
    pub targets: TargetSet,
    pub head: Arc<Storage>,
    /// Set once every plugin has been loaded and scheduled.
    pub ready: AtomicBool,
    pub started: SystemTime,
    /// What `/api/v1/status/*` reports.
    pub status: prom::StatusInfo,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(selfmetrics::handler))
        .route("/federate", get(federate::handler))
        .route("/api/v1/targets", get(targets::handler))
        .merge(prom::routes())
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/-/reload", axum::routing::post(reload).put(reload))
        .merge(crate::notify::api::routes())
        .with_state(state)
}

async fn rules(State(s): State<Shared>, q: axum::extract::RawQuery) -> axum::response::Response {
    let kind = q.0.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.into_owned())
    });
    let data = crate::rules::api::rules(&s.rules, kind.as_deref());
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}

async fn alerts(State(s): State<Shared>) -> axum::response::Response {
    let data = crate::rules::api::alerts(&s.rules);
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}

/// `POST /-/reload`: reads the rule files again; 500 with every problem when one is bad.
async fn reload(State(s): State<Shared>) -> (StatusCode, String) {
    let r = s.rules.clone();
    match tokio::task::spawn_blocking(move || r.reload()).await {
        Ok(Ok(n)) => (StatusCode::OK, format!("reloaded: {n} rules\n")),
        Ok(Err(problems)) => {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "failed to reload rules (the previous rules stay):\n{}\n",
                    lines.join("\n")
                ),
            )
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("reload failed: {e}\n")),
    }
}

async fn healthy() -> &'static str {
    "sonde is Healthy.\n"
}

async fn ready(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "sonde is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
    }
}

/// A Prometheus-style JSON error body: `{"status":"error","errorType":..,"error":..}`.
pub fn api_error(status: StatusCode, error_type: &str, message: String) -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        status,
        axum::Json(serde_json::json!({"status": "error", "errorType": error_type, "error": message})),
    )
}
