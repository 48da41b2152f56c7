//! The in-memory head: series by label set, samples per series in time order,
//! metric metadata, and a retention window that bounds memory.

use super::labels::{Interner, Labels};
use promql_parser::label::{MatchOp, Matcher};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Prometheus's staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN.to_bits()
}

/// Index of a series in the head; stable while the series exists.
pub type SeriesRef = u32;

/// `# TYPE` / `# HELP` / `# UNIT` of a metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The family a sample name belongs to (`x` for `x_bucket`).
    pub family: Arc<str>,
    /// Text-format type: counter, gauge, histogram, summary, untyped.
    pub kind: &'static str,
    pub help: Arc<str>,
    pub unit: Arc<str>,
}

struct MemSeries {
    labels: Labels,
    samples: VecDeque<(i64, f64)>,
    /// Holders of this ref (scrape tables). A pinned series is never removed, so a
    /// ref a holder keeps can never come to mean another series.
    pins: u32,
}

#[derive(Default)]
struct Inner {
    by_labels: HashMap<Labels, SeriesRef>,
    series: Vec<Option<MemSeries>>,
    free: Vec<SeriesRef>,
    /// Sample name → metadata of its family.
    meta: HashMap<Arc<str>, Arc<Metadata>>,
    interner: Interner,
}

/// Counters for sonde's own /metrics.
#[derive(Default)]
pub struct HeadStats {
    pub samples_appended: AtomicU64,
    pub out_of_order: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
}

pub struct Head {
    inner: RwLock<Inner>,
    retention_ms: i64,
    pub stats: HeadStats,
}

impl Head {
    pub fn new(retention: std::time::Duration) -> Self {
        Head {
            inner: RwLock::default(),
            retention_ms: retention.as_millis() as i64,
            stats: HeadStats::default(),
        }
    }

    /// Interns label strings and returns the series for `pairs`, creating it if new.
    /// The ref is pinned until [`Head::release`] is called for it.
    pub fn get_or_create(&self, pairs: &[(&str, &str)]) -> SeriesRef {
        let mut g = self.inner.write().unwrap();
        let inner = &mut *g;
        let labels = Labels::from_pairs(
            pairs
                .iter()
                .map(|(n, v)| (inner.interner.intern(n), inner.interner.intern(v)))
                .collect(),
        );
        if let Some(&r) = inner.by_labels.get(&labels) {
            if let Some(Some(s)) = inner.series.get_mut(r as usize) {
                s.pins += 1;
            }
            return r;
        }
        let s = MemSeries {
            labels: labels.clone(),
            samples: VecDeque::new(),
            pins: 1,
        };
        let r = match inner.free.pop() {
            Some(r) => {
                inner.series[r as usize] = Some(s);
                r
            }
            None => {
                inner.series.push(Some(s));
                (inner.series.len() - 1) as SeriesRef
            }
        };
        inner.by_labels.insert(labels, r);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Drops one pin of `r` (taken by [`Head::get_or_create`]).
    pub fn release(&self, r: SeriesRef) {
        let mut g = self.inner.write().unwrap();
        if let Some(Some(s)) = g.series.get_mut(r as usize) {
            s.pins = s.pins.saturating_sub(1);
        }
    }

    /// Records metadata for the sample names of a family.
    pub fn set_metadata(&self, sample_names: &[&str], meta: Metadata) {
        let mut g = self.inner.write().unwrap();
        let meta = Arc::new(meta);
        for n in sample_names {
            let key = g.interner.intern(n);
            if g.meta.get(&key).is_none_or(|m| **m != *meta) {
                g.meta.insert(key, meta.clone());
            }
        }
    }

    pub fn metadata(&self, sample_name: &str) -> Option<Arc<Metadata>> {
        self.inner.read().unwrap().meta.get(sample_name).cloned()
    }

    /// Appends samples under one lock. A sample older than the series' last one is
    /// dropped and counted (out of order); one with the same timestamp replaces nothing.
    pub fn append(&self, samples: &[(SeriesRef, i64, f64)]) {
        let mut g = self.inner.write().unwrap();
        let mut appended = 0;
        for &(r, t, v) in samples {
            let Some(Some(s)) = g.series.get_mut(r as usize) else {
                continue;
            };
            match s.samples.back() {
                Some(&(last, _)) if t <= last => {
                    self.stats.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    s.samples.push_back((t, v));
                    appended += 1;
                }
            }
        }
        self.stats.samples_appended.fetch_add(appended, Ordering::Relaxed);
    }

    /// Drops samples older than the retention window before `now_ms`, and unpinned
    /// series left without samples.
    pub fn truncate(&self, now_ms: i64) {
        let min_t = now_ms - self.retention_ms;
        let mut g = self.inner.write().unwrap();
        let inner = &mut *g;
        let mut removed = 0;
        for (i, slot) in inner.series.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            while s.samples.front().is_some_and(|(t, _)| *t < min_t) {
                s.samples.pop_front();
            }
            if s.samples.is_empty() && s.pins == 0 {
                inner.by_labels.remove(&s.labels);
                *slot = None;
                inner.free.push(i as SeriesRef);
                removed += 1;
            } else if s.samples.capacity() > 2 * s.samples.len() + 8 {
                s.samples.shrink_to_fit();
            }
        }
        if removed > 0 {
            inner.interner.sweep();
            self.stats.series_removed.fetch_add(removed, Ordering::Relaxed);
        }
    }

