//! Streaming quantiles over a sliding window, for summaries.
//!
//! statsd_exporter's summaries (client_golang) keep beorn7/perks targeted-quantile
//! streams over `max_age` (10m) in `age_buckets` (5) rotating streams. We keep instead,
//! per age bucket, a log-bucketed sketch (DDSketch): every value `v` is counted in bin
//! `ceil(ln|v| / ln γ)` with `γ = (1+α)/(1-α)`, and a quantile is answered by the bin
//! that holds its rank, so the answer is within a relative error α = 1% of a value of
//! that rank. Memory is bounded: at most [`MAX_BINS`] counters per sign per age bucket
//! (collapsing the lowest bins beyond that, which only blurs the lowest quantiles).
//!
//! The window: age bucket `k` holds the observations of the interval
//! `[k·w, (k+1)·w)` with `w = max_age / age_buckets`; a quantile merges the buckets of
//! the last `age_buckets` intervals, so it covers between `max_age - w` and `max_age`
//! of history, as client_golang's head stream does. `_sum` and `_count` are over all
//! time, as in client_golang. An empty window gives NaN quantiles, as client_golang.

/// Relative accuracy of the quantiles.
pub const ALPHA: f64 = 0.01;
/// Bins per sign per age bucket: with α = 1% they span a factor of e^(2048·0.02) ≈ 6e17.
pub const MAX_BINS: usize = 2048;
/// Highest bin key: ln(f64::MAX) / ln γ ≈ 35,490, so every finite value fits below it.
const MAX_KEY: i32 = 36_000;
/// Magnitudes below this count as zero.
const MIN_VALUE: f64 = 1e-12;

fn ln_gamma() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

/// Dense counters of consecutive bins, lowest key at `offset`.
#[derive(Clone, Debug, Default)]
struct Store {
    offset: i32,
    counts: Vec<u64>,
}

impl Store {
    fn add(&mut self, key: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = key;
            self.counts.push(n);
            return;
        }
        if key < self.offset {
            let grow = (self.offset - key) as usize;
            if self.counts.len() + grow > MAX_BINS {
                // Collapse: count it in the lowest bin kept.
                self.counts[0] += n;
                return;
            }
            let mut v = vec![0; grow];
            v.extend_from_slice(&self.counts);
            self.counts = v;
            self.offset = key;
        } else if (key - self.offset) as usize >= self.counts.len() {
            let need = (key - self.offset) as usize + 1;
            if need > MAX_BINS {
                // Drop the lowest bins into the new lowest one.
                let shift = need - MAX_BINS;
                let merged: u64 = self.counts[..shift.min(self.counts.len())].iter().sum();
                self.counts.drain(..shift.min(self.counts.len()));
                self.offset += shift as i32;
                if self.counts.is_empty() {
                    self.counts.push(0);
                }
                self.counts[0] += merged;
            }
            let need = (key - self.offset) as usize + 1;
            self.counts.resize(need, 0);
        }
        let i = (key - self.offset) as usize;
        self.counts[i] += n;
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[derive(Clone, Debug, Default)]
struct Sketch {
    /// The interval number this bucket holds.
    epoch: u64,
    pos: Store,
    neg: Store,
    zero: u64,
    /// ±Inf are counted apart: in a bin they would stretch the store over the whole
    /// exponent range and collapse every finite value into one bin.
    neg_inf: u64,
    pos_inf: u64,
}

impl Sketch {
    fn add(&mut self, v: f64, n: u64, inv_ln_gamma: f64) {
        let a = v.abs();
        if a.is_infinite() {
            if v > 0.0 { self.pos_inf += n } else { self.neg_inf += n }
        } else if a < MIN_VALUE {
            self.zero += n;
        } else {
            // Clamped so that the key arithmetic cannot overflow.
            let key = (a.ln() * inv_ln_gamma).ceil().min(MAX_KEY as f64) as i32;
            if v > 0.0 {
                self.pos.add(key, n)
            } else {
                self.neg.add(key, n)
            }
        }
    }
}

/// One summary series.
#[derive(Clone, Debug)]
pub struct Summary {
    buckets: Vec<Sketch>,
    width_ms: u64,
    pub sum: f64,
    pub count: u64,
}

impl Summary {
    pub fn new(max_age_ms: u64, age_buckets: u32) -> Summary {
        let n = age_buckets.max(1) as usize;
        Summary {
            buckets: vec![
                Sketch {
                    epoch: u64::MAX,
                    ..Default::default()
                };
                n
            ],
            width_ms: (max_age_ms / n as u64).max(1),
            sum: 0.0,
            count: 0,
        }
    }

