//! Opening a WAL: one pass over the newest checkpoint and the later segments that hands
//! every record to the caller and repairs a damaged tail.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, warn};

use super::record::{Decoder, RecordRef};
use super::segment::{
    self, Damage, FRAME_HEADER_LEN, Frame, FrameReader, SEGMENT_HEADER_LEN, SegmentWriter, checkpoint_name,
    segment_name,
};
use super::{Options, Wal, WalError};

/// What [`Wal::open`] read and repaired.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayStats {
    /// The checkpoint replay started from.
    pub checkpoint: Option<u32>,
    /// Segments read after the checkpoint.
    pub segments: u32,
    pub records: u64,
    pub series: u64,
    pub samples: u64,
    /// Frame bytes read, checkpoint included.
    pub bytes: u64,
    /// Records that passed their CRC but did not decode (written by a newer or buggy
    /// version); skipped with a warning.
    pub undecodable: u64,
    /// The damage that ended replay early, if any.
    pub repair: Option<Repair>,
}

/// A damaged tail that [`Wal::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// Segment holding the first damaged frame; `None` for damage inside the checkpoint
    /// (which is only skipped, never truncated).
    pub segment: Option<u32>,
    /// Where that segment was truncated: the end of its last good record.
    pub offset: u64,
    pub damage: Damage,
    /// Bytes deleted: the rest of that segment plus every later segment.
    pub dropped_bytes: u64,
    pub dropped_segments: u32,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, handing every record of the newest
    /// checkpoint and the segments after it to `visit`, in log order. Records are borrowed
    /// from reused buffers; copy what you keep.
    ///
    /// Damage never fails the open: the log is cut at the first bad frame (see the module
    /// docs) and appending resumes there. Only I/O errors and bad options are errors.
    ///
    /// Replay and repair are one pass because both must read every byte: doing them
    /// separately would read the whole WAL twice at every start.
    pub fn open(
        dir: &Path,
        opts: Options,
        mut visit: impl FnMut(RecordRef<'_>),
    ) -> Result<(Wal, ReplayStats), WalError> {
        opts.validate()?;
        fs::create_dir_all(dir).map_err(WalError::io("create directory", dir))?;
        let listing = segment::list(dir)?;
        for p in &listing.partial_checkpoints {
            debug!(path = %p.display(), "WAL: removing an unfinished checkpoint");
            fs::remove_dir_all(p).map_err(WalError::io("remove", p))?;
        }
        let checkpoint = listing.checkpoints.last().copied();
        for &c in listing.checkpoints.iter().filter(|&&c| Some(c) != checkpoint) {
            let p = dir.join(checkpoint_name(c));
            fs::remove_dir_all(&p).map_err(WalError::io("remove", &p))?;
        }

        let mut stats = ReplayStats {
            checkpoint,
            ..Default::default()
        };
        let mut decoder = Decoder::default();
        if let Some(c) = checkpoint {
            replay_checkpoint(&dir.join(checkpoint_name(c)), &mut decoder, &mut visit, &mut stats)?;
        }

        // Segments the checkpoint covers are left over from a crash between its rename and
        // their deletion.
        let after = checkpoint.unwrap_or(0);
        for &s in listing.segments.iter().filter(|&&s| s <= after) {
            let p = dir.join(segment_name(s));
            fs::remove_file(&p).map_err(WalError::io("remove", &p))?;
        }
        let live: Vec<u32> = listing.segments.iter().copied().filter(|&s| s > after).collect();

        let mut end = None;
        let mut newest = std::collections::BTreeMap::new();
        for (k, &s) in live.iter().enumerate() {
            let expected = if k > 0 {
                live[k - 1] + 1
            } else {
                checkpoint.map_or(s, |c| c + 1)
            };
            if s != expected {
                warn!(dir = %dir.display(), missing_from = expected, missing_to = s - 1,
                    "WAL: segments are missing; their records are lost, replay goes on after the gap");
            }
            let path = dir.join(segment_name(s));
            let mut seg_newest = i64::MIN;
            let (good, damage) = replay_segment(&path, &mut decoder, &mut visit, &mut stats, &mut seg_newest)?;
            newest.insert(s, seg_newest);
            stats.segments += 1;
            end = Some((s, good));
            if let Some(damage) = damage {
                stats.repair = Some(repair(dir, s, good, damage, &live[k + 1..])?);
                break;
            }
        }
        let writer = resume_writer(dir, &opts, end, after + 1)?;
        let wal = Wal {
            dir: dir.to_owned(),
            opts,
            writer,
            seq: 0,
            shared: Arc::default(),
            newest,
        };
        Ok((wal, stats))
    }

    /// The segments on disk: (first, active). Lists the directory.
    pub fn segments(&self) -> Result<(u32, u32), WalError> {
        let l = segment::list(&self.dir)?;
        let active = self.writer.index();
        Ok((l.segments.first().copied().unwrap_or(active), active))
    }
}

