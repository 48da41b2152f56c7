//! The head: the most recent samples of every series, in memory, in compressed
//! chunks, with the postings index over its series. Everything appended here has
//! been written to the WAL first (by the `Db`), so the head can be rebuilt after a
//! crash. Full time ranges are cut into blocks and dropped from the head.
//!
//! Split by concern: [`append`] (new series, samples, out-of-order and duplicate
//! rules), [`read`] (select series and samples for queries), this file (the types).

mod append;
mod arena;
mod read;
mod series_map;

pub use append::{AppendOutcome, Pinned, Rejected};
pub use read::{CutBatch, CutColumn, CutPlan, SeriesSamples};

use crate::chunk::{HeadChunk, HeadIter, iter_bytes};
use crate::labels::{SymLabels, Symbols};
use crate::postings::{Postings, SeriesRef};
use arena::{ChunkArena, PagedBytes};
use series_map::SeriesMap;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

/// `# TYPE` / `# HELP` / `# UNIT` of a metric family, by sample name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The family a sample name belongs to (`x` for `x_bucket`).
    pub family: String,
    /// Text-format type: counter, gauge, histogram, summary, untyped.
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// A full chunk, frozen: its bytes and time range only. The encoder state of a
/// [`HeadChunk`] is dropped, and its bytes are copied into the pages of its range
/// ([`ChunkArena`]), whose cut frees them all at once.
pub(crate) struct ClosedChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    bytes: PagedBytes,
}

impl ClosedChunk {
    /// Copies the chunk into `arena`, in the pages of its range (`range_ms` long); `None`
    /// for an empty chunk.
    pub(crate) fn freeze(c: &HeadChunk, arena: &mut ChunkArena, range_ms: i64) -> Option<Self> {
        let min_t = c.first_time()?;
        let parts = c.parts()?;
        Some(ClosedChunk {
            min_t,
            max_t: c.last_time()?,
            bytes: arena.store(min_t.div_euclid(range_ms), &[&parts.header, parts.stream]),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.get()
    }

    pub(crate) fn iter(&self) -> HeadIter<'_> {
        iter_bytes(self.bytes())
    }
}

/// One per active series, so every field counts: 200 bytes (a 208-byte heap block)
/// where `Vec`s and `Option`s made it 232 (240).
pub(crate) struct MemSeries {
    pub(crate) labels: SymLabels,
    /// Full chunks, oldest first.
    pub(crate) chunks: ClosedChunks,
    /// The chunk being appended to.
    pub(crate) open: HeadChunk,
    /// Samples older than the series' newest, accepted within the out-of-order
    /// window; sorted by time, merged when the range is cut into a block.
    pub(crate) ooo: OooSamples,
    /// The newest in-order sample ([`NO_SAMPLE`] as its time: none).
    last_t: i64,
    last_v: f64,
    /// Holders of the ref (scrape tables); a pinned series is never garbage-collected.
    pub(crate) pins: u32,
}

/// `MemSeries::last_t` of a series without samples; appends at this time are refused.
pub(crate) const NO_SAMPLE: i64 = i64::MIN;

/// A series' closed chunks: usually one or two, so a boxed slice (16 bytes, exactly
/// sized) rather than a `Vec` (24, and its first allocation holds four).
#[derive(Default)]
pub(crate) struct ClosedChunks(Box<[ClosedChunk]>);

impl ClosedChunks {
    pub(crate) fn push(&mut self, c: ClosedChunk) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        v.reserve_exact(1);
        v.push(c);
        self.0 = v.into_boxed_slice();
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&ClosedChunk) -> bool) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        v.retain(keep);
        self.0 = v.into_boxed_slice();
    }

    pub(crate) fn remove_first(&mut self) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        v.remove(0);
        self.0 = v.into_boxed_slice();
    }
}

impl std::ops::Deref for ClosedChunks {
    type Target = [ClosedChunk];
    fn deref(&self) -> &[ClosedChunk] {
        &self.0
    }
}

