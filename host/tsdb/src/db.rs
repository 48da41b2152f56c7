//! The store as the agent uses it: the head fed through the WAL. Every accepted sample
//! is logged before it is applied, so after a crash `Db::open` replays the WAL (from
//! the newest checkpoint) and the head is what it was at the last sync.
//!
//! Maintenance (`Db::maintain`, every few seconds): once a block range (2 min) ended more
//! than the cut delay ago, it is written as a block and dropped from the head, and
//! the WAL is checkpointed past it; blocks of a complete larger window are compacted;
//! blocks past the retention time, or the oldest ones beyond the size limit, are
//! deleted. Queries merge the head and every overlapping block.

use crate::block::{Block, BlockError};
use crate::head::{AppendOutcome, Head, Metadata, Pinned, Rejected, SeriesSamples};
use crate::labels::Labels;
use crate::postings::SeriesRef;
use crate::wal::{self, RecordRef, Wal, WalError, WalStats};
use promql_parser::label::Matcher;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// How long samples are kept.
    pub retention: Duration,
    /// Total bytes of blocks and WAL above which the oldest blocks are deleted
    /// (None: no size limit).
    pub retention_size: Option<u64>,
    /// Time range of the blocks cut from the head. Short, so the head's memory per series
    /// stays small at 1 s scrapes.
    pub block_range: Duration,
    /// How long after a range ends the head keeps it before cutting it into a block (the
    /// head then spans up to `block_range + cut_delay`). A sample arriving later than this
    /// behind its own timestamp is refused as too old, so it must cover the slowest writer:
    /// a collection's samples carry its start time and arrive when it ends. Never less than
    /// `out_of_order_window`; writers can raise it with [`Db::hold_cuts_for`]. `None`: half
    /// a block range.
    pub cut_delay: Option<Duration>,
    /// Windows blocks are compacted into (each a multiple of the previous and of
    /// `block_range`).
    pub compaction_ranges: Vec<Duration>,
    /// How far behind the newest sample an out-of-order sample is still accepted
    /// (0 = never, as Prometheus by default).
    pub out_of_order_window: Duration,
    pub wal: wal::Options,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retention: Duration::from_secs(15 * 24 * 3600),
            retention_size: None,
            block_range: Duration::from_secs(2 * 60),
            cut_delay: None,
            compaction_ranges: crate::compact::DEFAULT_RANGES.to_vec(),
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
    #[error(transparent)]
    Block(#[from] BlockError),
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
    pub too_far_in_future: usize,
}

/// How far ahead of the wall clock a sample's timestamp may be.
pub const MAX_FUTURE: Duration = Duration::from_secs(10 * 60);

/// What opening the store found (for logs and metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenStats {
    pub series: usize,
    pub samples: u64,
    pub took: Duration,
    /// Bytes of damaged WAL tail that were cut off.
    pub repaired_bytes: u64,
}

/// Counters for sonde's own /metrics.
#[derive(Default)]
pub struct DbStats {
    pub blocks_written: AtomicU64,
    pub compactions: AtomicU64,
    pub blocks_deleted: AtomicU64,
    pub maintenance_errors: AtomicU64,
}

pub struct Db {
    _lock: DirLock,
    head: Head,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// One maintenance run at a time.
    maintenance: Mutex<()>,
    pub stats: DbStats,
    wal: Mutex<Wal>,
    dir: PathBuf,
    opts: Options,
    /// The cut delay in force (ms): `opts.cut_delay`, raised by [`Db::hold_cuts_for`].
    cut_delay_ms: AtomicI64,
    pub open_stats: OpenStats,
}

const BLOCKS_DIR: &str = "blocks";

/// Series whose columns a block cut copies per hold of the head's read lock.
const CUT_BATCH: usize = 4096;

/// How long a block's decoded index is kept after the last query that used it. Rules
/// evaluated every few seconds keep the blocks of their range resident; a block that
/// left every range goes a minute later (decoding it again costs a read of the file
/// and one pass over it).
const INDEX_IDLE: Duration = Duration::from_secs(60);

/// Opens every block under `dir`; removes leftovers of interrupted writes; a damaged
/// block is skipped with a warning (and left for inspection) rather than failing.
fn open_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, DbError> {
    std::fs::create_dir_all(dir).map_err(|source| BlockError::Io {
        dir: dir.display().to_string(),
        source,
    })?;
    let mut blocks = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| BlockError::Io {
        dir: dir.display().to_string(),
        source,
    })?;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            tracing::info!(path = %path.display(), "removing an unfinished block");
            remove_block_dir(&path);
            continue;
        }
        if !name.starts_with("b-") {
            continue;
        }
        match Block::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => tracing::warn!("skipping unreadable block: {e}"),
        }
    }
    blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
    Ok(blocks)
}

