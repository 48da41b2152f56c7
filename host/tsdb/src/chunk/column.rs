//! Block column codec: one series' samples for a whole block, compressed together.
//!
//! ```text
//! byte 0: tag
//!
//! tag 0x01, sample stream (small columns, where pco's per-column metadata does not pay off):
//!   varint n, byte value mode (0..=4 decimal scale, 5 float), the sample stream (`stream.rs`)
//!
//! tag 0x02, pco columns:
//!   varint n (≥ 1), byte value mode (0..=4 decimal scale, 5 float)
//!   varint e, then e times: varint (index - previous index - 1), 8 bytes LE f64 bits
//!                        (specials: NaN and ±Inf, and -0.0 in decimal mode)
//!   varint length of the timestamp column, the timestamps as pco standalone i64
//!   the values as pco standalone: i64 (`v × 10^k`) in decimal mode, f64 in float mode;
//!                        a special's slot holds a copy of the previous value, so it costs nothing
//! ```
//!
//! Varints are unsigned LEB128. The encoder writes both forms and keeps the smaller: pco wins for
//! long columns (it fits a probability model to the whole column), the stream for short ones.

use pco::ChunkConfig;
use pco::standalone::{simple_compress, simple_decompress_into};

use super::ChunkError;
use super::bits::{BitReader, BitWriter};
use super::decimal::{from_scaled, is_special, to_scaled};
use super::stream::{StreamCoder, ValueMode};

const TAG_STREAM: u8 = 0x01;
const TAG_PCO: u8 = 0x02;

/// Most samples a column may claim. Bounds what a corrupt length can make the decoder allocate:
/// 2^24 samples is 194 days at 1 s, and 256 MiB decoded.
pub const MAX_COLUMN_SAMPLES: usize = 1 << 24;

/// Compresses one series' samples. `ts` must increase strictly and be as long as `vs`.
///
/// # Panics
/// When the lengths differ or exceed [`MAX_COLUMN_SAMPLES`]: both are caller bugs.
pub fn encode_columns(ts: &[i64], vs: &[f64]) -> Vec<u8> {
    assert_eq!(ts.len(), vs.len(), "one timestamp per value");
    assert!(ts.len() <= MAX_COLUMN_SAMPLES, "column too long");
    let mode = ValueMode::for_values(vs.iter().copied());
    let stream = encode_stream(ts, vs, mode);
    match encode_pco(ts, vs, mode) {
        Some(p) if p.len() < stream.len() => p,
        _ => stream,
    }
}

/// Decodes what [`encode_columns`] wrote; never panics on corrupt input.
pub fn decode_columns(b: &[u8]) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    let (&tag, rest) = b.split_first().ok_or(ChunkError::CorruptColumn { what: "empty" })?;
    let mut pos = 0;
    let n = read_varint(rest, &mut pos)?;
    if n > MAX_COLUMN_SAMPLES as u64 {
        return Err(ChunkError::CorruptColumn {
            what: "more samples than a column may hold",
        });
    }
    let n = n as usize;
    let mode = rest.get(pos).and_then(|&c| ValueMode::from_code(c));
    let mode = mode.ok_or(ChunkError::CorruptColumn { what: "bad value mode" })?;
    let rest = &rest[pos + 1..];
    match tag {
        TAG_STREAM => decode_stream(rest, n, mode),
        TAG_PCO => decode_pco(rest, n, mode),
        tag => Err(ChunkError::UnknownFormat { tag }),
    }
}

fn encode_stream(ts: &[i64], vs: &[f64], mode: ValueMode) -> Vec<u8> {
    let mut head = Vec::with_capacity(12 + ts.len() * 2);
    head.push(TAG_STREAM);
    write_varint(&mut head, ts.len() as u64);
    head.push(mode.code());
    let bit_len = head.len() * 8;
    let mut w = BitWriter::from_vec(head, bit_len);
    let mut coder = StreamCoder::new(mode);
    for (&t, &v) in ts.iter().zip(vs) {
        let fits = coder.encode(&mut w, t, v);
        debug_assert!(fits, "the mode was chosen from these values");
    }
    w.into_vec()
}

fn decode_stream(b: &[u8], n: usize, mode: ValueMode) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    // Every sample takes at least two bits, which bounds the allocation by the input's size.
    if n > b.len() * 4 {
        return Err(ChunkError::CorruptColumn {
            what: "more samples than bytes can hold",
        });
    }
    let mut r = BitReader::new(b);
    let mut coder = StreamCoder::new(mode);
    let (mut ts, mut vs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (t, v) = coder.decode(&mut r)?;
        ts.push(t);
        vs.push(v);
    }
    if r.remaining() >= 8 {
        return Err(ChunkError::CorruptColumn {
            what: "bytes after the last sample",
        });
    }
    Ok((ts, vs))
}

