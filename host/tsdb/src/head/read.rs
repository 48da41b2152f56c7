//! Reading the head: series by matchers with their samples in a time range, label
//! names and values, and what the block writer needs to cut a range out of the head.

use super::ClosedChunk;
use super::arena::ChunkArena;
use super::{Head, MemSeries};
use crate::chunk::{ChunkParts, HeadChunk, column_from_chunks, encode_stream_column};
use crate::labels::{Labels, SharedStrings};
use crate::postings::SeriesRef;
use promql_parser::label::Matcher;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One series and its samples in the requested range, in time order.
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    pub series_ref: SeriesRef,
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// What cutting `[mint, maxt)` into a block needs from the head first: the series with
/// samples there, sorted by label set, and their label strings. ~40 bytes a series:
/// a cut holds neither label sets nor columns of all series at once.
#[derive(Default)]
pub struct CutPlan {
    /// Every label string of those series, sorted (the block's symbol table), as
    /// `(start, len)` in `text`.
    spans: Vec<(u32, u32)>,
    text: String,
    /// The series: ref, and where its label set lies in `ids`.
    series: Vec<(SeriesRef, u32, u32)>,
    /// The label sets as `(name, value)` positions in `symbols`, flattened.
    ids: Vec<u32>,
}

impl CutPlan {
    /// The block's symbol table: every label string of the series, sorted.
    pub fn symbols(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.spans
            .iter()
            .map(|&(start, len)| &self.text[start as usize..(start + len) as usize])
    }

    pub fn symbol(&self, i: u32) -> &str {
        let (start, len) = self.spans[i as usize];
        &self.text[start as usize..(start + len) as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series in label-set order, with their label sets as positions in `symbols`.
    pub fn series(&self) -> impl ExactSizeIterator<Item = (SeriesRef, &[u32])> + Clone {
        self.series
            .iter()
            .map(|&(r, at, len)| (r, &self.ids[at as usize..(at + len) as usize]))
    }
}

/// Columns of some series of a cut: `bytes[span]` each, None for a series with no
/// samples in the range (any more).
#[derive(Default)]
pub struct CutBatch {
    pub bytes: Vec<u8>,
    pub columns: Vec<Option<CutColumn>>,
}

pub struct CutColumn {
    pub span: std::ops::Range<usize>,
    pub samples: u64,
    pub min_t: i64,
    pub max_t: i64,
}

/// The series' in-order chunks with samples in `[mint, maxt)`, into `parts`, when each of
/// them lies wholly inside and no out-of-order sample falls there; with the first and last
/// sample's time (None: no samples there). None when the chunks must be decoded instead.
fn whole_chunks<'a>(
    s: &'a MemSeries,
    mint: i64,
    maxt: i64,
    parts: &mut Vec<ChunkParts<'a>>,
) -> Option<Option<(i64, i64)>> {
    parts.clear();
    if s.ooo.iter().any(|(t, _)| *t >= mint && *t < maxt) {
        return None;
    }
    let (mut first, mut last) = (None, None);
    for c in s.chunks.iter().filter(|c| c.min_t < maxt && c.max_t >= mint) {
        if c.min_t < mint || c.max_t >= maxt {
            return None;
        }
        parts.push(ChunkParts::split(c.bytes())?);
        first = first.or(Some(c.min_t));
        last = Some(c.max_t);
    }
    if let (Some(f), Some(l)) = (s.open.first_time(), s.open.last_time())
        && f < maxt
        && l >= mint
    {
        if f < mint || l >= maxt {
            return None;
        }
        parts.push(s.open.parts()?);
        first = first.or(Some(f));
        last = Some(l);
    }
    Some(first.zip(last))
}

impl MemSeries {
    /// Whether a chunk or out-of-order sample of the series overlaps `[mint, maxt]`.
    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.chunks.iter().any(|c| c.min_t <= maxt && c.max_t >= mint)
            || (self.open.first_time().is_some_and(|f| f <= maxt) && self.open.last_time().is_some_and(|l| l >= mint))
            || self.ooo.iter().any(|(t, _)| *t >= mint && *t <= maxt)
    }

    /// Samples in `[mint, maxt]`, in-order chunks merged with out-of-order ones.
    pub(crate) fn samples(&self, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let closed = self
            .chunks
            .iter()
            .filter(|c| c.min_t <= maxt && c.max_t >= mint)
            .flat_map(|c| c.iter());
        let open_overlaps =
            self.open.first_time().is_some_and(|f| f <= maxt) && self.open.last_time().is_some_and(|l| l >= mint);
        let open = open_overlaps.then(|| self.open.iter()).into_iter().flatten();
        let mut out: Vec<(i64, f64)> = closed.chain(open).filter(|(t, _)| *t >= mint && *t <= maxt).collect();
        let ooo: Vec<(i64, f64)> = self
            .ooo
            .iter()
            .copied()
            .filter(|(t, _)| *t >= mint && *t <= maxt)
            .collect();
        if !ooo.is_empty() {
            out.extend(ooo);
            out.sort_by_key(|(t, _)| *t);
            out.dedup_by_key(|(t, _)| *t);
        }
        out
    }
}

