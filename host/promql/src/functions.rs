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
//!
//! Results are meant to match Prometheus 2.42 bit for bit, so the float operations
//! keep the order Prometheus uses (including its Kahan-compensated sums), and Go's
//! `math.Min`/`math.Max`, float-to-int conversion and regexp replacement templates
//! are reproduced rather than replaced by their Rust near-equivalents.

use crate::Labels;
use crate::value::Error;
use std::cmp::Ordering;
use std::sync::Arc;

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

pub fn range_fn(name: &str) -> Option<RangeFn> {
    let f: RangeFn = match name {
        "rate" => |w| extrapolated_rate(w, true, true),
        "increase" => |w| extrapolated_rate(w, true, false),
        "delta" => |w| extrapolated_rate(w, false, false),
        "irate" => |w| instant_rate(w.samples, true),
        "idelta" => |w| instant_rate(w.samples, false),
        "deriv" => deriv,
        "predict_linear" => |w| predict_linear_at(w, w.range_end),
        "holt_winters" => holt_winters,
        "changes" => changes,
        "resets" => resets,
        "avg_over_time" => |w| non_empty(w).map(avg_over_time),
        "min_over_time" => |w| non_empty(w).map(min_over_time),
        "max_over_time" => |w| non_empty(w).map(max_over_time),
        "sum_over_time" => |w| non_empty(w).map(sum_over_time),
        "count_over_time" => |w| non_empty(w).map(|s| s.len() as f64),
        "last_over_time" => |w| w.samples.last().map(|&(_, v)| v),
        "present_over_time" => |w| non_empty(w).map(|_| 1.0),
        "stddev_over_time" => |w| non_empty(w).map(|s| stdvar_over_time(s).sqrt()),
        "stdvar_over_time" => |w| non_empty(w).map(stdvar_over_time),
        "quantile_over_time" => |w| {
            let mut values: Vec<f64> = non_empty(w)?.iter().map(|&(_, v)| v).collect();
            Some(quantile(arg(w.args, 0), &mut values))
        },
        _ => return None,
    };
    Some(f)
}

pub fn value_fn(name: &str) -> Option<ValueFn> {
    let f: ValueFn = match name {
        "abs" => |v, _| v.abs(),
        "ceil" => |v, _| v.ceil(),
        "floor" => |v, _| v.floor(),
        "exp" => |v, _| v.exp(),
        "sqrt" => |v, _| v.sqrt(),
        "ln" => |v, _| v.ln(),
        "log2" => |v, _| go_log2(v),
        "log10" => |v, _| go_log10(v),
        "sin" => |v, _| v.sin(),
        "cos" => |v, _| v.cos(),
        "tan" => |v, _| v.tan(),
        "asin" => |v, _| v.asin(),
        "acos" => |v, _| v.acos(),
        "atan" => |v, _| v.atan(),
        "sinh" => |v, _| v.sinh(),
        "cosh" => |v, _| v.cosh(),
        "tanh" => |v, _| v.tanh(),
        "asinh" => |v, _| v.asinh(),
        "acosh" => |v, _| v.acosh(),
        "atanh" => |v, _| v.atanh(),
        "deg" => |v, _| v * 180.0 / std::f64::consts::PI,
        "rad" => |v, _| v * std::f64::consts::PI / 180.0,
        "sgn" => |v, _| sgn(v),
        "clamp" => |v, a| go_max(arg(a, 0), go_min(arg(a, 1), v)),
        "clamp_min" => |v, a| go_max(arg(a, 0), v),
        "clamp_max" => |v, a| go_min(arg(a, 0), v),
        "round" => |v, a| round(v, a.first().copied().unwrap_or(1.0)),
        _ => return None,
    };
    Some(f)
}

/// `clamp(v, min, max)` with `max < min` yields an empty vector in 2.42 rather than
/// clamped samples; NaN bounds do not (they give NaN samples).
pub fn clamp_is_empty(min: f64, max: f64) -> bool {
    max < min
}

pub fn date_fn(name: &str) -> Option<DateFn> {
    let f: DateFn = match name {
        "minute" => |s| CivilTime::from_go_unix(s).minute as f64,
        "hour" => |s| CivilTime::from_go_unix(s).hour as f64,
        "day_of_week" => |s| CivilTime::from_go_unix(s).weekday as f64,
        "day_of_month" => |s| CivilTime::from_go_unix(s).day as f64,
        "day_of_year" => |s| CivilTime::from_go_unix(s).day_of_year() as f64,
        "days_in_month" => |s| CivilTime::from_go_unix(s).days_in_month() as f64,
        "month" => |s| CivilTime::from_go_unix(s).month as f64,
        "year" => |s| CivilTime::from_go_unix(s).year as f64,
        _ => return None,
    };
    Some(f)
}

/// A scalar argument the evaluator failed to pass reads as NaN rather than panicking
/// the query thread.
fn arg(args: &[f64], i: usize) -> f64 {
    args.get(i).copied().unwrap_or(f64::NAN)
}

/// Prometheus never calls a range function on an empty window (it emits nothing).
fn non_empty<'a>(w: &Window<'a>) -> Option<&'a [(i64, f64)]> {
    (!w.samples.is_empty()).then_some(w.samples)
}

// ---------------------------------------------------------------------------
// rate, increase, delta, irate, idelta

/// rate/increase/delta: the change over the samples (with counter resets undone when
/// `is_counter`), extrapolated towards the window edges when the first/last sample
/// lies within 1.1 average sample intervals of them, else by half an interval.
fn extrapolated_rate(w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &s[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }

    let mut to_start = (first_t - w.range_start) as f64 / 1000.0;
    let to_end = (w.range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_interval = sampled / (s.len() - 1) as f64;

    // A counter cannot have been below zero: do not extrapolate past the point where
    // the observed slope would reach zero.
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }

    let threshold = avg_interval * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_interval / 2.0
    };
    interval += if to_end < threshold { to_end } else { avg_interval / 2.0 };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= go_duration_seconds(w.range_end - w.range_start);
    }
    Some(result * factor)
}

/// Go's `time.Duration.Seconds()` for a duration in milliseconds: whole seconds and
/// the fraction are converted separately, which can differ from `ms / 1000` in the
/// last bit.
fn go_duration_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// irate/idelta: from the last two samples only; irate treats a decrease as a reset.
fn instant_rate(s: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    let [.., (prev_t, prev_v), (last_t, last_v)] = *s else {
        return None;
    };
    let mut result = if is_rate && last_v < prev_v {
        last_v
    } else {
        last_v - prev_v
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

// ---------------------------------------------------------------------------
// deriv, predict_linear, holt_winters

fn deriv(w: &Window) -> Option<f64> {
    // Regressing around the first sample keeps x small (prometheus#2674).
    let first_t = w.samples.first()?.0;
    (w.samples.len() >= 2).then(|| linear_regression(w.samples, first_t).0)
}

/// predict_linear with the regression's intercept taken at `eval_ts` (ms). 2.42 uses
/// the evaluation time itself, not the window end: the two differ under `offset` and
/// `@`. The [`range_fn`] entry assumes neither (`eval_ts = range_end`); an evaluator
/// that knows the evaluation time should call this instead.
pub fn predict_linear_at(w: &Window, eval_ts: i64) -> Option<f64> {
    if w.samples.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(w.samples, eval_ts);
    Some(slope * arg(w.args, 0) + intercept)
}

/// Least-squares fit of the samples with x in seconds relative to `intercept_ts`;
/// returns (slope, value at `intercept_ts`).
fn linear_regression(s: &[(i64, f64)], intercept_ts: i64) -> (f64, f64) {
    let (mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) =
        (Kahan::default(), Kahan::default(), Kahan::default(), Kahan::default());
    let init_y = s[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in s.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        let x = (t - intercept_ts) as f64 / 1e3;
        sum_x.add(x);
        sum_y.add(v);
        sum_xy.add(x * v);
        sum_x2.add(x * x);
    }
    if const_y {
        // A flat line, even of NaNs; the regression below would divide 0 by 0.
        return if init_y.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, init_y)
        };
    }
    let n = s.len() as f64;
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x.total(), sum_y.total(), sum_xy.total(), sum_x2.total());
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

