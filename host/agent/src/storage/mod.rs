//! The agent's view of the store (crate `sonde-tsdb`): the WAL-backed head, wrapped so
//! scrape code deals in plain results and storage errors are worded once, here.

use promql_parser::label::Matcher;
use sonde_tsdb::db::{Db, Options};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use sonde_tsdb::head::{Metadata, Pinned};
pub use sonde_tsdb::labels::{Labels, METRIC_NAME};
pub use sonde_tsdb::postings::SeriesRef;

/// Prometheus's staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN.to_bits()
}

pub struct Storage {
    db: Db,
    /// Appends that failed in the WAL (disk full, I/O error).
    pub write_errors: AtomicU64,
    /// When the WAL buffer was last handed to the OS.
    flushed_at: Mutex<Instant>,
    /// Something was logged since then.
    unflushed: AtomicBool,
    /// Woken when the first record after a flush stays in the buffer: the maintenance
    /// task then flushes it within [`FLUSH_WITHIN`].
    pub flush_wanted: tokio::sync::Notify,
}

/// The longest a logged record waits in the WAL buffer before it is handed to the OS
/// (from then it survives sonde being killed).
pub const FLUSH_WITHIN: Duration = Duration::from_secs(1);

/// An append flushes the buffer itself when the last flush is at least this old, so a
/// collection every second or slower costs no extra wake-up of the maintenance task.
const FLUSH_WITH_APPEND_AFTER: Duration = Duration::from_millis(500);

/// The least time a finished block range stays in the head before it is cut: room for
/// samples appended a little after their timestamps (rule evaluations, staleness
/// markers, the 10 s maintenance tick). Collections hold cuts for their timeout on top
/// (see [`Storage::hold_cuts_for`]). Prometheus waits half its 2 h range; sonde's range is
/// 2 min and a shorter wait keeps fewer samples a series in memory (~40 % fewer at 1 s).
const CUT_DELAY: Duration = Duration::from_secs(15);

