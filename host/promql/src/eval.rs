//! The evaluator: every node of the expression is evaluated once over the whole step
//! grid of the query (an instant query is a grid of one step), column by column.
//!
//! An instant vector over the grid is a list of [`Series`], each with one value per
//! step and [`ABSENT`] where the series has no sample at that step. Label work
//! (grouping keys, matching signatures, dropping `__name__`) therefore happens once
//! per series rather than once per series and step, and the per-step loops are plain
//! array walks. Semantics follow Prometheus 2.42's engine: 5-minute lookback that
//! ignores a series whose latest sample is a stale marker, range windows closed on
//! both ends, subquery steps aligned to multiples of the step, `@` evaluating at a
//! fixed time, and the same errors for duplicate label sets and ambiguous matches.

use crate::functions;
use crate::value::{Error, QueryValue};
use crate::{Labels, METRIC_NAME, Querier, SeriesSamples};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    self, AtModifier, Call, Expr, Function, MatrixSelector, Offset, SubqueryExpr, VectorSelector, value::ValueType,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) use crate::aggregate::aggregate;
pub(crate) use crate::binary::binary;

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

/// The functions Prometheus 2.42 knows. The parser crate follows newer Prometheus
/// releases; anything else is refused like 2.42 refuses an unknown function.
const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_sum",
    "histogram_fraction",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Parses a query, accepting exactly the language of Prometheus 2.42.
pub fn parse(q: &str) -> Result<Expr, Error> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Renamed to double_exponential_smoothing in Prometheus 3; 2.42 calls it this.
        let _ = parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
    let expr = parser::parse(q).map_err(|e| Error::BadData(format!("parse error: {e}")))?;
    check_durations(q)?;
    check_2_42(&expr)?;
    Ok(expr)
}

/// Prometheus 2.42 takes only duration literals (`5m`, `1h30m`) in ranges,
/// subquery steps and offsets; newer releases (and the parser crate) also take plain
/// numbers of seconds and duration arithmetic. Scans the query text outside string
/// literals and comments.
fn check_durations(q: &str) -> Result<(), Error> {
    fn is_duration(s: &str) -> bool {
        let s = s.trim();
        let b = s.as_bytes();
        let mut i = 0;
        let mut units = 0;
        while i < b.len() {
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            i += digits;
            let unit = b[i..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
            if !matches!(&s[i..i + unit], "ms" | "s" | "m" | "h" | "d" | "w" | "y") {
                return false;
            }
            i += unit;
            units += 1;
        }
        units > 0
    }
    let bad = |what: &str, text: &str| {
        Err(Error::BadData(format!(
            "parse error: unexpected {:?} in {what}, expected duration",
            text.trim()
        )))
    };
    // The query with string literals and comments blanked out.
    let mut code = String::with_capacity(q.len());
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                code.push(' ');
                let mut escaped = false;
                for d in chars.by_ref() {
                    code.push(' ');
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                for d in chars.by_ref() {
                    code.push(' ');
                    if d == '\n' {
                        break;
                    }
                }
            }
            c => code.push(c),
        }
    }
    let mut rest = code.as_str();
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').map_or(rest.len(), |c| open + c);
        let inner = &rest[open + 1..close];
        let mut parts = inner.splitn(2, ':');
        let range = parts.next().unwrap_or("");
        if !is_duration(range) {
            return bad("range", range);
        }
        if let Some(step) = parts.next()
            && !step.trim().is_empty()
            && !is_duration(step)
        {
            return bad("subquery step", step);
        }
        rest = &rest[(close + 1).min(rest.len())..];
    }
    let lower = code.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("offset") {
        let at = from + pos;
        from = at + 6;
        let word_start = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let word_end = bytes
            .get(at + 6)
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
        if !word_start || !word_end {
            continue;
        }
        let after = lower[from..].trim_start();
        let after = after.strip_prefix('-').map_or(after, str::trim_start);
        if !after.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let token: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        if !is_duration(&token) {
            return bad("offset", &token);
        }
    }
    Ok(())
}