fn remove_block_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), "cannot remove block: {e}");
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
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

/// What the label lookups call per series: its `(name, value)` pairs, sorted by name.
type LabelVisitor<'a> = dyn FnMut(&mut dyn Iterator<Item = (&str, &str)>) + 'a;

fn insert_str(set: &mut std::collections::BTreeSet<String>, s: &str) {
    if !set.contains(s) {
        set.insert(s.to_string());
    }
}

/// Whether a head series has a sample in `[mint, maxt]`, judged from its chunks' time
/// ranges without decoding them.
impl Db {
    pub fn open(dir: &Path, opts: Options) -> Result<Db, DbError> {
        let started = std::time::Instant::now();
        let lock = DirLock::acquire(dir)?;
        let blocks = open_blocks(&dir.join(BLOCKS_DIR))?;
        let head = Head::new(
            opts.out_of_order_window.as_millis() as i64,
            opts.block_range.as_millis().max(1) as i64,
        );
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
        // Samples replayed from the WAL that a block already holds (a crash between
        // writing the block and checkpointing the WAL) are dropped again.
        if let Some(end) = blocks.iter().map(|b| b.meta.max_time).max() {
            head.truncate_before(end);
        }
        let open_stats = OpenStats {
            series: head.num_series(),
            samples: replay.samples,
            took: started.elapsed(),
            repaired_bytes: replay.repair.as_ref().map_or(0, |r| r.dropped_bytes),
        };
        Ok(Db {
            _lock: lock,
            head,
            blocks: RwLock::new(blocks),
            maintenance: Mutex::new(()),
            stats: DbStats::default(),
            wal: Mutex::new(wal),
            dir: dir.to_path_buf(),
            cut_delay_ms: AtomicI64::new(
                opts.cut_delay
                    .unwrap_or(opts.block_range / 2)
                    .max(opts.out_of_order_window)
                    .as_millis() as i64,
            ),
            opts,
            open_stats,
        })
    }

    /// A writer whose samples may arrive up to `late` after their timestamps: ranges are
    /// cut into blocks no sooner than that after they end (the cut delay only grows).
    pub fn hold_cuts_for(&self, late: Duration) {
        self.cut_delay_ms.fetch_max(late.as_millis() as i64, Ordering::Relaxed);
    }

    /// The delay in force between the end of a range and its cut.
    pub fn cut_delay(&self) -> Duration {
        Duration::from_millis(self.cut_delay_ms.load(Ordering::Relaxed).max(0) as u64)
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
        self.pin(pairs).map(|p| p.sref)
    }

    /// [`Db::get_or_create`], also telling whether another holder had the series
    /// pinned already (see [`Head::pin`]).
    pub fn pin(&self, pairs: &[(&str, &str)]) -> Result<Pinned, DbError> {
        let mut wal = self.wal.lock().unwrap();
        let p = self.head.pin(pairs);
        if p.created {
            let labels: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            wal.log(RecordRef::Series {
                ref_: p.sref,
                labels: &labels,
            })?;
        }
        Ok(p)
    }

    pub fn release(&self, r: SeriesRef) {
        self.head.release(r);
    }

