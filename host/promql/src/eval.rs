//! The evaluator. (In progress: see the crate docs.)

use crate::value::{Error, QueryValue};
use crate::Querier;
use promql_parser::parser::Expr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Limits and defaults of one query.
#[derive(Clone, Debug)]
pub struct EngineOpts {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_ms: i64,
    /// Most samples a query may hold in memory at once (Prometheus: 50,000,000).
    pub max_samples: usize,
    pub timeout: Duration,
    /// Step of a subquery written without one (Prometheus: the global evaluation
    /// interval, 1m by default).
    pub default_subquery_step_ms: i64,
    /// Set when the client has gone away; the evaluator stops at the next check.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            cancel: None,
        }
    }
}

/// Parses a query, accepting exactly the functions Prometheus 2.42 has.
pub fn parse(q: &str) -> Result<Expr, Error> {
    promql_parser::parser::parse(q).map_err(Error::BadData)
}

/// Evaluates `expr` at `t` (ms).
pub fn instant_query(_q: &dyn Querier, _expr: &Expr, _t: i64, _opts: &EngineOpts) -> Result<QueryValue, Error> {
    Err(Error::Execution("not implemented yet".into()))
}

/// Evaluates `expr` at every `step` from `start` to `end` (ms, inclusive).
pub fn range_query(_q: &dyn Querier, _expr: &Expr, _start: i64, _end: i64, _step: i64, _opts: &EngineOpts) -> Result<QueryValue, Error> {
    Err(Error::Execution("not implemented yet".into()))
}
