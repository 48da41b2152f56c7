//! Logging records, handing them to the OS, and fsyncing them: the `Wal` write path.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::record::RecordRef;
use super::{Wal, WalError};

/// State shared with [`PendingSync`], which may finish on another thread.
#[derive(Default)]
pub(super) struct Shared {
    fsyncs: AtomicU64,
    synced_seq: AtomicU64,
    poisoned: AtomicBool,
    /// Finished segments whose fsync has not completed yet. Every sync includes them until
    /// one succeeds, so overlapping syncs can finish in any order and still never claim a
    /// record durable before it is.
    unsynced: Mutex<Vec<Arc<File>>>,
}

/// What the WAL has done since it was opened, for `sonde_wal_*` metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Sequence number of the last record logged; also the number of records logged.
    pub seq: u64,
    /// Every record with a sequence number up to this one is on stable storage.
    pub synced_seq: u64,
    /// `fdatasync` calls made.
    pub fsyncs: u64,
    /// Bytes handed to the OS (frames and segment headers).
    pub bytes_written: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Index of the segment being written.
    pub active_segment: u32,
}

impl Wal {
    /// Appends a record to the buffer and returns its sequence number. It is durable once
    /// a later [`sync`](Self::sync) returns a number at least this large.
    pub fn log<'a>(&mut self, rec: impl Into<RecordRef<'a>>) -> Result<u64, WalError> {
        self.check()?;
        let rec = rec.into();
        let newest = match rec {
            RecordRef::Samples(s) => s.iter().map(|x| x.1).max(),
            _ => None,
        };
        match self.writer.append(rec) {
            Ok(()) => {
                if let Some(t) = newest {
                    let e = self.newest.entry(self.writer.index()).or_insert(i64::MIN);
                    *e = (*e).max(t);
                }
                self.seq += 1;
                Ok(self.seq)
            }
            Err(e @ WalError::RecordTooLarge { .. }) => Err(e),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Writes buffered records to the OS (no fsync): they now survive `kill -9`.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.check()?;
        self.writer.flush().map_err(|e| self.poison(e))
    }

    /// Flushes and fsyncs everything logged so far; returns the sequence number now durable.
    pub fn sync(&mut self) -> Result<u64, WalError> {
        self.begin_sync()?.fsync()
    }

    /// The first half of [`sync`](Self::sync): writes buffered records to the OS and returns
    /// the fsync still to do, which may run after the owner releases its lock on the `Wal`.
    pub fn begin_sync(&mut self) -> Result<PendingSync, WalError> {
        self.check()?;
        self.writer.flush().map_err(|e| self.poison(e))?;
        let mut files = {
            let mut unsynced = self.shared.unsynced.lock().expect("WAL sync state");
            unsynced.extend(self.writer.drain_finished());
            unsynced.clone()
        };
        // The active segment holds every record logged since the last cut; until a sync up
        // to `seq` has completed, it must be fsynced (again).
        if self.shared.synced_seq.load(Ordering::Acquire) < self.seq {
            files.push(self.writer.active_file());
        }
        Ok(PendingSync {
            files,
            seq: self.seq,
            shared: Arc::clone(&self.shared),
            dir: self.dir.clone(),
        })
    }

    /// Finishes the active segment and starts a new one, so that every segment before it can
    /// be checkpointed.
    pub fn cut(&mut self) -> Result<u32, WalError> {
        self.check()?;
        self.writer.cut().map_err(|e| self.poison(e))?;
        Ok(self.writer.index())
    }

    /// The newest segment before the active one that can be checkpointed with nothing to
    /// keep from it but series and metadata: every sample in it and the segments before it
    /// is older than `t` (the time the head was truncated to). None when the oldest segment
    /// already holds samples at or after `t`.
    pub fn checkpoint_limit(&self, t: i64) -> Option<u32> {
        let active = self.writer.index();
        let blocking = self
            .newest
            .range(..active)
            .find(|(_, newest)| **newest >= t)
            .map(|(s, _)| *s);
        let limit = blocking.unwrap_or(active).checked_sub(1)?;
        (limit > 0).then_some(limit)
    }

    /// Forgets what it knew of segments up to `up_to` (a checkpoint covers them now).
    pub fn checkpointed(&mut self, up_to: u32) {
        self.newest.retain(|s, _| *s > up_to);
    }

    /// Syncs and closes the log.
    pub fn close(mut self) -> Result<u64, WalError> {
        self.sync()
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn options(&self) -> &super::Options {
        &self.opts
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            seq: self.seq,
            synced_seq: self.shared.synced_seq.load(Ordering::Acquire),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            bytes_written: self.writer.bytes_written,
            segments_created: self.writer.segments_created,
            active_segment: self.writer.index(),
        }
    }

    fn check(&self) -> Result<(), WalError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(WalError::Poisoned { dir: self.dir.clone() });
        }
        Ok(())
    }

    fn poison(&self, e: WalError) -> WalError {
        self.shared.poisoned.store(true, Ordering::Release);
        tracing::error!(dir = %self.dir.display(), error = %e, "WAL: write failed; the log must be reopened");
        e
    }
}

