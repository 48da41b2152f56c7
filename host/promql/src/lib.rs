//! PromQL evaluation with Prometheus 2.42 semantics: parsing is done by the
//! `promql-parser` crate, evaluation is ours.
//!
//! - [`value`]: the values an expression evaluates to, and the query result types;
//! - `eval`: the evaluator (instant and range queries over a step grid);
//! - [`functions`]: the pure per-window and per-value functions (rate, `*_over_time`,
//!   math, date, histogram_quantile, label_replace, ...);
//! - [`Querier`]: what the evaluator needs from storage.

pub mod functions;
pub mod value;

mod aggregate;
mod binary;
mod eval;
#[cfg(test)]
mod tests;

pub use eval::{EngineOpts, instant_query, parse, parse_go_float, range_query};
pub use value::{Error, QueryValue};

pub use promql_parser::label::Matcher;
pub use sonde_tsdb::labels::{Labels, METRIC_NAME};

/// One series with its samples `(timestamp ms, value)`, by time.
pub type SeriesSamples = (Labels, Vec<(i64, f64)>);

/// Storage as the evaluator sees it.
pub trait Querier: Send + Sync {
    /// Every series matching all `matchers` with its samples in `[mint, maxt]` (both
    /// inclusive), sorted by time. Stale markers are included as stored.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples>;
}
