//! Compaction: merges the blocks of one aligned time window into a single block of
//! the next level, streaming series in label order (one series' samples in memory at a
//! time), deduplicating samples that several blocks hold (overlaps from out-of-order
//! data or a crash between writing a block and checkpointing the WAL).

use crate::block::{Block, BlockError, BlockWriter};
use crate::labels::Labels;
use std::collections::BTreeMap;
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
pub fn merge(blocks_dir: &Path, min_time: i64, max_time: i64, sources: &[Arc<Block>]) -> Result<PathBuf, BlockError> {
    let level = sources.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
    let indexes = sources.iter().map(|b| b.index()).collect::<Result<Vec<_>, _>>()?;
    // Every label set, sorted, with the blocks that hold it.
    let mut series: BTreeMap<Labels, Vec<(usize, usize)>> = BTreeMap::new();
    for (bi, idx) in indexes.iter().enumerate() {
        for si in 0..idx.len() {
            series.entry(idx.labels(si)).or_default().push((bi, si));
        }
    }
    let mut w = BlockWriter::new(blocks_dir, min_time, max_time, level)?;
    for (labels, holders) in &series {
        let mut samples: Vec<(i64, f64)> = Vec::new();
        for &(bi, si) in holders {
            samples.extend(sources[bi].series_samples(&indexes[bi], si)?);
        }
        if holders.len() > 1 {
            samples.sort_by_key(|(t, _)| *t);
            samples.dedup_by_key(|(t, _)| *t);
        }
        w.add(labels, &samples)?;
    }
    w.finish()
}