impl std::ops::DerefMut for ClosedChunks {
    fn deref_mut(&mut self) -> &mut [ClosedChunk] {
        &mut self.0
    }
}

/// Out-of-order samples, sorted by time: rare, so 8 bytes a series while there are none.
// The box keeps the field at 8 bytes for the many series without any.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub(crate) struct OooSamples(Option<Box<Vec<(i64, f64)>>>);

impl OooSamples {
    pub(crate) fn insert(&mut self, i: usize, s: (i64, f64)) {
        self.0.get_or_insert_default().insert(i, s);
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&(i64, f64)) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.capacity())
    }
}

impl std::ops::Deref for OooSamples {
    type Target = [(i64, f64)];
    fn deref(&self) -> &[(i64, f64)] {
        self.0.as_deref().map_or(&[], |v| v)
    }
}

impl MemSeries {
    fn new(labels: SymLabels) -> Self {
        MemSeries {
            labels,
            chunks: ClosedChunks::default(),
            open: HeadChunk::new(),
            ooo: OooSamples::default(),
            last_t: NO_SAMPLE,
            last_v: 0.0,
            pins: 0,
        }
    }

    /// The newest in-order sample.
    pub(crate) fn last(&self) -> Option<(i64, f64)> {
        (self.last_t != NO_SAMPLE).then_some((self.last_t, self.last_v))
    }

    pub(crate) fn set_last(&mut self, last: Option<(i64, f64)>) {
        (self.last_t, self.last_v) = last.unwrap_or((NO_SAMPLE, 0.0));
    }

    /// For prefetching the series before it is used.
    pub(crate) fn last_addr(&self) -> &i64 {
        &self.last_t
    }

    /// The oldest in-order sample's time.
    pub(crate) fn first_time(&self) -> Option<i64> {
        self.chunks.first().map(|c| c.min_t).or_else(|| self.open.first_time())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_t == NO_SAMPLE && self.ooo.is_empty()
    }

    /// Not counting closed chunks' bytes: those are in the head's [`ChunkArena`].
    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.chunks.len() * std::mem::size_of::<ClosedChunk>()
            + self.labels.ids().len() * 4
            + self.open.memory_bytes()
            + self.ooo.capacity() * 16
            + if self.ooo.capacity() > 0 { 24 } else { 0 }
    }
}

/// 2^64 / φ: multiplying a ref by it spreads a run of refs evenly over the top bits
/// (Fibonacci hashing), for [`RefHasher`] and [`SeriesMap`].
pub(crate) const FIB_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Series refs are dense integers: hash them with one multiply.
#[derive(Default)]
pub(crate) struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | *b as u64).wrapping_mul(FIB_MUL);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(FIB_MUL);
    }
}

pub(crate) type RefMap<V> = HashMap<SeriesRef, V, BuildHasherDefault<RefHasher>>;

#[derive(Default)]
pub(crate) struct Inner {
    /// Refs by the hash of their label set's ids ([`Symbols::hash_ids`]).
    pub(crate) by_labels: hashbrown::HashTable<SeriesRef>,
    /// Boxed, so the table stays small (16 bytes a slot) and a series can be prefetched
    /// by address once its slot is in cache.
    pub(crate) series: SeriesMap,
    pub(crate) postings: Postings,
    pub(crate) symbols: Symbols,
    /// Closed chunks' bytes.
    pub(crate) arena: ChunkArena,
    pub(crate) meta: HashMap<String, Metadata>,
    pub(crate) next_ref: SeriesRef,
    /// Oldest and newest sample time in the head (i64::MAX / i64::MIN when empty).
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    /// Samples before this time belong to blocks already written.
    pub(crate) min_valid_t: i64,
}

/// Counters for sonde's own /metrics.
#[derive(Default)]
pub struct HeadStats {
    pub samples_appended: AtomicU64,
    pub out_of_order_accepted: AtomicU64,
    pub rejected_out_of_order: AtomicU64,
    pub rejected_duplicate: AtomicU64,
    pub rejected_future: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
}

