//! The store as the agent uses it: the head fed through the WAL. Every accepted sample
//! is logged before it is applied, so after a crash `Db::open` replays the WAL (from
//! the newest checkpoint) and the head is what it was at the last sync.
//!
//! Retention is, for now, a time window on the head: older samples are dropped and the
//! WAL is checkpointed so its size follows (blocks on disk are the next step).

use crate::head::{AppendOutcome, Head, Metadata, Rejected, SeriesSamples};
use crate::labels::Labels;
use crate::postings::SeriesRef;
use crate::wal::{self, RecordRef, Wal, WalError, WalStats};
use promql_parser::label::Matcher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// How long samples are kept.
    pub retention: Duration,
    /// How far behind the newest sample an out-of-order sample is still accepted
    /// (0 = never, as Prometheus by default).
    pub out_of_order_window: Duration,
    pub wal: wal::Options,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retention: Duration::from_secs(15 * 60),
            out_of_order_window: Duration::ZERO,
            wal: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{} is in use by another sonde process (lock file {}); stop it or use another --data-dir", dir.display(), dir.join(LOCK_FILE).display())]
    Locked { dir: PathBuf },
    #[error("cannot lock {}: {source}", dir.display())]
    Lock { dir: PathBuf, source: std::io::Error },
}

const LOCK_FILE: &str = "lock";

/// An exclusive `flock` on `<dir>/lock`, held while the store is open: two processes
/// appending to one WAL would corrupt it. The kernel drops it if the process dies.
struct DirLock(#[allow(dead_code, reason = "held for its flock")] std::fs::File);

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, DbError> {
        use std::os::fd::AsRawFd;
        let err = |source| DbError::Lock {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(err)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                DbError::Locked { dir: dir.to_path_buf() }
            } else {
                err(e)
            });
        }
        Ok(DirLock(f))
    }
}

/// What one append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendSummary {
    pub appended: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
}

/// What opening the store found (for logs and metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenStats {
    pub series: usize,
    pub samples: u64,
    pub took: Duration,
    /// Bytes of damaged WAL tail that were cut off.
    pub repaired_bytes: u64,
}

pub struct Db {
    _lock: DirLock,
    head: Head,
    wal: Mutex<Wal>,
    dir: PathBuf,
    opts: Options,
    pub open_stats: OpenStats,
}