impl Drop for Wal {
    /// Best effort: buffered records reach the OS even if the owner forgot `close`.
    fn drop(&mut self) {
        if !self.shared.poisoned.load(Ordering::Acquire) {
            let _ = self.writer.flush();
        }
    }
}

/// An fsync to finish, from [`Wal::begin_sync`]. Several may be in flight (say, the timer's
/// and shutdown's); each one's result is correct whatever order they finish in.
#[must_use = "the records are not durable until fsync() returns"]
pub struct PendingSync {
    files: Vec<Arc<File>>,
    seq: u64,
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl PendingSync {
    /// fsyncs the segments written since the previous sync. On success every record up to
    /// the returned sequence number is durable; on failure the `Wal` is poisoned.
    pub fn fsync(self) -> Result<u64, WalError> {
        for f in &self.files {
            if let Err(e) = f.sync_data() {
                self.shared.poisoned.store(true, Ordering::Release);
                tracing::error!(dir = %self.dir.display(), error = %e, "WAL: fsync failed; the log must be reopened");
                return Err(WalError::Io {
                    op: "fsync a segment in",
                    path: self.dir,
                    source: e,
                });
            }
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let mut unsynced = self.shared.unsynced.lock().expect("WAL sync state");
        unsynced.retain(|f| !self.files.iter().any(|done| Arc::ptr_eq(f, done)));
        drop(unsynced);
        let before = self.shared.synced_seq.fetch_max(self.seq, Ordering::AcqRel);
        Ok(before.max(self.seq))
    }

    /// The sequence number this sync makes durable.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::wal::segment::{Frame, FrameReader, segment_name};
    use crate::wal::test_support::{assert_same, open, workload};
    use crate::wal::{MAX_RECORD_LEN, Record, WalError};

    fn frames_on_disk(dir: &std::path::Path) -> usize {
        let mut n = 0;
        for s in crate::wal::segment::list(dir).unwrap().segments {
            let mut r = FrameReader::open(&dir.join(segment_name(s))).unwrap();
            while let Frame::Record { .. } = r.next().unwrap() {
                n += 1;
            }
        }
        n
    }

    #[test]
    fn checkpoint_limit_stops_before_the_first_segment_with_samples_to_keep() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        let samples = |t: i64| Record::Samples(vec![(1, t, 1.0), (2, t - 5, 2.0)]);
        // Segment 1: samples to 100; 2: to 200 (and no samples: a segment of series only); 3: to 300.
        wal.log(&samples(100)).unwrap();
        assert_eq!(wal.checkpoint_limit(1_000), None, "nothing finished yet");
        wal.cut().unwrap();
        wal.log(&samples(200)).unwrap();
        wal.cut().unwrap();
        wal.log(&workload(10, 1)[0]).unwrap();
        wal.cut().unwrap();
        wal.log(&samples(300)).unwrap();
        wal.cut().unwrap();
        assert_eq!(wal.writer.index(), 5);
        assert_eq!(wal.checkpoint_limit(100), None, "segment 1 holds a sample at 100");
        assert_eq!(wal.checkpoint_limit(101), Some(1));
        assert_eq!(
            wal.checkpoint_limit(201),
            Some(3),
            "through the segment without samples"
        );
        assert_eq!(wal.checkpoint_limit(301), Some(4));
        assert_eq!(wal.checkpoint_limit(150), Some(1));
        wal.checkpointed(3);
        assert_eq!(
            wal.checkpoint_limit(150),
            Some(3),
            "what segments 1-3 held is forgotten"
        );
        // Reopening learns the same from replay.
        drop(wal);
        let (wal, _, _) = open(tmp.path(), 1 << 20);
        assert_eq!(wal.checkpoint_limit(201), Some(3));
        assert_eq!(wal.checkpoint_limit(200), Some(1));
    }

    #[test]
    fn sequence_numbers_and_the_synced_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        let recs = workload(1, 3);
        let seqs: Vec<u64> = recs.iter().map(|r| wal.log(r).unwrap()).collect();
        assert_eq!(seqs, (1..=recs.len() as u64).collect::<Vec<_>>());
        let s = wal.stats();
        assert_eq!((s.seq, s.synced_seq), (recs.len() as u64, 0));
        assert_eq!(frames_on_disk(tmp.path()), 0, "log only buffers");

        assert_eq!(wal.sync().unwrap(), recs.len() as u64);
        let s = wal.stats();
        assert_eq!(s.synced_seq, recs.len() as u64);
        assert!(s.fsyncs >= 1);
        assert_eq!(frames_on_disk(tmp.path()), recs.len());
        assert_eq!(
            s.bytes_written,
            fs::metadata(tmp.path().join("00000001")).unwrap().len()
        );

        // Nothing new: no fsync.
        assert_eq!(wal.sync().unwrap(), recs.len() as u64);
        assert_eq!(wal.stats().fsyncs, s.fsyncs);

        // A split sync covers what was logged before it began, not after.
        let a = wal.log(&recs[0]).unwrap();
        let pending = wal.begin_sync().unwrap();
        let b = wal.log(&recs[1]).unwrap();
        assert_eq!(pending.seq(), a);
        assert_eq!(pending.fsync().unwrap(), a);
        assert_eq!(wal.stats().synced_seq, a);
        assert_eq!(wal.sync().unwrap(), b);
    }

