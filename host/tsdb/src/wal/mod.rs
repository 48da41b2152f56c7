//! The write-ahead log: numbered segment files of CRC-checked records that make appended
//! samples survive a crash, the replay that rebuilds the head from them at startup, and the
//! checkpoints that let old segments be deleted.
//!
//! Split by concern: [`record`] (logical records and their payload encoding), `segment`
//! (files, framing, buffered reader and writer), `open` (repair and replay), `append`
//! (logging and fsync) and `checkpoint`.
//!
//! # On-disk format
//!
//! A WAL directory holds segments named by an 8-digit decimal index (`00000001`,
//! `00000002`, …) and at most one complete checkpoint, `checkpoint.NNNNNNNN/`, itself a
//! directory of segments (numbered from `00000000`) that summarises every segment ≤ N.
//! `checkpoint.NNNNNNNN.tmp/` is a checkpoint being written; it is deleted on open.
//!
//! A segment starts with an 8-byte header, `73 57 41 4c 01 00 00 00` (`"sWAL"`, format
//! version 1, three reserved zero bytes), followed by frames:
//!
//! ```text
//! ┌──────────┬────────────────┬──────────────┬───────────────────┐
//! │ type: u8 │ len: u32 LE    │ crc: u32 LE  │ payload: len bytes │
//! └──────────┴────────────────┴──────────────┴───────────────────┘
//! crc = CRC-32 (IEEE, as in zlib/crc32fast) over the type byte, the 4 length bytes and the payload
//! ```
//!
//! Record types are 1 Series, 2 Samples, 3 Metadata, 4 Dropped (payloads in [`record`]).
//! Type 0 never occurs, so a zero-filled tail is caught before its CRC is even computed;
//! lengths over 16 MiB are rejected as corrupt. A record never spans two segments; the
//! writer cuts a new segment when the next record would push the active one past
//! [`Options::segment_size`] (default 64 MiB), so a record larger than that gets a segment
//! of its own. Sample and ref batches over 65 536 entries are logged as several records.
//!
//! Unlike Prometheus's WAL there are no 32 KiB pages and no record fragments: every record
//! is one frame, so a torn write at any byte leaves either a short header, a short payload
//! or a CRC mismatch — all detected.
//!
//! # Durability and the fsync policy
//!
//! - [`Wal::log`] encodes into an in-memory buffer and returns the record's sequence
//!   number; the buffer goes to the OS (`write(2)`) whenever it passes 256 KiB.
//! - [`Wal::flush`] writes the buffer to the OS: from then the records survive a killed
//!   process (`kill -9`), though not a power loss or kernel crash.
//! - [`Wal::sync`] flushes and fsyncs (`fdatasync`) every segment written since the last
//!   sync. When it returns `Ok(seq)`, every record with a sequence number ≤ `seq` survives
//!   `kill -9` *and* power loss; [`WalStats::synced_seq`] is that acknowledgement marker.
//!   A sync with nothing new is free (no fsync).
//! - The owner calls `sync()` on a timer — [`Options::sync_interval`], default 1 s, so at
//!   most about a second of acknowledged-by-`log` samples is lost on power failure — and on
//!   shutdown ([`Wal::close`]). The `Wal` spawns no threads. To fsync without blocking
//!   appends, split the call: [`Wal::begin_sync`] (under the owner's lock) returns a
//!   [`PendingSync`] whose [`fsync`](PendingSync::fsync) runs outside it.
//! - Creating a segment fsyncs the directory, so the new file's entry is durable; the
//!   finished segment is fsynced by the next sync. Checkpoints are written to a temporary
//!   directory, fsynced, renamed into place, and the directory fsynced, before any segment
//!   is deleted.
//! - After a failed write or fsync the `Wal` refuses further work ([`WalError::Poisoned`]):
//!   after a failed fsync the kernel may have dropped the dirty pages, so nothing written
//!   since the last good sync can be trusted. Reopen it; opening repairs whatever tail the
//!   failure left.
//!
//! # Repair
//!
//! [`Wal::open`] reads the newest checkpoint and then every later segment once, handing
//! each record to the caller's visitor while verifying it. At the first damaged frame — a
//! torn tail after a crash, or corruption anywhere — it keeps everything before it,
//! truncates that segment there, deletes the later segments, logs a `tracing` warning
//! saying what was dropped, and appends after the last good record. sonde never refuses to
//! start because of a damaged WAL. A damaged checkpoint is read up to the damage (with a
//! warning) and the segments after it are still replayed. Missing segments (a gap in the
//! numbering, which only manual deletion makes) are reported and skipped over. A record
//! that passes its CRC but does not decode (a format bug, or a newer record type) is skipped
//! with a warning rather than treated as damage.

mod append;
mod checkpoint;
mod open;
pub mod record;
mod segment;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use append::{PendingSync, WalStats};
pub use checkpoint::{CheckpointStats, checkpoint};
pub use open::{Repair, ReplayStats};
pub use record::{DecodeError, Decoder, Record, RecordRef, RecordType, Sample};
pub use segment::{Damage, MAX_BATCH, MAX_RECORD_LEN, checkpoint_name, segment_name};