/// Refuses what the parser accepts but Prometheus 2.42 does not.
fn check_2_42(e: &Expr) -> Result<(), Error> {
    let selector_regexes = |vs: &VectorSelector| -> Result<(), Error> {
        for m in &vs.matchers.matchers {
            if let MatchOp::Re(_) | MatchOp::NotRe(_) = m.op
                && !functions::go_accepts_regex(&m.value)
            {
                return Err(Error::BadData(format!(
                    "parse error: error parsing regexp: invalid or unsupported Perl syntax in {:?}",
                    m.value
                )));
            }
        }
        Ok(())
    };
    match e {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if op == "limitk" || op == "limit_ratio" {
                return Err(Error::BadData(format!("parse error: unknown aggregation {op:?}")));
            }
            check_2_42(&a.expr)?;
            if let Some(p) = &a.param {
                check_2_42(p)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check_2_42(&u.expr),
        Expr::Binary(b) => {
            check_2_42(&b.lhs)?;
            check_2_42(&b.rhs)
        }
        Expr::Paren(p) => check_2_42(&p.expr),
        Expr::VectorSelector(vs) if vs.matchers.or_matchers.is_empty() => selector_regexes(vs),
        Expr::MatrixSelector(ms) if ms.vs.matchers.or_matchers.is_empty() => selector_regexes(&ms.vs),
        Expr::VectorSelector(vs) if !vs.matchers.or_matchers.is_empty() => Err(Error::BadData(
            "parse error: unexpected \"or\" in label matching".into(),
        )),
        Expr::MatrixSelector(ms) if !ms.vs.matchers.or_matchers.is_empty() => Err(Error::BadData(
            "parse error: unexpected \"or\" in label matching".into(),
        )),
        Expr::Subquery(s) => check_2_42(&s.expr),
        Expr::Call(c) => {
            if !FUNCTIONS_2_42.contains(&c.func.name) {
                return Err(Error::BadData(format!(
                    "parse error: unknown function with name {:?}",
                    c.func.name
                )));
            }
            c.args.args.iter().try_for_each(|a| check_2_42(a))
        }
        _ => Ok(()),
    }
}

/// Evaluates `expr` at `t` (ms).
pub fn instant_query(q: &dyn Querier, expr: &Expr, t: i64, opts: &EngineOpts) -> Result<QueryValue, Error> {
    let mut ev = Evaluator::new(q, opts, t, t);
    let grid = Grid {
        start: t,
        end: t,
        step: 1,
    };
    Ok(match ev.eval(expr, grid)? {
        Val::Scalar(v) => QueryValue::Scalar(t, v[0]),
        Val::Str(s) => QueryValue::String(t, s),
        Val::Vector(series) => QueryValue::Vector(
            series
                .into_iter()
                .filter(|s| !is_absent(s.vals[0]))
                .map(|s| (s.labels, t, s.vals[0]))
                .collect(),
        ),
        Val::Matrix(m) => QueryValue::Matrix(m),
    })
}

/// Evaluates `expr` at every `step` from `start` to `end` (ms, inclusive).
pub fn range_query(
    q: &dyn Querier,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    opts: &EngineOpts,
) -> Result<QueryValue, Error> {
    if step <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end < start {
        return Err(Error::BadData("end timestamp must not be before start time".into()));
    }
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            return Err(Error::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_name(other)
            )));
        }
    }
    let mut ev = Evaluator::new(q, opts, start, end);
    let grid = Grid { start, end, step };
    let series = match ev.eval(expr, grid)? {
        Val::Scalar(v) => vec![Series {
            labels: Labels::from_pairs(Vec::new()),
            vals: v,
        }],
        Val::Vector(s) => s,
        _ => {
            return Err(Error::Execution(
                "unexpected range vector or string in range query".into(),
            ));
        }
    };
    let mut out: Vec<SeriesSamples> = series
        .into_iter()
        .filter_map(|s| {
            let points: Vec<(i64, f64)> = s
                .vals
                .iter()
                .enumerate()
                .filter(|(_, v)| !is_absent(**v))
                .map(|(i, v)| (grid.t(i), *v))
                .collect();
            (!points.is_empty()).then_some((s.labels, points))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(QueryValue::Matrix(out))
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// The marker for "no sample at this step": a signalling NaN payload that arithmetic
/// never produces (it quiets NaNs) and that storage values are scrubbed of.
pub(crate) const ABSENT_BITS: u64 = 0x7ff4_0000_5eed_dead;
pub(crate) const ABSENT: f64 = f64::from_bits(ABSENT_BITS);

#[inline]
pub(crate) fn is_absent(v: f64) -> bool {
    v.to_bits() == ABSENT_BITS
}

/// Prometheus's stale marker.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

#[inline]
fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Evaluation times: `start, start + step, ..., <= end`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        ((self.end - self.start) / self.step) as usize + 1
    }

    #[inline]
    pub fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// One series of an instant vector over the grid.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub labels: Labels,
    /// One value per step, [`ABSENT`] where there is none.
    pub vals: Vec<f64>,
}

pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<Series>),
    /// A range vector (only as the result of an instant query).
    Matrix(Vec<SeriesSamples>),
}

pub(crate) struct Evaluator<'a> {
    q: &'a dyn Querier,
    opts: &'a EngineOpts,
    /// The query's own start and end, for `@ start()` / `@ end()`.
    query_start: i64,
    query_end: i64,
    deadline: Instant,
    /// Samples currently held (approximately Prometheus's accounting).
    samples: usize,
    checks: u32,
}

impl<'a> Evaluator<'a> {
    fn new(q: &'a dyn Querier, opts: &'a EngineOpts, query_start: i64, query_end: i64) -> Self {
        Evaluator {
            q,
            opts,
            query_start,
            query_end,
            deadline: Instant::now() + opts.timeout,
            samples: 0,
            checks: 0,
        }
    }

    /// Fails when the query has run out of time or its client has gone away.
    pub fn check(&mut self) -> Result<(), Error> {
        if let Some(c) = &self.opts.cancel
            && c.load(Ordering::Relaxed)
        {
            return Err(Error::Canceled("query was canceled in expression evaluation".into()));
        }
        if Instant::now() >= self.deadline {
            return Err(Error::Timeout("query timed out in expression evaluation".into()));
        }
        Ok(())
    }

    /// [`check`](Self::check), but only every 256th call (for inner loops).
    #[inline]
    pub fn check_often(&mut self) -> Result<(), Error> {
        self.checks = self.checks.wrapping_add(1);
        if self.checks.is_multiple_of(256) {
            self.check()
        } else {
            Ok(())
        }
    }

    /// Accounts for `n` more samples held, failing past the query's limit.
    pub fn hold(&mut self, n: usize) -> Result<(), Error> {
        self.samples += n;
        if self.samples > self.opts.max_samples {
            return Err(Error::Execution(
                "query processing would load too many samples into memory in query execution".into(),
            ));
        }
        Ok(())
    }

    pub fn release(&mut self, n: usize) {
        self.samples = self.samples.saturating_sub(n);
    }