fn replay_checkpoint<F: FnMut(RecordRef<'_>)>(
    cdir: &Path,
    decoder: &mut Decoder,
    visit: &mut F,
    stats: &mut ReplayStats,
) -> Result<(), WalError> {
    for s in segment::list(cdir)?.segments {
        let path = cdir.join(segment_name(s));
        // Checkpoints are not segments of the log: their sample times are not tracked.
        let mut untracked = i64::MIN;
        let (offset, damage) = replay_segment(&path, decoder, visit, stats, &mut untracked)?;
        if let Some(damage) = damage {
            warn!(checkpoint = %cdir.display(), segment = %path.display(), offset, %damage,
                "WAL: checkpoint is damaged; skipping the rest of it and replaying the segments after it");
            let dropped_bytes = fs::metadata(&path).map(|m| m.len().saturating_sub(offset)).unwrap_or(0);
            stats.repair = Some(Repair {
                segment: None,
                offset,
                damage,
                dropped_bytes,
                dropped_segments: 0,
            });
            break;
        }
    }
    Ok(())
}

/// Replays one segment; returns the length of its good prefix and the damage that ended
/// it, if any. `newest` is raised to the newest sample time it holds.
fn replay_segment<F: FnMut(RecordRef<'_>)>(
    path: &Path,
    decoder: &mut Decoder,
    visit: &mut F,
    stats: &mut ReplayStats,
    newest: &mut i64,
) -> Result<(u64, Option<Damage>), WalError> {
    let mut r = FrameReader::open(path)?;
    loop {
        match r.next()? {
            Frame::Record { typ, payload } => {
                stats.bytes += (FRAME_HEADER_LEN + payload.len()) as u64;
                match decoder.decode(typ, payload) {
                    Ok(rec) => {
                        stats.records += 1;
                        match rec {
                            RecordRef::Series { .. } => stats.series += 1,
                            RecordRef::Samples(s) => {
                                stats.samples += s.len() as u64;
                                *newest = s.iter().map(|x| x.1).fold(*newest, i64::max);
                            }
                            _ => {}
                        }
                        visit(rec);
                    }
                    Err(error) => {
                        stats.undecodable += 1;
                        warn!(segment = %path.display(), end_offset = r.offset(), %error,
                            "WAL: skipping a record that passed its CRC but does not decode");
                    }
                }
            }
            Frame::End => return Ok((r.offset(), None)),
            Frame::Damaged(d) => return Ok((r.offset(), Some(d))),
        }
    }
}

/// Truncates segment `s` to its `good` prefix and deletes the `later` segments.
fn repair(dir: &Path, s: u32, good: u64, damage: Damage, later: &[u32]) -> Result<Repair, WalError> {
    let path = dir.join(segment_name(s));
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(WalError::io("open", &path))?;
    let len = file.metadata().map_err(WalError::io("stat", &path))?.len();
    file.set_len(good).map_err(WalError::io("truncate", &path))?;
    file.sync_all().map_err(WalError::io("fsync", &path))?;
    let mut dropped_bytes = len - good;
    for &l in later {
        let p = dir.join(segment_name(l));
        dropped_bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&p).map_err(WalError::io("remove", &p))?;
    }
    segment::sync_dir(dir)?;
    let dropped_segments = later.len() as u32;
    if later.is_empty() {
        warn!(segment = %path.display(), offset = good, %damage, dropped_bytes,
            "WAL: truncated a torn or corrupt tail; the records in it are lost");
    } else {
        warn!(segment = %path.display(), offset = good, %damage, dropped_bytes, dropped_segments,
            "WAL: corruption before the end of the log; kept the records before it, truncated the segment there \
             and deleted every later segment");
    }
    Ok(Repair {
        segment: Some(s),
        offset: good,
        damage,
        dropped_bytes,
        dropped_segments,
    })
}