    /// Observes `v` `n` times at `now_ms`. NaN is counted in `_count` and `_sum` only
    /// (perks cannot rank it either).
    pub fn observe(&mut self, v: f64, n: u64, now_ms: u64) {
        self.sum = add_repeated(self.sum, v, n);
        self.count += n;
        if v.is_nan() {
            return;
        }
        let epoch = now_ms / self.width_ms;
        let len = self.buckets.len() as u64;
        let b = &mut self.buckets[(epoch % len) as usize];
        if b.epoch != epoch {
            *b = Sketch {
                epoch,
                ..Default::default()
            };
        }
        b.add(v, n, 1.0 / ln_gamma());
    }

    /// The `qs` quantiles of the window ending at `now_ms`.
    pub fn quantiles(&self, qs: &[f64], now_ms: u64) -> Vec<f64> {
        let epoch = now_ms / self.width_ms;
        let len = self.buckets.len() as u64;
        let live: Vec<&Sketch> = self
            .buckets
            .iter()
            .filter(|b| b.epoch != u64::MAX && b.epoch <= epoch && epoch - b.epoch < len)
            .collect();
        let mut pos = Merged::default();
        let mut neg = Merged::default();
        let (mut zero, mut neg_inf, mut pos_inf) = (0, 0, 0);
        for b in &live {
            pos.add(&b.pos);
            neg.add(&b.neg);
            zero += b.zero;
            neg_inf += b.neg_inf;
            pos_inf += b.pos_inf;
        }
        let total = neg_inf + neg.total + zero + pos.total + pos_inf;
        if total == 0 {
            return vec![f64::NAN; qs.len()];
        }
        let gamma = ln_gamma().exp();
        // Finite values report finite quantiles, even in the top bin.
        let value = |key: i32| (2.0 * gamma.powi(key) / (gamma + 1.0)).min(f64::MAX);
        qs.iter()
            .map(|&q| {
                // perks' rank (its exact answer for small sets): ceil(q·n), 1-based.
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total) - 1;
                // In order: -Inf, negatives (most negative first), zero, positives, +Inf.
                let mut seen = neg_inf;
                if rank < seen {
                    return f64::NEG_INFINITY;
                }
                for (i, c) in neg.counts.iter().enumerate().rev() {
                    seen += c;
                    if seen > rank {
                        return -value(neg.offset + i as i32);
                    }
                }
                seen += zero;
                if rank < seen {
                    return 0.0;
                }
                for (i, c) in pos.counts.iter().enumerate() {
                    seen += c;
                    if seen > rank {
                        return value(pos.offset + i as i32);
                    }
                }
                f64::INFINITY
            })
            .collect()
    }
}

/// `sum + v` done `n` times, as statsd_exporter observes a sampled timer `1/rate`
/// times (float sums differ from `v·n` in the last bits); multiplied past 1024.
pub fn add_repeated(sum: f64, v: f64, n: u64) -> f64 {
    if n > 1024 {
        return sum + v * n as f64;
    }
    (0..n).fold(sum, |s, _| s + v)
}

/// Age buckets merged for a query (only then: observing stays one increment).
#[derive(Default)]
struct Merged {
    offset: i32,
    counts: Vec<u64>,
    total: u64,
}

