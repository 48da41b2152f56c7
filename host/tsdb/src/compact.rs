//! Compaction: merges the blocks of one aligned time window into a single block of
//! the next level, streaming series in label order (one series' samples in memory at a
//! time), deduplicating samples that several blocks hold (overlaps from out-of-order
//! data or a crash between writing a block and checkpointing the WAL).

use crate::block::{Block, BlockError, BlockIndex, BlockWriter, Entry};
use crate::chunk::{Page, column_from_pages, encode_columns_beating};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Window sizes blocks are compacted into, smallest first: head blocks (2 min) → 1 h →
/// 6 h → 24 h. Each is a multiple of the previous and of the head block range.
pub const DEFAULT_RANGES: [Duration; 3] = [
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(24 * 3600),
];

/// Picks the next window to compact: blocks of `blocks` (sorted by time) that lie in
/// one aligned window of one of `ranges` (ms), where the window ends at or before
/// `complete_before` (no more data can arrive there). Returns the window and its blocks.
pub fn plan(blocks: &[Arc<Block>], ranges: &[i64], complete_before: i64) -> Option<(i64, i64, Vec<Arc<Block>>)> {
    for &range in ranges {
        let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
        for b in blocks {
            let start = b.meta.min_time.div_euclid(range) * range;
            if b.meta.max_time <= start + range {
                groups.entry(start).or_default().push(b.clone());
            }
        }
        for (start, group) in groups {
            let end = start + range;
            let spans_window = group.iter().any(|b| b.meta.max_time - b.meta.min_time >= range);
            if group.len() >= 2 && end <= complete_before && !spans_window {
                return Some((start, end, group));
            }
        }
    }
    None
}

/// Writes the merge of `sources` as one block covering `[min_time, max_time)`.
///
/// Per series, in time order: samples of level-1 blocks (stream-coded, cut from the head)
/// are decoded and encoded again as one column, pco where it is smaller; columns of
/// compacted blocks are copied as pages of a page list without decoding them. A series
/// whose blocks overlap in time is decoded whole, sorted and deduplicated.
pub fn merge(blocks_dir: &Path, min_time: i64, max_time: i64, sources: &[Arc<Block>]) -> Result<PathBuf, BlockError> {
    let level = sources.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
    let indexes = sources.iter().map(|b| b.index()).collect::<Result<Vec<_>, _>>()?;
    let (symbols, ranks) = merge_symbols(&indexes);
    let mut w = BlockWriter::new(blocks_dir, min_time, max_time, level, symbols)?;
    // A k-way merge of the sources' series (each index is sorted by label set): `keys[b]`
    // is the label set of source b's next series, in the merged symbol numbers, which
    // compare like the label sets themselves.
    let mut next = vec![0usize; indexes.len()];
    let mut keys: Vec<Vec<u32>> = vec![Vec::new(); indexes.len()];
    let load = |b: usize, at: usize, key: &mut Vec<u32>| {
        key.clear();
        if at < indexes[b].len() {
            let rank = &ranks[b];
            key.extend(
                indexes[b]
                    .label_ids(at)
                    .flat_map(|(n, v)| [rank[n as usize], rank[v as usize]]),
            );
        }
    };
    for (b, key) in keys.iter_mut().enumerate() {
        load(b, 0, key);
    }
    let mut key = Vec::new();
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    let mut out = Vec::new();
    loop {
        let live = (0..indexes.len()).filter(|&b| next[b] < indexes[b].len());
        let Some(min) = live.min_by(|&a, &b| keys[a].cmp(&keys[b])) else {
            break;
        };
        key.clone_from(&keys[min]);
        // The blocks holding this series, in time order.
        entries.clear();
        for b in 0..indexes.len() {
            if next[b] < indexes[b].len() && keys[b] == key {
                entries.push((b, indexes[b].entry(next[b])));
                next[b] += 1;
                load(b, next[b], &mut keys[b]);
            }
        }
        entries.sort_by_key(|(_, e)| e.min_t);
        let disjoint = entries.windows(2).all(|w| w[0].1.max_t < w[1].1.min_t);
        out.clear();
        let (n, lo, hi) = if disjoint {
            let n = paged(&mut out, sources, &entries)?;
            (n, entries[0].1.min_t, entries[entries.len() - 1].1.max_t)
        } else {
            let mut samples: Vec<(i64, f64)> = Vec::new();
            for (b, e) in &entries {
                samples.extend(sources[*b].column_samples(e)?);
            }
            samples.sort_by_key(|(t, _)| *t);
            samples.dedup_by_key(|(t, _)| *t);
            let (ts, vs): (Vec<i64>, Vec<f64>) = samples.into_iter().unzip();
            let estimate = entries.iter().map(|(_, e)| e.length as usize).sum();
            out = encode_columns_beating(&ts, &vs, estimate);
            (ts.len() as u64, ts[0], ts[ts.len() - 1])
        };
        w.add_column_ids(&key, &out, n, lo, hi)?;
    }
    w.finish()
}