    pub(crate) fn eval(&mut self, expr: &Expr, grid: Grid) -> Result<Val, Error> {
        self.check()?;
        match expr {
            Expr::NumberLiteral(n) => {
                self.hold(grid.len())?;
                Ok(Val::Scalar(vec![n.val; grid.len()]))
            }
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Val::Scalar(v))
                }
                Val::Vector(mut series) => {
                    for s in &mut series {
                        s.labels = drop_name(&s.labels);
                        for v in s.vals.iter_mut().filter(|v| !is_absent(**v)) {
                            *v = -*v;
                        }
                    }
                    check_unique_series(&series)?;
                    Ok(Val::Vector(series))
                }
                _ => Err(Error::Execution(
                    "unary minus is only allowed on scalars and instant vectors".into(),
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, grid, false)?)),
            Expr::MatrixSelector(ms) => {
                if grid.len() != 1 {
                    return Err(Error::BadData("cannot do range evaluation of matrix selector".into()));
                }
                let at = self.at_time(&ms.vs.at);
                let maxt = at.unwrap_or(grid.start) - offset_ms(&ms.vs.offset);
                let range = ms.range.as_millis() as i64;
                let mut out = Vec::new();
                for (labels, samples) in self.select(&ms.vs, maxt - range, maxt)? {
                    let points: Vec<(i64, f64)> = samples.into_iter().filter(|(_, v)| !is_stale(*v)).collect();
                    if !points.is_empty() {
                        out.push((labels, points));
                    }
                }
                Ok(Val::Matrix(out))
            }
            Expr::Subquery(sq) => {
                if grid.len() != 1 {
                    return Err(Error::BadData("cannot do range evaluation of a subquery".into()));
                }
                let (inner, _) = self.subquery(sq, grid)?;
                Ok(Val::Matrix(inner.into_iter().filter(|(_, p)| !p.is_empty()).collect()))
            }
            Expr::Aggregate(a) => aggregate(self, a, grid),
            Expr::Binary(b) => binary(self, b, grid),
            Expr::Call(c) => self.call(c, grid),
            Expr::Extension(_) => Err(Error::BadData("unsupported expression".into())),
        }
    }

    /// Evaluates an expression that must produce a scalar (function and aggregation
    /// parameters).
    pub(crate) fn eval_scalar(&mut self, expr: &Expr, grid: Grid) -> Result<Vec<f64>, Error> {
        match self.eval(expr, grid)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(Error::BadData(format!(
                "expected type scalar, got {}",
                type_name(expr.value_type())
            ))),
        }
    }

    pub(crate) fn eval_vector(&mut self, expr: &Expr, grid: Grid) -> Result<Vec<Series>, Error> {
        match self.eval(expr, grid)? {
            Val::Vector(v) => Ok(v),
            _ => Err(Error::BadData(format!(
                "expected type instant vector, got {}",
                type_name(expr.value_type())
            ))),
        }
    }

    fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// Series matching a selector with their samples in `[mint, maxt]`, values that
    /// collide with the evaluator's absent marker scrubbed to a plain NaN.
    fn select(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<SeriesSamples>, Error> {
        // `parse` refuses `or` between matcher sets (2.42 has none), so one set it is.
        let mut matchers = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
        let mut out = self.q.select(&matchers, mint, maxt);
        for (_, samples) in &mut out {
            for s in samples.iter_mut() {
                if is_absent(s.1) {
                    s.1 = f64::NAN;
                }
            }
        }
        Ok(out)
    }

    /// An instant selector over the grid: per step, the latest sample at most
    /// lookback old, unless that sample is a stale marker. With `timestamps`, the
    /// values are the samples' timestamps in seconds (for `timestamp()`).
    pub(crate) fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        grid: Grid,
        timestamps: bool,
    ) -> Result<Vec<Series>, Error> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_time(&vs.at);
        let lookback = self.opts.lookback_ms;
        let (first_ref, last_ref) = match at {
            Some(t) => (t - offset, t - offset),
            None => (grid.start - offset, grid.end - offset),
        };
        let n = grid.len();
        let mut out = Vec::new();
        for (labels, samples) in self.select(vs, first_ref - lookback, last_ref)? {
            self.check_often()?;
            let mut vals = vec![ABSENT; n];
            let mut present = 0;
            if let Some(t) = at {
                // Fixed time: one lookup, the same answer at every step.
                if let Some(v) = lookup(&samples, t - offset, lookback, timestamps) {
                    vals.iter_mut().for_each(|x| *x = v);
                    present = n;
                }
            } else {
                // Samples and steps both ascend: one pointer walks the samples.
                let mut j = 0usize;
                for (i, slot) in vals.iter_mut().enumerate() {
                    let rt = grid.t(i) - offset;
                    while j < samples.len() && samples[j].0 <= rt {
                        j += 1;
                    }
                    if j == 0 {
                        continue;
                    }
                    let (st, sv) = samples[j - 1];
                    if st < rt - lookback || is_stale(sv) {
                        continue;
                    }
                    *slot = if timestamps { st as f64 / 1000.0 } else { sv };
                    present += 1;
                }
            }
            if present > 0 {
                self.hold(present)?;
                out.push(Series { labels, vals });
            }
        }
        Ok(out)
    }

    /// Evaluates a subquery for every step of `grid`: the inner expression is
    /// evaluated on its own grid (steps aligned to multiples of the subquery step),
    /// then returned as samples per series, with the subquery's window end offset.
    fn subquery(&mut self, sq: &SubqueryExpr, grid: Grid) -> Result<(Vec<SeriesSamples>, i64), Error> {
        let offset = offset_ms(&sq.offset);
        let range = sq.range.as_millis() as i64;
        let step = match sq.step {
            Some(s) if !s.is_zero() => s.as_millis() as i64,
            _ => self.opts.default_subquery_step_ms,
        };
        let (start, end) = match self.at_time(&sq.at) {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        let first = start - offset - range;
        // Go's integer division truncates toward zero; so does Rust's.
        let mut inner_start = step * (first / step);
        if inner_start < first {
            inner_start += step;
        }
        let inner_end = end - offset;
        if inner_end < inner_start {
            return Ok((Vec::new(), offset));
        }
        let inner = Grid {
            start: inner_start,
            end: inner_end,
            step,
        };
        let series = self.eval_vector(&sq.expr, inner)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            self.check()?;
            let points: Vec<(i64, f64)> = s
                .vals
                .iter()
                .enumerate()
                .filter(|(_, v)| !is_absent(**v))
                .map(|(i, v)| (inner.t(i), *v))
                .collect();
            out.push((s.labels, points));
        }
        Ok((out, offset))
    }

    fn call(&mut self, c: &Call, grid: Grid) -> Result<Val, Error> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| unparen(a)).collect();
        let n = grid.len();
        match name {
            "time" => {
                self.hold(n)?;
                return Ok(Val::Scalar((0..n).map(|i| grid.t(i) as f64 / 1000.0).collect()));
            }
            "pi" => {
                self.hold(n)?;
                return Ok(Val::Scalar(vec![std::f64::consts::PI; n]));
            }
            "vector" => {
                let v = self.eval_scalar(args[0], grid)?;
                self.hold(n)?;
                return Ok(Val::Vector(vec![Series {
                    labels: Labels::from_pairs(Vec::new()),
                    vals: v,
                }]));
            }
            "scalar" => {
                let series = self.eval_vector(args[0], grid)?;
                let mut out = vec![f64::NAN; n];
                for (i, o) in out.iter_mut().enumerate() {
                    let mut present = series.iter().filter(|s| !is_absent(s.vals[i]));
                    if let (Some(s), None) = (present.next(), present.next()) {
                        *o = s.vals[i];
                    }
                }
                return Ok(Val::Scalar(out));
            }
            "timestamp" => {
                let series = match args[0] {
                    Expr::VectorSelector(vs) => self.vector_selector(vs, grid, true)?,
                    other => {
                        let mut s = self.eval_vector(other, grid)?;
                        for s in &mut s {
                            for (i, v) in s.vals.iter_mut().enumerate() {
                                if !is_absent(*v) {
                                    *v = grid.t(i) as f64 / 1000.0;
                                }
                            }
                        }
                        s
                    }
                };
                let series = series
                    .into_iter()
                    .map(|s| Series {
                        labels: drop_name(&s.labels),
                        vals: s.vals,
                    })
                    .collect();
                return Ok(Val::Vector(merge_same_labels(series)?));
            }
            "absent" => {
                let series = self.eval_vector(args[0], grid)?;
                let mut vals = vec![1.0; n];
                for s in &series {
                    for (i, v) in s.vals.iter().enumerate() {
                        if !is_absent(*v) {
                            vals[i] = ABSENT;
                        }
                    }
                }
                let out = if vals.iter().all(|v| is_absent(*v)) {
                    Vec::new()
                } else {
                    vec![Series {
                        labels: absent_labels(args[0]),
                        vals,
                    }]
                };
                return Ok(Val::Vector(out));
            }
            "sort" | "sort_desc" => {
                let mut series = self.eval_vector(args[0], grid)?;
                if n == 1 {
                    sort_by_value(&mut series, name == "sort_desc");
                }
                return Ok(Val::Vector(series));
            }
            "label_replace" => {
                let series = self.eval_vector(args[0], grid)?;
                let dst = string_arg(args[1])?;
                let repl = string_arg(args[2])?;
                let src = string_arg(args[3])?;
                let re_str = string_arg(args[4])?;
                let re = functions::compile_anchored(&re_str)?;
                if !functions::valid_label_name(&dst) {
                    return Err(Error::Execution(format!(
                        "invalid destination label name in label_replace(): {dst}"
                    )));
                }
                let out = series
                    .into_iter()
                    .map(|s| Series {
                        labels: functions::label_replace(&s.labels, &dst, &repl, &src, &re),
                        vals: s.vals,
                    })
                    .collect();
                return Ok(Val::Vector(merge_same_labels(out)?));
            }
            "label_join" => {
                let series = self.eval_vector(args[0], grid)?;
                let dst = string_arg(args[1])?;
                let sep = string_arg(args[2])?;
                let srcs: Vec<String> = args[3..].iter().map(|a| string_arg(a)).collect::<Result<_, _>>()?;
                for s in &srcs {
                    if !functions::valid_label_name(s) {
                        return Err(Error::Execution(format!(
                            "invalid source label name in label_join(): {s}"
                        )));
                    }
                }
                if !functions::valid_label_name(&dst) {
                    return Err(Error::Execution(format!(
                        "invalid destination label name in label_join(): {dst}"
                    )));
                }
                let src_refs: Vec<&str> = srcs.iter().map(String::as_str).collect();
                let out = series
                    .into_iter()
                    .map(|s| Series {
                        labels: functions::label_join(&s.labels, &dst, &sep, &src_refs),
                        vals: s.vals,
                    })
                    .collect();
                return Ok(Val::Vector(merge_same_labels(out)?));
            }
            "histogram_quantile" => {
                let q = self.eval_scalar(args[0], grid)?;
                let series = self.eval_vector(args[1], grid)?;
                return Ok(Val::Vector(histogram_quantile(&q, series)?));
            }
            "histogram_count" | "histogram_sum" | "histogram_fraction" => {
                // Native histograms only: float series give nothing.
                for a in &args {
                    self.eval(a, grid)?;
                }
                return Ok(Val::Vector(Vec::new()));
            }
            _ => {}
        }
        if let Some(f) = functions::date_fn(name) {
            if args.is_empty() {
                let vals = (0..n).map(|i| f((grid.t(i).div_euclid(1000)) as f64)).collect();
                return Ok(Val::Vector(vec![Series {
                    labels: Labels::from_pairs(Vec::new()),
                    vals,
                }]));
            }
            let series = self.eval_vector(args[0], grid)?;
            let out = series
                .into_iter()
                .map(|s| Series {
                    labels: drop_name(&s.labels),
                    vals: s
                        .vals
                        .iter()
                        .map(|v| if is_absent(*v) { ABSENT } else { f(*v) })
                        .collect(),
                })
                .collect();
            return Ok(Val::Vector(merge_same_labels(out)?));
        }
        if let Some(f) = functions::value_fn(name) {
            let series = self.eval_vector(args[0], grid)?;
            let scalars: Vec<Vec<f64>> = args[1..]
                .iter()
                .map(|a| self.eval_scalar(a, grid))
                .collect::<Result<_, _>>()?;
            let mut step_args = vec![0.0; scalars.len()];
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                let mut vals = s.vals;
                for (i, v) in vals.iter_mut().enumerate() {
                    if is_absent(*v) {
                        continue;
                    }
                    for (a, sc) in step_args.iter_mut().zip(&scalars) {
                        *a = sc[i];
                    }
                    if name == "clamp" && functions::clamp_is_empty(step_args[0], step_args[1]) {
                        *v = ABSENT;
                        continue;
                    }
                    *v = f(*v, &step_args);
                }
                if vals.iter().any(|v| !is_absent(*v)) {
                    out.push(Series {
                        labels: drop_name(&s.labels),
                        vals,
                    });
                }
            }
            return Ok(Val::Vector(merge_same_labels(out)?));
        }
        if name == "absent_over_time" {
            return self.absent_over_time(args[0], grid);
        }
        if let Some(f) = functions::range_fn(name) {
            return self.range_function(name, f, &args, grid);
        }
        Err(Error::BadData(format!("unknown function with name {name:?}")))
    }

    /// The samples of a range-vector argument (a matrix selector or a subquery) and
    /// how to find each step's window in them.
    fn range_arg(&mut self, arg: &Expr, grid: Grid) -> Result<RangeArg, Error> {
        match arg {
            Expr::MatrixSelector(ms) => self.matrix_arg(ms, grid),
            Expr::Subquery(sq) => {
                let (series, offset) = self.subquery(sq, grid)?;
                Ok(RangeArg {
                    series,
                    offset,
                    range: sq.range.as_millis() as i64,
                    at: self.at_time(&sq.at),
                })
            }
            _ => Err(Error::BadData("expected a range vector argument".into())),
        }
    }

    fn matrix_arg(&mut self, ms: &MatrixSelector, grid: Grid) -> Result<RangeArg, Error> {
        let offset = offset_ms(&ms.vs.offset);
        let range = ms.range.as_millis() as i64;
        let at = self.at_time(&ms.vs.at);
        let (lo, hi) = match at {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        let series = self
            .select(&ms.vs, lo - offset - range, hi - offset)?
            .into_iter()
            .map(|(l, s)| (l, s.into_iter().filter(|(_, v)| !is_stale(*v)).collect()))
            .collect();
        Ok(RangeArg {
            series,
            offset,
            range,
            at,
        })
    }

    fn range_function(&mut self, name: &str, f: functions::RangeFn, args: &[&Expr], grid: Grid) -> Result<Val, Error> {
        // The range vector is the first argument except for quantile_over_time.
        let m_idx = args
            .iter()
            .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
            .ok_or_else(|| Error::BadData(format!("{name}: expected a range vector argument")))?;
        let scalars: Vec<Vec<f64>> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != m_idx)
            .map(|(_, a)| self.eval_scalar(a, grid))
            .collect::<Result<_, _>>()?;
        let arg = self.range_arg(args[m_idx], grid)?;
        let keep_name = name == "last_over_time";
        let n = grid.len();
        let mut step_args = vec![0.0; scalars.len()];
        let mut out = Vec::new();
        for (labels, samples) in &arg.series {
            self.check_often()?;
            // One series' samples are held while its windows are computed.
            self.hold(samples.len())?;
            self.release(samples.len());
            let mut vals = vec![ABSENT; n];
            let mut present = 0;
            let (mut lo, mut hi) = (0usize, 0usize);
            for (i, slot) in vals.iter_mut().enumerate() {
                if i % 4096 == 4095 {
                    self.check()?;
                }
                let maxt = arg.at.unwrap_or(grid.t(i)) - arg.offset;
                let mint = maxt - arg.range;
                if arg.at.is_some() {
                    lo = 0;
                    hi = 0;
                }
                while lo < samples.len() && samples[lo].0 < mint {
                    lo += 1;
                }
                hi = hi.max(lo);
                while hi < samples.len() && samples[hi].0 <= maxt {
                    hi += 1;
                }
                if lo == hi {
                    continue;
                }
                for (a, sc) in step_args.iter_mut().zip(&scalars) {
                    *a = sc[i];
                }
                let w = functions::Window {
                    samples: &samples[lo..hi],
                    range_start: mint,
                    range_end: maxt,
                    args: &step_args,
                };
                let v = match name {
                    // 2.42 checks the factors only when a window has samples.
                    "holt_winters" => {
                        functions::check_holt_winters_args(step_args[0], step_args[1])?;
                        f(&w)
                    }
                    // The intercept is at the evaluation time, whatever the offset.
                    "predict_linear" => functions::predict_linear_at(&w, grid.t(i)),
                    _ => f(&w),
                };
                if let Some(v) = v {
                    *slot = v;
                    present += 1;
                }
            }
            if present > 0 {
                self.hold(present)?;
                let labels = if keep_name { labels.clone() } else { drop_name(labels) };
                out.push(Series { labels, vals });
            }
        }
        check_unique_series(&out)?;
        Ok(Val::Vector(out))
    }

    fn absent_over_time(&mut self, arg: &Expr, grid: Grid) -> Result<Val, Error> {
        let labels = absent_labels(arg);
        let m = self.range_arg(arg, grid)?;
        let n = grid.len();
        let mut vals = vec![1.0; n];
        for (_, samples) in &m.series {
            for (i, v) in vals.iter_mut().enumerate() {
                if is_absent(*v) {
                    continue;
                }
                let maxt = m.at.unwrap_or(grid.t(i)) - m.offset;
                let mint = maxt - m.range;
                let lo = samples.partition_point(|(t, _)| *t < mint);
                if lo < samples.len() && samples[lo].0 <= maxt {
                    *v = ABSENT;
                }
            }
        }
        if vals.iter().all(|v| is_absent(*v)) {
            return Ok(Val::Vector(Vec::new()));
        }
        Ok(Val::Vector(vec![Series { labels, vals }]))
    }
}

