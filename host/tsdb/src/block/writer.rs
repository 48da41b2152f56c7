//! Writing a block: columns to `chunks`, label sets to `index`, then `meta.json`; all
//! into `<name>.tmp`, fsynced, and renamed into place so a crash never leaves half a
//! block where a reader would find it.

use super::index::{self, Entry};
use super::{BlockError, CHUNKS_FILE, INDEX_FILE, META_FILE, Meta, dir_name};
use crate::chunk::{encode_columns, encode_stream_column};
use crate::labels::Labels;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Streams series into a new block, one at a time and in label order, so compaction
/// never holds more than one series' samples.
pub struct BlockWriter {
    blocks_dir: PathBuf,
    tmp: PathBuf,
    min_time: i64,
    max_time: i64,
    level: u32,
    chunks: std::io::BufWriter<std::fs::File>,
    offset: u64,
    entries: Vec<(Labels, u64, u64, i64, i64, u64)>,
    samples: u64,
    ts: Vec<i64>,
    vs: Vec<f64>,
}

impl BlockWriter {
    pub fn new(blocks_dir: &Path, min_time: i64, max_time: i64, level: u32) -> Result<Self, BlockError> {
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
            entries: Vec::new(),
            samples: 0,
            ts: Vec::new(),
            vs: Vec::new(),
        })
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
        debug_assert!(self.entries.last().is_none_or(|e| e.0 < *labels), "series out of order");
        self.chunks.write_all(col).map_err(|source| BlockError::Io {
            dir: self.tmp.display().to_string(),
            source,
        })?;
        self.entries
            .push((labels.clone(), self.offset, col.len() as u64, min_t, max_t, samples));
        self.offset += col.len() as u64;
        self.samples += samples;
        Ok(())
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
        // Symbols: every label string, sorted, numbered.
        let mut symbols: BTreeMap<&str, u32> = BTreeMap::new();
        for (labels, ..) in &self.entries {
            for (n, v) in labels.iter() {
                symbols.insert(n, 0);
                symbols.insert(v, 0);
            }
        }
        for (i, id) in symbols.values_mut().enumerate() {
            *id = i as u32;
        }
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .map(|(labels, offset, length, min_t, max_t, samples)| Entry {
                labels: labels.iter().map(|(n, v)| (symbols[n], symbols[v])).collect(),
                offset: *offset,
                length: *length,
                min_t: *min_t,
                max_t: *max_t,
                samples: *samples,
            })
            .collect();
        let sym_list: Vec<&str> = symbols.keys().copied().collect();
        write_synced(
            &self.tmp.join(INDEX_FILE),
            &index::encode(&sym_list, &entries, self.min_time),
        )
        .map_err(&io)?;
        let meta = Meta {
            version: 1,
            min_time: self.min_time,
            max_time: self.max_time,
            series: entries.len() as u64,
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