    #[test]
    fn overlapping_syncs_finishing_out_of_order_claim_only_what_is_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        let r = Record::Dropped { refs: vec![1] };
        wal.log(&r).unwrap();
        let first = wal.begin_sync().unwrap();
        wal.log(&r).unwrap();
        wal.cut().unwrap();
        let third = wal.log(&r).unwrap();
        // The second sync must fsync segment 1 too: the first has not finished.
        let second = wal.begin_sync().unwrap();
        assert_eq!(second.files.len(), 2);
        assert_eq!(second.fsync().unwrap(), third);
        assert_eq!(first.fsync().unwrap(), third, "an older sync never lowers the marker");
        assert_eq!(wal.stats().synced_seq, third);
        // Everything is durable now: nothing left to fsync.
        let fsyncs = wal.stats().fsyncs;
        assert_eq!(wal.sync().unwrap(), third);
        assert_eq!(wal.stats().fsyncs, fsyncs);
        // A sync that begins before an earlier one ends fsyncs the active segment again.
        wal.log(&r).unwrap();
        let a = wal.begin_sync().unwrap();
        let b = wal.begin_sync().unwrap();
        assert_eq!((a.files.len(), b.files.len()), (1, 1));
        b.fsync().unwrap();
        a.fsync().unwrap();
    }

    #[test]
    fn flush_hands_records_to_the_os_without_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        wal.log(&Record::Dropped { refs: vec![1] }).unwrap();
        let fsyncs = wal.stats().fsyncs;
        wal.flush().unwrap();
        assert_eq!(frames_on_disk(tmp.path()), 1);
        assert_eq!(wal.stats().fsyncs, fsyncs);
        assert_eq!(wal.stats().synced_seq, 0);
    }

    #[test]
    fn dropping_the_wal_flushes_its_buffer() {
        let tmp = tempfile::tempdir().unwrap();
        let recs = workload(1, 5);
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        recs.iter().for_each(|r| _ = wal.log(r).unwrap());
        drop(wal);
        assert_same(&open(tmp.path(), 1 << 20).1, &recs);
    }

    #[test]
    fn cut_starts_a_new_segment_and_sync_covers_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        wal.log(&Record::Dropped { refs: vec![1] }).unwrap();
        assert_eq!(wal.cut().unwrap(), 2);
        wal.log(&Record::Dropped { refs: vec![2] }).unwrap();
        let before = wal.stats().fsyncs;
        wal.sync().unwrap();
        assert_eq!(wal.stats().fsyncs - before, 2, "finished segment and active segment");
        assert_eq!(wal.segments().unwrap(), (1, 2));
        assert_eq!(wal.stats().segments_created, 2);
    }

    #[test]
    fn oversized_record_is_refused_and_the_wal_stays_usable() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(tmp.path(), 1 << 20);
        let huge = Record::Series {
            ref_: 1,
            labels: vec![("a".into(), "x".repeat(MAX_RECORD_LEN))],
        };
        assert!(matches!(wal.log(&huge), Err(WalError::RecordTooLarge { .. })));
        assert_eq!(wal.stats().seq, 0);
        let ok = Record::Dropped { refs: vec![7] };
        assert_eq!(wal.log(&ok).unwrap(), 1);
        wal.close().unwrap();
        assert_eq!(open(tmp.path(), 1 << 20).1, vec![ok]);
    }
}