impl Head {
    /// Series matching all `matchers` that have samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let g = self.inner.read().unwrap();
        let mut out = Vec::new();
        let mut shared = SharedStrings::default();
        for r in g.postings.select(matchers, &g.symbols) {
            let Some(s) = g.series.get(r) else { continue };
            let samples = s.samples(mint, maxt);
            if !samples.is_empty() {
                out.push(SeriesSamples {
                    series_ref: r,
                    labels: g.symbols.labels(&s.labels, &mut shared),
                    samples,
                });
            }
        }
        out
    }

    /// Label sets of the series matching `matchers` (regardless of samples).
    pub fn series_labels(&self, matchers: &[Matcher]) -> Vec<Labels> {
        let g = self.inner.read().unwrap();
        let mut shared = SharedStrings::default();
        g.postings
            .select(matchers, &g.symbols)
            .iter()
            .filter_map(|r| g.series.get(*r))
            .map(|s| g.symbols.labels(&s.labels, &mut shared))
            .collect()
    }

    pub fn label_names(&self) -> Vec<Arc<str>> {
        let g = self.inner.read().unwrap();
        g.postings.label_names(&g.symbols)
    }

    pub fn label_values(&self, name: &str) -> Vec<Arc<str>> {
        let g = self.inner.read().unwrap();
        g.postings.label_values(name, &g.symbols)
    }

    /// The series with samples in `[mint, maxt)` (or chunks overlapping it), sorted by
    /// label set, for [`Head::cut_columns`]. The read lock is held only to copy refs,
    /// symbol ids and strings; sorting happens after.
    pub fn plan_cut(&self, mint: i64, maxt: i64) -> CutPlan {
        let mut refs: Vec<(SeriesRef, u32, u32)> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        // (start, len in `text`, symbol id)
        let mut strings: Vec<(u32, u32, u32)> = Vec::new();
        let mut text = String::new();
        let slots;
        {
            let g = self.inner.read().unwrap();
            slots = g.symbols.slots();
            // Sized exactly (a count first): grown by doubling, these took ~120 bytes a
            // series at the cut, the daemon's peak of memory.
            let (mut n, mut n_ids) = (0, 0);
            for s in g.series.values().filter(|s| s.overlaps(mint, maxt - 1)) {
                n += 1;
                n_ids += s.labels.ids().len();
            }
            refs.reserve_exact(n);
            ids.reserve_exact(n_ids);
            strings.reserve_exact(n_ids.min(slots));
            text.reserve_exact(g.symbols.text_bytes());
            let mut seen = vec![false; slots];
            for (r, s) in g.series.iter() {
                if !s.overlaps(mint, maxt - 1) {
                    continue;
                }
                let l = s.labels.ids();
                refs.push((r, ids.len() as u32, l.len() as u32));
                ids.extend_from_slice(l);
                for &id in l {
                    if !std::mem::replace(&mut seen[id as usize], true) {
                        let s = g.symbols.get(id);
                        strings.push((text.len() as u32, s.len() as u32, id));
                        text.push_str(s);
                    }
                }
            }
        }
        let str_of = |&(start, len, _): &(u32, u32, u32)| &text[start as usize..(start + len) as usize];
        strings.sort_unstable_by(|a, b| str_of(a).cmp(str_of(b)));
        let mut rank = vec![0u32; slots];
        for (i, (_, _, id)) in strings.iter().enumerate() {
            rank[*id as usize] = i as u32;
        }
        for id in &mut ids {
            *id = rank[*id as usize];
        }
        let at = |&(_, start, len): &(SeriesRef, u32, u32)| &ids[start as usize..(start + len) as usize];
        refs.sort_unstable_by(|a, b| at(a).cmp(at(b)));
        CutPlan {
            spans: strings.into_iter().map(|(start, len, _)| (start, len)).collect(),
            text,
            series: refs,
            ids,
        }
    }

    /// The columns of `refs` (series of a [`CutPlan`]) for `[mint, maxt)`, into `out`,
    /// one per ref. A series whose chunks all lie inside the range (the usual case:
    /// [`Head::apply`] cuts chunks at multiples of the chunk range) has them copied as
    /// they are; one with out-of-order samples there, or a chunk straddling the range's
    /// edge, is decoded and encoded again.
    pub fn cut_columns(&self, refs: impl Iterator<Item = SeriesRef>, mint: i64, maxt: i64, out: &mut CutBatch) {
        out.bytes.clear();
        out.columns.clear();
        let g = self.inner.read().unwrap();
        let mut parts: Vec<ChunkParts> = Vec::new();
        for r in refs {
            let Some(s) = g.series.get(r) else {
                out.columns.push(None);
                continue;
            };
            let start = out.bytes.len();
            let (samples, min_t, max_t) = if let Some(chunks) = whole_chunks(s, mint, maxt, &mut parts) {
                let Some((min_t, max_t)) = chunks else {
                    out.columns.push(None);
                    continue;
                };
                (column_from_chunks(&mut out.bytes, &parts), min_t, max_t)
            } else {
                let samples = s.samples(mint, maxt - 1);
                let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
                    out.columns.push(None);
                    continue;
                };
                let ts: Vec<i64> = samples.iter().map(|x| x.0).collect();
                let vs: Vec<f64> = samples.iter().map(|x| x.1).collect();
                out.bytes.extend_from_slice(&encode_stream_column(&ts, &vs));
                (samples.len() as u64, first.0, last.0)
            };
            out.columns.push(Some(CutColumn {
                span: start..out.bytes.len(),
                samples,
                min_t,
                max_t,
            }));
        }
    }

    /// Drops every sample before `t` (it is in a block now) and series that are left
    /// empty and unpinned; returns the refs of the removed series (for the WAL).
    pub fn truncate_before(&self, t: i64) -> Vec<SeriesRef> {
        let mut g = self.inner.write().unwrap();
        let inner = &mut *g;
        inner.min_valid_t = inner.min_valid_t.max(t);
        let range = self.chunk_range_ms;
        inner.arena.retire_before(t.div_euclid(range));
        let mut removed = Vec::new();
        for (r, s) in inner.series.iter_mut() {
            s.ooo.retain(|(st, _)| *st >= t);
            if s.first_time().is_some_and(|f| f < t) {
                drop_before(s, t, &mut inner.arena, range);
            }
            if s.is_empty() && s.pins == 0 {
                removed.push(r);
            }
        }
        for r in &removed {
            inner.remove_series(*r);
        }
        inner.series.shrink();
        inner.min_t = inner
            .series
            .values()
            .filter_map(|s| s.first_time().into_iter().chain(s.ooo.first().map(|(t, _)| *t)).min())
            .min()
            .unwrap_or(i64::MAX);
        if inner.series.is_empty() {
            inner.max_t = i64::MIN;
        }
        self.stats
            .series_removed
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        removed
    }
}