pub struct Head {
    pub(crate) inner: RwLock<Inner>,
    /// How far behind the head's newest sample an out-of-order sample may be.
    pub(crate) ooo_window_ms: i64,
    /// Chunks never span a multiple of this (the block range), so cutting a block copies
    /// whole chunks.
    pub(crate) chunk_range_ms: i64,
    pub stats: HeadStats,
}

impl Head {
    /// A head accepting out-of-order samples up to `ooo_window_ms` behind its newest one,
    /// whose chunks are cut at multiples of `chunk_range_ms` (the block range).
    pub fn new(ooo_window_ms: i64, chunk_range_ms: i64) -> Self {
        let inner = Inner {
            min_t: i64::MAX,
            max_t: i64::MIN,
            min_valid_t: i64::MIN,
            next_ref: 1,
            ..Default::default()
        };
        Head {
            inner: RwLock::new(inner),
            ooo_window_ms,
            chunk_range_ms: chunk_range_ms.max(1),
            stats: HeadStats::default(),
        }
    }

    /// Samples before this time belong to blocks (appends there are rejected).
    pub fn min_valid_time(&self) -> i64 {
        self.inner.read().unwrap().min_valid_t
    }

    pub fn contains(&self, r: SeriesRef) -> bool {
        self.inner.read().unwrap().series.contains_key(r)
    }

    /// Removes series by ref (WAL replay of a `Dropped` record).
    pub fn drop_series(&self, refs: &[SeriesRef]) {
        let mut g = self.inner.write().unwrap();
        for r in refs {
            g.remove_series(*r);
        }
    }

    pub fn num_series(&self) -> usize {
        self.inner.read().unwrap().series.len()
    }

