//! sonde's time-series store. One module per storage concept:
//!
//! - [`chunk`]: sample encodings — the head's streaming chunk and the block column codec;
//! - [`wal`]: the write-ahead log (segments of CRC-checked records, replay, checkpoints);
//! - [`head`]: in-memory series with compressed chunks, fed by the WAL;
//! - [`block`]: immutable on-disk blocks with a postings index; [`compact`] merges them;
//! - [`db`]: all of it together, and the querier interface used by PromQL.
//!
//! On-disk formats are described in docs/storage-format.md.

pub mod block;
pub mod chunk;
pub mod compact;
pub mod db;
pub mod head;
pub mod labels;
pub mod postings;
#[doc(hidden)]
pub mod testing;
pub mod wal;
