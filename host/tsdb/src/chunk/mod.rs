//! Sample encodings: the head's streaming chunk ([`HeadChunk`]) and the block column codec
//! ([`encode_columns`] / [`decode_columns`]). Byte layouts are in docs/storage-format.md and in the
//! module docs of each coder.
//!
//! Both encodings store values that are short decimals (`n / 10^k`, `k ≤ 4`) as scaled integers and
//! everything else as float bits, and both round-trip every f64 bit-exactly: NaN payloads (the
//! staleness marker `0x7ff0000000000002` stays distinct from other NaNs), ±Inf and -0.0 included.

pub mod bits;
mod column;
mod decimal;
mod head;
mod ints;
mod pages;
mod stream;
#[cfg(test)]
mod tests;
mod xor;

pub use column::{column_from_chunks, decode_columns, encode_columns, encode_columns_beating, encode_stream_column};
pub use head::{
    ChunkParts, HeadChunk, HeadIter, MAX_BYTES as HEAD_MAX_BYTES, MAX_SAMPLES as HEAD_MAX_SAMPLES, iter_bytes,
};
pub use pages::{Page, column_from_pages, decode_columns_in};

/// A chunk or column that cannot be decoded. Encoded data comes from disk, so decoders return this
/// instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk data ends early (bit {bit}); the chunk is truncated")]
    Truncated { bit: usize },
    #[error("corrupt chunk: {what} (bit {bit})")]
    Corrupt { what: &'static str, bit: usize },
    #[error("unknown sample encoding tag {tag:#04x}; written by a newer sonde?")]
    UnknownFormat { tag: u8 },
    #[error("corrupt block column: {what}")]
    CorruptColumn { what: &'static str },
    #[error("block column {column}: pco: {source}")]
    Pco {
        column: &'static str,
        source: pco::errors::PcoError,
    },
}