/// 2.42 aborts the query when holt_winters is evaluated (on a non-empty window) with
/// a factor outside (0, 1); the evaluator calls this before the [`range_fn`].
pub fn check_holt_winters_args(sf: f64, tf: f64) -> Result<(), Error> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(Error::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
            go_fmt_f(sf)
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(Error::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {}",
            go_fmt_f(tf)
        )));
    }
    Ok(())
}

/// Double exponential smoothing; `None` for fewer than two samples or factors that
/// [`check_holt_winters_args`] rejects.
fn holt_winters(w: &Window) -> Option<f64> {
    let (sf, tf) = (arg(w.args, 0), arg(w.args, 1));
    let s = w.samples;
    if check_holt_winters_args(sf, tf).is_err() || s.len() < 2 {
        return None;
    }
    let mut smoothed_prev = 0.0;
    let mut smoothed = s[0].1;
    let mut trend = s[1].1 - s[0].1;
    for (i, &(_, v)) in s.iter().enumerate().skip(1) {
        // The initial trend is used as is for the first step.
        if i > 1 {
            trend = tf * (smoothed - smoothed_prev) + (1.0 - tf) * trend;
        }
        let next = sf * v + (1.0 - sf) * (smoothed + trend);
        smoothed_prev = smoothed;
        smoothed = next;
    }
    Some(smoothed)
}

/// Go's `%f`: six decimals, infinities as `+Inf`/`-Inf`.
fn go_fmt_f(v: f64) -> String {
    match v {
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        _ => format!("{v:.6}"),
    }
}

// ---------------------------------------------------------------------------
// changes, resets, *_over_time

fn changes(w: &Window) -> Option<f64> {
    let s = non_empty(w)?;
    let n = s
        .windows(2)
        .filter(|p| p[1].1 != p[0].1 && !(p[1].1.is_nan() && p[0].1.is_nan()))
        .count();
    Some(n as f64)
}

fn resets(w: &Window) -> Option<f64> {
    let s = non_empty(w)?;
    Some(s.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64)
}

/// Neumaier-compensated running sum, as Prometheus 2.42's `kahanSumInc`.
#[derive(Default, Clone, Copy)]
struct Kahan {
    sum: f64,
    c: f64,
}

impl Kahan {
    fn add(&mut self, inc: f64) {
        let t = self.sum + inc;
        if self.sum.abs() >= inc.abs() {
            self.c += (self.sum - t) + inc;
        } else {
            self.c += (inc - t) + self.sum;
        }
        self.sum = t;
    }

    fn total(self) -> f64 {
        self.sum + self.c
    }
}

fn sum_over_time(s: &[(i64, f64)]) -> f64 {
    let mut sum = Kahan::default();
    s.iter().for_each(|&(_, v)| sum.add(v));
    // The compensation of an infinite sum is NaN.
    if sum.sum.is_infinite() { sum.sum } else { sum.total() }
}

/// Incremental mean (so that large values do not overflow the way a sum would),
/// compensated; once the mean is infinite only NaN or an opposite infinity changes it.
fn avg_over_time(s: &[(i64, f64)]) -> f64 {
    let mut mean = Kahan::default();
    let mut count = 0.0;
    for &(_, v) in s {
        count += 1.0;
        if mean.sum.is_infinite() {
            let same_inf = v.is_infinite() && (mean.sum > 0.0) == (v > 0.0);
            if same_inf || v.is_finite() {
                continue;
            }
        }
        mean.add(v / count - mean.sum / count);
    }
    if mean.sum.is_infinite() { mean.sum } else { mean.total() }
}

/// Welford's algorithm with compensated sums (population variance).
fn stdvar_over_time(s: &[(i64, f64)]) -> f64 {
    let (mut mean, mut aux, mut count) = (Kahan::default(), Kahan::default(), 0.0);
    for &(_, v) in s {
        count += 1.0;
        let delta = v - mean.total();
        mean.add(delta / count);
        aux.add(delta * (v - mean.total()));
    }
    aux.total() / count
}

/// A NaN is replaced by any later sample; NaN only if all are.
fn min_over_time(s: &[(i64, f64)]) -> f64 {
    s.iter()
        .fold(s[0].1, |min, &(_, v)| if v < min || min.is_nan() { v } else { min })
}

fn max_over_time(s: &[(i64, f64)]) -> f64 {
    s.iter()
        .fold(s[0].1, |max, &(_, v)| if v > max || max.is_nan() { v } else { max })
}

// ---------------------------------------------------------------------------
// Per-value math

fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v // ±0 and NaN unchanged
    }
}

/// Rounds half up (towards +Inf) to a multiple of `to_nearest`, dividing by the
/// inverse as Prometheus does.
fn round(v: f64, to_nearest: f64) -> f64 {
    let inverse = 1.0 / to_nearest;
    (v * inverse + 0.5).floor() / inverse
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over numbers, +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over numbers, -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Go's `math.Log2`: exact for powers of two, else `ln(frac)/ln 2 + exp`.
fn go_log2(v: f64) -> f64 {
    let (frac, exp) = frexp(v);
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    frac.ln() * std::f64::consts::LOG2_E + exp as f64
}

/// Go's `math.Log10` is `ln(v) * (1/ln 10)`, which is not always the correctly
/// rounded log10 (Go gives 2.9999999999999996 for 1000).
fn go_log10(v: f64) -> f64 {
    v.ln() * std::f64::consts::LOG10_E
}

/// `v = frac * 2^exp` with `0.5 <= |frac| < 1`; zero, infinities and NaN unchanged.
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 || !v.is_finite() {
        return (v, 0);
    }
    let (v, bias) = if v.abs() < f64::MIN_POSITIVE {
        (v * (1u64 << 52) as f64, -52)
    } else {
        (v, 0)
    };
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022 + bias;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

// ---------------------------------------------------------------------------
// Dates

/// A UTC calendar time as Go's `time.Unix(int64(v), 0).UTC()` sees it.
#[derive(Debug, PartialEq)]
struct CivilTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// Sunday = 0.
    weekday: u32,
}

/// Seconds from Go's absolute zero (1 Jan of year -292277022399) to the Unix epoch.
/// Go maps a Unix second to `u64` by adding this with wrapping arithmetic; doing the
/// same reproduces its dates even for the out-of-range inputs below.
const UNIX_TO_GO_ABSOLUTE: i64 = 292_277_022_400 * 31_556_952 + 62_135_596_800;
const GO_ABSOLUTE_EPOCH_DAYS: i64 = UNIX_TO_GO_ABSOLUTE / 86_400;

impl CivilTime {
    fn from_go_unix(v: f64) -> Self {
        let abs = go_float_to_i64(v).wrapping_add(UNIX_TO_GO_ABSOLUTE) as u64;
        let days = (abs / 86_400) as i64 - GO_ABSOLUTE_EPOCH_DAYS;
        let (year, month, day) = civil_from_days(days);
        let secs_of_day = (abs % 86_400) as u32;
        CivilTime {
            year,
            month,
            day,
            hour: secs_of_day / 3600,
            minute: secs_of_day % 3600 / 60,
            // Go's absolute zero is a Monday.
            weekday: (abs.wrapping_add(86_400) % (7 * 86_400) / 86_400) as u32,
        }
    }