impl Merged {
    fn add(&mut self, s: &Store) {
        if s.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.offset = s.offset;
            self.counts = s.counts.clone();
            self.total = s.total();
            return;
        }
        let lo = self.offset.min(s.offset);
        let hi = (self.offset + self.counts.len() as i32).max(s.offset + s.counts.len() as i32);
        let mut out = vec![0; (hi - lo) as usize];
        for (i, c) in self.counts.iter().enumerate() {
            out[(self.offset - lo) as usize + i] += c;
        }
        for (i, c) in s.counts.iter().enumerate() {
            out[(s.offset - lo) as usize + i] += c;
        }
        self.offset = lo;
        self.counts = out;
        self.total += s.total();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (xorshift), mapped to a log-normal-ish
    /// spread of timer values from ~1ms to ~10s.
    fn values(n: usize) -> Vec<f64> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                0.001 * 10f64.powf(4.0 * u)
            })
            .collect()
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len();
        sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let vs = values(200_000);
        let mut s = Summary::new(600_000, 5);
        for (i, v) in vs.iter().enumerate() {
            s.observe(*v, 1, i as u64 / 1000); // 200 s of data
        }
        let mut sorted = vs.clone();
        sorted.sort_by(f64::total_cmp);
        let qs = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999];
        for (q, got) in qs.iter().zip(s.quantiles(&qs, 200_000)) {
            let want = exact(&sorted, *q);
            assert!(
                (got - want).abs() <= want * ALPHA * 1.0001,
                "q{q}: got {got}, exact {want}"
            );
        }
        assert_eq!(s.count, 200_000);
    }

    #[test]
    fn old_observations_leave_the_window() {
        let mut s = Summary::new(600_000, 5);
        s.observe(100.0, 1, 0);
        s.observe(1.0, 1, 590_000);
        let q = s.quantiles(&[0.99], 590_000)[0];
        assert!((q - 100.0).abs() < 1.0, "both in the window: {q}");
        let q = s.quantiles(&[0.99], 720_000)[0];
        assert!((q - 1.0).abs() < 0.02, "the first left the window: {q}");
        assert!(s.quantiles(&[0.5], 2_000_000)[0].is_nan(), "empty window");
        assert_eq!(s.count, 2);
        assert_eq!(s.sum, 101.0);
    }

    #[test]
    fn negatives_zero_and_weights() {
        let mut s = Summary::new(600_000, 5);
        s.observe(-2.0, 3, 0);
        s.observe(0.0, 1, 0);
        s.observe(5.0, 6, 0);
        // Ranks ceil(q·10) over -2 -2 -2 0 5 5 5 5 5 5.
        let q = s.quantiles(&[0.0, 0.4, 1.0], 0);
        assert!(
            (q[0] + 2.0).abs() < 0.03 && q[1] == 0.0 && (q[2] - 5.0).abs() < 0.06,
            "{q:?}"
        );
    }

    #[test]
    fn infinities_rank_last_without_overflow() {
        let mut s = Summary::new(600_000, 5);
        s.observe(f64::INFINITY, 1, 0);
        s.observe(-f64::INFINITY, 1, 0);
        s.observe(1e10, 1, 0);
        s.observe(1.0, 1, 0);
        let q = s.quantiles(&[0.0, 0.5, 0.75, 1.0], 0);
        assert_eq!(q[0], f64::NEG_INFINITY);
        assert!((q[1] - 1.0).abs() < 0.01, "finite values keep their resolution: {q:?}");
        assert!((q[2] - 1e10).abs() < 1e8, "{q:?}");
        assert_eq!(q[3], f64::INFINITY);
        let mut s = Summary::new(600_000, 5);
        s.observe(f64::MAX, 1, 0);
        assert_eq!(s.quantiles(&[0.5], 0), [f64::MAX]);
    }

    #[test]
    fn memory_is_bounded_for_extreme_spreads() {
        let mut s = Summary::new(600_000, 1);
        for e in -300..300 {
            s.observe(10f64.powi(e), 1, 0);
        }
        assert!(s.buckets[0].pos.counts.len() <= MAX_BINS);
        assert_eq!(s.buckets[0].pos.total() + s.buckets[0].zero, 600);
    }
}