fn encode_pco(ts: &[i64], vs: &[f64], mode: ValueMode) -> Option<Vec<u8>> {
    if ts.is_empty() {
        return None;
    }
    let mut out = vec![TAG_PCO];
    write_varint(&mut out, ts.len() as u64);
    out.push(mode.code());
    let exceptional = |v: f64| match mode {
        ValueMode::Decimal(_) => is_special(v),
        ValueMode::Float => !v.is_finite(),
    };
    let specials: Vec<(usize, f64)> = vs
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, v)| exceptional(v))
        .collect();
    write_varint(&mut out, specials.len() as u64);
    let mut next = 0;
    for &(i, v) in &specials {
        write_varint(&mut out, (i - next) as u64);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
        next = i + 1;
    }
    let config = ChunkConfig::default();
    let times = simple_compress(ts, &config).ok()?;
    write_varint(&mut out, times.len() as u64);
    out.extend_from_slice(&times);
    let values = match mode {
        ValueMode::Decimal(scale) => {
            let mut prev = 0;
            let ints: Vec<i64> = vs
                .iter()
                .map(|&v| {
                    prev = to_scaled(v, scale).unwrap_or(prev);
                    prev
                })
                .collect();
            simple_compress(&ints, &config).ok()?
        }
        ValueMode::Float => {
            let mut prev = 0.0;
            let floats: Vec<f64> = vs
                .iter()
                .map(|&v| {
                    if v.is_finite() {
                        prev = v;
                    }
                    prev
                })
                .collect();
            simple_compress(&floats, &config).ok()?
        }
    };
    out.extend_from_slice(&values);
    Some(out)
}

fn decode_pco(b: &[u8], n: usize, mode: ValueMode) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    let mut pos = 0;
    let e = read_varint(b, &mut pos)?;
    if e > n as u64 {
        return Err(ChunkError::CorruptColumn {
            what: "more specials than samples",
        });
    }
    let mut specials = Vec::with_capacity(e as usize);
    let mut next = 0u64;
    for _ in 0..e {
        let i = next.saturating_add(read_varint(b, &mut pos)?);
        if i >= n as u64 {
            return Err(ChunkError::CorruptColumn {
                what: "special past the last sample",
            });
        }
        let raw = b.get(pos..pos + 8).ok_or(ChunkError::CorruptColumn {
            what: "specials cut short",
        })?;
        pos += 8;
        specials.push((i as usize, u64::from_le_bytes(raw.try_into().unwrap_or_default())));
        next = i + 1;
    }
    let tlen = read_varint(b, &mut pos)?;
    let tend = (pos as u64).checked_add(tlen).filter(|&end| end <= b.len() as u64);
    let tend = tend.ok_or(ChunkError::CorruptColumn {
        what: "timestamp column cut short",
    })? as usize;
    let ts: Vec<i64> = pco_column(&b[pos..tend], n, "timestamps")?;
    if ts.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ChunkError::CorruptColumn {
            what: "timestamps out of order",
        });
    }
    let mut vs: Vec<f64> = match mode {
        ValueMode::Decimal(scale) => {
            let ints: Vec<i64> = pco_column(&b[tend..], n, "values")?;
            ints.into_iter().map(|i| from_scaled(i, scale)).collect()
        }
        ValueMode::Float => pco_column(&b[tend..], n, "values")?,
    };
    for (i, bits) in specials {
        vs[i] = f64::from_bits(bits);
    }
    Ok((ts, vs))
}

fn pco_column<T: pco::data_types::Number + Default>(
    b: &[u8],
    n: usize,
    column: &'static str,
) -> Result<Vec<T>, ChunkError> {
    let mut out = vec![T::default(); n];
    let progress = simple_decompress_into(b, &mut out).map_err(|source| ChunkError::Pco { column, source })?;
    if progress.n_processed != n || !progress.finished {
        return Err(ChunkError::CorruptColumn {
            what: "pco column length differs from the sample count",
        });
    }
    Ok(out)
}

fn write_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64, ChunkError> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(ChunkError::CorruptColumn {
            what: "varint cut short",
        })?;
        *pos += 1;
        x |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            if shift == 63 && byte > 1 {
                break;
            }
            return Ok(x);
        }
    }
    Err(ChunkError::CorruptColumn {
        what: "varint over 64 bits",
    })
}
