//! `/api/v1/query` and `/api/v1/query_range`: parameters checked in Prometheus's order
//! with its messages, then the evaluation (and the JSON encoding, which for millions of
//! points is real work) on a blocking thread. The evaluation stops when the client goes
//! away (the handler future is dropped and [`CancelOnDrop`] raises the flag) or when
//! the timeout passes.

use super::params::{Form, MAX_QUERY_TIMEOUT, parse_duration, parse_time, parse_time_param};
use super::{ApiError, json, success};
use crate::api::Shared;
use crate::scrape::now_ms;
use crate::storage::Storage;
use axum::extract::State;
use axum::response::Response;
use sonde_promql::{EngineOpts, Error, QueryValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// Queries evaluated at once (Prometheus's `--query.max-concurrency` default); the
/// rest wait, and the wait counts against their timeout.
const MAX_CONCURRENT_QUERIES: usize = 20;
static QUERY_SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_QUERIES);

/// Most points per series a range query may ask for (Prometheus's limit).
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// How long after its deadline a query still gets to report its own timeout before the
/// handler gives up on it.
const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

pub async fn instant(State(s): State<Shared>, form: Form) -> Result<Response, ApiError> {
    let t = parse_time_param(&form, "time", now_ms(SystemTime::now()))?;
    let timeout = timeout_param(&form)?;
    let expr = parse_query(&form)?;
    run(s.head.clone(), timeout, move |storage, opts| {
        sonde_promql::instant_query(storage, &expr, t, opts)
    })
    .await
}

pub async fn range(State(s): State<Shared>, form: Form) -> Result<Response, ApiError> {
    let start = parse_time(form.get("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = parse_time(form.get("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = parse_duration(form.get("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step.0 <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Prometheus divides durations in nanoseconds, truncating.
    let span_ns = (end as i128 - start as i128) * 1_000_000;
    if span_ns / step.0 as i128 > MAX_POINTS_PER_SERIES as i128 {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = timeout_param(&form)?;
    let expr = parse_query(&form)?;
    let step_ms = step.millis().max(1);
    run(s.head.clone(), timeout, move |storage, opts| {
        sonde_promql::range_query(storage, &expr, start, end, step_ms, opts)
    })
    .await
}

/// `/api/v1/query_exemplars`: sonde stores no exemplars; the answer is Prometheus's
/// with exemplar storage disabled (Grafana asks once per data source).
pub async fn exemplars(form: Form) -> Result<Response, ApiError> {
    parse_query(&form)?;
    Ok(success(2, |out| out.extend_from_slice(b"[]")))
}

fn timeout_param(form: &Form) -> Result<Duration, ApiError> {
    match form.get("timeout") {
        "" => Ok(MAX_QUERY_TIMEOUT),
        t => {
            let d = parse_duration(t).map_err(|e| ApiError::invalid_param("timeout", e))?;
            Ok(d.to_std().min(MAX_QUERY_TIMEOUT))
        }
    }
}

fn parse_query(form: &Form) -> Result<promql_parser::parser::Expr, ApiError> {
    sonde_promql::parse(form.get("query")).map_err(|e| ApiError::invalid_param("query", e.message()))
}

/// Sets the flag when dropped: the evaluation sees it at its next check.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

type Eval = dyn FnOnce(&Storage, &EngineOpts) -> Result<QueryValue, Error> + Send;

/// Evaluates and encodes on a blocking thread, within `timeout` (waiting for a slot
/// included).
async fn run(
    storage: Arc<Storage>,
    timeout: Duration,
    eval: impl FnOnce(&Storage, &EngineOpts) -> Result<QueryValue, Error> + Send + 'static,
) -> Result<Response, ApiError> {
    let eval: Box<Eval> = Box::new(eval);
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    let work = async {
        let _slot = QUERY_SLOTS
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the query queue is closed"))?;
        let opts = EngineOpts {
            timeout: deadline.saturating_duration_since(tokio::time::Instant::now()),
            cancel: Some(cancel.clone()),
            ..EngineOpts::default()
        };
        let encoded = tokio::task::spawn_blocking(move || {
            let value = eval(&storage, &opts)?;
            Ok::<_, Error>(json::success(json::points(&value) * 32, |out| {
                json::query_data(out, &value)
            }))
        })
        .await
        .map_err(|e| ApiError::internal(format!("query evaluation failed: {e}")))?;
        encoded.map_err(ApiError::from)
    };
    match tokio::time::timeout_at(deadline + TIMEOUT_GRACE, work).await {
        Ok(body) => Ok(super::json_body(body?)),
        Err(_) => {
            cancel.store(true, Ordering::Relaxed);
            Err(Error::Timeout("query timed out in expression evaluation".into()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An evaluation that runs until it is told to stop; says whether it was.
    fn endless(
        seen: std::sync::mpsc::Sender<bool>,
    ) -> impl FnOnce(&Storage, &EngineOpts) -> Result<QueryValue, Error> + Send + 'static {
        move |_, opts| {
            let cancel = opts.cancel.clone().expect("a cancel flag");
            let start = Instant::now();
            while !cancel.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = seen.send(cancel.load(Ordering::Relaxed));
            Err(Error::Canceled("stopped".into()))
        }
    }

    #[tokio::test]
    async fn a_request_dropped_by_its_client_cancels_the_evaluation() {
        let (_dir, storage) = crate::storage::test_storage();
        let (tx, rx) = std::sync::mpsc::channel();
        let request = run(Arc::new(storage), MAX_QUERY_TIMEOUT, endless(tx));
        // The client goes away: the server drops the handler future.
        assert!(tokio::time::timeout(Duration::from_millis(100), request).await.is_err());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    }

    #[tokio::test]
    async fn a_query_past_its_timeout_is_stopped_and_answered_503() {
        let (_dir, storage) = crate::storage::test_storage();
        let (tx, rx) = std::sync::mpsc::channel();
        let started = Instant::now();
        let err = run(Arc::new(storage), Duration::from_millis(100), endless(tx))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(
            (err.status.as_u16(), err.error_type, err.message.as_str()),
            (503, "timeout", "query timed out in expression evaluation")
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    }
}