struct RangeArg {
    series: Vec<SeriesSamples>,
    offset: i64,
    range: i64,
    at: Option<i64>,
}

fn lookup(samples: &[(i64, f64)], rt: i64, lookback: i64, timestamps: bool) -> Option<f64> {
    let j = samples.partition_point(|(t, _)| *t <= rt);
    if j == 0 {
        return None;
    }
    let (st, sv) = samples[j - 1];
    if st < rt - lookback || is_stale(sv) {
        return None;
    }
    Some(if timestamps { st as f64 / 1000.0 } else { sv })
}

pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn string_arg(e: &Expr) -> Result<String, Error> {
    match unparen(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(Error::BadData("expected a string literal argument".into())),
    }
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The label set without `__name__`.
pub(crate) fn drop_name(l: &Labels) -> Labels {
    if l.get(METRIC_NAME).is_none() {
        return l.clone();
    }
    Labels::from_pairs(l.pairs().iter().filter(|(n, _)| &**n != METRIC_NAME).cloned().collect())
}

/// The labels `absent()`/`absent_over_time()` report: the selector's equality
/// matchers, except names matched more than once.
fn absent_labels(e: &Expr) -> Labels {
    let matchers: Vec<&Matcher> = match e {
        Expr::VectorSelector(vs) => vs.matchers.matchers.iter().collect(),
        Expr::MatrixSelector(ms) => ms.vs.matchers.matchers.iter().collect(),
        _ => return Labels::from_pairs(Vec::new()),
    };
    let mut set: Vec<(Arc<str>, Arc<str>)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !seen.contains(&m.name.as_str()) {
            set.retain(|(n, _)| **n != *m.name);
            if !m.value.is_empty() {
                set.push((m.name.as_str().into(), m.value.as_str().into()));
            }
            seen.push(&m.name);
        } else {
            set.retain(|(n, _)| **n != *m.name);
        }
    }
    Labels::from_pairs(set)
}

