//! Alertmanager API v2 on sonde's HTTP server: `POST/GET /api/v2/alerts`,
//! `POST/GET /api/v2/silences`, `GET/DELETE /api/v2/silence/{id}`.

use super::silence::{ApiMatcher, Silence};
use super::state::StoredAlert;
use super::{Notifier, now_ms};
use crate::api::Shared;
use crate::api::prom::params::parse_rfc3339;
use crate::timefmt::rfc3339;
use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v2/alerts", post(post_alerts).get(get_alerts))
        .route("/api/v2/silences", post(post_silence).get(get_silences))
        .route("/api/v2/silence/{id}", get(get_silence).delete(delete_silence))
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    // Alertmanager answers errors as a bare JSON string.
    (status, Json(Value::String(msg.into()))).into_response()
}

fn notifier(s: &Shared) -> Result<&Arc<Notifier>, Box<Response>> {
    s.notifier.as_ref().ok_or_else(|| {
        Box::new(err(
            StatusCode::NOT_FOUND,
            "the notifier is not enabled: add [notifier] to sonde.toml",
        ))
    })
}

fn time(ms: i64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// An RFC 3339 time, or None when absent or Go's zero time (`0001-01-01T00:00:00Z`,
/// which amtool and Prometheus send for "not set").
fn parse_time(v: Option<&str>, what: &str) -> Result<Option<i64>, Box<Response>> {
    match v {
        None | Some("") => Ok(None),
        Some(t) => match parse_rfc3339(t) {
            Some(ms) if ms <= 0 => Ok(None),
            Some(ms) => Ok(Some(ms)),
            None => Err(Box::new(err(
                StatusCode::BAD_REQUEST,
                format!("{what} {t:?} is not an RFC 3339 time"),
            ))),
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
}

async fn post_alerts(
    State(s): State<Shared>,
    body: Result<Json<Vec<PostableAlert>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let n = match notifier(&s) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let Json(list) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let now = now_ms();
    let mut out = Vec::new();
    for (i, a) in list.into_iter().enumerate() {
        if a.labels.is_empty() {
            return err(StatusCode::BAD_REQUEST, format!("alert {i}: labels must not be empty"));
        }
        let starts = match parse_time(a.starts_at.as_deref(), "startsAt") {
            Ok(t) => t.unwrap_or(now),
            Err(r) => return *r,
        };
        let ends = match parse_time(a.ends_at.as_deref(), "endsAt") {
            Ok(t) => t.unwrap_or(now + n.resolve_timeout.as_millis() as i64),
            Err(r) => return *r,
        };
        if ends < starts {
            return err(StatusCode::BAD_REQUEST, format!("alert {i}: endsAt is before startsAt"));
        }
        out.push(StoredAlert {
            labels: a.labels,
            annotations: a.annotations,
            starts_at: starts,
            ends_at: ends,
            updated_at: now,
            generator_url: a.generator_url,
        });
    }
    n.ingest(out);
    StatusCode::OK.into_response()
}

/// `GET /api/v2/alerts` with Alertmanager's filters: `active`, `silenced`,
/// `inhibited` (each default true) and `filter` (matchers, repeatable).
async fn get_alerts(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let n = match notifier(&s) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let (mut active, mut silenced, mut inhibited, mut filter) = (true, true, true, Vec::new());
    for (k, v) in form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "active" => active = v != "false",
            "silenced" => silenced = v != "false",
            "inhibited" => inhibited = v != "false",
            "filter" => match super::matcher::Matcher::parse(&v) {
                Ok(m) => filter.push(m),
                Err(e) => return err(StatusCode::BAD_REQUEST, e),
            },
            _ => {}
        }
    }
    let now = now_ms();
    let st = n.state.lock().unwrap();
    let mut list = Vec::new();
    for (fp, a) in st.alerts.iter().filter(|(_, a)| !a.resolved(now)) {
        let (silenced_by, is_inhibited) = n.muted(&st, &a.labels, now);
        let show = if !silenced_by.is_empty() {
            silenced
        } else if is_inhibited {
            inhibited
        } else {
            active
        };
        if !show || !super::matcher::all_match(&filter, &a.labels) {
            continue;
        }
        let receivers: Vec<Value> = n
            .root
            .matching(&a.labels)
            .iter()
            .map(|r| json!({"name": r.opts.receiver}))
            .collect();
        let state = if silenced_by.is_empty() && !is_inhibited {
            "active"
        } else {
            "suppressed"
        };
        list.push(json!({
            "labels": a.labels, "annotations": a.annotations,
            "startsAt": time(a.starts_at), "endsAt": time(a.ends_at), "updatedAt": time(a.updated_at),
            "generatorURL": a.generator_url, "fingerprint": fp, "receivers": receivers,
            "status": {"state": state, "silencedBy": silenced_by, "inhibitedBy": [], "inhibited": is_inhibited},
        }));
    }
    Json(list).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<ApiMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

async fn post_silence(
    State(s): State<Shared>,
    body: Result<Json<PostableSilence>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let n = match notifier(&s) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let Json(p) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (Some(starts_at), Some(ends_at)) = (parse_rfc3339(&p.starts_at), parse_rfc3339(&p.ends_at)) else {
        return err(StatusCode::BAD_REQUEST, "startsAt and endsAt must be RFC 3339 times");
    };
    let now = now_ms();
    let sil = Silence {
        id: p.id,
        matchers: p.matchers,
        // As Alertmanager: a start in the past means now.
        starts_at: starts_at.max(now),
        ends_at,
        updated_at: now,
        created_by: p.created_by,
        comment: p.comment,
    };
    match n.state.lock().unwrap().silences.upsert(sil, now) {
        Ok(id) => Json(json!({"silenceID": id})).into_response(),
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

fn silence_json(s: &Silence, now: i64) -> Value {
    json!({
        "id": s.id, "matchers": s.matchers, "startsAt": time(s.starts_at), "endsAt": time(s.ends_at),
        "updatedAt": time(s.updated_at), "createdBy": s.created_by, "comment": s.comment,
        "status": {"state": s.state(now)},
    })
}

async fn get_silences(State(s): State<Shared>) -> Response {
    let n = match notifier(&s) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let now = now_ms();
    let st = n.state.lock().unwrap();
    Json(
        st.silences
            .all
            .values()
            .map(|(s, _)| silence_json(s, now))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn get_silence(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let n = match notifier(&s) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let st = n.state.lock().unwrap();
    match st.silences.all.get(&id) {
        Some((s, _)) => Json(silence_json(s, now_ms())).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

async fn delete_silence(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let n = match notifier(&s) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    if n.state.lock().unwrap().silences.expire(&id, now_ms()) {
        StatusCode::OK.into_response()
    } else {
        err(StatusCode::NOT_FOUND, format!("silence {id} not found"))
    }
}

/// `sonde_alerts{state}` and `sonde_silences{state}` for `/metrics`.
pub fn gauges(n: &Notifier) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
    let now = now_ms();
    let st = n.state.lock().unwrap();
    let mut alerts = BTreeMap::from([("active", 0), ("suppressed", 0)]);
    for a in st.alerts.values().filter(|a| !a.resolved(now)) {
        let (s, i) = n.muted(&st, &a.labels, now);
        *alerts
            .entry(if s.is_empty() && !i { "active" } else { "suppressed" })
            .or_default() += 1;
    }
    let mut sil = BTreeMap::from([("active", 0), ("pending", 0), ("expired", 0)]);
    for (s, _) in st.silences.all.values() {
        *sil.entry(s.state(now)).or_default() += 1;
    }
    (alerts, sil)
}
