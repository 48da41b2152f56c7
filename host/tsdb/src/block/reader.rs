//! Reading a block. Only `meta.json` stays in memory: the index is read and checked
//! at open, then read again per query (it is small: a few bytes per series) — keeping
//! every block's label sets and postings resident would cost more memory per series
//! than the head, with a block every 2 minutes.

use super::index::{self, Entry};
use super::{BlockError, CHUNKS_FILE, INDEX_FILE, META_FILE, Meta};
use crate::chunk::decode_columns;
use crate::head::SeriesSamples;
use crate::labels::Labels;
use crate::postings::matcher_matches;
use promql_parser::label::Matcher;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Block {
    pub dir: PathBuf,
    pub meta: Meta,
    chunks: std::fs::File,
    /// Bytes on disk (index + chunks + meta).
    pub size: u64,
}

/// A block's index, decoded for one query or one compaction.
pub struct BlockIndex {
    symbols: Vec<Arc<str>>,
    entries: Vec<Entry>,
}

impl BlockIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of label `name` of series `i` ("" when absent, as in Prometheus).
    fn value(&self, i: usize, name: &str) -> &str {
        self.entries[i]
            .labels
            .iter()
            .find(|(n, _)| &*self.symbols[*n as usize] == name)
            .map_or("", |(_, v)| &self.symbols[*v as usize])
    }

    fn matches(&self, i: usize, matchers: &[Matcher]) -> bool {
        matchers.iter().all(|m| matcher_matches(m, self.value(i, &m.name)))
    }

    /// Positions of the series that match any of `sets` (every series when `sets` is
    /// empty) and have samples in `[mint, maxt]`: the series, label-name and
    /// label-value lookups of the API.
    pub fn matching(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                e.max_t >= mint && e.min_t <= maxt && (sets.is_empty() || sets.iter().any(|set| self.matches(i, set)))
            })
            .collect()
    }

    /// The label pairs of series `i`, sorted by name.
    pub fn label_pairs(&self, i: usize) -> impl Iterator<Item = (&str, &str)> {
        self.entries[i]
            .labels
            .iter()
            .map(|(n, v)| (&*self.symbols[*n as usize], &*self.symbols[*v as usize]))
    }

    pub fn labels(&self, i: usize) -> Labels {
        let e = &self.entries[i];
        Labels::from_pairs(
            e.labels
                .iter()
                .map(|(n, v)| (self.symbols[*n as usize].clone(), self.symbols[*v as usize].clone()))
                .collect(),
        )
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
        let block = Block {
            dir: dir.to_path_buf(),
            meta,
            chunks,
            size: chunks_len + index_len + meta_bytes.len() as u64,
        };
        let idx = block.index()?;
        if idx
            .entries
            .iter()
            .any(|e| e.offset.saturating_add(e.length) > chunks_len)
        {
            return Err(corrupt("index points past the end of the chunks file".into()));
        }
        Ok(block)
    }

    /// Reads and decodes the index.
    pub fn index(&self) -> Result<BlockIndex, BlockError> {
        let name = self.dir.display().to_string();
        let bytes = std::fs::read(self.dir.join(INDEX_FILE)).map_err(|source| BlockError::Io {
            dir: name.clone(),
            source,
        })?;
        let (symbols, entries) =
            index::decode(&bytes, self.meta.min_time).map_err(|what| BlockError::Corrupt { dir: name, what })?;
        Ok(BlockIndex {
            symbols: symbols.into_iter().map(Arc::from).collect(),
            entries,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`. An unreadable
    /// index or column is skipped with a warning (the rest stays readable).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let idx = match self.index() {
            Ok(idx) => idx,
            Err(e) => {
                tracing::warn!("{e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, e) in idx.entries.iter().enumerate() {
            if e.max_t < mint || e.min_t > maxt || !idx.matches(i, matchers) {
                continue;
            }
            match self.read_column(e) {
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

    /// All samples of the series at index position `i` of `idx` (for compaction).
    pub fn series_samples(&self, idx: &BlockIndex, i: usize) -> Result<Vec<(i64, f64)>, BlockError> {
        self.read_column(&idx.entries[i]).map_err(|what| BlockError::Corrupt {
            dir: self.dir.display().to_string(),
            what,
        })
    }

    fn read_column(&self, e: &Entry) -> Result<Vec<(i64, f64)>, String> {
        let mut buf = vec![0u8; e.length as usize];
        self.chunks
            .read_exact_at(&mut buf, e.offset)
            .map_err(|err| format!("cannot read column: {err}"))?;
        let (ts, vs) = decode_columns(&buf).map_err(|err| format!("corrupt column: {err}"))?;
        Ok(ts.into_iter().zip(vs).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::write_block;

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
        assert_eq!(b.select(&sel("b"), 0, 10)[0].samples[0].1.is_nan(), true);
        assert!(b.select(&sel("a"), 200_000, 300_000).is_empty());
        assert!(
            !dir.path()
                .join(format!("{}.tmp", path.file_name().unwrap().to_string_lossy()))
                .exists()
        );
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
