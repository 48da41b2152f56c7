//! Writing a block: columns to `chunks`, label sets to `index`, then `meta.json`; all
//! into `<name>.tmp`, fsynced, and renamed into place so a crash never leaves half a
//! block where a reader would find it.

use super::index::{self, Entry};
use super::{BlockError, CHUNKS_FILE, INDEX_FILE, META_FILE, Meta, dir_name};
use crate::chunk::{encode_columns, encode_stream_column};
use crate::labels::Labels;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Streams series into a new block, one at a time and in label order: columns go to the
/// file as they come and the index is built as it goes (~30 bytes a series), so neither
/// a head cut nor a compaction holds more than one series' samples.
pub struct BlockWriter {
    blocks_dir: PathBuf,
    tmp: PathBuf,
    min_time: i64,
    max_time: i64,
    level: u32,
    chunks: std::io::BufWriter<std::fs::File>,
    offset: u64,
    index: index::Builder,
    samples: u64,
    ts: Vec<i64>,
    vs: Vec<f64>,
    ids: Vec<u32>,
}

impl BlockWriter {
    /// A writer for series whose label strings are all in `symbols` (sorted, unique).
    pub fn new<'a>(
        blocks_dir: &Path,
        min_time: i64,
        max_time: i64,
        level: u32,
        symbols: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, BlockError> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let probe = Meta {
            version: 1,
            min_time,
            max_time,
            series: 0,
            samples: 0,
            level,
        };
        let tmp = blocks_dir.join(format!("{}.tmp", dir_name(&probe, nonce)));
        let index = index::Builder::new(symbols, min_time).map_err(|what| BlockError::Invalid {
            dir: tmp.display().to_string(),
            what,
        })?;
        let io = |source| BlockError::Io {
            dir: tmp.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&tmp).map_err(io)?;
        let chunks = std::io::BufWriter::new(std::fs::File::create(tmp.join(CHUNKS_FILE)).map_err(io)?);
        Ok(BlockWriter {
            blocks_dir: blocks_dir.to_path_buf(),
            tmp,
            min_time,
            max_time,
            level,
            chunks,
            offset: 0,
            index,
            samples: 0,
            ts: Vec::new(),
            vs: Vec::new(),
            ids: Vec::new(),
        })
    }

    /// A writer for the label sets `sets` (the symbol table is collected from them).
    pub fn for_label_sets<'a>(
        blocks_dir: &Path,
        min_time: i64,
        max_time: i64,
        level: u32,
        sets: impl IntoIterator<Item = &'a Labels>,
    ) -> Result<Self, BlockError> {
        let symbols: BTreeSet<&str> = sets
            .into_iter()
            .flat_map(|l| l.iter().flat_map(|(n, v)| [n, v]))
            .collect();
        Self::new(blocks_dir, min_time, max_time, level, symbols)
    }

    fn invalid(&self, what: String) -> BlockError {
        BlockError::Invalid {
            dir: self.tmp.display().to_string(),
            what,
        }
    }

    /// Adds one series; calls must come in ascending label order. Level-1 blocks (cut from
    /// the head, compacted within the hour) are stream-coded only; higher levels also try
    /// pco and keep the smaller form.
    pub fn add(&mut self, labels: &Labels, samples: &[(i64, f64)]) -> Result<(), BlockError> {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Ok(());
        };
        self.ts.clear();
        self.vs.clear();
        for (t, v) in samples {
            self.ts.push(*t);
            self.vs.push(*v);
        }
        let col = if self.level <= 1 {
            encode_stream_column(&self.ts, &self.vs)
        } else {
            encode_columns(&self.ts, &self.vs)
        };
        self.add_column(labels, &col, samples.len() as u64, first.0, last.0)
    }

    /// Adds one series' column, already encoded (see `chunk::column_from_chunks`), holding
    /// `samples` samples from `min_t` to `max_t`; calls must come in ascending label order.
    pub fn add_column(
        &mut self,
        labels: &Labels,
        col: &[u8],
        samples: u64,
        min_t: i64,
        max_t: i64,
    ) -> Result<(), BlockError> {
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        for (n, v) in labels.iter() {
            for s in [n, v] {
                match self.index.symbol(s) {
                    Some(id) => ids.push(id),
                    None => return Err(self.invalid(format!("label string {s:?} is not in the symbol table"))),
                }
            }
        }
        let r = self.add_column_ids(&ids, col, samples, min_t, max_t);
        self.ids = ids;
        r
    }

    /// [`BlockWriter::add_column`] with the label set as `(name, value)` symbol numbers
    /// (positions in the writer's symbol table), flattened, sorted by name.
    pub fn add_column_ids(
        &mut self,
        ids: &[u32],
        col: &[u8],
        samples: u64,
        min_t: i64,
        max_t: i64,
    ) -> Result<(), BlockError> {
        let entry = Entry {
            offset: self.offset,
            length: col.len() as u64,
            min_t,
            max_t,
            samples,
        };
        self.index.add(ids, &entry).map_err(|what| self.invalid(what))?;
        self.chunks.write_all(col).map_err(|source| BlockError::Io {
            dir: self.tmp.display().to_string(),
            source,
        })?;
        self.offset += col.len() as u64;
        self.samples += samples;
        Ok(())
    }

    /// About how many series will be added (see [`index::Builder::expect_series`]).
    pub fn expect_series(&mut self, n: usize) {
        self.index.expect_series(n as u64);
    }

    /// Series added so far.
    pub fn series(&self) -> u64 {
        self.index.series()
    }

    /// Drops the block being written (its temporary directory).
    pub fn abandon(self) {
        drop(self.chunks);
        if let Err(e) = std::fs::remove_dir_all(&self.tmp) {
            tracing::warn!(dir = %self.tmp.display(), "cannot remove an abandoned block: {e}");
        }
    }

    /// Writes the index and meta, fsyncs, and renames the block into place.
    pub fn finish(self) -> Result<PathBuf, BlockError> {
        let tmp_name = self.tmp.display().to_string();
        let io = |source| BlockError::Io {
            dir: tmp_name.clone(),
            source,
        };
        let chunks = self.chunks.into_inner().map_err(|e| io(e.into_error()))?;
        chunks.sync_all().map_err(&io)?;
        let mut index_file = std::io::BufWriter::new(std::fs::File::create(self.tmp.join(INDEX_FILE)).map_err(&io)?);
        self.index.write_to(&mut index_file).map_err(&io)?;
        index_file
            .into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(&io)?;
        let meta = Meta {
            version: 1,
            min_time: self.min_time,
            max_time: self.max_time,
            series: self.index.series(),
            samples: self.samples,
            level: self.level,
        };
        let meta_json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
        write_synced(&self.tmp.join(META_FILE), &meta_json).map_err(&io)?;
        let name = self.tmp.file_name().expect("tmp has a name").to_string_lossy();
        let dir = self.blocks_dir.join(name.trim_end_matches(".tmp"));
        std::fs::rename(&self.tmp, &dir).map_err(&io)?;
        sync_dir(&self.blocks_dir).map_err(&io)?;
        Ok(dir)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
