//! Checkpoints: a compacted copy of the log up to a segment, so those segments can go.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::record::{Decoder, RecordRef, RecordType, Sample};
use super::segment::{self, Frame, FrameReader, SegmentWriter, checkpoint_name, segment_name};
use super::{DEFAULT_SEGMENT_SIZE, WalError};

/// What [`checkpoint`] kept and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The checkpoint now on disk (`checkpoint.<index>`); `None` if there was nothing to do.
    pub index: Option<u32>,
    pub series_kept: u64,
    pub series_removed: u64,
    pub samples_kept: u64,
    pub samples_removed: u64,
    pub metadata_kept: u64,
    /// Size of the new checkpoint's segments.
    pub bytes: u64,
    /// Segments deleted because the checkpoint now covers them.
    pub segments_removed: u32,
}

/// Samples per record in the checkpoint: small input batches are merged up to this.
const CHECKPOINT_BATCH: usize = 8192;

/// Writes `checkpoint.<up_to>` from the previous checkpoint and segments ≤ `up_to`, then
/// deletes those segments and older checkpoints.
///
/// The checkpoint keeps a Series record if `keep_series(ref)` holds and no Dropped record
/// names it; the samples of kept series with `t >= keep_after_t`; and the latest Metadata
/// record per metric. It is written to `checkpoint.<up_to>.tmp/`, fsynced and renamed, so
/// a crash leaves either the old state or the new one.
///
/// Only finished segments may be checkpointed: some segment after `up_to` must exist
/// ([`Wal::cut`](super::Wal::cut) makes one). This reads only those finished files, so it
/// can run on another thread while the [`Wal`](super::Wal) keeps appending. Do not run two
/// checkpoints of one directory at once.
pub fn checkpoint(
    dir: &Path,
    up_to: u32,
    keep_series: impl Fn(u64) -> bool,
    keep_after_t: i64,
) -> Result<CheckpointStats, WalError> {
    let listing = segment::list(dir)?;
    let prev = listing.checkpoints.last().copied();
    if prev.is_some_and(|p| p >= up_to) {
        return Ok(CheckpointStats::default());
    }
    if !listing.segments.iter().any(|&s| s > up_to) {
        return Err(WalError::CheckpointActive {
            dir: dir.to_owned(),
            up_to,
        });
    }
    let mut sources = Vec::new();
    if let Some(p) = prev {
        let cdir = dir.join(checkpoint_name(p));
        let segs = segment::list(&cdir)?.segments;
        sources.extend(segs.into_iter().map(|s| Source {
            path: cdir.join(segment_name(s)),
            checkpoint: true,
        }));
    }
    let after = prev.unwrap_or(0);
    let covered: Vec<u32> = listing.segments.iter().copied().filter(|&s| s <= up_to).collect();
    let segs = covered.iter().filter(|&&s| s > after);
    sources.extend(segs.map(|&s| Source {
        path: dir.join(segment_name(s)),
        checkpoint: false,
    }));

    let dropped = collect_dropped(&sources)?;
    let tmp = dir.join(format!("{}.tmp", checkpoint_name(up_to)));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(WalError::io("remove", &tmp))?;
    }
    fs::create_dir(&tmp).map_err(WalError::io("create", &tmp))?;
    let mut stats = match write(&tmp, &sources, &keep_series, &dropped, keep_after_t) {
        Ok(stats) => stats,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let dest = dir.join(checkpoint_name(up_to));
    fs::rename(&tmp, &dest).map_err(WalError::io("rename into place", &tmp))?;
    segment::sync_dir(dir)?;
    stats.index = Some(up_to);

    for &s in &covered {
        let p = dir.join(segment_name(s));
        fs::remove_file(&p).map_err(WalError::io("remove", &p))?;
    }
    stats.segments_removed = covered.len() as u32;
    for &c in listing.checkpoints.iter().filter(|&&c| c < up_to) {
        let p = dir.join(checkpoint_name(c));
        fs::remove_dir_all(&p).map_err(WalError::io("remove", &p))?;
    }
    segment::sync_dir(dir)?;
    info!(dir = %dir.display(), checkpoint = up_to, series = stats.series_kept, samples = stats.samples_kept,
        bytes = stats.bytes, segments_removed = stats.segments_removed, "WAL: checkpoint written");
    Ok(stats)
}