/// Appends to the last segment if it has room, else starts a new one.
fn resume_writer(dir: &Path, opts: &Options, end: Option<(u32, u64)>, first: u32) -> Result<SegmentWriter, WalError> {
    match end {
        Some((s, len)) if len >= SEGMENT_HEADER_LEN && len < opts.segment_size => {
            let path = dir.join(segment_name(s));
            let mut file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(WalError::io("open", &path))?;
            file.seek(SeekFrom::Start(len)).map_err(WalError::io("seek", &path))?;
            Ok(SegmentWriter::resume(dir, s, opts.segment_size, file, len))
        }
        Some((s, len)) if len < SEGMENT_HEADER_LEN => {
            // Its header never made it to disk: start the segment over.
            let path = dir.join(segment_name(s));
            fs::remove_file(&path).map_err(WalError::io("remove", &path))?;
            SegmentWriter::create(dir, s, opts.segment_size)
        }
        Some((s, _)) => SegmentWriter::create(dir, s + 1, opts.segment_size),
        None => SegmentWriter::create(dir, first, opts.segment_size),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::wal::Record;
    use crate::wal::test_support::{assert_same, open, workload};

    const SEG: u64 = 4096;

    fn seg_path(dir: &Path, s: u32) -> PathBuf {
        dir.join(segment_name(s))
    }

    fn copy_dir(from: &Path, to: &Path) {
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    /// Logs `recs` into a fresh WAL and closes it; returns the last segment's length just
    /// before and just after the last record was written.
    fn write_log(dir: &Path, recs: &[Record]) -> (u32, u64, u64) {
        let (mut wal, _, _) = open(dir, SEG);
        let (last, init) = recs.split_last().unwrap();
        for r in init {
            wal.log(r).unwrap();
        }
        wal.sync().unwrap();
        wal.log(last).unwrap();
        let seg = wal.stats().active_segment;
        let before = fs::metadata(seg_path(dir, seg)).unwrap().len();
        let before = if before > SEGMENT_HEADER_LEN || seg == 1 {
            before
        } else {
            SEGMENT_HEADER_LEN
        };
        wal.close().unwrap();
        (seg, before, fs::metadata(seg_path(dir, seg)).unwrap().len())
    }

    #[test]
    fn empty_dir_opens_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let (wal, recs, stats) = open(&dir, SEG);
        assert!(recs.is_empty());
        assert_eq!(stats, ReplayStats::default());
        assert_eq!(wal.segments().unwrap(), (1, 1));
        drop(wal);
        let (wal, recs, stats) = open(&dir, SEG);
        assert!(recs.is_empty());
        assert_eq!((stats.segments, stats.repair), (1, None));
        assert_eq!(wal.stats().active_segment, 1);
    }

    #[test]
    fn reopen_after_clean_close_appends_to_the_same_log() {
        let tmp = tempfile::tempdir().unwrap();
        let a = workload(1, 20);
        let b = workload(100, 20);
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        a.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.close().unwrap();
        let (mut wal, recs, stats) = open(tmp.path(), 1 << 20);
        assert_same(&recs, &a);
        assert_eq!(stats.repair, None);
        b.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.close().unwrap();
        let (wal, recs, _) = open(tmp.path(), 1 << 20);
        assert_same(&recs, &[a, b].concat());
        assert_eq!(
            wal.segments().unwrap(),
            (1, 1),
            "a small log stays in one segment across reopens"
        );
    }

    #[test]
    fn replays_many_segments_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let recs = workload(1, 2000);
        let (mut wal, _, _) = open(tmp.path(), SEG);
        recs.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.close().unwrap();
        let (wal, back, stats) = open(tmp.path(), SEG);
        assert_same(&back, &recs);
        assert!(stats.segments > 20, "{stats:?}");
        assert_eq!(wal.segments().unwrap(), (1, stats.segments));
        let n: u64 = recs
            .iter()
            .map(|r| if let Record::Samples(s) = r { s.len() as u64 } else { 0 })
            .sum();
        assert_eq!(
            (stats.samples, stats.series, stats.records),
            (n, 2000, recs.len() as u64)
        );
    }

    #[test]
    fn torn_tail_at_every_byte_of_the_last_record() {
        let tmp = tempfile::tempdir().unwrap();
        let orig = tmp.path().join("orig");
        let recs = workload(1, 300);
        let (seg, before, after) = write_log(&orig, &recs);
        assert!(seg > 1 && after - before > 20, "{seg} {before} {after}");
        let full = fs::read(seg_path(&orig, seg)).unwrap();
        let kept = &recs[..recs.len() - 1];
        let extra = Record::Samples(vec![(1, 42, 4.2)]);
        for cut in before..after {
            let dir = tmp.path().join(format!("cut{cut}"));
            fs::create_dir(&dir).unwrap();
            copy_dir(&orig, &dir);
            fs::write(seg_path(&dir, seg), &full[..cut as usize]).unwrap();
            let (mut wal, back, stats) = open(&dir, SEG);
            assert_same(&back, kept);
            if cut > before {
                let repair = stats.repair.expect("damage reported");
                assert_eq!(
                    (repair.segment, repair.offset, repair.dropped_bytes),
                    (Some(seg), before, cut - before)
                );
            }
            assert_eq!(fs::metadata(seg_path(&dir, seg)).unwrap().len(), before);
            wal.log(&extra).unwrap();
            wal.close().unwrap();
            let (_, back, stats) = open(&dir, SEG);
            assert_eq!(stats.repair, None);
            assert_same(&back, &[kept, std::slice::from_ref(&extra)].concat());
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn flipped_byte_in_the_last_record_drops_only_that_record() {
        let tmp = tempfile::tempdir().unwrap();
        let orig = tmp.path().join("orig");
        let recs = workload(1, 300);
        let (seg, before, after) = write_log(&orig, &recs);
        let full = fs::read(seg_path(&orig, seg)).unwrap();
        for pos in before..after {
            let dir = tmp.path().join(format!("flip{pos}"));
            fs::create_dir(&dir).unwrap();
            copy_dir(&orig, &dir);
            let mut bad = full.clone();
            bad[pos as usize] ^= 0x40;
            fs::write(seg_path(&dir, seg), &bad).unwrap();
            let (mut wal, back, stats) = open(&dir, SEG);
            assert_same(&back, &recs[..recs.len() - 1]);
            assert_eq!(stats.repair.unwrap().dropped_bytes, after - before);
            wal.log(&recs[0]).unwrap();
            wal.close().unwrap();
            assert_eq!(open(&dir, SEG).1.len(), recs.len());
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn corruption_in_an_older_segment_keeps_the_prefix_and_drops_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let recs = workload(1, 500);
        let (mut wal, _, _) = open(tmp.path(), SEG);
        recs.iter().for_each(|r| _ = wal.log(r).unwrap());
        let last = wal.close().unwrap();
        assert_eq!(last, recs.len() as u64);
        let (first, active) = (1, fs::read_dir(tmp.path()).unwrap().count() as u32);
        assert!(active >= 5);
        // Count the records in segments 1 and 2 by replaying copies of them alone.
        let count = |segs: &[u32]| {
            let d = tempfile::tempdir().unwrap();
            for &s in segs {
                fs::copy(seg_path(tmp.path(), s), seg_path(d.path(), s)).unwrap();
            }
            open(d.path(), SEG).1.len()
        };
        let in_first = count(&[first]);
        let in_first_two = count(&[1, 2]);
        // Damage the middle of segment 2.
        let p = seg_path(tmp.path(), 2);
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&p, &bytes).unwrap();

        let (mut wal, back, stats) = open(tmp.path(), SEG);
        let repair = stats.repair.unwrap();
        assert_eq!(repair.segment, Some(2));
        assert_eq!(repair.dropped_segments, active - 2);
        assert!(
            back.len() >= in_first && back.len() < in_first_two,
            "{} {in_first} {in_first_two}",
            back.len()
        );
        assert_same(&back, &recs[..back.len()]);
        assert_eq!(segment::list(tmp.path()).unwrap().segments, vec![1, 2]);
        let more = workload(10_000, 3);
        more.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.close().unwrap();
        let (_, again, stats) = open(tmp.path(), SEG);
        assert_eq!(stats.repair, None);
        assert_same(&again, &[&back[..], &more].concat());
    }

    #[test]
    fn zeroed_tail_and_headerless_segment_are_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let recs = workload(1, 10);
        let (mut wal, _, _) = open(tmp.path(), SEG);
        recs.iter().for_each(|r| _ = wal.log(r).unwrap());
        wal.close().unwrap();
        // A filesystem that extended the file but never wrote the data: zeros.
        let p = seg_path(tmp.path(), 1);
        let mut bytes = fs::read(&p).unwrap();
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 4096]);
        fs::write(&p, &bytes).unwrap();
        // A crash right after creating the next segment, before its header.
        fs::write(seg_path(tmp.path(), 2), b"sW").unwrap();
        let (mut wal, back, stats) = open(tmp.path(), SEG);
        assert_same(&back, &recs);
        let repair = stats.repair.unwrap();
        assert_eq!(
            (repair.segment, repair.offset, repair.damage),
            (Some(1), good, Damage::BadFrame { typ: 0, len: 0 })
        );
        assert_eq!(repair.dropped_bytes, 4096 + 2);
        assert_eq!(wal.stats().active_segment, 1);
        wal.log(&recs[0]).unwrap();
        wal.close().unwrap();

        // Only a partial header in the last segment: it is started over.
        fs::write(seg_path(tmp.path(), 2), b"sWA").unwrap();
        let (mut wal, back, stats) = open(tmp.path(), SEG);
        assert_eq!(back.len(), recs.len() + 1);
        assert_eq!(stats.repair.unwrap().damage, Damage::BadHeader);
        assert_eq!(wal.stats().active_segment, 2);
        wal.log(&recs[1]).unwrap();
        wal.close().unwrap();
        assert_eq!(open(tmp.path(), SEG).1.len(), recs.len() + 2);
    }

    #[test]
    fn checksummed_but_undecodable_record_is_skipped_not_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), SEG);
        wal.log(&Record::Dropped { refs: vec![1] }).unwrap();
        wal.close().unwrap();
        // Append a frame of unknown type 9 with a valid CRC, then a good record.
        let p = seg_path(tmp.path(), 1);
        let mut bytes = fs::read(&p).unwrap();
        let payload = b"future";
        let mut frame = vec![9u8];
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&frame);
        h.update(payload);
        frame.extend_from_slice(&h.finalize().to_le_bytes());
        frame.extend_from_slice(payload);
        bytes.extend_from_slice(&frame);
        fs::write(&p, &bytes).unwrap();
        let (mut wal, _, _) = open(tmp.path(), SEG);
        wal.log(&Record::Dropped { refs: vec![2] }).unwrap();
        wal.close().unwrap();
        let (_, back, stats) = open(tmp.path(), SEG);
        assert_eq!((stats.undecodable, stats.repair), (1, None));
        assert_eq!(
            back,
            vec![Record::Dropped { refs: vec![1] }, Record::Dropped { refs: vec![2] }]
        );
    }

    #[test]
    fn invalid_options_are_reported_together() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = Options {
            segment_size: 10,
            sync_interval: std::time::Duration::ZERO,
        };
        let err = Wal::open(tmp.path(), opts, |_| {}).err().unwrap().to_string();
        assert!(
            err.contains("segment_size 10") && err.contains("sync_interval"),
            "{err}"
        );
    }
}
