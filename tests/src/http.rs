//! Plain HTTP GETs to processes under test (127.0.0.1 only, no proxy, no TLS).

use std::time::Duration;

/// One answer: the status and the body as text.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Bodies larger than this are an error (a full node_exporter page is ~300 KB).
const MAX_BODY: u64 = 64 << 20;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        // A proxy from the environment must never see test traffic.
        .proxy(None)
        .build()
        .into()
}

/// `GET url` with optional query pairs (percent-encoded here); any status is an
/// answer, a connection failure is an `Err` with the reason.
pub fn get_with_query(url: &str, query: &[(&str, &str)]) -> Result<Response, String> {
    let mut req = agent().get(url);
    for (k, v) in query {
        req = req.query(*k, *v);
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok(Response { status, body })
}

pub fn get(url: &str) -> Result<Response, String> {
    get_with_query(url, &[])
}