/// Removes samples before `t` from a series' chunks: whole chunks are dropped, the
/// one chunk straddling `t` is re-encoded.
fn drop_before(s: &mut MemSeries, t: i64, arena: &mut ChunkArena, range_ms: i64) {
    s.chunks.retain(|c| c.max_t >= t);
    if let Some(first) = s.chunks.first()
        && first.min_t < t
    {
        let mut n = HeadChunk::new();
        for (st, v) in first.iter().filter(|(st, _)| *st >= t) {
            n.append(st, v);
        }
        match ClosedChunk::freeze(&n, arena, range_ms) {
            Some(c) => s.chunks[0] = c,
            None => {
                s.chunks.remove_first();
            }
        }
    }
    if s.open.first_time().is_some_and(|f| f < t) {
        let mut n = HeadChunk::new();
        for (st, v) in s.open.iter().filter(|(st, _)| *st >= t) {
            n.append(st, v);
        }
        s.open = n;
    }
    if s.open.is_empty() && s.chunks.is_empty() && s.ooo.is_empty() {
        // Every sample is gone; forgetting `last` lets the series start afresh (appends
        // before the cut are rejected by the head's min valid time anyway).
        s.set_last(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_plan_is_allocated_at_its_size() {
        let h = Head::new(0, 120_000);
        for i in 0..1000 {
            let (r, _) = h.get_or_create(&[("__name__", "m"), ("i", &i.to_string()), ("job", "j")]);
            h.append(&[(r, 1000, 1.0)]);
        }
        let (old, _) = h.get_or_create(&[("__name__", "old")]);
        h.append(&[(old, 200_000, 1.0)]);
        let plan = h.plan_cut(0, 120_000);
        assert_eq!(plan.series().len(), 1000, "the series outside the range are not in it");
        assert_eq!((plan.series.capacity(), plan.ids.capacity()), (1000, 6000));
        assert_eq!(
            plan.spans.len(),
            1000 + 5,
            "__name__, m, i, job, j and the 1,000 values"
        );
        assert!(plan.spans.capacity() <= 6000 && plan.text.capacity() == plan.text.len() + "old".len());
    }
}
