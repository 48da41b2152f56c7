//! Reading a block: the index is loaded at open (label sets and the postings built
//! from them); sample columns are read from `chunks` on demand.

use super::index::{self, Entry};
use super::{BlockError, CHUNKS_FILE, INDEX_FILE, META_FILE, Meta};
use crate::chunk::decode_columns;
use crate::head::SeriesSamples;
use crate::labels::{Interner, Labels};
use crate::postings::Postings;
use promql_parser::label::Matcher;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct Block {
    pub dir: PathBuf,
    pub meta: Meta,
    labels: Vec<Labels>,
    entries: Vec<Entry>,
    postings: Postings,
    chunks: std::fs::File,
    /// Bytes on disk (index + chunks + meta).
    pub size: u64,
}

impl Block {
    pub fn open(dir: &Path, interner: &mut Interner) -> Result<Block, BlockError> {
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
        let index_bytes = std::fs::read(dir.join(INDEX_FILE)).map_err(io)?;
        let (symbols, entries) = index::decode(&index_bytes, meta.min_time).map_err(corrupt)?;
        let chunks = std::fs::File::open(dir.join(CHUNKS_FILE)).map_err(io)?;
        let chunks_len = chunks.metadata().map_err(io)?.len();
        if entries.iter().any(|e| e.offset.saturating_add(e.length) > chunks_len) {
            return Err(corrupt("index points past the end of the chunks file".into()));
        }
        let syms: Vec<_> = symbols.iter().map(|s| interner.intern(s)).collect();
        let mut postings = Postings::default();
        let mut labels = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let l = Labels::from_pairs(
                e.labels
                    .iter()
                    .map(|(n, v)| (syms[*n as usize].clone(), syms[*v as usize].clone()))
                    .collect(),
            );
            postings.add(i as u64, l.pairs());
            labels.push(l);
        }
        let size = chunks_len + index_bytes.len() as u64 + meta_bytes.len() as u64;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            labels,
            entries,
            postings,
            chunks,
            size,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`. A column that
    /// cannot be read or decoded is skipped with a warning (the rest stays readable).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let mut out = Vec::new();
        for i in self.postings.select(matchers) {
            let e = &self.entries[i as usize];
            if e.max_t < mint || e.min_t > maxt {
                continue;
            }
            match self.read_column(e) {
                Ok(samples) => {
                    let samples: Vec<(i64, f64)> =
                        samples.into_iter().filter(|(t, _)| *t >= mint && *t <= maxt).collect();
                    if !samples.is_empty() {
                        out.push(SeriesSamples {
                            series_ref: i,
                            labels: self.labels[i as usize].clone(),
                            samples,
                        });
                    }
                }
                Err(what) => tracing::warn!(block = %self.dir.display(), series = ?self.labels[i as usize], "{what}"),
            }
        }
        out
    }

    /// Label sets of the block's series, in index order (sorted).
    pub fn series_labels(&self) -> &[Labels] {
        &self.labels
    }

    /// All samples of the series at index position `i` (for compaction).
    pub fn series_samples(&self, i: usize) -> Result<Vec<(i64, f64)>, BlockError> {
        self.read_column(&self.entries[i]).map_err(|what| BlockError::Corrupt {
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

    pub fn label_names(&self) -> Vec<std::sync::Arc<str>> {
        self.postings.label_names()
    }

    pub fn label_values(&self, name: &str) -> Vec<std::sync::Arc<str>> {
        self.postings.label_values(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::write_block;

    fn series(pairs: &[(&str, &str)], samples: Vec<(i64, f64)>) -> SeriesSamples {
        let mut i = Interner::default();
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
        let b = Block::open(&path, &mut Interner::default()).unwrap();
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
        let err = Block::open(&path, &mut Interner::default()).err().expect("corrupt");
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