    /// (oldest, newest) sample time, or None when the head is empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let g = self.inner.read().unwrap();
        (g.min_t <= g.max_t).then_some((g.min_t, g.max_t))
    }

    /// Heap bytes held by series data (chunks, out-of-order buffers, series structs, label
    /// ids), the series table, the closed chunks' pages and the label strings.
    pub fn memory_bytes(&self) -> usize {
        let g = self.inner.read().unwrap();
        g.series.values().map(|s| s.memory_bytes()).sum::<usize>()
            + g.series.memory_bytes()
            + g.arena.memory_bytes()
            + g.symbols.memory_bytes()
    }

    pub fn num_chunks(&self) -> usize {
        self.inner
            .read()
            .unwrap()
            .series
            .values()
            .map(|s| s.chunks.len() + 1)
            .sum()
    }

    pub fn set_metadata(&self, sample_name: &str, meta: Metadata) {
        let mut g = self.inner.write().unwrap();
        if g.meta.get(sample_name) != Some(&meta) {
            g.meta.insert(sample_name.to_string(), meta);
        }
    }

    pub fn metadata(&self, sample_name: &str) -> Option<Metadata> {
        self.inner.read().unwrap().meta.get(sample_name).cloned()
    }

    pub fn all_metadata(&self) -> Vec<(String, Metadata)> {
        self.inner
            .read()
            .unwrap()
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::{MatchOp, Matcher};

    const TEST_RANGE: i64 = 120_000;

    fn name_is(n: &str) -> Vec<Matcher> {
        vec![Matcher::new(MatchOp::Equal, "__name__", n)]
    }

    #[test]
    fn in_order_samples_across_many_chunks_read_back() {
        let h = Head::new(0, TEST_RANGE);
        let (r, created) = h.get_or_create(&[("__name__", "m"), ("a", "1")]);
        assert!(created);
        let samples: Vec<_> = (0..1000).map(|i| (r, 1000 * i, i as f64 * 0.5)).collect();
        assert!(h.append(&samples).iter().all(|o| *o == AppendOutcome::Appended));
        let got = h.select(&name_is("m"), 0, i64::MAX);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples,
            samples.iter().map(|(_, t, v)| (*t, *v)).collect::<Vec<_>>()
        );
        assert_eq!(h.select(&name_is("m"), 10_000, 12_000)[0].samples.len(), 3);
        assert!(h.num_chunks() > 1, "chunks are cut");
        assert_eq!(h.time_range(), Some((0, 999_000)));
    }

    #[test]
    fn duplicates_like_prometheus() {
        let h = Head::new(0, TEST_RANGE);
        let (r, _) = h.get_or_create(&[("__name__", "m")]);
        h.append(&[(r, 1000, 1.0)]);
        assert_eq!(h.append(&[(r, 1000, 1.0)]), vec![AppendOutcome::Ignored]);
        assert_eq!(
            h.append(&[(r, 1000, 2.0)]),
            vec![AppendOutcome::Rejected(Rejected::Duplicate)]
        );
        assert_eq!(
            h.append(&[(r, 500, 2.0)]),
            vec![AppendOutcome::Rejected(Rejected::OutOfOrder)]
        );
        assert_eq!(h.stats.rejected_duplicate.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            h.stats.rejected_out_of_order.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn out_of_order_within_the_window_is_merged_on_read() {
        let h = Head::new(10_000, TEST_RANGE);
        let (r, _) = h.get_or_create(&[("__name__", "m")]);
        h.append(&[(r, 20_000, 2.0), (r, 30_000, 3.0)]);
        assert_eq!(h.append(&[(r, 25_000, 2.5)]), vec![AppendOutcome::Appended]);
        assert_eq!(h.append(&[(r, 25_000, 2.5)]), vec![AppendOutcome::Ignored]);
        assert_eq!(
            h.append(&[(r, 25_000, 9.0)]),
            vec![AppendOutcome::Rejected(Rejected::Duplicate)]
        );
        assert_eq!(
            h.append(&[(r, 19_000, 1.0)]),
            vec![AppendOutcome::Rejected(Rejected::OutOfOrder)],
            "outside window"
        );
        let got = &h.select(&name_is("m"), 0, i64::MAX)[0].samples;
        assert_eq!(got, &vec![(20_000, 2.0), (25_000, 2.5), (30_000, 3.0)]);
    }

    #[test]
    fn one_batch_may_carry_several_samples_of_a_series() {
        let h = Head::new(0, TEST_RANGE);
        let (r, _) = h.get_or_create(&[("__name__", "m")]);
        let out = h.append(&[(r, 1, 1.0), (r, 2, 2.0), (r, 2, 3.0), (r, 1, 1.0)]);
        assert_eq!(
            out,
            vec![
                AppendOutcome::Appended,
                AppendOutcome::Appended,
                AppendOutcome::Rejected(Rejected::Duplicate),
                AppendOutcome::Rejected(Rejected::OutOfOrder)
            ]
        );
    }

    #[test]
    fn truncation_drops_old_samples_and_unpinned_empty_series() {
        let h = Head::new(0, TEST_RANGE);
        let (a, _) = h.get_or_create(&[("__name__", "a")]);
        let (b, _) = h.get_or_create(&[("__name__", "b")]);
        h.append(&(0..300).map(|i| (a, i * 1000, i as f64)).collect::<Vec<_>>());
        h.append(&[(b, 1000, 1.0)]);
        h.release(b);
        let removed = h.truncate_before(150_000);
        assert_eq!(removed, vec![b]);
        {
            let g = h.inner.read().unwrap();
            assert!(g.symbols.find("b").is_none(), "its label strings went with it");
            assert!(g.symbols.find("a").is_some() && g.symbols.find("__name__").is_some());
            assert_eq!(g.by_labels.len(), 1);
        }
        let got = &h.select(&name_is("a"), 0, i64::MAX)[0].samples;
        assert_eq!(got.first(), Some(&(150_000, 150.0)));
        assert_eq!(got.len(), 150);
        assert_eq!(h.time_range(), Some((150_000, 299_000)));
        assert_eq!(
            h.append(&[(a, 100_000, 1.0)]),
            vec![AppendOutcome::Rejected(Rejected::OutOfOrder)]
        );
        let (b2, created) = h.get_or_create(&[("__name__", "b")]);
        assert!(created && b2 != b, "a removed series gets a new ref");
    }

    #[test]
    fn truncation_frees_the_pages_of_the_ranges_before_it() {
        let h = Head::new(0, TEST_RANGE);
        let refs: Vec<_> = (0..200)
            .map(|i| h.get_or_create(&[("__name__", "m"), ("i", &i.to_string())]).0)
            .collect();
        // Three ranges at 1 s: the chunks of the first two are closed, into pages.
        for t in (0..3 * TEST_RANGE).step_by(1000) {
            h.append(&refs.iter().map(|&r| (r, t, (t / 1000) as f64)).collect::<Vec<_>>());
        }
        let pages = || h.inner.read().unwrap().arena.memory_bytes();
        assert!(pages() > 200 * 100, "{}", pages());
        h.truncate_before(2 * TEST_RANGE);
        assert_eq!(pages(), 0, "only open chunks are left, and they are not in pages");
        assert_eq!(h.select(&name_is("m"), 0, i64::MAX)[0].samples.len(), 120);
    }

    /// A series of a cut: metric name, the column's first byte, its samples decoded.
    type CutOut = (String, u8, Vec<(i64, f64)>);

    /// The series of a cut of `[lo, hi)`, in plan order.
    fn decode_cut(h: &Head, lo: i64, hi: i64) -> Vec<CutOut> {
        let plan = h.plan_cut(lo, hi);
        let mut batch = CutBatch::default();
        h.cut_columns(plan.series().map(|(r, _)| r), lo, hi, &mut batch);
        plan.series()
            .zip(&batch.columns)
            .filter_map(|((_, ids), col)| {
                let c = col.as_ref()?;
                let col = &batch.bytes[c.span.clone()];
                let (ts, vs) = crate::chunk::decode_columns(col).unwrap();
                assert_eq!(c.samples as usize, ts.len());
                assert_eq!((c.min_t, c.max_t), (ts[0], ts[ts.len() - 1]));
                let name = ids.chunks(2).find(|p| plan.symbol(p[0]) == "__name__").unwrap()[1];
                Some((plan.symbol(name).to_string(), col[0], ts.into_iter().zip(vs).collect()))
            })
            .collect()
    }

    /// Samples one millisecond either side of range edges (negative times too), appended
    /// a timestamp at a time for several series, as scrapes append them.
    #[test]
    fn a_sample_at_a_range_start_opens_a_chunk_and_one_just_before_does_not() {
        let h = Head::new(0, TEST_RANGE);
        let refs: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| h.get_or_create(&[("__name__", n)]).0)
            .collect();
        let r = TEST_RANGE;
        let times = [-r - 1, -r, -1, 0, 1, r - 1, r, 2 * r - 1, 2 * r];
        for (i, &t) in times.iter().enumerate() {
            let batch: Vec<_> = refs.iter().map(|&s| (s, t, i as f64)).collect();
            h.append(&batch);
        }
        let g = h.inner.read().unwrap();
        for &s in &refs {
            let s = g.series.get(s).unwrap();
            let spans: Vec<(i64, i64)> = s.chunks.iter().map(|c| (c.min_t, c.max_t)).collect();
            // The ranges hold [-r-1], [-r, -1], [0, r-1], [r, 2r-1]; the last sample is
            // in the open chunk.
            assert_eq!(spans, vec![(-r - 1, -r - 1), (-r, -1), (0, r - 1), (r, 2 * r - 1)]);
            assert_eq!(s.open.first_time(), Some(2 * r));
        }
    }

    #[test]
    fn chunks_end_at_range_boundaries_and_cuts_copy_them() {
        let h = Head::new(0, TEST_RANGE);
        let (a, _) = h.get_or_create(&[("__name__", "a")]);
        let (b, _) = h.get_or_create(&[("__name__", "b")]);
        // a: every 700 ms for 3 ranges (several chunks per range, none across an edge);
        // b: one sample in the first range only (its open chunk is cut whole).
        let samples: Vec<_> = (0..514).map(|i| (a, 700 * i, i as f64)).collect();
        h.append(&samples);
        h.append(&[(b, 5_000, 1.5)]);
        {
            let g = h.inner.read().unwrap();
            let s = g.series.get(a).unwrap();
            assert!(s.chunks.len() >= 4);
            for c in s.chunks.iter() {
                assert_eq!(
                    c.min_t.div_euclid(TEST_RANGE),
                    c.max_t.div_euclid(TEST_RANGE),
                    "chunk spans an edge"
                );
            }
        }
        let want: Vec<_> = samples
            .iter()
            .map(|s| (s.1, s.2))
            .filter(|s| (TEST_RANGE..2 * TEST_RANGE).contains(&s.0))
            .collect();
        let cut = decode_cut(&h, TEST_RANGE, 2 * TEST_RANGE);
        assert_eq!(
            cut,
            vec![("a".to_string(), 0x03, want)],
            "several chunks copied as a list"
        );
        let first = decode_cut(&h, 0, TEST_RANGE);
        assert_eq!((&first[1].0, &first[1].2), (&"b".to_string(), &vec![(5_000, 1.5)]));
    }

    #[test]
    fn a_cut_merges_out_of_order_samples_and_straddling_chunks() {
        let h = Head::new(60_000, TEST_RANGE);
        let (r, _) = h.get_or_create(&[("__name__", "m")]);
        let mut want: Vec<(i64, f64)> = (0..200).map(|i| (i * 1000 + 500, i as f64)).collect();
        h.append(&want.iter().map(|&(t, v)| (r, t, v)).collect::<Vec<_>>());
        assert_eq!(h.append(&[(r, 150_000, 0.25)]), vec![AppendOutcome::Appended]);
        want.push((150_000, 0.25));
        want.sort_by_key(|s| s.0);
        // The out-of-order sample is in the range; so is a cut through the middle of chunks.
        for (lo, hi) in [(TEST_RANGE, 2 * TEST_RANGE), (50_000, 170_000)] {
            let got: Vec<_> = decode_cut(&h, lo, hi).into_iter().map(|(n, _, s)| (n, s)).collect();
            let expect: Vec<_> = want.iter().copied().filter(|s| (lo..hi).contains(&s.0)).collect();
            assert_eq!(got, vec![("m".to_string(), expect)]);
        }
    }

    #[test]
    fn a_series_costs_at_most_a_208_byte_block_and_the_oldest_time_is_refused() {
        // glibc hands out 16-byte multiples with 8 bytes of header: 200 fits in 208.
        assert!(
            std::mem::size_of::<MemSeries>() <= 200,
            "{}",
            std::mem::size_of::<MemSeries>()
        );
        let h = Head::new(60_000, TEST_RANGE);
        let (r, _) = h.get_or_create(&[("__name__", "m")]);
        assert_eq!(
            h.append(&[(r, i64::MIN, 1.0)]),
            vec![AppendOutcome::Rejected(Rejected::OutOfOrder)]
        );
        assert_eq!(h.append(&[(r, 5, 1.0), (r, 3, 2.0)]), vec![AppendOutcome::Appended; 2]);
        assert_eq!(h.select(&name_is("m"), 0, 10)[0].samples, vec![(3, 2.0), (5, 1.0)]);
    }

    #[test]
    fn staleness_markers_survive_storage() {
        let h = Head::new(0, TEST_RANGE);
        let (r, _) = h.get_or_create(&[("__name__", "m")]);
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        h.append(&[(r, 1, 1.0), (r, 2, stale), (r, 3, f64::NAN)]);
        let got = &h.select(&name_is("m"), 0, 10)[0].samples;
        assert_eq!(got[1].1.to_bits(), stale.to_bits());
        assert_ne!(got[2].1.to_bits(), stale.to_bits());
    }
}