/// WAL settings. The agent's storage config maps onto these.
#[derive(Clone, Debug)]
pub struct Options {
    /// A new segment is started when the next record would make the active one larger
    /// than this. Smaller segments let checkpoints free disk sooner; larger ones mean fewer
    /// files. Default 64 MiB; at least 4 KiB.
    pub segment_size: u64,
    /// How often the owner should call [`Wal::sync`]: the most acknowledged data a power
    /// loss can take. The `Wal` itself runs no timer. Default 1 s.
    pub sync_interval: Duration,
}

pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// Segments smaller than this would hold only a handful of records each.
const MIN_SEGMENT_SIZE: u64 = 4 << 10;

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync_interval: Duration::from_secs(1),
        }
    }
}

impl Options {
    /// Reports every problem at once.
    pub fn validate(&self) -> Result<(), WalError> {
        let mut problems = Vec::new();
        if self.segment_size < MIN_SEGMENT_SIZE {
            problems.push(format!(
                "segment_size {} is below the minimum of {MIN_SEGMENT_SIZE} bytes",
                self.segment_size
            ));
        }
        if self.sync_interval.is_zero() {
            problems.push("sync_interval must be positive".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WalError::InvalidOptions(problems.join("; ")))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("WAL record of {len} bytes is over the {max}-byte limit; log it in smaller pieces")]
    RecordTooLarge { len: usize, max: usize },
    #[error(
        "WAL in {} is unusable after an earlier write or fsync error; reopen it (opening repairs the tail)",
        dir.display()
    )]
    Poisoned { dir: PathBuf },
    #[error(
        "cannot checkpoint up to segment {up_to} in {}: it may still be written (no later segment exists); \
         call Wal::cut first or checkpoint an older segment",
        dir.display()
    )]
    CheckpointActive { dir: PathBuf, up_to: u32 },
    #[error("WAL segment {} is damaged at byte {offset} ({damage}); checkpoint aborted, nothing deleted", path.display())]
    Damaged { path: PathBuf, offset: u64, damage: Damage },
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WalError {
        let path = path.to_owned();
        move |source| WalError::Io { op, path, source }
    }
}

/// The write-ahead log of one store: the writer of its active segment. See the module
/// docs for the format and the durability contract.
pub struct Wal {
    dir: PathBuf,
    opts: Options,
    writer: segment::SegmentWriter,
    /// Sequence number of the last record logged (the first is 1; counts restart at open).
    seq: u64,
    shared: Arc<append::Shared>,
    /// The newest sample time logged in each segment of this log that holds samples (those
    /// replayed at open and those written since), so a checkpoint can stop before the first
    /// segment still holding samples the head needs and copy none of them.
    newest: std::collections::BTreeMap<u32, i64>,
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    use super::{Options, Record, ReplayStats, Wal};

    pub fn opts(segment_size: u64) -> Options {
        Options {
            segment_size,
            ..Options::default()
        }
    }

    /// Opens `dir` and returns the replayed records as owned values.
    pub fn open(dir: &Path, segment_size: u64) -> (Wal, Vec<Record>, ReplayStats) {
        let mut recs = Vec::new();
        let (wal, stats) = Wal::open(dir, opts(segment_size), |r| recs.push(r.to_owned())).unwrap();
        (wal, recs, stats)
    }

    /// A mixed, realistic-looking stream: series announced before their samples, metadata,
    /// a staleness NaN, the occasional drop.
    pub fn workload(first_ref: u64, n: usize) -> Vec<Record> {
        let mut out = Vec::new();
        for i in 0..n as u64 {
            let r = first_ref + i;
            out.push(Record::Series {
                ref_: r,
                labels: vec![
                    ("__name__".into(), format!("metric_{}", r % 7)),
                    ("instance".into(), format!("host-{r}:9100")),
                ],
            });
            if i % 5 == 0 {
                out.push(Record::Metadata {
                    metric: format!("metric_{}", r % 7),
                    kind: "gauge".into(),
                    help: format!("help {r}"),
                    unit: String::new(),
                });
            }
            let t = 1_700_000_000_000 + r as i64 * 15_000;
            let v = if i % 11 == 3 {
                f64::from_bits(0x7ff0_0000_0000_0002)
            } else {
                r as f64 * 0.5
            };
            out.push(Record::Samples(
                (0..=r % 4).map(|k| (r - k.min(i), t + k as i64, v)).collect(),
            ));
            if i % 13 == 12 {
                out.push(Record::Dropped { refs: vec![r - 3] });
            }
        }
        out
    }

    /// Record equality that compares sample values bit for bit (NaN payloads included).
    pub fn assert_same(a: &[Record], b: &[Record]) {
        let bits = |rs: &[Record]| -> Vec<String> {
            rs.iter()
                .map(|r| match r {
                    Record::Samples(s) => {
                        format!("{:?}", s.iter().map(|x| (x.0, x.1, x.2.to_bits())).collect::<Vec<_>>())
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(bits(a), bits(b));
    }
}