/// The union of the sources' symbol tables, sorted, and each source's symbol numbers
/// in it (`ranks[source][symbol]`).
fn merge_symbols(indexes: &[BlockIndex]) -> (Vec<&str>, Vec<Vec<u32>>) {
    let mut ranks: Vec<Vec<u32>> = indexes.iter().map(|i| Vec::with_capacity(i.symbol_count())).collect();
    let mut heap = BinaryHeap::new();
    for (b, idx) in indexes.iter().enumerate() {
        if idx.symbol_count() > 0 {
            heap.push(Reverse((idx.symbol(0), b, 0u32)));
        }
    }
    let mut merged: Vec<&str> = Vec::new();
    while let Some(Reverse((s, b, i))) = heap.pop() {
        if merged.last() != Some(&s) {
            merged.push(s);
        }
        ranks[b].push((merged.len() - 1) as u32);
        if ((i + 1) as usize) < indexes[b].symbol_count() {
            heap.push(Reverse((indexes[b].symbol(i + 1), b, i + 1)));
        }
    }
    (merged, ranks)
}

/// Writes into `out` one series' column from its time-ordered, disjoint source columns:
/// runs of level-1 columns become one re-encoded page, others are copied. Returns the
/// sample count.
fn paged(out: &mut Vec<u8>, sources: &[Arc<Block>], entries: &[(usize, Entry)]) -> Result<u64, BlockError> {
    let mut owned: Vec<(Vec<u8>, u64, i64, i64)> = Vec::new();
    let mut run: Vec<(i64, f64)> = Vec::new();
    let mut run_bytes = 0usize;
    let flush = |run: &mut Vec<(i64, f64)>, run_bytes: &mut usize, owned: &mut Vec<(Vec<u8>, u64, i64, i64)>| {
        let (Some(&(lo, _)), Some(&(hi, _))) = (run.first(), run.last()) else {
            return;
        };
        let (ts, vs): (Vec<i64>, Vec<f64>) = run.drain(..).unzip();
        owned.push((encode_columns_beating(&ts, &vs, *run_bytes), ts.len() as u64, lo, hi));
        *run_bytes = 0;
    };
    for &(bi, ref e) in entries {
        if sources[bi].meta.level <= 1 {
            run.extend(sources[bi].column_samples(e)?);
            run_bytes += e.length as usize;
        } else {
            flush(&mut run, &mut run_bytes, &mut owned);
            owned.push((sources[bi].column_bytes(e)?, e.samples, e.min_t, e.max_t));
        }
    }
    flush(&mut run, &mut run_bytes, &mut owned);
    let pages: Vec<Page> = owned
        .iter()
        .map(|(bytes, samples, min_t, max_t)| Page {
            bytes,
            samples: *samples,
            min_t: *min_t,
            max_t: *max_t,
        })
        .collect();
    column_from_pages(out, &pages).map_err(|e| BlockError::Corrupt {
        dir: blocks_of(sources, entries),
        what: format!("cannot concatenate columns: {e}"),
    })
}

fn blocks_of(sources: &[Arc<Block>], entries: &[(usize, Entry)]) -> String {
    let dirs: Vec<String> = entries
        .iter()
        .map(|(bi, _)| sources[*bi].dir.display().to_string())
        .collect();
    dirs.join(", ")
}
