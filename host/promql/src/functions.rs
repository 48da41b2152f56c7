//! Pure PromQL functions with Prometheus 2.42 semantics. The evaluator (`eval`) does
//! the selection, windowing, grouping and label bookkeeping; this module computes.
//!
//! CONTRACT (the evaluator relies on these signatures):
//! - `range_fn(name)`: functions over a range-vector window (rate, irate, increase,
//!   delta, idelta, deriv, predict_linear, holt_winters, changes, resets and every
//!   `*_over_time` except `absent_over_time`). `None` for other names.
//! - `value_fn(name)`: per-sample functions of an instant vector (math, clamp*,
//!   round, sgn, deg, rad, ...). `None` for other names.
//! - `date_fn(name)`: minute/hour/day_of_week/day_of_month/day_of_year/days_in_month/
//!   month/year of a Unix time in seconds.
//! - `bucket_quantile`, `quantile`, `label_replace`, `label_join`.

use crate::Labels;
use crate::value::Error;

/// One window of a range vector at one evaluation step.
pub struct Window<'a> {
    /// Samples with `range_start <= t <= range_end`, stale markers removed, by time.
    pub samples: &'a [(i64, f64)],
    /// Milliseconds: evaluation time minus offset minus range.
    pub range_start: i64,
    /// Milliseconds: evaluation time minus offset.
    pub range_end: i64,
    /// The function's scalar arguments at this step, in call order, the range vector
    /// left out (predict_linear's `t`, quantile_over_time's `φ`, holt_winters' `sf`, `tf`).
    pub args: &'a [f64],
}

pub type RangeFn = fn(&Window) -> Option<f64>;
pub type ValueFn = fn(f64, &[f64]) -> f64;
pub type DateFn = fn(f64) -> f64;

pub fn range_fn(_name: &str) -> Option<RangeFn> {
    None
}

pub fn value_fn(_name: &str) -> Option<ValueFn> {
    None
}

pub fn date_fn(_name: &str) -> Option<DateFn> {
    None
}

/// histogram_quantile over one group's buckets `(upper bound, cumulative count)`.
pub fn bucket_quantile(_q: f64, _buckets: &mut Vec<(f64, f64)>) -> f64 {
    f64::NAN
}

/// The φ-quantile of `values` (reordered in place) as `quantile` and
/// `quantile_over_time` compute it.
pub fn quantile(_q: f64, _values: &mut [f64]) -> f64 {
    f64::NAN
}

/// Compiles a label_replace regex, anchored like Prometheus (`^(?:re)$`).
pub fn compile_anchored(re: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| Error::Execution(format!("invalid regular expression in label_replace(): {re}: {e}")))
}

pub fn label_replace(labels: &Labels, _dst: &str, _replacement: &str, _src: &str, _re: &regex::Regex) -> Labels {
    labels.clone()
}

pub fn label_join(labels: &Labels, _dst: &str, _sep: &str, _srcs: &[&str]) -> Labels {
    labels.clone()
}