/// Fails when two series of a range-vector function's output share a label set
/// (Prometheus checks these per series, not per step).
fn check_unique_series(series: &[Series]) -> Result<(), Error> {
    let mut seen: std::collections::HashSet<&Labels> = std::collections::HashSet::with_capacity(series.len());
    for s in series {
        if !seen.insert(&s.labels) {
            return Err(duplicate_labelset());
        }
    }
    Ok(())
}

pub(crate) fn duplicate_labelset() -> Error {
    Error::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Merges series whose label sets became equal (after dropping `__name__` or
/// relabelling): fine while they never have a value at the same step, an error as in
/// Prometheus when they do.
pub(crate) fn merge_same_labels(series: Vec<Series>) -> Result<Vec<Series>, Error> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match index.entry(s.labels.clone()) {
            Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(s);
            }
            Entry::Occupied(e) => {
                let o = &mut out[*e.get()];
                for (a, b) in o.vals.iter_mut().zip(&s.vals) {
                    if !is_absent(*b) {
                        if !is_absent(*a) {
                            return Err(duplicate_labelset());
                        }
                        *a = *b;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `sort`/`sort_desc` of an instant vector: by value, NaN last.
fn sort_by_value(series: &mut [Series], desc: bool) {
    series.sort_by(|a, b| {
        let (x, y) = (a.vals[0], b.vals[0]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ if desc => y.partial_cmp(&x).unwrap(),
            _ => x.partial_cmp(&y).unwrap(),
        }
    });
}

/// histogram_quantile over classic `_bucket` series: grouped by all labels but `le`
/// (the name included), reported without `le` and `__name__`.
fn histogram_quantile(q: &[f64], series: Vec<Series>) -> Result<Vec<Series>, Error> {
    let mut groups: HashMap<Labels, (Labels, Vec<(f64, usize)>)> = HashMap::new();
    let mut order: Vec<Labels> = Vec::new();
    for (idx, s) in series.iter().enumerate() {
        let Some(le) = s.labels.get("le") else { continue };
        let Some(bound) = parse_go_float(le) else { continue };
        let key = Labels::from_pairs(s.labels.pairs().iter().filter(|(n, _)| &**n != "le").cloned().collect());
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            let out = Labels::from_pairs(
                key.pairs()
                    .iter()
                    .filter(|(n, _)| &**n != METRIC_NAME)
                    .cloned()
                    .collect(),
            );
            (out, Vec::new())
        });
        entry.1.push((bound, idx));
    }
    let n = q.len();
    let mut out = Vec::with_capacity(order.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for key in order {
        let (labels, members) = groups.remove(&key).expect("group exists");
        let mut vals = vec![ABSENT; n];
        for (i, slot) in vals.iter_mut().enumerate() {
            buckets.clear();
            for (bound, idx) in &members {
                let v = series[*idx].vals[i];
                if !is_absent(v) {
                    buckets.push((*bound, v));
                }
            }
            if !buckets.is_empty() {
                *slot = functions::bucket_quantile(q[i], &mut buckets);
            }
        }
        out.push(Series { labels, vals });
    }
    merge_same_labels(out)
}

/// Go's `strconv.ParseFloat`, as Prometheus reads `le="0.5"`, `"+Inf"`, `"1e3"` and
/// the API's float parameters: decimal or exponent notation and the `inf`/`infinity`/
/// `nan` words, but not Rust-only spellings.
pub fn parse_go_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word =
        body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("nan");
    let numeric = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && body.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.');
    if word || numeric { s.parse().ok() } else { None }
}
