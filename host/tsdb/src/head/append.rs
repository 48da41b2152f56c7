//! Appending to the head: creating series, and the rules for each sample — in order
//! (append to the open chunk), duplicate timestamp (same value: ignored; different
//! value: rejected, as Prometheus does), out of order within the window (kept aside,
//! merged when the range is cut to a block), too old (rejected).

use super::{Head, Inner, MemSeries};
use crate::chunk::HeadChunk;
use crate::chunk::bits::{prefetch, prefetch_all};
use crate::postings::SeriesRef;
use std::sync::atomic::Ordering;

/// The step of the prefetch pipelines of [`Head::check`] (table slot two steps ahead, series
/// one) and [`Head::apply`] (slot three steps ahead, series two, end of the open chunk one).
const PREFETCH_AHEAD: usize = 8;

/// Why a sample was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Same timestamp as a stored sample, different value.
    Duplicate,
    /// Older than the out-of-order window allows.
    OutOfOrder,
    /// No such series.
    UnknownSeries,
    /// Too far ahead of the wall clock (see `db::MAX_FUTURE`).
    TooFarInFuture,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended,
    /// Identical to the stored sample at that timestamp: nothing to do.
    Ignored,
    Rejected(Rejected),
}

/// A series found or created by [`Head::pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub sref: SeriesRef,
    /// It did not exist.
    pub created: bool,
    /// Someone else holds it too (its pin count was above zero).
    pub shared: bool,
}

impl Head {
    /// The ref of the series with `labels`, and whether it was created now. Creating
    /// or finding a series takes a pin, released with [`Head::release`].
    pub fn get_or_create(&self, pairs: &[(&str, &str)]) -> (SeriesRef, bool) {
        let p = self.pin(pairs);
        (p.sref, p.created)
    }

    /// [`Head::get_or_create`], also telling whether the series was pinned already.
    pub fn pin(&self, pairs: &[(&str, &str)]) -> Pinned {
        let mut g = self.inner.write().unwrap();
        let inner = &mut *g;
        if let Some(sref) = inner.find_series(pairs) {
            let mut shared = false;
            if let Some(s) = inner.series.get_mut(sref) {
                shared = s.pins > 0;
                s.pins += 1;
            }
            return Pinned {
                sref,
                created: false,
                shared,
            };
        }
        let sref = inner.next_ref;
        inner.next_ref += 1;
        inner.insert_series(sref, pairs);
        inner.series.get_mut(sref).expect("just inserted").pins = 1;
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        Pinned {
            sref,
            created: true,
            shared: false,
        }
    }

    /// Re-creates a series with a known ref (WAL replay, block load). Unpinned.
    pub fn restore_series(&self, r: SeriesRef, pairs: &[(&str, &str)]) {
        let mut g = self.inner.write().unwrap();
        let inner = &mut *g;
        if inner.series.contains_key(r) {
            return;
        }
        // A WAL written by a bug could name one label set twice: the later ref wins the
        // look-up by labels, as it did when the map was keyed by label set.
        if let Some(old) = inner.find_series(pairs) {
            inner.unindex(old);
        }
        inner.next_ref = inner.next_ref.max(r + 1);
        inner.insert_series(r, pairs);
    }

    pub fn release(&self, r: SeriesRef) {
        if let Some(s) = self.inner.write().unwrap().series.get_mut(r) {
            s.pins = s.pins.saturating_sub(1);
        }
    }

    /// Checks every sample against the series' state without changing anything, so
    /// the caller can log exactly the accepted ones to the WAL before applying them.
    pub fn check(&self, samples: &[(SeriesRef, i64, f64)], outcomes: &mut Vec<AppendOutcome>) {
        let g = self.inner.read().unwrap();
        outcomes.clear();
        // Samples of one batch may hit the same series: track its newest time here.
        // A scrape's batch names each series once, so that map (a hash insert per
        // sample) is only built when a cheap check finds a series named twice.
        let repeats = has_repeats(samples);
        if !repeats && newer_than_head(&g, samples) {
            check_newer(&g, samples, outcomes);
            return;
        }
        check_each(&g, samples, repeats, self.ooo_window_ms, outcomes);
    }

