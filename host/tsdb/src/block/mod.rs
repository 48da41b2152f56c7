//! Immutable on-disk blocks: every sample of a time range `[min_time, max_time)`, one
//! compressed column pair per series (see [`crate::chunk::encode_columns`]), and an
//! index of the series' label sets from which the postings are built when the block is
//! opened. Written once (to `<dir>.tmp`, fsynced, renamed), then only read or deleted.
//! Format: docs/storage-format.md.

mod index;
mod reader;
mod writer;

pub use index::{Entry, LabelIds};
pub use reader::{Block, BlockIndex};
pub use writer::BlockWriter;

use serde::{Deserialize, Serialize};

pub const META_FILE: &str = "meta.json";
pub const INDEX_FILE: &str = "index";
pub const CHUNKS_FILE: &str = "chunks";

/// `meta.json` of a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u32,
    /// First millisecond covered (inclusive).
    pub min_time: i64,
    /// End of the range (exclusive).
    pub max_time: i64,
    pub series: u64,
    pub samples: u64,
    /// 1 for blocks cut from the head; compaction adds one per merge.
    pub level: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("block {dir}: {what}")]
    Corrupt { dir: String, what: String },
    /// A writer was handed what a block cannot hold (a bug in the caller).
    #[error("block {dir}: {what}")]
    Invalid { dir: String, what: String },
}

/// A block's directory name: sortable by time, unique per write.
pub fn dir_name(meta: &Meta, nonce: u64) -> String {
    format!(
        "b-{:016x}-{:016x}-{nonce:x}",
        meta.min_time as u64 ^ (1 << 63),
        meta.max_time as u64 ^ (1 << 63)
    )
}