    /// Validates, logs the accepted samples to the WAL, then applies them. Samples more
    /// than [`MAX_FUTURE`] ahead of the wall clock are rejected: one far-future sample
    /// would otherwise stretch the head and push every later block cut past "now".
    pub fn append(&self, samples: &[(SeriesRef, i64, f64)]) -> Result<AppendSummary, DbError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.append_at(samples, now)
    }

    /// [`Db::append`] with an explicit wall-clock time (tests, replay tools).
    pub fn append_at(&self, samples: &[(SeriesRef, i64, f64)], now_ms: i64) -> Result<AppendSummary, DbError> {
        let mut outcomes = Vec::with_capacity(samples.len());
        let mut wal = self.wal.lock().unwrap();
        self.head.check(samples, &mut outcomes);
        let limit = now_ms.saturating_add(MAX_FUTURE.as_millis() as i64);
        for (o, (_, t, _)) in outcomes.iter_mut().zip(samples) {
            if *t > limit && *o == AppendOutcome::Appended {
                *o = AppendOutcome::Rejected(Rejected::TooFarInFuture);
            }
        }
        // Usually every sample is accepted: then the batch is logged as it is, with no
        // copy (at 100k series, a 2.4 MB one that was also page-faulted in every time).
        let copy: Vec<(u64, i64, f64)>;
        let accepted = if outcomes.iter().all(|o| *o == AppendOutcome::Appended) {
            samples
        } else {
            copy = samples
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| **o == AppendOutcome::Appended)
                .map(|(s, _)| *s)
                .collect();
            &copy
        };
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
                AppendOutcome::Rejected(Rejected::TooFarInFuture) => s.too_far_in_future += 1,
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

    /// Hands everything appended so far to the OS: it then survives the process being
    /// killed (not a power loss). Cheap; the daemon calls it every second.
    pub fn flush(&self) -> Result<(), DbError> {
        Ok(self.wal.lock().unwrap().flush()?)
    }

    /// Makes everything appended so far durable, power loss included (call every
    /// `wal.sync_interval`). The fsync runs without holding the append lock.
    pub fn sync(&self) -> Result<u64, DbError> {
        let pending = self.wal.lock().unwrap().begin_sync()?;
        Ok(pending.fsync()?)
    }

    pub fn wal_stats(&self) -> WalStats {
        self.wal.lock().unwrap().stats()
    }

    /// Cuts full head ranges into blocks, compacts, and applies retention at `now_ms`.
    /// Errors are returned after the rest of the work was tried.
    pub fn maintain(&self, now_ms: i64) -> Result<(), DbError> {
        let _one = self.maintenance.lock().unwrap();
        let cut = self.cut_blocks(now_ms);
        let compacted = self.compact();
        let retained = self.apply_retention(now_ms);
        for b in self.blocks.read().unwrap().iter() {
            b.evict_idle_index(INDEX_IDLE);
        }
        for r in [&cut, &compacted, &retained] {
            if r.is_err() {
                self.stats.maintenance_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        cut.and(compacted).and(retained)
    }

    fn block_range_ms(&self) -> i64 {
        self.opts.block_range.as_millis().max(1) as i64
    }

    /// Cuts the head's oldest range once both the clock (`now_ms`) and the newest sample
    /// are the cut delay past its end (so a late sample can still reach the head).
    fn cut_blocks(&self, now_ms: i64) -> Result<(), DbError> {
        let range = self.block_range_ms();
        let delay = self.cut_delay_ms.load(Ordering::Relaxed);
        while let Some((min_t, max_t)) = self.head.time_range() {
            let start = min_t.div_euclid(range) * range;
            let end = start + range;
            if max_t < end + delay || now_ms < end + delay {
                break;
            }
            if let Some(dir) = self.write_head_range(start, end)? {
                self.add_block(Block::open(&dir)?);
                self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
            }
            self.truncate_head(end, false)?;
        }
        Ok(())
    }

    /// Writes the head's samples in `[start, end)` as a level-1 block; None if it has none.
    fn write_head_range(&self, start: i64, end: i64) -> Result<Option<PathBuf>, DbError> {
        let plan = self.head.plan_cut(start, end);
        if plan.is_empty() {
            return Ok(None);
        }
        let symbols = plan.symbols();
        let mut w = crate::block::BlockWriter::new(&self.dir.join(BLOCKS_DIR), start, end, 1, symbols)?;
        w.expect_series(plan.series().len());
        let mut batch = crate::head::CutBatch::default();
        let mut series = plan.series();
        while series.len() > 0 {
            let part: Vec<(SeriesRef, &[u32])> = series.by_ref().take(CUT_BATCH).collect();
            self.head
                .cut_columns(part.iter().map(|(r, _)| *r), start, end, &mut batch);
            for ((_, ids), col) in part.iter().zip(&batch.columns) {
                if let Some(c) = col {
                    w.add_column_ids(ids, &batch.bytes[c.span.clone()], c.samples, c.min_t, c.max_t)?;
                }
            }
        }
        if w.series() == 0 {
            w.abandon();
            return Ok(None);
        }
        Ok(Some(w.finish()?))
    }

    /// Drops head samples before `t` (now in blocks, or past retention) and lets the
    /// WAL follow with a checkpoint. After a block cut (`thorough` false) segments that
    /// still hold samples at or after `t` stay as they are, so the checkpoint copies series
    /// and metadata only, not the newest samples of every series; the next cut's checkpoint
    /// covers them. Retention (`thorough`) checkpoints every finished segment, copying the
    /// samples the head keeps, so the WAL shrinks now.
    fn truncate_head(&self, t: i64, thorough: bool) -> Result<(), DbError> {
        let removed = self.head.truncate_before(t);
        let mut wal = self.wal.lock().unwrap();
        for chunk in removed.chunks(wal::MAX_BATCH) {
            wal.log(RecordRef::Dropped(chunk))?;
        }
        let active = wal.cut()?;
        let limit = if thorough {
            active.checked_sub(1).filter(|s| *s > 0)
        } else {
            wal.checkpoint_limit(t)
        };
        drop(wal);
        if let Some(up_to) = limit {
            let head = &self.head;
            wal::checkpoint(&self.dir.join("wal"), up_to, |r| head.contains(r), t)?;
            self.wal.lock().unwrap().checkpointed(up_to);
        }
        Ok(())
    }

    fn add_block(&self, block: Block) {
        let mut blocks = self.blocks.write().unwrap();
        blocks.push(Arc::new(block));
        blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
    }

    fn compact(&self) -> Result<(), DbError> {
        let complete_before = self.head.min_valid_time();
        loop {
            let snapshot = self.blocks.read().unwrap().clone();
            let ranges: Vec<i64> = self
                .opts
                .compaction_ranges
                .iter()
                .map(|r| r.as_millis() as i64)
                .collect();
            let Some((start, end, sources)) = crate::compact::plan(&snapshot, &ranges, complete_before) else {
                return Ok(());
            };
            let dir = crate::compact::merge(&self.dir.join(BLOCKS_DIR), start, end, &sources)?;
            let merged = Block::open(&dir)?;
            {
                let mut blocks = self.blocks.write().unwrap();
                blocks.retain(|b| !sources.iter().any(|s| Arc::ptr_eq(s, b)));
                blocks.push(Arc::new(merged));
                blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
            }
            for s in &sources {
                remove_block_dir(&s.dir);
            }
            self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn apply_retention(&self, now_ms: i64) -> Result<(), DbError> {
        let min_t = now_ms - self.opts.retention.as_millis() as i64;
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let mut blocks = self.blocks.write().unwrap();
            blocks.retain(|b| {
                let keep = b.meta.max_time > min_t;
                if !keep {
                    doomed.push(b.clone());
                }
                keep
            });
            if let Some(limit) = self.opts.retention_size {
                let wal_bytes = dir_size(&self.dir.join("wal"));
                let mut total: u64 = blocks.iter().map(|b| b.size).sum::<u64>() + wal_bytes;
                while total > limit && !blocks.is_empty() {
                    let oldest = blocks.remove(0);
                    total -= oldest.size;
                    doomed.push(oldest);
                }
            }
        }
        for b in &doomed {
            remove_block_dir(&b.dir);
        }
        self.stats
            .blocks_deleted
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        let wal_over = self.opts.retention_size.is_some_and(|limit| {
            let blocks: u64 = self.blocks.read().unwrap().iter().map(|b| b.size).sum();
            blocks + dir_size(&self.dir.join("wal")) > limit
        });
        if wal_over || self.head.time_range().is_some_and(|(lo, _)| lo < min_t) {
            self.truncate_head(min_t.max(self.head.min_valid_time()), true)?;
        }
        Ok(())
    }

    /// Bytes of the WAL on disk (segments and checkpoint).
    pub fn wal_size(&self) -> u64 {
        dir_size(&self.dir.join("wal"))
    }

    /// Blocks on disk: (count, bytes).
    pub fn blocks_summary(&self) -> (usize, u64) {
        let b = self.blocks.read().unwrap();
        (b.len(), b.iter().map(|b| b.size).sum())
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]` from the blocks
    /// and the head, merged per series (a timestamp held twice is returned once), sorted
    /// by labels.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let blocks: Vec<Arc<Block>> = self
            .blocks
            .read()
            .unwrap()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect();
        let mut merged: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        for part in blocks
            .iter()
            .map(|b| b.select(matchers, mint, maxt))
            .chain([self.head.select(matchers, mint, maxt)])
        {
            for s in part {
                merged.entry(s.labels).or_default().extend(s.samples);
            }
        }
        let mut out: Vec<SeriesSamples> = merged
            .into_iter()
            .map(|(labels, mut samples)| {
                if !samples.is_sorted_by_key(|(t, _)| *t) {
                    samples.sort_by_key(|(t, _)| *t);
                }
                samples.dedup_by_key(|(t, _)| *t);
                SeriesSamples {
                    series_ref: 0,
                    labels,
                    samples,
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    pub fn metadata(&self, sample_name: &str) -> Option<Metadata> {
        self.head.metadata(sample_name)
    }

    pub fn series_labels(&self, matchers: &[Matcher]) -> Vec<Labels> {
        self.head.series_labels(matchers)
    }

    /// Every sample name's metadata, sorted by name (`/api/v1/metadata`).
    pub fn all_metadata(&self) -> Vec<(String, Metadata)> {
        let mut all = self.head.all_metadata();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Blocks holding samples in `[mint, maxt]`, oldest first.
    fn blocks_in(&self, mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .unwrap()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect()
    }

    /// Calls `f` with the labels of every series that matches any of `sets` (every
    /// series when `sets` is empty) and has samples in `[mint, maxt]`, block by block
    /// and then the head; a series held in several places is visited once per place.
    fn for_each_series(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64, f: &mut LabelVisitor) {
        self.for_each_block_series(sets, mint, maxt, f);
        let g = self.head.inner.read().unwrap();
        let mut visit = |r: &SeriesRef| {
            if let Some(s) = g.series.get(*r).filter(|s| s.overlaps(mint, maxt)) {
                f(&mut g.symbols.iter(&s.labels));
            }
        };
        if sets.is_empty() {
            g.postings.select(&[], &g.symbols).iter().for_each(&mut visit);
        } else {
            let mut refs: Vec<SeriesRef> = sets.iter().flat_map(|set| g.postings.select(set, &g.symbols)).collect();
            refs.sort_unstable();
            refs.dedup();
            refs.iter().for_each(&mut visit);
        }
    }

    /// [`Db::for_each_series`] over the blocks only.
    fn for_each_block_series(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64, f: &mut LabelVisitor) {
        // No set (every series) or one the block may hold.
        let wanted = |b: &Arc<Block>| sets.is_empty() || sets.iter().any(|m| b.may_match(m));
        for b in self.blocks_in(mint, maxt).into_iter().filter(wanted) {
            match b.cached_index() {
                Ok(idx) => {
                    for i in idx.matching(sets, mint, maxt) {
                        f(&mut idx.label_pairs(i));
                    }
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// Label sets of the series that match any of `sets` (every series when empty)
    /// with samples in `[mint, maxt]`, from the blocks and the head, sorted, each once
    /// (`/api/v1/series`).
    pub fn series(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<Labels> {
        let mut out = std::collections::BTreeSet::new();
        self.for_each_series(sets, mint, maxt, &mut |pairs| {
            out.insert(Labels::from_pairs(
                pairs.map(|(n, v)| (Arc::from(n), Arc::from(v))).collect(),
            ));
        });
        out.into_iter().collect()
    }

    /// Whether the head has samples in `[mint, maxt]`.
    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.head.time_range().is_some_and(|(lo, hi)| lo <= maxt && hi >= mint)
    }

    /// Label names of the series [`Db::series`] would return, sorted (`/api/v1/labels`).
    /// Without matchers the head answers from its postings, like Prometheus: every name
    /// of the head counts once the head overlaps the range.
    pub fn label_names(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        if sets.is_empty() {
            self.for_each_block_series(&[], mint, maxt, &mut |pairs| {
                pairs.for_each(|(n, _)| insert_str(&mut out, n));
            });
            if self.head_overlaps(mint, maxt) {
                out.extend(self.head.label_names().iter().map(|n| n.to_string()));
            }
        } else {
            self.for_each_series(sets, mint, maxt, &mut |pairs| {
                pairs.for_each(|(n, _)| insert_str(&mut out, n));
            });
        }
        out.into_iter().collect()
    }

    /// Values of label `name` of the series [`Db::series`] would return, sorted
    /// (`/api/v1/label/<name>/values`; `__name__` lists the metric names).
    pub fn label_values(&self, name: &str, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut add = |mut pairs: &mut dyn Iterator<Item = (&str, &str)>| {
            if let Some((_, v)) = Iterator::find(&mut pairs, |(n, _)| *n == name) {
                insert_str(&mut out, v);
            }
        };
        if sets.is_empty() {
            self.for_each_block_series(&[], mint, maxt, &mut add);
            if self.head_overlaps(mint, maxt) {
                out.extend(self.head.label_values(name).iter().map(|v| v.to_string()));
            }
        } else {
            self.for_each_series(sets, mint, maxt, &mut add);
        }
        out.into_iter().collect()
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
    fn only_accepted_samples_are_logged_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let db = Db::open(dir.path(), Options::default()).unwrap();
            let a = db.get_or_create(&[("__name__", "a")]).unwrap();
            let b = db.get_or_create(&[("__name__", "b")]).unwrap();
            assert_eq!(db.append(&[(a, 1000, 1.0), (b, 1000, 1.0)]).unwrap().appended, 2);
            // One batch with every sample accepted, one with a duplicate in the middle.
            assert_eq!(db.append(&[(a, 2000, 2.0), (b, 2000, 2.0)]).unwrap().appended, 2);
            let s = db.append(&[(a, 3000, 3.0), (b, 2000, 9.0), (b, 3000, 3.0)]).unwrap();
            assert_eq!((s.appended, s.duplicates), (2, 1));
            db.close().unwrap();
            dump(&db)
        };
        let want: Vec<(i64, u64)> = [(1000, 1.0f64), (2000, 2.0), (3000, 3.0)]
            .iter()
            .map(|(t, v)| (*t, v.to_bits()))
            .collect();
        assert!(before.len() == 2 && before.iter().all(|(_, s)| *s == want));
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(dump(&db), before);
        assert_eq!(db.open_stats.samples, 6, "the rejected sample was not logged");
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
        db.maintain(1_000_000).unwrap();
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

    fn block_opts() -> Options {
        Options {
            block_range: Duration::from_secs(10),
            compaction_ranges: vec![Duration::from_secs(120), Duration::from_secs(600)],
            ..Default::default()
        }
    }

    fn fill(db: &Db, from_s: i64, to_s: i64) {
        let a = db.get_or_create(&[("__name__", "a")]).unwrap();
        let b = db.get_or_create(&[("__name__", "b"), ("x", "y")]).unwrap();
        for i in from_s..=to_s {
            db.append(&[(a, i * 1000, i as f64), (b, i * 1000, i as f64 * 0.5)])
                .unwrap();
        }
    }

    #[test]
    fn the_cut_delay_sets_how_long_a_finished_range_stays_in_the_head() {
        let head_min_after = |hold: Option<Duration>| {
            let dir = tempfile::tempdir().unwrap();
            let opts = Options {
                cut_delay: Some(Duration::from_secs(2)),
                ..block_opts()
            };
            let db = Db::open(dir.path(), opts).unwrap();
            if let Some(late) = hold {
                db.hold_cuts_for(late);
            }
            fill(&db, 0, 200);
            db.maintain(200_000).unwrap();
            db.head().time_range().unwrap().0
        };
        // [190 s, 200 s) ended at 200 s, less than the delay ago: it stays in the head.
        assert_eq!(head_min_after(None), 190_000);
        // A writer that may be 25 s late holds back every range that ended after 175 s.
        assert_eq!(head_min_after(Some(Duration::from_secs(25))), 170_000);
        // Holding for less than the configured delay changes nothing.
        assert_eq!(head_min_after(Some(Duration::from_secs(1))), 190_000);
    }

    #[test]
    fn full_ranges_become_blocks_then_compact_and_queries_see_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        fill(&db, 0, 200);
        let before = dump(&db);
        db.maintain(200_000).unwrap();
        let (blocks, _) = db.blocks_summary();
        assert!(
            db.stats.blocks_written.load(Ordering::Relaxed) >= 18,
            "cut into 10 s blocks"
        );
        assert!(
            db.stats.compactions.load(Ordering::Relaxed) >= 1,
            "the first 2 min window was compacted"
        );
        assert!(blocks < 18, "{blocks} blocks left after compaction");
        let (head_min, _) = db.head().time_range().unwrap();
        assert!(
            head_min >= 180_000,
            "the head keeps at most a range and the cut delay: {head_min}"
        );
        assert_eq!(dump(&db), before, "blocks + head return every sample once");
        drop(db);
        let db = Db::open(dir.path(), block_opts()).unwrap();
        assert_eq!(dump(&db), before, "the same after a restart");
        // New samples keep going to the head.
        fill(&db, 201, 205);
        assert_eq!(dump(&db)[0].1.len(), 206);
    }

    #[test]
    fn compacted_blocks_are_concatenated_as_pages_and_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        for step in 0..13 {
            fill(&db, step * 100, step * 100 + 99);
            db.maintain((step + 1) * 100_000).unwrap();
        }
        let want =
            |lo: i64, hi: i64| -> Vec<(i64, u64)> { (lo..=hi).map(|i| (i * 1000, (i as f64).to_bits())).collect() };
        let a_of = |db: &Db| dump(db).into_iter().find(|s| s.0 == "a{}").unwrap().1;
        assert_eq!(a_of(&db), want(0, 1299));
        let blocks = db.blocks.read().unwrap().clone();
        let top = blocks.iter().find(|b| b.meta.level == 3).expect("a 10 min block");
        assert_eq!((top.meta.min_time, top.meta.max_time), (0, 600_000));
        let idx = top.index().unwrap();
        let col = top.column_bytes(&idx.entry(0)).unwrap();
        assert_eq!(col[0], 0x04, "the 2 min columns were copied as pages");
        let a = vec![Matcher::new(promql_parser::label::MatchOp::Equal, "__name__", "a")];
        let pick = |db: &Db, lo: i64, hi: i64| -> Vec<(i64, u64)> {
            db.select(&a, lo, hi)[0]
                .samples
                .iter()
                .map(|(t, v)| (*t, v.to_bits()))
                .collect()
        };
        assert_eq!(pick(&db, 250_000, 260_000), want(250, 260));
        assert_eq!(pick(&db, 119_000, 121_000), want(119, 121), "across a page edge");
        drop(db);
        let db = Db::open(dir.path(), block_opts()).unwrap();
        assert_eq!(a_of(&db), want(0, 1299), "the same after a restart");
        assert_eq!(pick(&db, 599_500, 600_500), want(600, 600));
    }

    fn sets(selectors: &[&str]) -> Vec<Vec<Matcher>> {
        selectors
            .iter()
            .map(|s| match promql_parser::parser::parse(s).unwrap() {
                promql_parser::parser::Expr::VectorSelector(vs) => {
                    let mut m = vs.matchers.matchers;
                    m.extend(
                        vs.name
                            .map(|n| Matcher::new(promql_parser::label::MatchOp::Equal, "__name__", &n)),
                    );
                    m
                }
                _ => unreachable!(),
            })
            .collect()
    }

    fn names(labels: Vec<Labels>) -> Vec<String> {
        labels.iter().map(|l| format!("{l:?}")).collect()
    }

    #[test]
    fn series_label_names_and_values_span_blocks_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        let c = db
            .get_or_create(&[("__name__", "c"), ("x", "z"), ("only", "blocks")])
            .unwrap();
        for i in 0..=50 {
            db.append(&[(c, i * 1000, 1.0)]).unwrap();
        }
        fill(&db, 0, 200);
        db.maintain(200_000).unwrap();
        assert!(db.blocks_summary().0 > 0 && db.head().time_range().is_some());
        let (all, far) = (i64::MIN, i64::MAX);

        assert_eq!(
            names(db.series(&[], all, far)),
            [r#"a{}"#, r#"b{x="y"}"#, r#"c{only="blocks",x="z"}"#],
            "each series once, though a and b are in blocks and the head"
        );
        assert_eq!(
            names(db.series(&sets(&[r#"{x=~".+"}"#]), 0, 10_000)),
            [r#"b{x="y"}"#, r#"c{only="blocks",x="z"}"#]
        );
        assert_eq!(
            names(db.series(&sets(&["a", "c"]), 100_000, 200_000)),
            ["a{}"],
            "c has no samples in the range"
        );
        assert_eq!(
            names(db.series(&sets(&["a", "a"]), 195_000, 200_000)),
            ["a{}"],
            "head only, each once"
        );
        assert!(db.series(&sets(&["a"]), 300_000, 400_000).is_empty());

        assert_eq!(db.label_names(&[], all, far), ["__name__", "only", "x"]);
        assert_eq!(db.label_names(&sets(&["a"]), all, far), ["__name__"]);
        assert_eq!(db.label_names(&sets(&[r#"{x!=""}"#]), 100_000, far), ["__name__", "x"]);

        assert_eq!(db.label_values("__name__", &[], all, far), ["a", "b", "c"]);
        assert_eq!(db.label_values("x", &[], all, far), ["y", "z"]);
        assert_eq!(db.label_values("x", &sets(&["b"]), all, far), ["y"]);
        assert_eq!(db.label_values("x", &sets(&[r#"{x=~".+"}"#]), 190_000, 200_000), ["y"]);
        assert_eq!(db.label_values("only", &[], 0, 10_000), ["blocks"]);
        assert!(db.label_values("nope", &[], all, far).is_empty());

        // A metric no block holds: the blocks' indexes are not even decoded (a decode
        // so soon after the queries above would keep them).
        let blocks = db.blocks.read().unwrap().clone();
        blocks.iter().for_each(|b| assert!(!b.evict_idle_index(Duration::ZERO)));
        assert!(db.series(&sets(&["pg_up"]), all, far).is_empty());
        assert!(db.label_values("x", &sets(&["pg_up"]), all, far).is_empty());
        assert!(blocks.iter().all(|b| !b.evict_idle_index(Duration::from_secs(3600))));
        assert!(!db.series(&sets(&["a"]), all, 100_000).is_empty());
        assert!(blocks.iter().any(|b| b.evict_idle_index(Duration::from_secs(3600))));
    }

    #[test]
    fn retention_by_time_and_size_deletes_oldest_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            retention: Duration::from_secs(100),
            ..block_opts()
        };
        let db = Db::open(dir.path(), opts).unwrap();
        fill(&db, 0, 300);
        db.maintain(300_000).unwrap();
        // Retention deletes whole blocks: none may end before the limit, and the oldest
        // sample left is at most one (compacted, 2 min) block range older than it.
        assert!(db.blocks.read().unwrap().iter().all(|b| b.meta.max_time > 200_000));
        let oldest = dump(&db).iter().map(|(_, s)| s[0].0).min().unwrap();
        assert!((80_000..=200_000).contains(&oldest), "oldest {oldest}");
        assert!(db.stats.blocks_deleted.load(Ordering::Relaxed) >= 1);
        drop(db);

        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        fill(&db, 0, 300);
        db.maintain(300_000).unwrap();
        let (_, full) = db.blocks_summary();
        drop(db);
        let limit = full / 2;
        let opts = Options {
            retention_size: Some(limit),
            ..block_opts()
        };
        let db = Db::open(dir.path(), opts).unwrap();
        db.maintain(300_000).unwrap();
        let (_, bytes) = db.blocks_summary();
        let wal = dir_size(&dir.path().join("wal"));
        assert!(
            bytes + wal <= limit,
            "blocks {bytes} + wal {wal} over the limit {limit}"
        );
        let oldest = dump(&db).iter().map(|(_, s)| s[0].0).min().unwrap();
        assert!(oldest > 0, "the oldest data went first");
        assert_eq!(dump(&db)[0].1.last().unwrap().0, 300_000, "the newest data stays");
    }

    #[test]
    fn a_far_future_sample_is_rejected_and_does_not_stop_block_cutting() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        let a = db.get_or_create(&[("__name__", "a")]).unwrap();
        let year = 365 * 24 * 3600 * 1000;
        let s = db.append_at(&[(a, 100_000 + year, 1.0)], 100_000).unwrap();
        assert_eq!((s.appended, s.too_far_in_future), (0, 1));
        assert!(
            db.append_at(&[(a, 100_000 + 60_000, 1.0)], 100_000).unwrap().appended == 1,
            "a minute ahead is fine"
        );
        fill(&db, 0, 200);
        db.maintain(200_000).unwrap();
        assert!(db.stats.blocks_written.load(Ordering::Relaxed) > 0);
        // The head kept the recent range; samples for "now" are still accepted.
        let b = db.get_or_create(&[("__name__", "b")]).unwrap();
        assert_eq!(db.append_at(&[(b, 199_500, 1.0)], 200_000).unwrap().appended, 1);
    }

    #[test]
    fn samples_already_in_a_block_are_not_duplicated_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        fill(&db, 0, 100);
        let before = dump(&db);
        // Write the blocks but "crash" before the WAL is checkpointed: replay then holds
        // samples that a block holds too.
        let range = db.block_range_ms();
        db.write_head_range(0, range).unwrap().unwrap();
        db.sync().unwrap();
        drop(db);
        let db = Db::open(dir.path(), block_opts()).unwrap();
        assert_eq!(dump(&db), before);
    }

    #[test]
    fn a_cut_of_more_series_than_a_batch_and_its_compaction_keep_every_series_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), block_opts()).unwrap();
        let n = CUT_BATCH + 300;
        // Created in an order unlike label order; values shared between names.
        let refs: Vec<SeriesRef> = (0..n)
            .map(|i| {
                let id = format!("{}", (i * 7919) % n);
                let name = ["m_b", "m_a"][i % 2];
                db.get_or_create(&[("__name__", name), ("id", &id), ("k", "v")])
                    .unwrap()
            })
            .collect();
        // Series 0 has no sample in the first range: the cut passes it by.
        for t in [1_000i64, 4_000, 12_000, 15_000] {
            let batch: Vec<_> = refs
                .iter()
                .enumerate()
                .skip((t < 10_000) as usize)
                .map(|(i, r)| (*r, t, i as f64))
                .collect();
            db.append(&batch).unwrap();
        }
        let before = dump(&db);
        let range = db.block_range_ms();
        let first = Block::open(&db.write_head_range(0, range).unwrap().unwrap()).unwrap();
        let second = Block::open(&db.write_head_range(range, 2 * range).unwrap().unwrap()).unwrap();
        assert_eq!((first.meta.series, second.meta.series), (n as u64 - 1, n as u64));
        let idx = second.index().unwrap();
        let labels: Vec<Labels> = (0..idx.len()).map(|i| idx.labels(i)).collect();
        assert!(labels.windows(2).all(|w| w[0] < w[1]), "label-set order");
        let merged = crate::compact::merge(
            &dir.path().join(BLOCKS_DIR),
            0,
            2 * range,
            &[Arc::new(first), Arc::new(second)],
        )
        .unwrap();
        let merged = Block::open(&merged).unwrap();
        assert_eq!((merged.meta.series, merged.meta.samples), (n as u64, 4 * n as u64 - 2));
        let idx = merged.index().unwrap();
        let labels: Vec<Labels> = (0..idx.len()).map(|i| idx.labels(i)).collect();
        assert!(
            labels.windows(2).all(|w| w[0] < w[1]),
            "label-set order after the merge"
        );
        let got: Vec<(String, Vec<(i64, u64)>)> = (0..idx.len())
            .map(|i| {
                let samples = merged.column_samples(&idx.entry(i)).unwrap();
                (
                    format!("{:?}", idx.labels(i)),
                    samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                )
            })
            .collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, before, "the merged block holds what the head held");
    }
}
