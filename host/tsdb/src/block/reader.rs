//! Reading a block. `meta.json` and the block's metric names stay in memory; the index
//! is read and checked at open, then decoded again when a query needs it. A query whose
//! metric name the block lacks skips it without reading the index. An index used twice
//! within [`INDEX_REUSE`] is kept, with postings built on first use, while queries keep
//! using it: [`Block::evict_idle_index`] drops it after a while without queries.
//! Keeping every block's label sets and postings resident would cost more memory per
//! series than the head; decoding a 20k-series index per query cost ~5 ms.

use super::index::{Entry, Index, LabelIds};
use super::{BlockError, CHUNKS_FILE, INDEX_FILE, META_FILE, Meta};
use crate::chunk::decode_columns_in;
use crate::head::SeriesSamples;
use crate::labels::Labels;
use crate::postings::matcher_matches;
use promql_parser::label::Matcher;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Block {
    pub dir: PathBuf,
    pub meta: Meta,
    chunks: std::fs::File,
    /// Bytes on disk (index + chunks + meta).
    pub size: u64,
    /// The values of `__name__` in the block, sorted ("" when a series has none).
    names: Box<[Box<str>]>,
    cached: Mutex<Cached>,
}

/// The decoded index while queries use it, and when a query last needed it.
#[derive(Default)]
struct Cached {
    index: Option<Arc<BlockIndex>>,
    used: Option<Instant>,
}

/// An index is kept once it is used again within this long. A rule group evaluated
/// every minute, as by default, would otherwise keep the index of every block its
/// look-back reaches resident (~50 bytes a series each) for queries a minute apart;
/// the panels of a dashboard, or rules evaluated more often, reuse it at once.
pub const INDEX_REUSE: Duration = Duration::from_secs(30);

/// A block's index, decoded.
pub struct BlockIndex {
    index: Index,
    /// Postings of the label names queries asked for, built on first use: a block's
    /// unique labels (an id, a path) are rarely matched on, and their postings would
    /// cost ~100 bytes a series in every index kept (rule evaluations keep the newest
    /// blocks' indexes resident).
    postings: Mutex<HashMap<u32, Arc<ValuePostings>>>,
}

/// For one label name: its values (symbols) with the positions of the series that
/// have them, ascending.
type ValuePostings = HashMap<u32, Vec<u32>>;

/// A matcher with its label name looked up in a block's symbols (None: no series has
/// the name, so its value is "" everywhere).
type Resolved<'m> = (&'m Matcher, Option<u32>);

impl BlockIndex {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// The value of the label named by symbol `name` of series `i` ("" when absent, as
    /// in Prometheus).
    fn value(&self, i: usize, name: Option<u32>) -> &str {
        self.value_id(i, name).map_or("", |v| self.index.symbol(v))
    }