    /// Applies samples that [`Head::check`] accepted (others are skipped).
    pub fn apply(&self, samples: &[(SeriesRef, i64, f64)], outcomes: &[AppendOutcome]) {
        let mut g = self.inner.write().unwrap();
        let inner = &mut *g;
        let mut appended = 0;
        let mut ooo = 0;
        let mut range_start = RangeStart::new(self.chunk_range_ms);
        for (i, (&(r, t, v), o)) in samples.iter().zip(outcomes).enumerate() {
            // With thousands of series, each append's table slot, series and chunk are
            // out of cache, and those misses were most of an append's cost: fetch the
            // slot three steps ahead, the series two steps ahead (its slot in cache by
            // then), then the end of its open chunk.
            if let Some(a) = samples.get(i + 3 * PREFETCH_AHEAD) {
                inner.series.prefetch(a.0);
            }
            if let Some(s) = samples.get(i + 2 * PREFETCH_AHEAD).and_then(|a| inner.series.get(a.0)) {
                prefetch_all::<MemSeries>(s);
            }
            if let Some(s) = samples.get(i + PREFETCH_AHEAD).and_then(|a| inner.series.get(a.0)) {
                s.open.prefetch();
            }
            if *o != AppendOutcome::Appended {
                continue;
            }
            let Some(s) = inner.series.get_mut(r) else { continue };
            if s.last().is_none_or(|(lt, _)| t > lt) {
                // The open chunk holds samples since `last`'s range began (when not empty);
                // `last` is older than `t`, so it is in an earlier range when it is before
                // the start of `t`'s.
                let new_range = s.last().is_some_and(|(lt, _)| lt < range_start.of(t));
                if s.open.is_full() || (new_range && !s.open.is_empty()) {
                    if let Some(c) = super::ClosedChunk::freeze(&s.open, &mut inner.arena, range_start.range) {
                        s.chunks.push(c);
                    }
                    s.open = HeadChunk::new();
                }
                s.open.append(t, v);
                s.set_last(Some((t, v)));
            } else {
                match s.ooo.binary_search_by_key(&t, |(ot, _)| *ot) {
                    Ok(_) => continue,
                    Err(i) => s.ooo.insert(i, (t, v)),
                }
                ooo += 1;
            }
            inner.min_t = inner.min_t.min(t);
            inner.max_t = inner.max_t.max(t);
            appended += 1;
        }
        self.stats.samples_appended.fetch_add(appended, Ordering::Relaxed);
        self.stats.out_of_order_accepted.fetch_add(ooo, Ordering::Relaxed);
    }

    /// Check and apply in one step (no WAL): for tests and replay.
    pub fn append(&self, samples: &[(SeriesRef, i64, f64)]) -> Vec<AppendOutcome> {
        let mut outcomes = Vec::with_capacity(samples.len());
        self.check(samples, &mut outcomes);
        self.count_rejections(&outcomes);
        self.apply(samples, &outcomes);
        outcomes
    }