/// The family a sample name belongs to, from the family's kind: `x_bucket` of a
/// histogram belongs to `x`. (The WAL keeps metadata per sample name.)
fn family_of(sample_name: &str, kind: &str) -> String {
    let suffixes: &[&str] = match kind {
        "histogram" => &["_bucket", "_sum", "_count"],
        "summary" => &["_sum", "_count"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| sample_name.strip_suffix(s))
        .unwrap_or(sample_name)
        .to_string()
}

impl Db {
    pub fn open(dir: &Path, opts: Options) -> Result<Db, DbError> {
        let started = std::time::Instant::now();
        let lock = DirLock::acquire(dir)?;
        let head = Head::new(opts.out_of_order_window.as_millis() as i64);
        let (wal, replay) = Wal::open(&dir.join("wal"), opts.wal.clone(), |rec| match rec {
            RecordRef::Series { ref_, labels } => {
                let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                head.restore_series(ref_, &pairs);
            }
            RecordRef::Samples(samples) => {
                head.append(samples);
            }
            RecordRef::Metadata {
                metric,
                kind,
                help,
                unit,
            } => head.set_metadata(
                metric,
                Metadata {
                    family: family_of(metric, kind),
                    kind: kind.into(),
                    help: help.into(),
                    unit: unit.into(),
                },
            ),
            RecordRef::Dropped(refs) => head.drop_series(refs),
        })?;
        let open_stats = OpenStats {
            series: head.num_series(),
            samples: replay.samples,
            took: started.elapsed(),
            repaired_bytes: replay.repair.as_ref().map_or(0, |r| r.dropped_bytes),
        };
        Ok(Db {
            _lock: lock,
            head,
            wal: Mutex::new(wal),
            dir: dir.to_path_buf(),
            opts,
            open_stats,
        })
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The series with these labels (created and logged if new), pinned until
    /// [`Db::release`].
    pub fn get_or_create(&self, pairs: &[(&str, &str)]) -> Result<SeriesRef, DbError> {
        let mut wal = self.wal.lock().unwrap();
        let (r, created) = self.head.get_or_create(pairs);
        if created {
            let labels: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            wal.log(RecordRef::Series {
                ref_: r,
                labels: &labels,
            })?;
        }
        Ok(r)
    }

    pub fn release(&self, r: SeriesRef) {
        self.head.release(r);
    }

    /// Validates, logs the accepted samples to the WAL, then applies them.
    pub fn append(&self, samples: &[(SeriesRef, i64, f64)]) -> Result<AppendSummary, DbError> {
        let mut outcomes = Vec::with_capacity(samples.len());
        let mut wal = self.wal.lock().unwrap();
        self.head.check(samples, &mut outcomes);
        let accepted: Vec<(u64, i64, f64)> = samples
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == AppendOutcome::Appended)
            .map(|(s, _)| *s)
            .collect();
        for chunk in accepted.chunks(wal::MAX_BATCH) {
            wal.log(RecordRef::Samples(chunk))?;
        }
        self.head.apply(samples, &outcomes);
        drop(wal);
        self.head.count_rejections(&outcomes);
        let mut s = AppendSummary {
            appended: accepted.len(),
            ..Default::default()
        };
        for o in &outcomes {
            match o {
                AppendOutcome::Rejected(Rejected::Duplicate) => s.duplicates += 1,
                AppendOutcome::Rejected(Rejected::OutOfOrder) => s.out_of_order += 1,
                _ => {}
            }
        }
        Ok(s)
    }

    /// Records metadata for a sample name (logged only when it changes).
    pub fn set_metadata(&self, sample_name: &str, meta: Metadata) -> Result<(), DbError> {
        if self.head.metadata(sample_name).as_ref() == Some(&meta) {
            return Ok(());
        }
        let mut wal = self.wal.lock().unwrap();
        wal.log(RecordRef::Metadata {
            metric: sample_name,
            kind: &meta.kind,
            help: &meta.help,
            unit: &meta.unit,
        })?;
        self.head.set_metadata(sample_name, meta);
        Ok(())
    }

    /// Makes everything appended so far durable (call every `wal.sync_interval`). The
    /// fsync runs without holding the append lock.
    pub fn sync(&self) -> Result<u64, DbError> {
        let pending = self.wal.lock().unwrap().begin_sync()?;
        Ok(pending.fsync()?)
    }

    pub fn wal_stats(&self) -> WalStats {
        self.wal.lock().unwrap().stats()
    }

    /// Applies retention at `now_ms`: drops older samples and emptied series from the
    /// head, and checkpoints the WAL so its size follows the head.
    pub fn truncate(&self, now_ms: i64) -> Result<(), DbError> {
        let min_t = now_ms - self.opts.retention.as_millis() as i64;
        let removed = self.head.truncate_before(min_t);
        let mut wal = self.wal.lock().unwrap();
        if !removed.is_empty() {
            for chunk in removed.chunks(wal::MAX_BATCH) {
                wal.log(RecordRef::Dropped(chunk))?;
            }
        }
        let active = wal.cut()?;
        drop(wal);
        if active > 1 {
            let head = &self.head;
            wal::checkpoint(&self.dir.join("wal"), active - 1, |r| head.contains(r), min_t)?;
        }
        Ok(())
    }

    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        self.head.select(matchers, mint, maxt)
    }

    pub fn metadata(&self, sample_name: &str) -> Option<Metadata> {
        self.head.metadata(sample_name)
    }

    pub fn series_labels(&self, matchers: &[Matcher]) -> Vec<Labels> {
        self.head.series_labels(matchers)
    }

    /// Final sync; the store must not be used afterwards.
    pub fn close(&self) -> Result<(), DbError> {
        self.sync().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Matcher> {
        match promql_parser::parser::parse(r#"{__name__=~".+"}"#).unwrap() {
            promql_parser::parser::Expr::VectorSelector(vs) => vs.matchers.matchers,
            _ => unreachable!(),
        }
    }

    fn dump(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
        let mut v: Vec<_> = db
            .select(&all(), i64::MIN, i64::MAX)
            .into_iter()
            .map(|s| {
                (
                    format!("{:?}", s.labels),
                    s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn reopening_replays_series_samples_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let db = Db::open(dir.path(), Options::default()).unwrap();
            let a = db.get_or_create(&[("__name__", "a"), ("job", "x")]).unwrap();
            let b = db.get_or_create(&[("__name__", "b_bucket"), ("le", "1")]).unwrap();
            let stale = f64::from_bits(0x7ff0_0000_0000_0002);
            for i in 0..500 {
                db.append(&[
                    (a, i * 1000, i as f64),
                    (b, i * 1000, if i == 499 { stale } else { 0.25 }),
                ])
                .unwrap();
            }
            let meta = Metadata {
                family: "b".into(),
                kind: "histogram".into(),
                help: "h".into(),
                unit: "".into(),
            };
            db.set_metadata("b_bucket", meta).unwrap();
            db.close().unwrap();
            dump(&db)
        };
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(dump(&db), before);
        assert_eq!(db.metadata("b_bucket").unwrap().family, "b");
        assert_eq!(db.open_stats.samples, 1000);
        // Refs keep counting after the replayed ones.
        let c = db.get_or_create(&[("__name__", "c")]).unwrap();
        assert!(c > 2);
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let err = Db::open(dir.path(), Options::default()).err().expect("locked");
        assert!(matches!(err, DbError::Locked { .. }), "{err}");
        drop(db);
        Db::open(dir.path(), Options::default()).expect("free again once closed");
    }

    #[test]
    fn synced_samples_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let crashed = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let a = db.get_or_create(&[("__name__", "a")]).unwrap();
        db.append(&[(a, 1000, 1.0), (a, 2000, 2.0)]).unwrap();
        db.sync().unwrap();
        // The files as a crash right now would leave them (the process never closes).
        copy_dir(&dir.path().join("wal"), &crashed.path().join("wal"));
        let db = Db::open(crashed.path(), Options::default()).unwrap();
        assert_eq!(dump(&db)[0].1.len(), 2);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn retention_truncates_the_head_and_the_wal_follows() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            retention: Duration::from_secs(100),
            wal: wal::Options {
                segment_size: 4096,
                ..Default::default()
            },
            ..Default::default()
        };
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        let a = db.get_or_create(&[("__name__", "a")]).unwrap();
        let gone = db.get_or_create(&[("__name__", "gone")]).unwrap();
        db.append(&[(gone, 0, 1.0)]).unwrap();
        db.release(gone);
        for i in 0..1000 {
            db.append(&[(a, i * 1000, i as f64)]).unwrap();
        }
        db.truncate(1_000_000).unwrap();
        let kept = dump(&db);
        assert_eq!(kept.len(), 1, "the emptied, unpinned series is gone");
        assert_eq!(kept[0].1.first().unwrap().0, 900_000);
        db.close().unwrap();
        drop(db);
        let reopened = Db::open(dir.path(), opts).unwrap();
        assert_eq!(dump(&reopened), kept, "replay from the checkpoint gives the same head");
        let checkpoints = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("checkpoint.")
            })
            .count();
        assert_eq!(checkpoints, 1);
    }
}
