//! The Prometheus HTTP API v1 as Grafana's Prometheus data source, promtool and
//! scripts use it: queries ([`query`]), series and label lookups ([`series`]),
//! metadata, status and `format_query` ([`status`]). Parameters are read as
//! Prometheus reads them ([`params`]) and answers are written byte for byte as
//! Prometheus 2.42 writes them ([`json`]). Errors are mapped to a status code and an
//! `errorType` in one place: [`ApiError`].

pub mod json;
pub mod params;
mod query;
mod series;
mod status;

pub use status::StatusInfo;

use super::Shared;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The `/api/v1/...` routes implemented here (`/api/v1/targets` lives in `targets`).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/query_exemplars", get(query::exemplars).post(query::exemplars))
        .route(
            "/api/v1/format_query",
            get(status::format_query).post(status::format_query),
        )
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::label_names).post(series::label_names))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(series::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
}

/// An API failure: Prometheus's `errorType` and the HTTP status that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }

    /// `invalid parameter "<name>": <why>`, Prometheus's wording for a bad parameter.
    pub fn invalid_param(name: &str, why: impl std::fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter {name:?}: {why}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: message.into(),
        }
    }
}

impl From<sonde_promql::Error> for ApiError {
    fn from(e: sonde_promql::Error) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: e.error_type(),
            message: e.message().to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, json_body(json::error(self.error_type, &self.message))).into_response()
    }
}

/// A JSON body with Prometheus's content type.
fn json_body(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"status":"success","data":...}`.
fn success(capacity: usize, data: impl FnOnce(&mut Vec<u8>)) -> Response {
    json_body(json::success(capacity, data))
}

/// Runs storage work off the async threads (block indexes are read from disk).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request failed: {e}")))
}
