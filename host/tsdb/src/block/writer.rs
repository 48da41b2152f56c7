//! Writing a block: columns to `chunks`, label sets to `index`, then `meta.json`; all
//! into `<name>.tmp`, fsynced, and renamed into place so a crash never leaves half a
//! block where a reader would find it.

use super::index::{self, Entry};
use super::{BlockError, CHUNKS_FILE, INDEX_FILE, META_FILE, Meta, dir_name};
use crate::chunk::encode_columns;
use crate::head::SeriesSamples;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `series` (sorted by labels, samples in time order, all within
/// `[min_time, max_time)`) as a block under `blocks_dir`; returns its directory.
pub fn write_block(
    blocks_dir: &Path,
    min_time: i64,
    max_time: i64,
    level: u32,
    series: &[SeriesSamples],
) -> Result<PathBuf, BlockError> {
    let samples: u64 = series.iter().map(|s| s.samples.len() as u64).sum();
    let meta = Meta {
        version: 1,
        min_time,
        max_time,
        series: series.len() as u64,
        samples,
        level,
    };
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let name = dir_name(&meta, nonce);
    let tmp = blocks_dir.join(format!("{name}.tmp"));
    let io = |source| BlockError::Io {
        dir: tmp.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&tmp).map_err(io)?;

    // Symbols: every label string, sorted, numbered.
    let mut symbols: BTreeMap<&str, u32> = BTreeMap::new();
    for s in series {
        for (n, v) in s.labels.iter() {
            symbols.insert(n, 0);
            symbols.insert(v, 0);
        }
    }
    for (i, id) in symbols.values_mut().enumerate() {
        *id = i as u32;
    }
    let mut chunks = std::io::BufWriter::new(std::fs::File::create(tmp.join(CHUNKS_FILE)).map_err(io)?);
    let mut entries = Vec::with_capacity(series.len());
    let mut offset = 0u64;
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    for s in series {
        ts.clear();
        vs.clear();
        for (t, v) in &s.samples {
            ts.push(*t);
            vs.push(*v);
        }
        let col = encode_columns(&ts, &vs);
        chunks.write_all(&col).map_err(io)?;
        entries.push(Entry {
            labels: s.labels.iter().map(|(n, v)| (symbols[n], symbols[v])).collect(),
            offset,
            length: col.len() as u64,
            min_t: ts.first().copied().unwrap_or(min_time),
            max_t: ts.last().copied().unwrap_or(min_time),
            samples: ts.len() as u64,
        });
        offset += col.len() as u64;
    }
    let chunks = chunks.into_inner().map_err(|e| io(e.into_error()))?;
    chunks.sync_all().map_err(io)?;
    let sym_list: Vec<&str> = symbols.keys().copied().collect();
    write_synced(&tmp.join(INDEX_FILE), &index::encode(&sym_list, &entries, min_time)).map_err(io)?;
    let meta_json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    write_synced(&tmp.join(META_FILE), &meta_json).map_err(io)?;
    let dir = blocks_dir.join(&name);
    std::fs::rename(&tmp, &dir).map_err(io)?;
    sync_dir(blocks_dir).map_err(io)?;
    Ok(dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