/// A file the checkpoint reads.
struct Source {
    path: PathBuf,
    /// Part of the previous checkpoint: damage there ends that file with a warning, as in
    /// replay, rather than blocking every future checkpoint.
    checkpoint: bool,
}

/// First pass: the refs of every Dropped record, so their Series records can be left out
/// even though they come earlier in the log. Only Dropped payloads are decoded.
fn collect_dropped(sources: &[Source]) -> Result<HashSet<u64>, WalError> {
    let mut dropped = HashSet::new();
    let mut decoder = Decoder::default();
    for src in sources {
        for_each_record(src, |typ, payload| {
            if typ == RecordType::Dropped as u8
                && let Ok(RecordRef::Dropped(refs)) = decoder.decode(typ, payload)
            {
                dropped.extend(refs.iter().copied());
            }
            Ok(())
        })?;
    }
    Ok(dropped)
}

/// Second pass: filters the records into a new segment log in `out`.
fn write(
    out: &Path,
    sources: &[Source],
    keep_series: &impl Fn(u64) -> bool,
    dropped: &HashSet<u64>,
    keep_after_t: i64,
) -> Result<CheckpointStats, WalError> {
    let mut stats = CheckpointStats::default();
    let mut w = SegmentWriter::create(out, 0, DEFAULT_SEGMENT_SIZE)?;
    let mut kept: HashSet<u64> = HashSet::new();
    let mut batch: Vec<Sample> = Vec::with_capacity(CHECKPOINT_BATCH);
    let mut metadata: BTreeMap<String, [String; 3]> = BTreeMap::new();
    let mut decoder = Decoder::default();
    for src in sources {
        for_each_record(src, |typ, payload| {
            // Checksummed but undecodable records were already skipped (with a warning) by
            // replay; the checkpoint leaves them out too.
            let Ok(rec) = decoder.decode(typ, payload) else {
                return Ok(());
            };
            match rec {
                RecordRef::Series { ref_, .. } => {
                    if keep_series(ref_) && !dropped.contains(&ref_) {
                        kept.insert(ref_);
                        stats.series_kept += 1;
                        w.append(rec)?;
                    } else {
                        stats.series_removed += 1;
                    }
                }
                RecordRef::Samples(samples) => {
                    for &s in samples {
                        if s.1 >= keep_after_t && kept.contains(&s.0) {
                            batch.push(s);
                        } else {
                            stats.samples_removed += 1;
                        }
                    }
                    if batch.len() >= CHECKPOINT_BATCH {
                        stats.samples_kept += batch.len() as u64;
                        w.append(RecordRef::Samples(&batch))?;
                        batch.clear();
                    }
                }
                RecordRef::Metadata {
                    metric,
                    kind,
                    help,
                    unit,
                } => {
                    metadata.insert(metric.to_owned(), [kind.to_owned(), help.to_owned(), unit.to_owned()]);
                }
                RecordRef::Dropped(_) => {}
            }
            Ok(())
        })?;
    }
    if !batch.is_empty() {
        stats.samples_kept += batch.len() as u64;
        w.append(RecordRef::Samples(&batch))?;
    }
    for (metric, [kind, help, unit]) in &metadata {
        w.append(RecordRef::Metadata {
            metric,
            kind,
            help,
            unit,
        })?;
    }
    stats.metadata_kept = metadata.len() as u64;
    for f in w.take_unsynced()? {
        f.sync_data().map_err(WalError::io("fsync a segment in", out))?;
    }
    segment::sync_dir(out)?;
    stats.bytes = w.bytes_written;
    Ok(stats)
}

/// Calls `f` with every frame of a file. Damage in a segment is an error, because the
/// caller is about to delete the segment (open repaired the log, so this is new damage).
fn for_each_record(src: &Source, mut f: impl FnMut(u8, &[u8]) -> Result<(), WalError>) -> Result<(), WalError> {
    let mut r = FrameReader::open(&src.path)?;
    loop {
        match r.next()? {
            Frame::Record { typ, payload } => f(typ, payload)?,
            Frame::End => return Ok(()),
            Frame::Damaged(damage) if src.checkpoint => {
                warn!(segment = %src.path.display(), offset = r.offset(), %damage,
                    "WAL: previous checkpoint is damaged; the new one keeps what precedes the damage");
                return Ok(());
            }
            Frame::Damaged(damage) => {
                return Err(WalError::Damaged {
                    path: src.path.clone(),
                    offset: r.offset(),
                    damage,
                });
            }
        }
    }
}
