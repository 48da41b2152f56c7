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

/// Input batches that filtering left smaller than this are merged with the next ones, so a
/// checkpoint of sparse survivors is not mostly frame headers. Larger batches are written
/// as they are: a batch from one scrape shares a timestamp and runs of refs, which encode
/// best (merging whole scrapes made checkpoints 9 % larger).
const MERGE_BELOW: usize = 256;

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
    let mut batch: Vec<Sample> = Vec::new();
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
                    if batch.len() >= MERGE_BELOW {
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
    w.sync_all()?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::wal::Record;
    use crate::wal::test_support::{open, workload};

    const SEG: u64 = 4096;

    /// The state a head would rebuild from a record stream: what must survive a checkpoint.
    #[derive(Debug, Default, PartialEq)]
    struct State {
        series: BTreeMap<u64, Vec<(String, String)>>,
        samples: BTreeMap<u64, Vec<(i64, u64)>>,
        metadata: BTreeMap<String, [String; 3]>,
    }

    impl State {
        fn apply(&mut self, r: &Record) {
            match r {
                Record::Series { ref_, labels } => _ = self.series.insert(*ref_, labels.clone()),
                Record::Samples(s) => {
                    for &(r, t, v) in s {
                        if self.series.contains_key(&r) {
                            self.samples.entry(r).or_default().push((t, v.to_bits()));
                        }
                    }
                }
                Record::Metadata {
                    metric,
                    kind,
                    help,
                    unit,
                } => {
                    _ = self
                        .metadata
                        .insert(metric.clone(), [kind.clone(), help.clone(), unit.clone()])
                }
                Record::Dropped { refs } => {
                    for r in refs {
                        self.series.remove(r);
                        self.samples.remove(r);
                    }
                }
            }
        }

        fn of(recs: &[Record]) -> State {
            let mut s = State::default();
            recs.iter().for_each(|r| s.apply(r));
            s
        }
    }

    /// Logs `a`, cuts, logs `b`; returns the last segment holding `a`.
    fn write(dir: &Path, a: &[Record], b: &[Record]) -> u32 {
        let (mut wal, _, _) = open(dir, SEG);
        a.iter().for_each(|r| _ = wal.log(r).unwrap());
        let active = wal.cut().unwrap();
        b.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.close().unwrap();
        active - 1
    }

    #[test]
    fn checkpoint_keeping_everything_replays_like_the_full_log() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (workload(1, 400), workload(1000, 50));
        let up_to = write(tmp.path(), &a, &b);
        assert!(up_to > 3);
        let full = open(tmp.path(), SEG).1;
        let stats = checkpoint(tmp.path(), up_to, |_| true, i64::MIN).unwrap();
        assert_eq!((stats.index, stats.segments_removed), (Some(up_to), up_to));
        let l = segment::list(tmp.path()).unwrap();
        assert_eq!(l.checkpoints, vec![up_to]);
        assert!(l.segments.iter().all(|&s| s > up_to));
        let (_, after, replay) = open(tmp.path(), SEG);
        assert_eq!(replay.checkpoint, Some(up_to));
        assert_eq!(State::of(&after), State::of(&full));
        assert!(after.len() < full.len(), "small sample batches are merged");
    }

    #[test]
    fn checkpoint_forgets_dropped_series_old_samples_and_series_the_head_let_go() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (workload(1, 400), workload(1000, 50));
        let up_to = write(tmp.path(), &a, &b);
        let keep = |r: u64| !r.is_multiple_of(10);
        let keep_after_t = 1_700_000_000_000 + 200 * 15_000;
        let stats = checkpoint(tmp.path(), up_to, keep, keep_after_t).unwrap();

        // The reference: filter `a` record by record, then apply `b` unchanged.
        let dropped: HashSet<u64> = a
            .iter()
            .flat_map(|r| {
                if let Record::Dropped { refs } = r {
                    refs.clone()
                } else {
                    vec![]
                }
            })
            .collect();
        let mut want = State::default();
        for r in &a {
            match r {
                Record::Series { ref_, .. } if !keep(*ref_) || dropped.contains(ref_) => {}
                Record::Samples(s) => want.apply(&Record::Samples(
                    s.iter().copied().filter(|&(_, t, _)| t >= keep_after_t).collect(),
                )),
                Record::Dropped { .. } => {}
                r => want.apply(r),
            }
        }
        b.iter().for_each(|r| want.apply(r));
        let (_, after, _) = open(tmp.path(), SEG);
        let got = State::of(&after);
        assert_eq!(got, want);
        assert!(got.series.len() < 450 - 40 && got.series.contains_key(&399));
        assert!(!got.series.contains_key(&20), "keep_series was false");
        assert!(
            !got.series.contains_key(&23) && got.series.contains_key(&22),
            "23 was dropped"
        );
        assert!(got.samples.values().flatten().all(|&(t, _)| t >= keep_after_t));
        assert!(stats.series_removed > 0 && stats.samples_removed > 0 && stats.metadata_kept > 0);
        // The checkpoint itself holds no record of a forgotten series.
        let cp = dir_records(&tmp.path().join(checkpoint_name(up_to)));
        for r in &cp {
            if let Record::Series { ref_, .. } = r {
                assert!(keep(*ref_) && !dropped.contains(ref_));
            }
            assert!(!matches!(r, Record::Dropped { .. }));
        }
    }

    fn dir_records(dir: &Path) -> Vec<Record> {
        let mut out = Vec::new();
        let mut d = Decoder::default();
        for s in segment::list(dir).unwrap().segments {
            let src = Source {
                path: dir.join(segment_name(s)),
                checkpoint: false,
            };
            for_each_record(&src, |typ, p| {
                out.push(d.decode(typ, p).unwrap().to_owned());
                Ok(())
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn second_checkpoint_builds_on_the_first_and_replaces_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (workload(1, 200), workload(1000, 200), workload(5000, 20));
        let (mut wal, _, _) = open(tmp.path(), SEG);
        a.iter().for_each(|r| _ = wal.log(r).unwrap());
        let first = wal.cut().unwrap() - 1;
        b.iter().for_each(|r| _ = wal.log(r).unwrap());
        let second = wal.cut().unwrap() - 1;
        assert!(checkpoint(tmp.path(), first, |_| true, i64::MIN).unwrap().index == Some(first));
        // Appending goes on while checkpoints run.
        c.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.sync().unwrap();
        assert_eq!(
            checkpoint(tmp.path(), second, |_| true, i64::MIN).unwrap().index,
            Some(second)
        );
        // Already covered: nothing to do.
        assert_eq!(
            checkpoint(tmp.path(), first, |_| true, i64::MIN).unwrap(),
            CheckpointStats::default()
        );
        wal.close().unwrap();
        assert_eq!(segment::list(tmp.path()).unwrap().checkpoints, vec![second]);
        let all = [a, b, c].concat();
        assert_eq!(State::of(&open(tmp.path(), SEG).1), State::of(&all));
    }

    #[test]
    fn the_active_segment_cannot_be_checkpointed() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), SEG);
        wal.log(&workload(1, 1)[0]).unwrap();
        wal.sync().unwrap();
        let err = checkpoint(tmp.path(), 1, |_| true, 0).unwrap_err();
        assert!(matches!(err, WalError::CheckpointActive { up_to: 1, .. }), "{err}");
        assert!(err.to_string().contains("Wal::cut"));
    }

    #[test]
    fn leftovers_of_an_interrupted_checkpoint_are_cleaned_up_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (workload(1, 100), workload(1000, 10));
        let up_to = write(tmp.path(), &a, &b);
        let full = State::of(&open(tmp.path(), SEG).1);
        // Keep copies of the covered segments, as if the crash came before their deletion.
        let saved: Vec<(PathBuf, Vec<u8>)> = (1..=up_to)
            .map(|s| tmp.path().join(segment_name(s)))
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        checkpoint(tmp.path(), up_to, |_| true, i64::MIN).unwrap();
        for (p, bytes) in &saved {
            fs::write(p, bytes).unwrap();
        }
        fs::create_dir(tmp.path().join("checkpoint.00000099.tmp")).unwrap();
        fs::write(tmp.path().join("checkpoint.00000099.tmp/00000000"), b"junk").unwrap();
        let (_, recs, stats) = open(tmp.path(), SEG);
        assert_eq!(State::of(&recs), full);
        assert_eq!(stats.repair, None);
        let l = segment::list(tmp.path()).unwrap();
        assert!(
            l.partial_checkpoints.is_empty() && l.segments.iter().all(|&s| s > up_to),
            "{l:?}"
        );
    }

    #[test]
    fn damaged_checkpoint_is_read_up_to_the_damage_and_later_segments_still_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (workload(1, 100), workload(1000, 10));
        let up_to = write(tmp.path(), &a, &b);
        checkpoint(tmp.path(), up_to, |_| true, i64::MIN).unwrap();
        let p = tmp.path().join(checkpoint_name(up_to)).join(segment_name(0));
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let (_, recs, stats) = open(tmp.path(), SEG);
        assert_eq!(stats.repair.unwrap().segment, None);
        let got = State::of(&recs);
        assert!(got.series.contains_key(&1000) && got.series.contains_key(&1));
        // A later checkpoint still succeeds on top of the damaged one.
        let (mut wal, _, _) = open(tmp.path(), SEG);
        let up2 = wal.cut().unwrap() - 1;
        wal.close().unwrap();
        assert_eq!(
            checkpoint(tmp.path(), up2, |_| true, i64::MIN).unwrap().index,
            Some(up2)
        );
    }
}