    /// Series matching all `matchers` with their samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let g = self.inner.read().unwrap();
        let mut out = Vec::new();
        for s in g.series.iter().flatten() {
            if !matchers.iter().all(|m| matches(m, s.labels.get(&m.name).unwrap_or(""))) {
                continue;
            }
            let samples: Vec<(i64, f64)> = s
                .samples
                .iter()
                .filter(|(t, _)| *t >= mint && *t <= maxt)
                .copied()
                .collect();
            if !samples.is_empty() {
                out.push((s.labels.clone(), samples));
            }
        }
        out
    }

    pub fn num_series(&self) -> usize {
        self.inner.read().unwrap().by_labels.len()
    }

    pub fn num_samples(&self) -> usize {
        self.inner
            .read()
            .unwrap()
            .series
            .iter()
            .flatten()
            .map(|s| s.samples.len())
            .sum()
    }
}

fn matches(m: &Matcher, value: &str) -> bool {
    match &m.op {
        MatchOp::Equal => m.value == value,
        MatchOp::NotEqual => m.value != value,
        MatchOp::Re(re) => re.is_match(value),
        MatchOp::NotRe(re) => !re.is_match(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_deduplicated_by_label_set() {
        let h = Head::new(std::time::Duration::from_secs(60));
        let a = h.get_or_create(&[("__name__", "x"), ("b", "1"), ("a", "2")]);
        let b = h.get_or_create(&[("a", "2"), ("__name__", "x"), ("b", "1")]);
        let c = h.get_or_create(&[("__name__", "x"), ("a", "3")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn out_of_order_samples_are_dropped_and_counted() {
        let h = Head::new(std::time::Duration::from_secs(60));
        let r = h.get_or_create(&[("__name__", "x")]);
        h.append(&[(r, 1000, 1.0), (r, 2000, 2.0), (r, 1500, 9.0), (r, 2000, 9.0)]);
        let got = h.select(&[], 0, 10_000);
        assert_eq!(got[0].1, vec![(1000, 1.0), (2000, 2.0)]);
        assert_eq!(h.stats.out_of_order.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn retention_drops_old_samples_and_empty_series() {
        let h = Head::new(std::time::Duration::from_secs(10));
        let r = h.get_or_create(&[("__name__", "old")]);
        let k = h.get_or_create(&[("__name__", "kept")]);
        h.append(&[(r, 1_000, 1.0), (k, 1_000, 1.0), (k, 20_000, 2.0)]);
        h.truncate(25_000);
        assert_eq!(h.num_series(), 2, "pinned series stay");
        h.release(r);
        h.release(k);
        h.truncate(25_000);
        assert_eq!(h.num_series(), 1);
        assert_eq!(h.select(&[], 0, 30_000)[0].1, vec![(20_000, 2.0)]);
        let again = h.get_or_create(&[("__name__", "new")]);
        assert_eq!(again, r, "freed refs are reused");
    }

    #[test]
    fn select_applies_all_matcher_kinds() {
        let h = Head::new(std::time::Duration::from_secs(60));
        for (job, cpu) in [("node", "0"), ("node", "1"), ("pg", "0")] {
            let r = h.get_or_create(&[("__name__", "c"), ("job", job), ("cpu", cpu)]);
            h.append(&[(r, 1, 1.0)]);
        }
        let m = |s: &str| match promql_parser::parser::parse(s).unwrap() {
            promql_parser::parser::Expr::VectorSelector(vs) => vs.matchers.matchers,
            _ => unreachable!(),
        };
        assert_eq!(h.select(&m(r#"c{job="node"}"#), 0, 10).len(), 2);
        assert_eq!(h.select(&m(r#"c{job!="node"}"#), 0, 10).len(), 1);
        assert_eq!(h.select(&m(r#"c{cpu=~"0|1",job=~"n.*"}"#), 0, 10).len(), 2);
        assert_eq!(h.select(&m(r#"c{cpu!~"0"}"#), 0, 10).len(), 1);
        assert_eq!(h.select(&m(r#"c{absent=""}"#), 0, 10).len(), 3);
    }
}