    pub fn count_rejections(&self, outcomes: &[AppendOutcome]) {
        for o in outcomes {
            match o {
                AppendOutcome::Rejected(Rejected::Duplicate) => {
                    self.stats.rejected_duplicate.fetch_add(1, Ordering::Relaxed);
                }
                AppendOutcome::Rejected(Rejected::OutOfOrder) => {
                    self.stats.rejected_out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                AppendOutcome::Rejected(Rejected::TooFarInFuture) => {
                    self.stats.rejected_future.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
}

/// The start of a timestamp's chunk range, remembered for the last timestamp asked
/// about: the samples of a scrape share one, and a 64-bit division a sample was a
/// visible part of an append's cost.
struct RangeStart {
    range: i64,
    t: i64,
    start: i64,
}

impl RangeStart {
    fn new(range: i64) -> Self {
        RangeStart { range, t: 0, start: 0 }
    }

    /// The first millisecond of `t`'s range (`i64::MIN` when that is below it).
    #[inline]
    fn of(&mut self, t: i64) -> i64 {
        if t != self.t {
            self.t = t;
            self.start = t.div_euclid(self.range).saturating_mul(self.range);
        }
        self.start
    }
}

/// Whether every sample of `samples` is newer than anything the head holds, and not
/// before its minimum valid time: the usual scrape, stamped with the time it started.
/// Every series' newest sample is then older (`Inner::max_t` bounds them all: it only
/// rises, and only falls, to `i64::MIN`, once the head holds no series), so each sample
/// is in order and appended, unless its series is unknown.
fn newer_than_head(g: &Inner, samples: &[(SeriesRef, i64, f64)]) -> bool {
    let oldest = samples.iter().map(|s| s.1).min().unwrap_or(i64::MAX);
    oldest > g.max_t && oldest >= g.min_valid_t
}

/// [`Head::check`] of a batch [`newer_than_head`]: only each series' table slot is
/// read, not the series (at 100k series, reading them was a cache miss a sample).
fn check_newer(g: &Inner, samples: &[(SeriesRef, i64, f64)], outcomes: &mut Vec<AppendOutcome>) {
    outcomes.reserve(samples.len());
    for (i, &(r, _, _)) in samples.iter().enumerate() {
        if let Some(a) = samples.get(i + 2 * PREFETCH_AHEAD) {
            g.series.prefetch(a.0);
        }
        outcomes.push(if g.series.contains_key(r) {
            AppendOutcome::Appended
        } else {
            AppendOutcome::Rejected(Rejected::UnknownSeries)
        });
    }
}

/// [`Head::check`] sample by sample, against each series' newest sample (and the
/// batch's own earlier samples of it when `repeats`).
fn check_each(
    g: &Inner,
    samples: &[(SeriesRef, i64, f64)],
    repeats: bool,
    ooo_window_ms: i64,
    outcomes: &mut Vec<AppendOutcome>,
) {
    let mut batch_last: super::RefMap<(i64, f64)> = super::RefMap::default();
    let newest = samples.iter().map(|s| s.1).max().unwrap_or(i64::MIN).max(g.max_t);
    let limits = Limits {
        ooo_horizon: if ooo_window_ms > 0 {
            newest.saturating_sub(ooo_window_ms)
        } else {
            i64::MAX
        },
        min_valid: g.min_valid_t,
    };
    for (i, &(r, t, v)) in samples.iter().enumerate() {
        // Two steps ahead: the table slot of a later sample's series, then (slot in
        // cache) the series itself, fetched while this one is classified.
        if let Some(a) = samples.get(i + 2 * PREFETCH_AHEAD) {
            g.series.prefetch(a.0);
        }
        if let Some(s) = samples.get(i + PREFETCH_AHEAD).and_then(|a| g.series.get(a.0)) {
            prefetch(s.last_addr());
        }
        let Some(s) = g.series.get(r) else {
            outcomes.push(AppendOutcome::Rejected(Rejected::UnknownSeries));
            continue;
        };
        let last = if repeats {
            batch_last.get(&r).copied().or(s.last())
        } else {
            s.last()
        };
        let o = classify(s, last, t, v, limits);
        if repeats && o == AppendOutcome::Appended && last.is_none_or(|(lt, _)| t > lt) {
            batch_last.insert(r, (t, v));
        }
        outcomes.push(o);
    }
}

#[derive(Clone, Copy)]
struct Limits {
    /// Out-of-order samples (older than their series' newest) must be at least this
    /// recent: the newest time minus the out-of-order window (i64::MAX: no window).
    ooo_horizon: i64,
    /// Times before this are already cut into blocks.
    min_valid: i64,
}

/// Whether some series appears more than once in `samples`. The refs of a scrape are
/// usually in registration order, ascending: then no copy is needed; else the sort is
/// close to linear.
fn has_repeats(samples: &[(SeriesRef, i64, f64)]) -> bool {
    if samples.windows(2).all(|w| w[0].0 < w[1].0) {
        return false;
    }
    let mut refs: Vec<SeriesRef> = samples.iter().map(|s| s.0).collect();
    refs.sort_unstable();
    refs.windows(2).any(|w| w[0] == w[1])
}

fn classify(s: &MemSeries, last: Option<(i64, f64)>, t: i64, v: f64, limits: Limits) -> AppendOutcome {
    // The oldest possible time marks "no sample" in a series (`MemSeries::last`).
    if t == super::NO_SAMPLE || (t < limits.min_valid && t < limits.ooo_horizon) {
        return AppendOutcome::Rejected(Rejected::OutOfOrder);
    }
    let Some((lt, lv)) = last else {
        return AppendOutcome::Appended;
    };
    if t > lt {
        return AppendOutcome::Appended;
    }
    let same = |a: f64, b: f64| a.to_bits() == b.to_bits();
    if t == lt {
        return if same(v, lv) {
            AppendOutcome::Ignored
        } else {
            AppendOutcome::Rejected(Rejected::Duplicate)
        };
    }
    if t < limits.ooo_horizon {
        return AppendOutcome::Rejected(Rejected::OutOfOrder);
    }
    // Within the window: compare with whatever is stored at t.
    if let Ok(i) = s.ooo.binary_search_by_key(&t, |(ot, _)| *ot) {
        return if same(s.ooo[i].1, v) {
            AppendOutcome::Ignored
        } else {
            AppendOutcome::Rejected(Rejected::Duplicate)
        };
    }
    let stored = s
        .chunks
        .iter()
        .filter(|c| c.min_t <= t && c.max_t >= t)
        .flat_map(|c| c.iter())
        .chain(s.open.iter())
        .find(|(ct, _)| *ct == t);
    if let Some((_, cv)) = stored {
        return if same(cv, v) {
            AppendOutcome::Ignored
        } else {
            AppendOutcome::Rejected(Rejected::Duplicate)
        };
    }
    AppendOutcome::Appended
}

impl Inner {
    /// The series with these labels, if any.
    pub(crate) fn find_series(&self, pairs: &[(&str, &str)]) -> Option<SeriesRef> {
        let ids = self.symbols.find_set(pairs)?;
        let series = &self.series;
        self.by_labels
            .find(self.symbols.hash_ids(&ids), |r| {
                series.get(*r).is_some_and(|s| s.labels.ids() == ids)
            })
            .copied()
    }

    /// Adds a series; no series may have these labels (callers look first).
    pub(crate) fn insert_series(&mut self, r: SeriesRef, pairs: &[(&str, &str)]) {
        let labels = self.symbols.acquire_set(pairs);
        self.postings.add(r, labels.ids());
        let hash = self.symbols.hash_ids(labels.ids());
        self.series.insert(r, Box::new(MemSeries::new(labels)));
        let (series, symbols) = (&self.series, &self.symbols);
        self.by_labels.insert_unique(hash, r, |r| {
            series.get(*r).map_or(0, |s| symbols.hash_ids(s.labels.ids()))
        });
    }

    /// Takes `r` out of the label-set map.
    fn unindex(&mut self, r: SeriesRef) {
        let Some(s) = self.series.get(r) else { return };
        let hash = self.symbols.hash_ids(s.labels.ids());
        if let Ok(e) = self.by_labels.find_entry(hash, |x| *x == r) {
            e.remove();
        }
    }

    pub(crate) fn remove_series(&mut self, r: SeriesRef) {
        self.unindex(r);
        if let Some(s) = self.series.remove(r) {
            self.postings.remove(r, s.labels.ids());
            self.symbols.release_set(&s.labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_newer_than_the_head_is_checked_as_each_sample_would_be() {
        // Heads in several states (empty, samples up to some time, a cut, out-of-order
        // samples kept aside), then batches newer than all of it: the shortcut must give
        // what the sample-by-sample check gives.
        let mut x: u64 = 7;
        let mut rand = |m: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let mut shortcuts = 0;
        for round in 0..200 {
            let ooo_window = if round % 2 == 0 { 0 } else { 5_000 };
            let head = Head::new(ooo_window, 60_000);
            let n = 1 + rand(40);
            let refs: Vec<SeriesRef> = (0..n)
                .map(|i| head.get_or_create(&[("__name__", "m"), ("i", &i.to_string())]).0)
                .collect();
            for step in 0..rand(5) {
                let mut batch = Vec::new();
                for &r in &refs {
                    if rand(3) > 0 {
                        batch.push((r, 1_000 * step as i64 + rand(2_000) as i64, rand(10) as f64));
                    }
                }
                head.append(&batch);
            }
            if rand(4) == 0 {
                head.truncate_before(rand(3_000) as i64);
            }
            let g = head.inner.read().unwrap();
            let base = g.max_t.max(g.min_valid_t).max(0);
            let unknown = 1_000_000;
            let mut batch = Vec::new();
            for r in refs.iter().copied().chain([unknown]) {
                if rand(4) > 0 {
                    batch.push((r, base + 1 + rand(3) as i64, rand(10) as f64));
                }
            }
            assert!(!has_repeats(&batch) && newer_than_head(&g, &batch));
            let (mut fast, mut careful) = (Vec::new(), Vec::new());
            check_newer(&g, &batch, &mut fast);
            check_each(&g, &batch, false, ooo_window, &mut careful);
            assert_eq!(fast, careful, "round {round}");
            shortcuts += 1;
            // One sample no newer than the head's newest: no shortcut.
            if g.max_t > i64::MIN {
                let mut older = batch.clone();
                older.push((refs[0], g.max_t, 0.0));
                assert!(!newer_than_head(&g, &older));
            }
        }
        assert_eq!(shortcuts, 200);
        // Nor one before the minimum valid time, however new for the head.
        let mut g = Inner {
            max_t: 10,
            min_valid_t: 20,
            ..Default::default()
        };
        assert!(!newer_than_head(&g, &[(1, 15, 0.0)]));
        g.min_valid_t = 15;
        assert!(newer_than_head(&g, &[(1, 15, 0.0)]));
    }

    #[test]
    fn repeats_are_found_in_any_order() {
        let s = |refs: &[u64]| refs.iter().map(|r| (*r, 0, 0.0)).collect::<Vec<_>>();
        assert!(!has_repeats(&s(&[])) && !has_repeats(&s(&[7])));
        assert!(!has_repeats(&s(&[1, 2, 5, 9])), "ascending");
        assert!(!has_repeats(&s(&[4, 2, 9, 1])), "unordered, each once");
        assert!(has_repeats(&s(&[1, 2, 2, 3])));
        assert!(has_repeats(&s(&[3, 1, 2, 3])), "not next to each other");
        assert!(has_repeats(&s(&[1, 2, 3, 1])));
    }
}