impl Storage {
    pub fn open(dir: &Path, cfg: &crate::config::StorageConfig) -> Result<Self, String> {
        let defaults = Options::default();
        let opts = Options {
            retention: cfg.retention.map_or(defaults.retention, |d| d.0),
            retention_size: cfg.retention_size.map(|b| b.0),
            out_of_order_window: cfg.out_of_order_window.map_or(Duration::ZERO, |d| d.0),
            cut_delay: Some(CUT_DELAY),
            ..defaults
        };
        let db = Db::open(dir, opts).map_err(|e| format!("cannot open storage in {}: {e}", dir.display()))?;
        let s = db.open_stats;
        tracing::info!(
            series = s.series,
            samples = s.samples,
            took_ms = s.took.as_millis() as u64,
            repaired_bytes = s.repaired_bytes,
            "storage opened (WAL replayed)"
        );
        Ok(Storage {
            db,
            write_errors: AtomicU64::new(0),
            flushed_at: Mutex::new(Instant::now()),
            unflushed: AtomicBool::new(false),
            flush_wanted: tokio::sync::Notify::new(),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> String {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        format!("storage: cannot {what}: {e}")
    }

    pub fn get_or_create(&self, pairs: &[(&str, &str)]) -> Result<SeriesRef, String> {
        self.pin(pairs).map(|p| p.sref)
    }

    /// [`Storage::get_or_create`], also telling whether another holder has the series.
    pub fn pin(&self, pairs: &[(&str, &str)]) -> Result<Pinned, String> {
        self.db.pin(pairs).map_err(|e| self.failed("create series", e))
    }

    /// A writer (a collection) whose samples reach the store up to `late` after their
    /// timestamps: block cuts wait that long after a range ends, so none are refused.
    pub fn hold_cuts_for(&self, late: Duration) {
        self.db.hold_cuts_for(late);
    }

    pub fn release(&self, r: SeriesRef) {
        self.db.release(r);
    }

    pub fn append(&self, samples: &[(SeriesRef, i64, f64)]) -> Result<(), String> {
        let result = self
            .db
            .append(samples)
            .map(|_| ())
            .map_err(|e| self.failed("append samples", e));
        self.logged();
        result
    }

    /// Metadata for the sample names of one family. A failure is logged, not fatal.
    pub fn set_metadata(&self, sample_names: &[&str], meta: Metadata) {
        for n in sample_names {
            if let Err(e) = self.db.set_metadata(n, meta.clone()) {
                tracing::warn!("{}", self.failed("record metadata", e));
            }
        }
        self.logged();
    }

    /// After records went to the WAL buffer: flush it now if the last flush is old enough,
    /// else have the maintenance task flush it within [`FLUSH_WITHIN`] (it is woken once
    /// per flush, by the first record left waiting).
    fn logged(&self) {
        if self.flushed_at.lock().unwrap().elapsed() >= FLUSH_WITH_APPEND_AFTER {
            self.flush();
        } else if !self.unflushed.swap(true, Ordering::AcqRel) {
            self.flush_wanted.notify_one();
        }
    }

    /// When the buffer was last flushed.
    pub fn flushed_at(&self) -> Instant {
        *self.flushed_at.lock().unwrap()
    }

    pub fn metadata(&self, sample_name: &str) -> Option<Metadata> {
        self.db.metadata(sample_name)
    }

    /// Every sample name's metadata, sorted by name.
    pub fn all_metadata(&self) -> Vec<(String, Metadata)> {
        self.db.all_metadata()
    }

    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        self.db
            .select(matchers, mint, maxt)
            .into_iter()
            .map(|s| (s.labels, s.samples))
            .collect()
    }

    /// Cuts blocks, compacts and applies retention.
    pub fn maintain(&self, now_ms: i64) {
        if let Err(e) = self.db.maintain(now_ms) {
            tracing::warn!("{}", self.failed("maintain storage", e));
        }
    }

    /// Flushes when records are waiting (an append may have flushed them meanwhile).
    pub fn flush_waiting(&self) {
        if self.unflushed.load(Ordering::Acquire) {
            self.flush();
        }
    }

    /// Hands the WAL buffer to the OS.
    pub fn flush(&self) {
        let mut at = self.flushed_at.lock().unwrap();
        self.unflushed.store(false, Ordering::Release);
        if let Err(e) = self.db.flush() {
            tracing::error!("{}", self.failed("write the WAL", e));
        }
        *at = Instant::now();
    }

    pub fn sync(&self) {
        if let Err(e) = self.db.sync() {
            tracing::error!("{}", self.failed("sync the WAL", e));
        }
    }

    pub fn close(&self) {
        if let Err(e) = self.db.close() {
            tracing::error!("{}", self.failed("close the WAL", e));
        }
    }
}

/// What the PromQL evaluator reads.
impl sonde_promql::Querier for Storage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        Storage::select(self, matchers, mint, maxt)
    }
}

#[cfg(test)]
pub fn test_storage() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), &Default::default()).unwrap();
    (dir, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &Storage) -> u64 {
        s.db().wal_stats().bytes_written
    }

    #[test]
    fn an_append_long_after_the_last_flush_flushes_and_one_soon_after_asks_for_a_flush() {
        let (_dir, s) = test_storage();
        let r = s.get_or_create(&[("__name__", "up"), ("job", "a")]).unwrap();
        s.flush();
        let before = written(&s);
        // Right after a flush: the samples wait in the buffer, and the maintenance task
        // is asked (once) to flush them.
        s.append(&[(r, 1_000, 1.0)]).unwrap();
        assert_eq!(written(&s), before, "flushed too early");
        let asked = s.flush_wanted.notified();
        tokio::pin!(asked);
        assert!(asked.as_mut().enable(), "no flush was asked for");
        s.append(&[(r, 2_000, 1.0)]).unwrap();
        let again = s.flush_wanted.notified();
        tokio::pin!(again);
        assert!(!again.as_mut().enable(), "asked twice for one flush");
        s.flush_waiting();
        let flushed = written(&s);
        assert!(flushed > before, "the waiting samples were not flushed");
        s.flush_waiting();
        assert_eq!(written(&s), flushed, "nothing was waiting");

        // Half a second or more after the last flush, the append flushes by itself.
        std::thread::sleep(FLUSH_WITH_APPEND_AFTER);
        s.append(&[(r, 3_000, 1.0)]).unwrap();
        assert!(written(&s) > flushed, "the append did not flush");
        let none = s.flush_wanted.notified();
        tokio::pin!(none);
        assert!(!none.as_mut().enable(), "a flushed append asked for a flush");
    }
}