    /// The symbol of that value (None when absent).
    fn value_id(&self, i: usize, name: Option<u32>) -> Option<u32> {
        let name = name?;
        self.index.label_ids(i).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn resolve<'m>(&self, matchers: &'m [Matcher]) -> Vec<Resolved<'m>> {
        matchers.iter().map(|m| (m, self.index.find_symbol(&m.name))).collect()
    }

    fn matches(&self, i: usize, matchers: &[Resolved<'_>]) -> bool {
        matchers
            .iter()
            .all(|(m, name)| matcher_matches(m, self.value(i, *name)))
    }

    /// The postings of label name `name` (a symbol).
    fn postings(&self, name: u32) -> Arc<ValuePostings> {
        let mut all = self.postings.lock().unwrap();
        all.entry(name)
            .or_insert_with(|| {
                let mut p = ValuePostings::new();
                for i in 0..self.index.len() {
                    if let Some((_, v)) = self.index.label_ids(i).find(|(n, _)| *n == name) {
                        p.entry(v).or_default().push(i as u32);
                    }
                }
                p.shrink_to_fit();
                Arc::new(p)
            })
            .clone()
    }

    /// Positions of the series matching all `matchers`: narrowed through the postings
    /// by every matcher that cannot match an empty value, then checked in full.
    fn select_positions(&self, matchers: &[Matcher]) -> Vec<usize> {
        let resolved = self.resolve(matchers);
        let mut candidates: Option<Vec<u32>> = None;
        for (m, name) in resolved.iter().filter(|(m, _)| !matcher_matches(m, "")) {
            let by_value = name.map(|n| self.postings(n));
            let mut set: Vec<u32> = match by_value.as_deref() {
                None => Vec::new(),
                Some(values) => match &m.op {
                    promql_parser::label::MatchOp::Equal => self
                        .index
                        .find_symbol(&m.value)
                        .and_then(|v| values.get(&v))
                        .cloned()
                        .unwrap_or_default(),
                    _ => {
                        let mut u: Vec<u32> = values
                            .iter()
                            .filter(|(v, _)| matcher_matches(m, self.index.symbol(**v)))
                            .flat_map(|(_, refs)| refs.iter().copied())
                            .collect();
                        u.sort_unstable();
                        u
                    }
                },
            };
            if let Some(c) = &candidates {
                set.retain(|x| c.binary_search(x).is_ok());
            }
            let empty = set.is_empty();
            candidates = Some(set);
            if empty {
                break;
            }
        }
        match candidates {
            Some(c) => c
                .into_iter()
                .map(|i| i as usize)
                .filter(|&i| self.matches(i, &resolved))
                .collect(),
            None => (0..self.index.len()).filter(|&i| self.matches(i, &resolved)).collect(),
        }
    }

    /// Positions of the series that match any of `sets` (every series when `sets` is
    /// empty) and have samples in `[mint, maxt]`: the series, label-name and
    /// label-value lookups of the API.
    pub fn matching(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<usize> {
        let in_range = |i: &usize| {
            let e = self.index.entry(*i);
            e.max_t >= mint && e.min_t <= maxt
        };
        if sets.is_empty() {
            return (0..self.index.len()).filter(in_range).collect();
        }
        let mut out: Vec<usize> = sets
            .iter()
            .flat_map(|set| self.select_positions(set))
            .filter(in_range)
            .collect();
        if sets.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// Where series `i`'s column lies and what it holds.
    pub fn entry(&self, i: usize) -> Entry {
        self.index.entry(i)
    }

    /// The label pairs of series `i`, sorted by name.
    pub fn label_pairs(&self, i: usize) -> impl Iterator<Item = (&str, &str)> {
        self.index
            .label_ids(i)
            .map(|(n, v)| (self.index.symbol(n), self.index.symbol(v)))
    }

    pub fn labels(&self, i: usize) -> Labels {
        Labels::from_pairs(self.label_pairs(i).map(|(n, v)| (Arc::from(n), Arc::from(v))).collect())
    }

    /// Series `i`'s label pairs as symbol numbers (see [`BlockIndex::symbol`]).
    pub fn label_ids(&self, i: usize) -> LabelIds<'_> {
        self.index.label_ids(i)
    }

    pub fn symbol_count(&self) -> usize {
        self.index.symbol_count()
    }

    /// Symbol `i`; symbols are numbered in string order.
    pub fn symbol(&self, i: u32) -> &str {
        self.index.symbol(i)
    }
}

impl Block {
    /// Opens a block, checking its meta and index (checksum, bounds) once.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let name = dir.display().to_string();
        let io = |source| BlockError::Io {
            dir: name.clone(),
            source,
        };
        let corrupt = |what: String| BlockError::Corrupt {
            dir: name.clone(),
            what,
        };
        let meta_bytes = std::fs::read(dir.join(META_FILE)).map_err(io)?;
        let meta: Meta = serde_json::from_slice(&meta_bytes).map_err(|e| corrupt(format!("meta.json: {e}")))?;
        let chunks = std::fs::File::open(dir.join(CHUNKS_FILE)).map_err(io)?;
        let chunks_len = chunks.metadata().map_err(io)?.len();
        let index_len = std::fs::metadata(dir.join(INDEX_FILE)).map_err(io)?.len();
        let mut block = Block {
            dir: dir.to_path_buf(),
            meta,
            chunks,
            size: chunks_len + index_len + meta_bytes.len() as u64,
            names: Box::default(),
            cached: Mutex::default(),
        };
        let idx = block.index()?;
        if (0..idx.len()).any(|i| {
            let e = idx.entry(i);
            e.offset.saturating_add(e.length) > chunks_len
        }) {
            return Err(corrupt("index points past the end of the chunks file".into()));
        }
        // Each series' name; "" for a series without one.
        let name = idx.index.find_symbol("__name__");
        let mut values: Vec<Option<u32>> = (0..idx.len()).map(|i| idx.value_id(i, name)).collect();
        values.sort_unstable();
        values.dedup();
        // Symbols are numbered in string order, and None sorts first: sorted strings.
        block.names = values
            .iter()
            .map(|v| v.map_or_else(Box::default, |v| Box::from(idx.index.symbol(v))))
            .collect();
        Ok(block)
    }

    /// Reads and decodes the index.
    pub fn index(&self) -> Result<BlockIndex, BlockError> {
        let name = self.dir.display().to_string();
        let bytes = std::fs::read(self.dir.join(INDEX_FILE)).map_err(|source| BlockError::Io {
            dir: name.clone(),
            source,
        })?;
        let index = Index::decode(bytes, self.meta.min_time).map_err(|what| BlockError::Corrupt { dir: name, what })?;
        Ok(BlockIndex {
            index,
            postings: Mutex::new(HashMap::new()),
        })
    }

    /// The decoded index for a query: the kept one, or decoded now and kept when the
    /// previous query was less than [`INDEX_REUSE`] ago.
    pub fn cached_index(&self) -> Result<Arc<BlockIndex>, BlockError> {
        let mut c = self.cached.lock().unwrap();
        let now = Instant::now();
        let reused = c.used.is_some_and(|used| now.duration_since(used) < INDEX_REUSE);
        c.used = Some(now);
        if let Some(idx) = &c.index {
            return Ok(idx.clone());
        }
        let idx = Arc::new(self.index()?);
        if reused {
            c.index = Some(idx.clone());
        }
        Ok(idx)
    }

    /// Drops the kept index when no query used it for `idle`; returns whether one is
    /// still kept.
    pub fn evict_idle_index(&self, idle: Duration) -> bool {
        let mut c = self.cached.lock().unwrap();
        if c.used.is_some_and(|used| used.elapsed() >= idle) {
            c.index = None;
        }
        c.index.is_some()
    }

    /// Whether a series of the block can match `matchers`, judged by the metric name
    /// alone.
    pub fn may_match(&self, matchers: &[Matcher]) -> bool {
        matchers.iter().filter(|m| m.name == "__name__").all(|m| match &m.op {
            promql_parser::label::MatchOp::Equal => {
                self.names.binary_search_by(|n| (**n).cmp(m.value.as_str())).is_ok()
            }
            _ => self.names.iter().any(|n| matcher_matches(m, n)),
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`. An unreadable
    /// index or column is skipped with a warning (the rest stays readable).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        if !self.may_match(matchers) {
            return Vec::new();
        }
        let idx = match self.cached_index() {
            Ok(idx) => idx,
            Err(e) => {
                tracing::warn!("{e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for i in idx.select_positions(matchers) {
            let e = idx.entry(i);
            if e.max_t < mint || e.min_t > maxt {
                continue;
            }
            match self.read_column(&e, mint, maxt) {
                Ok(samples) => {
                    let samples: Vec<(i64, f64)> =
                        samples.into_iter().filter(|(t, _)| *t >= mint && *t <= maxt).collect();
                    if !samples.is_empty() {
                        out.push(SeriesSamples {
                            series_ref: i as u64,
                            labels: idx.labels(i),
                            samples,
                        });
                    }
                }
                Err(what) => tracing::warn!(block = %self.dir.display(), series = ?idx.labels(i), "{what}"),
            }
        }
        out
    }

    /// All samples of a series' column (for compaction).
    pub fn column_samples(&self, e: &Entry) -> Result<Vec<(i64, f64)>, BlockError> {
        self.read_column(e, i64::MIN, i64::MAX)
            .map_err(|what| self.corrupt(what))
    }

    /// A series' column as stored (for compaction, which copies it).
    pub fn column_bytes(&self, e: &Entry) -> Result<Vec<u8>, BlockError> {
        self.read_raw(e).map_err(|what| self.corrupt(what))
    }

    fn corrupt(&self, what: String) -> BlockError {
        BlockError::Corrupt {
            dir: self.dir.display().to_string(),
            what,
        }
    }

    fn read_raw(&self, e: &Entry) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; e.length as usize];
        self.chunks
            .read_exact_at(&mut buf, e.offset)
            .map_err(|err| format!("cannot read column: {err}"))?;
        Ok(buf)
    }

    /// The column's samples; pages outside `[mint, maxt]` are skipped, but the result may
    /// still hold samples outside it.
    fn read_column(&self, e: &Entry, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>, String> {
        let buf = self.read_raw(e)?;
        let (ts, vs) = decode_columns_in(&buf, mint, maxt).map_err(|err| format!("corrupt column: {err}"))?;
        Ok(ts.into_iter().zip(vs).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockWriter;
    use std::path::{Path, PathBuf};

    /// Writes `series` (sorted by labels, samples in time order, all within
    /// `[min_time, max_time)`) as a block under `blocks_dir`; returns its directory.
    fn write_block(
        blocks_dir: &Path,
        min_time: i64,
        max_time: i64,
        level: u32,
        series: &[crate::head::SeriesSamples],
    ) -> Result<PathBuf, BlockError> {
        let mut w =
            BlockWriter::for_label_sets(blocks_dir, min_time, max_time, level, series.iter().map(|s| &s.labels))?;
        for s in series {
            w.add(&s.labels, &s.samples)?;
        }
        w.finish()
    }

    fn series(pairs: &[(&str, &str)], samples: Vec<(i64, f64)>) -> SeriesSamples {
        let mut i = crate::labels::Interner::default();
        let labels = Labels::from_pairs(pairs.iter().map(|(n, v)| (i.intern(n), i.intern(v))).collect());
        SeriesSamples {
            series_ref: 0,
            labels,
            samples,
        }
    }

    fn sel(s: &str) -> Vec<Matcher> {
        let promql_parser::parser::Expr::VectorSelector(vs) = promql_parser::parser::parse(s).unwrap() else {
            panic!()
        };
        let mut m = vs.matchers.matchers;
        m.extend(
            vs.name
                .map(|n| Matcher::new(promql_parser::label::MatchOp::Equal, "__name__", &n)),
        );
        m
    }

    #[test]
    fn written_blocks_read_back_by_matchers_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut input = vec![
            series(
                &[("__name__", "a"), ("job", "x")],
                (0..100).map(|i| (i * 1000, i as f64 * 0.25)).collect(),
            ),
            series(&[("__name__", "a"), ("job", "y")], vec![(5000, 1.0), (6000, stale)]),
            series(&[("__name__", "b")], vec![(0, f64::NAN)]),
        ];
        input.sort_by(|a, b| a.labels.cmp(&b.labels));
        let path = write_block(dir.path(), 0, 100_000, 1, &input).unwrap();
        let b = Block::open(&path).unwrap();
        assert_eq!((b.meta.series, b.meta.samples), (3, 103));
        let got = b.select(&sel(r#"a{job="x"}"#), 10_000, 12_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![(10_000, 2.5), (11_000, 2.75), (12_000, 3.0)]);
        let y = b.select(&sel(r#"a{job!="x"}"#), 0, i64::MAX);
        assert_eq!(y[0].samples[1].1.to_bits(), stale.to_bits());
        assert!(b.select(&sel("b"), 0, 10)[0].samples[0].1.is_nan());
        assert!(b.select(&sel("a"), 200_000, 300_000).is_empty());
        assert!(
            !dir.path()
                .join(format!("{}.tmp", path.file_name().unwrap().to_string_lossy()))
                .exists()
        );
    }

    #[test]
    fn postings_select_exactly_what_a_full_scan_selects() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = Vec::new();
        for i in 0..60 {
            let job = ["api", "db", "web"][i % 3];
            let env = ["prod", "dev"][i % 2];
            let name = ["up", "http_requests_total", "cpu"][i % 3 / 2 + (i % 5 == 0) as usize];
            let mut pairs = vec![("__name__", name), ("job", job), ("i", ["0", "1", "2", "3"][i % 4])];
            if i % 7 != 0 {
                pairs.push(("env", env));
            }
            let pairs: Vec<(&str, &str)> = pairs;
            let labels: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let refs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            input.push(series(&refs, vec![(i as i64, 1.0)]));
        }
        input.sort_by(|a, b| a.labels.cmp(&b.labels));
        input.dedup_by(|a, b| a.labels == b.labels);
        let path = write_block(dir.path(), 0, 100, 1, &input).unwrap();
        let b = Block::open(&path).unwrap();
        let idx = b.cached_index().unwrap();
        assert!(!b.evict_idle_index(Duration::from_secs(3600)), "used once: not kept");
        let idx2 = b.cached_index().unwrap();
        assert!(!Arc::ptr_eq(&idx, &idx2), "decoded again");
        assert!(Arc::ptr_eq(&idx2, &b.cached_index().unwrap()), "reused soon: kept");
        let _ = idx.select_positions(&sel(r#"up{job="api"}"#));
        let built: Vec<&str> = {
            let p = idx.postings.lock().unwrap();
            let mut v: Vec<&str> = p.keys().map(|n| idx.symbol(*n)).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(built, ["__name__", "job"], "postings only of the names matched on");
        for q in [
            r#"up"#,
            r#"{job="api"}"#,
            r#"up{job!="api"}"#,
            r#"{job=~"a.*|w.*"}"#,
            r#"{__name__=~".+", job!~"db"}"#,
            r#"up{env=""}"#,
            r#"{job=~".+", env=~"|dev"}"#,
            r#"{env!=""}"#,
            r#"cpu{env="prod", i=~"[12]"}"#,
            r#"{__name__=~".+", nope=""}"#,
            r#"{nope="x"}"#,
            r#"{job="api", job="db"}"#,
        ] {
            let m = sel(q);
            let resolved = idx.resolve(&m);
            let scan: Vec<usize> = (0..idx.len()).filter(|&i| idx.matches(i, &resolved)).collect();
            assert_eq!(idx.select_positions(&m), scan, "{q}");
        }
        assert!(b.evict_idle_index(Duration::from_secs(3600)), "recently used: kept");
        assert!(!b.evict_idle_index(Duration::ZERO), "idle: dropped");
        assert_eq!(
            b.select(&sel("up"), 0, 100).len(),
            input.iter().filter(|s| s.labels.metric_name() == "up").count()
        );
    }

    #[test]
    fn a_query_for_a_metric_the_block_lacks_skips_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let input = [
            series(&[("__name__", "node_load1"), ("job", "node")], vec![(1, 1.0)]),
            series(&[("__name__", "up"), ("job", "node")], vec![(1, 1.0)]),
        ];
        let b = Block::open(&write_block(dir.path(), 0, 10, 1, &input).unwrap()).unwrap();
        for (q, may) in [
            ("up", true),
            ("pg_up", false),
            (r#"{__name__=~"node_.*"}"#, true),
            (r#"{__name__=~"redis_.*"}"#, false),
            (r#"{__name__!="up", job="node"}"#, true),
            (r#"{__name__!~"up|node_load1", job=~".+"}"#, false),
            (r#"{job="node"}"#, true),
            (r#"{__name__=~"pg_up|up"}"#, true),
        ] {
            let m = sel(q);
            assert_eq!(b.may_match(&m), may, "{q}");
            if !may {
                assert!(b.select(&m, 0, 10).is_empty());
            }
        }
        assert!(b.cached.lock().unwrap().used.is_none(), "no query reached the index");
        assert_eq!(b.select(&sel("up"), 0, 10).len(), 1);
    }

    #[test]
    fn a_damaged_index_is_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_block(dir.path(), 0, 10, 1, &[series(&[("__name__", "a")], vec![(1, 1.0)])]).unwrap();
        let idx = path.join(INDEX_FILE);
        let mut b = std::fs::read(&idx).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        std::fs::write(&idx, b).unwrap();
        let err = Block::open(&path).err().expect("corrupt");
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