    fn is_leap(&self) -> bool {
        self.year % 4 == 0 && (self.year % 100 != 0 || self.year % 400 == 0)
    }

    fn days_in_month(&self) -> u32 {
        match self.month {
            2 if self.is_leap() => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    fn day_of_year(&self) -> u32 {
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        BEFORE[self.month as usize - 1] + self.day + u32::from(self.is_leap() && self.month > 2)
    }
}

/// Go's `int64(f)` as compiled for amd64 (CVTTSD2SQ): truncation toward zero, and
/// `i64::MIN` for NaN, infinities and anything out of range (Rust's `as` saturates
/// and maps NaN to 0 instead).
fn go_float_to_i64(v: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if v.is_nan() || !(-LIMIT..LIMIT).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Proleptic Gregorian (year, month, day) of a day count from 1970-01-01, computed
/// on 400-year eras that start on 1 March so that leap days fall at the era's end.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// Quantiles

/// histogram_quantile over one group's buckets `(upper bound, cumulative count)`.
///
/// Interpolates linearly inside the bucket holding the rank, from 0 for the lowest
/// bucket unless its bound is <= 0 (then that bound is the answer); a rank in the
/// +Inf bucket gives the second-highest bound. NaN without a +Inf bucket, with fewer
/// than two distinct bounds or with no observations. Counts are first made monotonic.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's `<` leaves a NaN bound unordered; here it sorts last, so the result is NaN.
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or_else(|| a.0.is_nan().cmp(&b.0.is_nan())));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce_buckets(buckets);
    ensure_monotonic(buckets);
    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = go_search(n - 1, |i| buckets[i].1 >= rank);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Merges buckets with equal bounds (e.g. `le="0.2"` and `le="2e-1"`), summing counts.
fn coalesce_buckets(buckets: &mut Vec<(f64, f64)>) {
    let mut out = 0;
    for i in 1..buckets.len() {
        if buckets[i].0 == buckets[out].0 {
            buckets[out].1 += buckets[i].1;
        } else {
            out += 1;
            buckets[out] = buckets[i];
        }
    }
    buckets.truncate(out + 1);
}

/// Raises any count below an earlier one to it: buckets scraped or federated
/// non-atomically can be briefly non-monotonic, which would break the search.
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let mut max = buckets[0].1;
    for b in &mut buckets[1..] {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
}

/// Go's `sort.Search`: the first index in `0..n` where `f` holds, else `n`. Kept
/// probe for probe so that NaN counts give the same answer as in Prometheus.
fn go_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if f(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The φ-quantile of `values` (reordered in place) as `quantile` and
/// `quantile_over_time` compute it: linear interpolation between the closest ranks,
/// NaN for no values or a NaN φ, -Inf for φ < 0, +Inf for φ > 1. NaN values sort
/// first.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_unstable_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

// ---------------------------------------------------------------------------
// Labels

/// Prometheus's label name syntax, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

/// Compiles a label_replace regex, anchored like Prometheus (`^(?:re)$`), with Go's
/// syntax translated where Rust's differs (see [`go_regex_to_rust`]).
pub fn compile_anchored(re: &str) -> Result<regex::Regex, Error> {
    if !go_accepts_regex(re) {
        return Err(Error::Execution(format!(
            "invalid regular expression in label_replace(): {re}"
        )));
    }
    regex::Regex::new(&format!("^(?:{})$", go_regex_to_rust(re)))
        .map_err(|_| Error::Execution(format!("invalid regular expression in label_replace(): {re}")))
}

/// Whether the Go 1.19 regexp package Prometheus 2.42 is built with accepts `re`
/// syntax Rust's `regex` also takes: Go only knows `(?P<name>...)` for named groups,
/// not `(?<name>...)`.
pub fn go_accepts_regex(re: &str) -> bool {
    !re.contains("(?<")
}

/// Rewrites the parts of Go (RE2) regexp syntax that Rust's `regex` reads
/// differently: Go's `\d \w \s \b` are ASCII-only (Rust's are Unicode), `[` and `&`,
/// `~` are plain characters inside a Go class (Rust nests classes and has `&&`/`~~`
/// set operators), and a `{` that does not start a repetition is a literal in Go (an
/// error in Rust); Rust lacks Go's `\Q...\E` quoting. Everything else is passed
/// through unchanged.
pub fn go_regex_to_rust(re: &str) -> String {
    const DIGIT: &str = "0-9";
    const WORD: &str = "0-9A-Za-z_";
    const SPACE: &str = r"\t\n\f\r ";
    let mut out = String::with_capacity(re.len() + 16);
    let mut in_class = false;
    let mut chars = re.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    out.push('\\'); // trailing backslash: let the compiler reject it
                    break;
                };
                let perl = match e {
                    'd' | 'D' => Some(DIGIT),
                    'w' | 'W' => Some(WORD),
                    's' | 'S' => Some(SPACE),
                    _ => None,
                };
                if e == 'Q' && !in_class {
                    // Go's quoted literal `\Q...\E` (to the end if unterminated).
                    let start = i + 2;
                    let end = re[start..].find(r"\E").map_or(re.len(), |e| start + e);
                    out.push_str(&regex::escape(&re[start..end]));
                    let skip_to = (end + 2).min(re.len());
                    while chars.next_if(|&(j, _)| j < skip_to).is_some() {}
                    continue;
                }
                match (perl, in_class) {
                    (Some(set), true) if e.is_ascii_lowercase() => out.push_str(set),
                    (Some(set), _) if e.is_ascii_uppercase() => out.push_str(&format!("[^{set}]")),
                    (Some(set), _) => out.push_str(&format!("[{set}]")),
                    (None, false) if e == 'b' || e == 'B' => out.push_str(&format!(r"(?-u:\{e})")),
                    (None, _) => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.next_if(|&(_, c)| c == '^').is_some() {
                    out.push('^');
                }
                // A `]` right after the opening bracket is a literal.
                if chars.next_if(|&(_, c)| c == ']').is_some() {
                    out.push_str(r"\]");
                }
            }
            '[' if re[i..].starts_with("[:") => {
                // POSIX class such as [:alpha:]: both engines agree.
                let end = re[i + 2..].find(":]").map_or(re.len(), |e| i + 2 + e + 2);
                out.push_str(&re[i..end]);
                while chars.next_if(|&(j, _)| j < end).is_some() {}
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '{' if !in_class && !starts_repetition(&re[i..]) => out.push_str(r"\{"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `s` (starting at `{`) is a Go repetition `{n}`, `{n,}` or `{n,m}`, where
/// Go's numbers have no leading zeros (`{01}` is literal text in Go).
fn starts_repetition(s: &str) -> bool {
    let Some(end) = s.find('}') else {
        return false;
    };
    let body = &s[1..end];
    let go_int =
        |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) && !(d.len() > 1 && d.starts_with('0'));
    match body.split_once(',') {
        Some((min, max)) => go_int(min) && (max.is_empty() || go_int(max)),
        None => go_int(body),
    }
}

/// label_replace on one label set: if `re` (anchored) matches the value of `src` (""
/// when missing), `dst` is set to `replacement` with `$1`, `$name`, `${name}`
/// expanded as Go does; an empty result removes `dst`. No match: unchanged.
pub fn label_replace(labels: &Labels, dst: &str, replacement: &str, src: &str, re: &regex::Regex) -> Labels {
    let Some(caps) = re.captures(labels.get(src).unwrap_or("")) else {
        return labels.clone();
    };
    set_label(labels, dst, &expand_go_template(&caps, replacement))
}

/// label_join on one label set: the values of `srcs` ("" when missing) joined by
/// `sep`; an empty result removes `dst`.
pub fn label_join(labels: &Labels, dst: &str, sep: &str, srcs: &[&str]) -> Labels {
    let values: Vec<&str> = srcs.iter().map(|s| labels.get(s).unwrap_or("")).collect();
    set_label(labels, dst, &values.join(sep))
}

fn set_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut pairs: Vec<(Arc<str>, Arc<str>)> = labels.pairs().iter().filter(|(n, _)| &**n != name).cloned().collect();
    if !value.is_empty() {
        pairs.push((name.into(), value.into()));
    }
    Labels::from_pairs(pairs)
}

/// Go's `Regexp.ExpandString`. It differs from `regex::Captures::expand` in that a
/// number with a leading zero (`$01`) or of more than nine digits is a group *name*,
/// names may hold any letter or digit, and `${...}` only accepts such names.
fn expand_go_template(caps: &regex::Captures, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = template_ref(rest) else {
            out.push('$'); // malformed reference: a literal `$`
            continue;
        };
        rest = after;
        let group = match go_group_number(name) {
            Some(n) => caps.get(n),
            None => caps.name(name),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
    out
}

/// The group reference at the start of `s` (just after a `$`): `name` or `{name}`.
fn template_ref(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    // Go takes Unicode letters (category L) and decimal digits (Nd); Rust's
    // `is_alphabetic`/`is_numeric` are slightly wider outside ASCII.
    let end = body
        .find(|c: char| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let (name, mut after) = body.split_at(end);
    if braced {
        after = after.strip_prefix('}')?;
    }
    Some((name, after))
}

/// A group index as Go reads one: ASCII digits, no leading zero, below 10^9.
fn go_group_number(name: &str) -> Option<usize> {
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    let mut n = 0usize;
    for b in name.bytes() {
        if !b.is_ascii_digit() || n >= 100_000_000 {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    //! Cases marked "functions.test" / "histograms.test" are expectations from
    //! Prometheus v2.42.0's `promql/testdata`; the others are derived by hand.

    use super::*;

    const M: i64 = 60_000;

    /// Samples every `step` ms from `start` ms.
    fn series(start: i64, step: i64, values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (start + i as i64 * step, v))
            .collect()
    }

    /// Evaluates `name` at `t` over `[t - range, t]`, keeping the samples inside.
    fn eval(name: &str, samples: &[(i64, f64)], t: i64, range: i64, args: &[f64]) -> Option<f64> {
        let (start, end) = (t - range, t);
        let lo = samples.partition_point(|s| s.0 < start);
        let hi = samples.partition_point(|s| s.0 <= end);
        let w = Window {
            samples: &samples[lo..hi],
            range_start: start,
            range_end: end,
            args,
        };
        range_fn(name).expect(name)(&w)
    }

    #[track_caller]
    fn close(got: f64, want: f64) {
        let ok = if want.is_nan() {
            got.is_nan()
        } else if want.is_infinite() || want == 0.0 {
            got == want
        } else {
            ((got - want) / want).abs() < 1e-12
        };
        assert!(ok, "got {got:?}, want {want:?}");
    }

    #[track_caller]
    fn close_opt(got: Option<f64>, want: f64) {
        close(got.expect("a sample"), want)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect())
    }

    // --- rate, increase, delta --------------------------------------------

    #[test]
    fn rate_undoes_counter_reset_in_the_middle() {
        // functions.test: testcounter_reset_middle 0+10x4 0+10x5, rate[50m] at 50m.
        let s = series(0, 5 * M, &[0., 10., 20., 30., 40., 0., 10., 20., 30., 40., 50.]);
        close_opt(eval("rate", &s, 50 * M, 50 * M, &[]), 0.03);
    }

    #[test]
    fn rate_ignores_reset_at_end() {
        // functions.test: testcounter_reset_end 0+10x9 0 10, rate[5m] at 50m.
        let s = series(0, 5 * M, &[0., 10., 20., 30., 40., 50., 60., 70., 80., 90., 0., 10.]);
        close_opt(eval("rate", &s, 50 * M, 5 * M, &[]), 0.0);
    }

    #[test]
    fn rate_with_offset_uses_shifted_window() {
        // functions.test: rate(calculate_rate_offset[10m] offset 5m) at 50m = [35m, 45m].
        let a = series(0, 5 * M, &(0..=10).map(|i| i as f64 * 10.).collect::<Vec<_>>());
        close_opt(eval("rate", &a, 45 * M, 10 * M, &[]), 0.03333333333333333);
        let b = series(0, 5 * M, &(0..=10).map(|i| i as f64 * 20.).collect::<Vec<_>>());
        close_opt(eval("rate", &b, 45 * M, 10 * M, &[]), 0.06666666666666667);
    }

    #[test]
    fn rate_clamps_extrapolation_at_counter_zero() {
        // functions.test: load 4m testcounter_zero_cutoff, rate[20m] at 10m and 50m.
        for (first, at10, at50) in [(0., 0.5, 0.6), (60., 0.55, 0.6), (180., 0.65, 0.6), (300., 0.6, 0.6)] {
            let s = series(0, 4 * M, &(0..=10).map(|i| first + i as f64 * 240.).collect::<Vec<_>>());
            close_opt(eval("rate", &s, 10 * M, 20 * M, &[]), at10);
            close_opt(eval("rate", &s, 50 * M, 20 * M, &[]), at50);
        }
    }

    #[test]
    fn extrapolation_threshold_is_1_1_average_intervals() {
        // Samples at 10s, 20s, 30s in [0s, 60s]: 10s to the start (< 11s, extrapolated
        // fully), 30s to the end (>= 11s, half an interval): 20s sampled -> 35s.
        let s = [(10_000, 1.0), (20_000, 2.0), (30_000, 3.0)];
        close_opt(eval("delta", &s, 60_000, 60_000, &[]), 2.0 * 35.0 / 20.0);
        close_opt(eval("rate", &s, 60_000, 60_000, &[]), 2.0 * 35.0 / 20.0 / 60.0);
        // Starting at 0.5, the counter would reach 0 after 5s back: 20+5+5 = 30s.
        let s = [(10_000, 0.5), (20_000, 1.5), (30_000, 2.5)];
        close_opt(eval("increase", &s, 60_000, 60_000, &[]), 3.0);
        // delta is no counter: no zero clamp.
        close_opt(eval("delta", &s, 60_000, 60_000, &[]), 3.5);
    }

    #[test]
    fn increase_treats_decrease_as_reset() {
        // functions.test: 0 1 2 3 2 3 4 every 5m, increase[30m] at 30m.
        let s = series(0, 5 * M, &[0., 1., 2., 3., 2., 3., 4.]);
        close_opt(eval("increase", &s, 30 * M, 30 * M, &[]), 7.0);
        // functions.test: 0+10x5 0+10x5, increase[50m] at 50m (window end on a sample).
        let s = series(0, 5 * M, &[0., 10., 20., 30., 40., 50., 0., 10., 20., 30., 40.]);
        close_opt(eval("increase", &s, 50 * M, 50 * M, &[]), 90.0);
    }

    #[test]
    fn delta_is_signed() {
        // functions.test: delta(http_requests[20m]) at 20m.
        let s = series(0, 5 * M, &[200., 150., 100., 50., 0.]);
        close_opt(eval("delta", &s, 20 * M, 20 * M, &[]), -200.0);
    }

    #[test]
    fn rate_family_needs_two_samples() {
        for f in [
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "deriv",
            "predict_linear",
        ] {
            assert_eq!(eval(f, &[(0, 1.0)], 0, M, &[60.0]), None, "{f}");
        }
    }

    #[test]
    fn go_duration_seconds_matches_ms_ranges() {
        assert_eq!(go_duration_seconds(300_000), 300.0);
        assert_eq!(go_duration_seconds(1_500), 1.5);
        assert_eq!(go_duration_seconds(100), 0.1);
    }

    // --- irate, idelta --------------------------------------------------------

    #[test]
    fn irate_uses_last_two_samples() {
        // functions.test: irate(http_requests[50m]) at 50m and at 30m (reset for /bar).
        let foo = series(0, 5 * M, &(0..=10).map(|i| i as f64 * 10.).collect::<Vec<_>>());
        close_opt(eval("irate", &foo, 50 * M, 50 * M, &[]), 0.03333333333333333);
        let bar = series(0, 5 * M, &[0., 10., 20., 30., 40., 50., 0., 10., 20., 30., 40.]);
        close_opt(eval("irate", &bar, 30 * M, 50 * M, &[]), 0.0);
        // After a reset irate takes the new value as the increase: 4 over 2s.
        close_opt(eval("irate", &[(0, 9.0), (1000, 10.0), (3000, 4.0)], 3000, M, &[]), 2.0);
    }

    #[test]
    fn idelta_is_last_difference() {
        // functions.test: idelta(http_requests[20m]) at 20m.
        close_opt(
            eval("idelta", &series(0, 5 * M, &[0., 50., 100., 150.]), 20 * M, 20 * M, &[]),
            50.0,
        );
        close_opt(
            eval("idelta", &series(0, 5 * M, &[0., 50., 100., 50.]), 20 * M, 20 * M, &[]),
            -50.0,
        );
    }

    // --- deriv, predict_linear, holt_winters --------------------------------

    fn reset_middle() -> Vec<(i64, f64)> {
        series(0, 5 * M, &[0., 10., 20., 30., 40., 0., 10., 20., 30., 40., 50.])
    }

    #[test]
    fn deriv_and_predict_linear() {
        // functions.test: deriv / predict_linear(testcounter_reset_middle[100m]) at 50m.
        close_opt(
            eval("deriv", &reset_middle(), 50 * M, 100 * M, &[]),
            0.010606060606060607,
        );
        close_opt(
            eval("predict_linear", &reset_middle(), 50 * M, 100 * M, &[3600.0]),
            76.81818181818181,
        );
        // deriv equals rate for a steady counter.
        let s = series(0, 5 * M, &(0..=10).map(|i| i as f64 * 80.).collect::<Vec<_>>());
        close_opt(eval("deriv", &s, 50 * M, 50 * M, &[]), 0.26666666666666666);
    }

    #[test]
    fn predict_linear_intercept_is_the_evaluation_time() {
        // functions.test: predict_linear(testcounter_reset_middle[100m] @ 3000, 3600)
        // evaluated at 10m and 70m: the window is at 3000s, the intercept is not.
        let s = reset_middle();
        let w = Window {
            samples: &s,
            range_start: -3_000_000,
            range_end: 3_000_000,
            args: &[3600.0],
        };
        close_opt(predict_linear_at(&w, 600_000), 51.36363636363637);
        close_opt(predict_linear_at(&w, 4_200_000), 89.54545454545455);
    }

    #[test]
    fn regression_of_constant_series() {
        let flat = [(0, 5.0), (1000, 5.0)];
        close_opt(eval("deriv", &flat, 1000, M, &[]), 0.0);
        close_opt(eval("predict_linear", &flat, 1000, M, &[100.0]), 5.0);
        let inf = [(0, f64::INFINITY), (1000, f64::INFINITY)];
        close_opt(eval("deriv", &inf, 1000, M, &[]), f64::NAN);
    }

    #[test]
    fn holt_winters_smooths() {
        // By hand, sf = tf = 0.5 over 1, 3, 2: s=1 b=2 -> s=0.5*3+0.5*3=3 -> b=0.5*2+0.5*2=2,
        // s=0.5*2+0.5*(3+2)=3.5.
        close_opt(
            eval("holt_winters", &series(0, 1000, &[1., 3., 2.]), 2000, M, &[0.5, 0.5]),
            3.5,
        );
        // functions.test: a straight line comes out as its last value.
        let s = series(
            7_940_000,
            10_000,
            &(794..=800).map(|i| i as f64 * 10.).collect::<Vec<_>>(),
        );
        close_opt(eval("holt_winters", &s, 8_000_000, M, &[0.01, 0.1]), 8000.0);
        assert_eq!(eval("holt_winters", &s[..1], 8_000_000, M, &[0.01, 0.1]), None);
    }

    #[test]
    fn holt_winters_rejects_factors_outside_0_1() {
        assert_eq!(check_holt_winters_args(0.5, 0.5), Ok(()));
        let msg = |sf, tf| check_holt_winters_args(sf, tf).unwrap_err().message().to_string();
        assert_eq!(
            msg(1.0, 0.5),
            "invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"
        );
        assert_eq!(
            msg(0.5, 0.0),
            "invalid trend factor. Expected: 0 < tf < 1, got: 0.000000"
        );
        assert_eq!(
            msg(f64::INFINITY, 0.5),
            "invalid smoothing factor. Expected: 0 < sf < 1, got: +Inf"
        );
        assert!(check_holt_winters_args(0.5, -0.25).unwrap_err().error_type() == "execution");
        // NaN compares false both ways: accepted, as in 2.42.
        assert_eq!(check_holt_winters_args(f64::NAN, 0.5), Ok(()));
        assert_eq!(eval("holt_winters", &[(0, 1.0), (1, 2.0)], 1, M, &[2.0, 0.5]), None);
    }

    // --- changes, resets, *_over_time -------------------------------------

    #[test]
    fn changes_and_resets() {
        // functions.test: http_requests{path="/foo"} over [50m] at 50m.
        let s = series(5 * M, 5 * M, &[2., 3., 0., 1., 0., 0., 1., 2., 0.]);
        let all = [&[(0, 1.0)][..], &s].concat();
        close_opt(eval("changes", &all, 50 * M, 50 * M, &[]), 8.0);
        close_opt(eval("resets", &all, 50 * M, 50 * M, &[]), 3.0);
        // functions.test: NaN to NaN is no change, NaN to 0 is.
        close_opt(
            eval("changes", &series(0, 5 * M, &[f64::NAN; 3]), 15 * M, 15 * M, &[]),
            0.0,
        );
        close_opt(
            eval("changes", &series(0, 5 * M, &[0., f64::NAN, 0.]), 15 * M, 15 * M, &[]),
            2.0,
        );
        close_opt(eval("resets", &[(0, 7.0)], 0, M, &[]), 0.0);
    }

    fn over_time(name: &str, values: &[f64]) -> f64 {
        eval(name, &series(0, 10_000, values), 60_000, 60_000, &[]).expect(name)
    }

    #[test]
    fn avg_over_time_handles_infinities_and_overflow() {
        // functions.test, "Tests for avg_over_time".
        let (inf, big) = (f64::INFINITY, 9.988_465_674_311_58e307);
        close(over_time("avg_over_time", &[1., 2., 3., 4., 5.]), 3.0);
        close(over_time("avg_over_time", &[1., 2., 3., 4., inf]), inf);
        close(over_time("avg_over_time", &[1., 2., 3., inf, -inf]), f64::NAN);
        close(over_time("avg_over_time", &[inf, 0., inf]), inf);
        close(over_time("avg_over_time", &[-inf, 0., -inf]), -inf);
        close(over_time("avg_over_time", &[inf, inf, inf, -inf]), f64::NAN);
        close(over_time("avg_over_time", &[1., 2., -inf, -inf, inf]), f64::NAN);
        assert_eq!(over_time("avg_over_time", &[big, big]), big);
        assert_eq!(over_time("avg_over_time", &[-big, -big, -big]), -big);
        close(over_time("avg_over_time", &[-big, big]), 0.0);
        // The sum itself overflows.
        close(over_time("sum_over_time", &[big, big]), inf);
    }

    #[test]
    fn sum_over_time_is_compensated() {
        // A plain loop gives 0 (1e100 absorbs the ones); Kahan-Neumaier keeps them.
        assert_eq!(over_time("sum_over_time", &[1.0, 1e100, 1.0, -1e100]), 2.0);
        close(
            over_time("sum_over_time", &[1., 2., 3., 4., f64::INFINITY]),
            f64::INFINITY,
        );
    }

    #[test]
    fn stddev_and_stdvar_over_time() {
        // functions.test: 0 8 8 2 3.
        close(over_time("stdvar_over_time", &[0., 8., 8., 2., 3.]), 10.56);
        assert!((over_time("stddev_over_time", &[0., 8., 8., 2., 3.]) - 3.249615).abs() < 1e-6);
        // functions.test (#4927): a constant series has exactly zero variance.
        let c = 1.5990505637277868;
        assert_eq!(over_time("stdvar_over_time", &[c, c, c]), 0.0);
        assert_eq!(over_time("stddev_over_time", &[c, c, c]), 0.0);
    }

    #[test]
    fn min_max_last_over_time_with_nan() {
        // functions.test, "Tests for *_over_time".
        let nan = f64::NAN;
        for (values, min, max, last) in [
            ([2., 0., 3.], 0., 3., 3.),
            ([2., 0., nan], 0., 2., nan),
            ([2., nan, 1.], 1., 2., 1.),
            ([nan, 0., 1.], 0., 1., 1.),
            ([nan, nan, nan], nan, nan, nan),
        ] {
            close(over_time("min_over_time", &values), min);
            close(over_time("max_over_time", &values), max);
            close(over_time("last_over_time", &values), last);
        }
    }

    #[test]
    fn count_and_present_over_time() {
        close(over_time("count_over_time", &[1., f64::NAN, 3.]), 3.0);
        close(over_time("present_over_time", &[f64::NAN]), 1.0);
        for f in [
            "count_over_time",
            "present_over_time",
            "sum_over_time",
            "last_over_time",
            "changes",
        ] {
            assert_eq!(eval(f, &[], 0, M, &[]), None, "{f}");
        }
    }

    #[test]
    fn quantile_over_time() {
        // functions.test: two samples 0 1, three 0 1 2, uneven 0 1 4.
        for (q, two, three, uneven) in [
            (0.0, 0.0, 0.0, 0.0),
            (0.5, 0.5, 1.0, 1.0),
            (0.75, 0.75, 1.5, 2.5),
            (0.8, 0.8, 1.6, 2.8),
            (1.0, 1.0, 2.0, 4.0),
            (-1.0, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY),
            (2.0, f64::INFINITY, f64::INFINITY, f64::INFINITY),
        ] {
            for (values, want) in [(&[0., 1.][..], two), (&[0., 1., 2.], three), (&[0., 1., 4.], uneven)] {
                close_opt(
                    eval("quantile_over_time", &series(0, 10_000, values), 60_000, 60_000, &[q]),
                    want,
                );
            }
        }
    }

    // --- per-value math -------------------------------------------------------

    fn value(name: &str, v: f64, args: &[f64]) -> f64 {
        value_fn(name).expect(name)(v, args)
    }

    #[test]
    fn clamp_uses_go_min_max() {
        // functions.test: clamp / clamp_min / clamp_max of -50, 0, 100.
        for (v, min25, max75, both) in [(-50., -25., -50., -25.), (0., 0., 0., 0.), (100., 100., 75., 75.)] {
            close(value("clamp_min", v, &[-25.]), min25);
            close(value("clamp_max", v, &[75.]), max75);
            close(value("clamp", v, &[-25., 75.]), both);
            close(value("clamp", v, &[0., f64::NAN]), f64::NAN);
            close(value("clamp", v, &[f64::NAN, 0.]), f64::NAN);
        }
        assert!(clamp_is_empty(5.0, -5.0));
        assert!(!clamp_is_empty(f64::NAN, 0.0) && !clamp_is_empty(1.0, 1.0));
        // Go: infinity beats NaN, NaN beats numbers, -0 is below +0.
        assert_eq!(value("clamp_min", f64::NAN, &[f64::INFINITY]), f64::INFINITY);
        assert!(value("clamp_min", f64::NAN, &[1.0]).is_nan());
        assert!(value("clamp_max", -0.0, &[0.0]).is_sign_negative());
        assert!(value("clamp_min", -0.0, &[0.0]).is_sign_positive());
    }

    #[test]
    fn round_is_half_up() {
        assert_eq!(value("round", 2.5, &[]), 3.0);
        assert_eq!(value("round", -2.5, &[]), -2.0);
        assert_eq!(value("round", -2.6, &[]), -3.0);
        assert_eq!(value("round", 1.234, &[0.1]), 1.2);
        assert_eq!(value("round", 5.0, &[10.0]), 10.0);
        assert_eq!(value("round", 14.0, &[10.0]), 10.0);
    }

    #[test]
    fn sgn_deg_rad() {
        // functions.test: sgn of -Inf, Inf, NaN, -50, 0, 100.
        for (v, want) in [
            (f64::NEG_INFINITY, -1.),
            (f64::INFINITY, 1.),
            (f64::NAN, f64::NAN),
            (-50., -1.),
            (0., 0.),
            (100., 1.),
        ] {
            close(value("sgn", v, &[]), want);
        }
        assert_eq!(value("deg", std::f64::consts::PI, &[]), 180.0);
        assert_eq!(value("rad", 180.0, &[]), std::f64::consts::PI);
    }

    #[test]
    fn exp_ln_sqrt_logs() {
        // functions.test: exp_root_log 10 and 20.
        close(value("exp", 10., &[]), 22026.465794806718);
        close(value("exp", 20., &[]), 485165195.4097903);
        close(value("ln", 10., &[]), std::f64::consts::LN_10);
        close(value("ln", 0., &[]), f64::NEG_INFINITY);
        close(value("ln", -10., &[]), f64::NAN);
        close(value("sqrt", 20., &[]), 4.47213595499958);
        close(value("log2", 10., &[]), 3.3219280948873626);
        close(value("log2", 20., &[]), 4.321928094887363);
        close(value("log2", 0., &[]), f64::NEG_INFINITY);
        close(value("log2", -10., &[]), f64::NAN);
        close(value("log10", 10., &[]), 1.0);
        close(value("log10", 20., &[]), 1.301029995663981);
        close(value("log10", -10., &[]), f64::NAN);
        // Powers of two are exact in Go's Log2, subnormals included; log10 is ln/ln 10.
        assert_eq!(value("log2", 1024.0, &[]), 10.0);
        assert_eq!(value("log2", f64::from_bits(1), &[]), -1074.0);
        assert_eq!(value("log10", 1000.0, &[]), 1000f64.ln() * std::f64::consts::LOG10_E);
    }

    #[test]
    fn every_listed_function_exists() {
        for f in [
            "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "abs",
            "ceil", "floor",
        ] {
            assert!(value_fn(f).is_some(), "{f}");
        }
        assert!(range_fn("absent_over_time").is_none() && value_fn("rate").is_none() && date_fn("time").is_none());
        close(value("acosh", 0.5, &[]), f64::NAN);
        close(value("atanh", 1.0, &[]), f64::INFINITY);
        close(value("floor", -1.5, &[]), -2.0);
    }

    // --- dates ----------------------------------------------------------------

    fn date(name: &str, secs: f64) -> f64 {
        date_fn(name).expect(name)(secs)
    }

    #[test]
    fn date_parts() {
        // functions.test: 1136239445 is Monday 2006-01-02 22:04:05 UTC; 0 a Thursday.
        let t = 1136239445.0;
        let parts = [
            "year",
            "month",
            "day_of_month",
            "day_of_year",
            "day_of_week",
            "hour",
            "minute",
        ];
        let got: Vec<f64> = parts.iter().map(|p| date(p, t)).collect();
        assert_eq!(got, [2006., 1., 2., 2., 1., 22., 4.]);
        let got: Vec<f64> = parts.iter().map(|p| date(p, 0.0)).collect();
        assert_eq!(got, [1970., 1., 1., 1., 4., 0., 0.]);
    }

    #[test]
    fn dates_around_leap_days() {
        // functions.test.
        assert_eq!(date("year", 1230767999.0), 2008.0);
        assert_eq!(date("year", 1230768000.0), 2009.0);
        assert_eq!(
            (date("month", 1456790399.0), date("day_of_month", 1456790399.0)),
            (2., 29.)
        );
        assert_eq!(
            (date("month", 1456790400.0), date("day_of_month", 1456790400.0)),
            (3., 1.)
        );
        assert_eq!(date("day_of_year", 1483191420.0), 366.0);
        assert_eq!(date("day_of_year", 1672493820.0), 365.0);
        assert_eq!(date("days_in_month", 1454284800.0), 29.0);
        assert_eq!(date("days_in_month", 1485907200.0), 28.0);
        // Century rules: 2000-02-29 exists, 1900 and 2100 have no leap day.
        assert_eq!(date("days_in_month", 951782400.0), 29.0);
        assert_eq!(date("day_of_week", 951782400.0), 2.0);
        assert_eq!(date("days_in_month", -2206310400.0), 28.0);
        assert_eq!(date("day_of_week", -2206310400.0), 4.0);
        assert_eq!(date("days_in_month", 4105123200.0), 28.0);
    }

    #[test]
    fn dates_before_1970_truncate_toward_zero() {
        // -1 is 1969-12-31 23:59:59, a Wednesday; -0.5 truncates to 0, not -1.
        let got: Vec<f64> = [
            "year",
            "month",
            "day_of_month",
            "day_of_year",
            "hour",
            "minute",
            "day_of_week",
        ]
        .iter()
        .map(|p| date(p, -1.0))
        .collect();
        assert_eq!(got, [1969., 12., 31., 365., 23., 59., 3.]);
        assert_eq!(date("year", -0.5), 1970.0);
        assert_eq!(date("year", -1.5), 1969.0);
        // 1600-03-01, after a leap day of a 400-year leap year; a Wednesday.
        let t = -11670912000.0;
        assert_eq!(
            (date("year", t), date("month", t), date("day_of_month", t)),
            (1600., 3., 1.)
        );
        assert_eq!((date("day_of_year", t), date("day_of_week", t)), (61., 3.));
    }

    #[test]
    fn dates_of_nan_and_infinities_follow_go_on_amd64() {
        // int64(NaN), int64(±Inf) are i64::MIN on amd64; Go shows that second as
        // 292277026596-12-04 15:30:08 UTC, a Sunday (Rust's `as` would give 1970).
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -9223372036854775808.0,
        ] {
            let got: Vec<f64> = [
                "year",
                "month",
                "day_of_month",
                "hour",
                "minute",
                "day_of_week",
                "days_in_month",
            ]
            .iter()
            .map(|p| date(p, v))
            .collect();
            assert_eq!(got, [292277026596., 12., 4., 15., 30., 0., 31.], "{v}");
        }
    }

    // --- histogram_quantile, quantile ----------------------------------------

    fn hq(q: f64, buckets: &[(f64, f64)]) -> f64 {
        bucket_quantile(q, &mut buckets.to_vec())
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn bucket_quantile_interpolates() {
        // histograms.test: testhistogram at 50m (counts 10x the loaded increments).
        let positive = [(0.1, 50.), (1.0, 110.), (0.2, 70.), (INF, 120.)]; // unsorted on purpose
        let negative = [(-0.2, 10.), (-0.1, 20.), (0.3, 20.), (INF, 30.)];
        for (q, pos, neg) in [
            (0.0, 0.0, -0.2),
            (0.2, 0.048, -0.2),
            (0.5, 0.15, -0.15),
            (0.8, 0.72, 0.3),
            (1.0, 1.0, 0.3),
        ] {
            close(hq(q, &positive), pos);
            close(hq(q, &negative), neg);
        }
        // histograms.test: testhistogram2 at 7m, results mid-bucket.
        let h2 = [(0., 0.), (2., 1.), (4., 2.), (6., 3.), (INF, 3.)];
        close(hq(1. / 6., &h2), 1.0);
        close(hq(0.5, &h2), 3.0);
        close(hq(5. / 6., &h2), 5.0);
    }

    #[test]
    fn bucket_quantile_edge_cases() {
        let h = [(0.1, 5.), (INF, 10.)];
        // histograms.test: q out of range or NaN, whatever the buckets.
        assert_eq!(hq(-0.1, &h), f64::NEG_INFINITY);
        assert_eq!(hq(1.01, &h), INF);
        assert!(hq(f64::NAN, &h).is_nan());
        assert_eq!(hq(-0.1, &[(0.1, 5.)]), f64::NEG_INFINITY);
        // No +Inf bucket, a single bucket, no observations (histograms.test empty_bucket).
        assert!(hq(0.5, &[(0.1, 5.), (0.2, 10.)]).is_nan());
        assert!(hq(0.5, &[(INF, 10.)]).is_nan());
        assert!(hq(0.2, &[(0.1, 0.), (0.2, 0.), (INF, 0.)]).is_nan());
        assert!(hq(0.5, &[]).is_nan());
        // histograms.test: two +Inf buckets coalesce into one: NaN.
        assert!(hq(0.5, &[(INF, 0.), (INF, 0.)]).is_nan());
    }

    #[test]
    fn bucket_quantile_coalesces_and_makes_monotonic() {
        // histograms.test: mixed_bucket (0.2 written three ways).
        let mixed = [(0.1, 10.), (0.2, 10.), (0.2, 10.), (0.2, 10.), (INF, 40.)];
        close(hq(0.5, &mixed), 0.15);
        close(hq(0.75, &mixed), 0.2);
        close(hq(1.0, &mixed), 0.2);
        // histograms.test: nonmonotonic_bucket.
        let nm = [(0.1, 20.), (1., 10.), (10., 50.), (100., 40.), (1000., 90.), (INF, 80.)];
        close(hq(0.01, &nm), 0.0045);
        close(hq(0.5, &nm), 8.5);
        close(hq(0.99, &nm), 979.75);
    }

    #[test]
    fn quantile_edge_cases() {
        assert!(quantile(0.5, &mut []).is_nan());
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert_eq!(quantile(-0.5, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(1.5, &mut [1.0]), INF);
        close(quantile(0.5, &mut [4.0]), 4.0);
        // Unsorted input; NaN sorts first.
        close(quantile(0.25, &mut [3.0, 1.0, 2.0]), 1.5);
        assert!(quantile(0.0, &mut [2.0, f64::NAN, 1.0]).is_nan());
        close(quantile(1.0, &mut [2.0, f64::NAN, 1.0]), 2.0);
        close(quantile(0.75, &mut [2.0, f64::NAN, 1.0]), 1.5);
    }

    // --- labels ---------------------------------------------------------------

    fn replace(l: &Labels, dst: &str, repl: &str, src: &str, re: &str) -> Labels {
        label_replace(l, dst, repl, src, &compile_anchored(re).unwrap())
    }

    fn testmetric() -> Labels {
        labels(&[
            ("__name__", "testmetric"),
            ("src", "source-value-10"),
            ("dst", "original-destination-value"),
        ])
    }

    #[test]
    fn label_replace_cases_from_functions_test() {
        let l = testmetric();
        let with_dst = |v: &str| labels(&[("__name__", "testmetric"), ("src", "source-value-10"), ("dst", v)]);
        assert_eq!(
            replace(&l, "dst", "destination-value-$1", "src", "source-value-(.*)"),
            with_dst("destination-value-10")
        );
        // Full-string match only.
        assert_eq!(replace(&l, "dst", "destination-value-$1", "src", "value-(.*)"), l);
        assert_eq!(
            replace(&l, "dst", "$1-value-$2", "src", "(.*)-value-(.*)"),
            with_dst("source-value-10")
        );
        // A missing source label is "": no match here, a match there.
        assert_eq!(
            replace(&l, "dst", "value-$1", "nonexistent-src", "source-value-(.*)"),
            l
        );
        assert_eq!(
            replace(&l, "dst", "value-$1", "nonexistent-src", "(.*)"),
            with_dst("value-")
        );
        assert_eq!(replace(&l, "dst", "value-$1", "src", "non-matching-regex"), l);
        // An empty result removes the label.
        assert_eq!(
            replace(&l, "dst", "", "dst", ".*"),
            labels(&[("__name__", "testmetric"), ("src", "source-value-10")])
        );
    }

    #[test]
    fn label_replace_expands_like_go() {
        let l = labels(&[("src", "ab")]);
        let dst = |repl: &str, re: &str| replace(&l, "dst", repl, "src", re).get("dst").map(str::to_string);
        assert_eq!(dst("${1}x", "(a)(b)").as_deref(), Some("ax"));
        // `$1x` names a group "1x", which does not exist.
        assert_eq!(dst("$1x-$2", "(a)(b)").as_deref(), Some("-b"));
        assert_eq!(dst("<${n}>", "(?P<n>a)b").as_deref(), Some("<a>"));
        assert_eq!(dst("$n$n", "(?P<n>a)b").as_deref(), Some("aa"));
        // `$$` is a dollar; a malformed reference is literal text.
        assert_eq!(dst("$$1", "(a)b").as_deref(), Some("$1"));
        assert_eq!(dst("$-${1", "(a)b").as_deref(), Some("$-${1"));
        // Go reads `$01` as a group named "01" (nothing), unlike Rust's `expand`.
        assert_eq!(dst("[$01]", "(a)b").as_deref(), Some("[]"));
        // Group 0, an unmatched group and an out-of-range group.
        assert_eq!(dst("$0|$2|$9", "(a)(x)?b").as_deref(), Some("ab||"));
        // Setting an empty value removes the label; the source label may be replaced.
        assert_eq!(dst("$2", "(a)(x)?b"), None);
        assert_eq!(replace(&l, "src", "$1", "src", "(a)b"), labels(&[("src", "a")]));
    }

    #[test]
    fn label_replace_regex_uses_go_syntax() {
        let l = labels(&[("src", "٣x")]); // ARABIC-INDIC DIGIT THREE
        // Go's \d and \w are ASCII only.
        assert_eq!(replace(&l, "dst", "y", "src", r"\dx"), l);
        assert_eq!(replace(&l, "dst", "y", "src", r"\wx"), l);
        assert_eq!(replace(&l, "dst", "y", "src", r"[^\d]x").get("dst"), Some("y"));
        assert_eq!(replace(&l, "dst", "y", "src", r"[\D]x").get("dst"), Some("y"));
        let l = labels(&[("src", "a{1}[&&]")]);
        // A literal `{`, and `[`/`&&` inside a class, are plain text in Go.
        assert_eq!(replace(&l, "dst", "y", "src", r"a{1}[[&]+\]").get("dst"), None);
        assert_eq!(replace(&l, "dst", "y", "src", r"a\{1}[[&]+\]").get("dst"), Some("y"));
        assert_eq!(replace(&l, "dst", "y", "src", r"a{1,x}").get("dst"), None);
        assert_eq!(
            replace(&labels(&[("src", "a{1,x}")]), "dst", "y", "src", r"a{1,x}").get("dst"),
            Some("y")
        );
        assert_eq!(
            replace(&labels(&[("src", "a.b")]), "dst", "y", "src", r"\Qa.b\E").get("dst"),
            Some("y")
        );
        assert_eq!(
            replace(&labels(&[("src", "axb")]), "dst", "y", "src", r"\Qa.b\E").get("dst"),
            None
        );
        assert_eq!(
            replace(&labels(&[("src", "aa")]), "dst", "y", "src", r"a{2}").get("dst"),
            Some("y")
        );
        assert_eq!(
            replace(&labels(&[("src", "b c")]), "dst", "$1", "src", r"(\w)\b.*").get("dst"),
            Some("b")
        );
        assert_eq!(
            replace(&labels(&[("src", "x]")]), "dst", "y", "src", r"[]x]+").get("dst"),
            Some("y")
        );
        assert_eq!(
            replace(&labels(&[("src", "a1")]), "dst", "y", "src", r"[[:alpha:]][[:digit:]]").get("dst"),
            Some("y")
        );
    }

    #[test]
    fn invalid_regex_and_label_names() {
        // functions.test: label_replace fails on "(.*" and on "invalid-label-name".
        let err = compile_anchored("(.*").unwrap_err();
        assert_eq!(err.message(), "invalid regular expression in label_replace(): (.*");
        assert_eq!(err.error_type(), "execution");
        assert!(!valid_label_name("invalid-label-name"));
        assert!(!valid_label_name("") && !valid_label_name("1a") && !valid_label_name("ä"));
        assert!(valid_label_name("_a1") && valid_label_name("__name__") && valid_label_name("Z"));
    }

    #[test]
    fn label_join_cases_from_functions_test() {
        let l = labels(&[
            ("__name__", "testmetric"),
            ("src", "a"),
            ("src1", "b"),
            ("src2", "c"),
            ("dst", "orig"),
        ]);
        let without_dst = labels(&[("__name__", "testmetric"), ("src", "a"), ("src1", "b"), ("src2", "c")]);
        assert_eq!(
            label_join(&l, "dst", "-", &["src", "src1", "src2"]).get("dst"),
            Some("a-b-c")
        );
        assert_eq!(
            label_join(&l, "dst", "-", &["src", "src3", "src1"]).get("dst"),
            Some("a--b")
        );
        assert_eq!(
            label_join(&l, "dst", "", &["emptysrc", "emptysrc1", "emptysrc2"]),
            without_dst
        );
        assert_eq!(label_join(&l, "dst", ", ", &[]), without_dst);
        assert_eq!(
            label_join(&without_dst, "new", ", ", &["src", "src1"]).get("new"),
            Some("a, b")
        );
        // A separator alone is not empty.
        assert_eq!(label_join(&l, "dst", "-", &["x", "y"]).get("dst"), Some("-"));
    }
}
