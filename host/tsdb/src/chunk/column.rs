//! Block column codec: one series' samples for a whole block, compressed together.
//!
//! ```text
//! byte 0: tag
//!
//! tag 0x01, sample stream (small columns, where pco's per-column metadata does not pay off):
//!   varint n, byte value mode (0..=4 decimal scale, 5 float), byte shift, the sample stream
//!   (`stream.rs`; the shift as in a head chunk)
//!
//! tag 0x03, head chunks as they were (cutting a block from the head copies a series' chunks
//! instead of re-encoding them; these blocks are compacted into pco columns later):
//!   varint n (≥ 1), varint k (≥ 2), then k times: varint length, a head chunk's bytes
//!   (`head.rs`: format|mode, shift, u16 count, sample stream). A single chunk is written in the
//!   stream form instead, which is the same bytes behind a different header.
//!
//! tag 0x02, pco columns:
//!   varint n (≥ 1), byte value mode (0..=4 decimal scale, 5 float), byte shift (ignored)
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
use super::head::{ChunkParts, decode_checked};
use super::stream::{StreamCoder, ValueMode};

const TAG_STREAM: u8 = 0x01;
const TAG_PCO: u8 = 0x02;
const TAG_CHUNKS: u8 = 0x03;

/// Most samples a column may claim. Bounds what a corrupt length can make the decoder allocate:
/// 2^24 samples is 194 days at 1 s, and 256 MiB decoded.
pub const MAX_COLUMN_SAMPLES: usize = 1 << 24;

/// Compresses one series' samples. `ts` must increase strictly and be as long as `vs`.
///
/// # Panics
/// When the lengths differ or exceed [`MAX_COLUMN_SAMPLES`]: both are caller bugs.
pub fn encode_columns(ts: &[i64], vs: &[f64]) -> Vec<u8> {
    encode_columns_beating(ts, vs, 0)
}

/// [`encode_columns`], skipping the stream form when pco comes out under `stream_estimate`
/// bytes: compaction knows about how large the stream form is (the stream-coded columns it
/// merges), and pco nearly always wins on a whole hour.
pub fn encode_columns_beating(ts: &[i64], vs: &[f64], stream_estimate: usize) -> Vec<u8> {
    assert_eq!(ts.len(), vs.len(), "one timestamp per value");
    assert!(ts.len() <= MAX_COLUMN_SAMPLES, "column too long");
    let mode = ValueMode::for_values(vs.iter().copied());
    let pco = match encode_pco(ts, vs, mode) {
        Some(p) if p.len() < stream_estimate => return p,
        other => other,
    };
    let stream = encode_stream(ts, vs, mode);
    match pco {
        Some(p) if p.len() < stream.len() => p,
        _ => stream,
    }
}

/// Compresses one series' samples in the stream form only: for blocks that compaction rewrites
/// soon, where pco's encoding time would be wasted.
pub fn encode_stream_column(ts: &[i64], vs: &[f64]) -> Vec<u8> {
    assert_eq!(ts.len(), vs.len(), "one timestamp per value");
    assert!(ts.len() <= MAX_COLUMN_SAMPLES, "column too long");
    encode_stream(ts, vs, ValueMode::for_values(vs.iter().copied()))
}

/// Appends to `out` a column holding `chunks` (head chunks, [`HeadChunk::parts`], in time
/// order) without decoding them; returns the number of samples.
///
/// [`HeadChunk::parts`]: super::HeadChunk::parts
pub fn column_from_chunks(out: &mut Vec<u8>, chunks: &[ChunkParts]) -> u64 {
    let n: u64 = chunks.iter().map(|p| p.count() as u64).sum();
    if let [one] = chunks {
        out.push(TAG_STREAM);
        write_varint(out, n);
        out.extend_from_slice(&one.mode());
        out.extend_from_slice(one.stream);
    } else {
        out.push(TAG_CHUNKS);
        write_varint(out, n);
        write_varint(out, chunks.len() as u64);
        for c in chunks {
            write_varint(out, c.byte_len() as u64);
            c.write_to(out);
        }
    }
    n
}

/// Decodes what [`encode_columns`], [`encode_stream_column`] or [`column_from_chunks`] wrote;
/// never panics on corrupt input.
pub fn decode_columns(b: &[u8]) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    decode_flat(b, true)
}

/// Decodes a column; a page list only when `pages` (a page is never one itself).
pub(super) fn decode_flat(b: &[u8], pages: bool) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    let (&tag, rest) = b.split_first().ok_or(ChunkError::CorruptColumn { what: "empty" })?;
    let mut pos = 0;
    let n = read_varint(rest, &mut pos)?;
    if n > MAX_COLUMN_SAMPLES as u64 {
        return Err(ChunkError::CorruptColumn {
            what: "more samples than a column may hold",
        });
    }
    let n = n as usize;
    match tag {
        TAG_CHUNKS => return decode_chunks(&rest[pos..], n),
        super::pages::TAG_PAGES if pages => {
            return super::pages::decode_pages(&rest[pos..], n, i64::MIN, i64::MAX);
        }
        _ => {}
    }
    let mode = match rest.get(pos..pos + 2) {
        Some(&[code, shift]) => ValueMode::from_bytes(code, shift),
        _ => None,
    };
    let mode = mode.ok_or(ChunkError::CorruptColumn { what: "bad value mode" })?;
    let rest = &rest[pos + 2..];
    match tag {
        TAG_STREAM => decode_stream(rest, n, mode),
        TAG_PCO => decode_pco(rest, n, mode),
        tag => Err(ChunkError::UnknownFormat { tag }),
    }
}

fn decode_chunks(b: &[u8], n: usize) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    // Every sample takes at least one bit, which bounds the allocation by the input's size.
    if n > b.len() * 8 {
        return Err(ChunkError::CorruptColumn {
            what: "more samples than bytes can hold",
        });
    }
    let mut pos = 0;
    let k = read_varint(b, &mut pos)?;
    if k < 2 || n == 0 {
        return Err(ChunkError::CorruptColumn {
            what: "a chunk list holds two chunks or more",
        });
    }
    let (mut ts, mut vs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut total = 0usize;
    for _ in 0..k {
        let len = read_varint(b, &mut pos)?;
        let end = (pos as u64).checked_add(len).filter(|&end| end <= b.len() as u64);
        let end = end.ok_or(ChunkError::CorruptColumn {
            what: "chunk cut short",
        })? as usize;
        decode_checked(&b[pos..end], |t, v| {
            total += 1;
            if ts.len() < n {
                ts.push(t);
                vs.push(v);
            }
        })?;
        pos = end;
    }
    if pos != b.len() {
        return Err(ChunkError::CorruptColumn {
            what: "bytes after the last chunk",
        });
    }
    if total != n || ts.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ChunkError::CorruptColumn {
            what: "chunk samples differ from the column's count or are out of order",
        });
    }
    Ok((ts, vs))
}

fn encode_stream(ts: &[i64], vs: &[f64], mode: ValueMode) -> Vec<u8> {
    let mut head = Vec::with_capacity(12 + ts.len() * 2);
    head.push(TAG_STREAM);
    write_varint(&mut head, ts.len() as u64);
    head.extend_from_slice(&mode.to_bytes());
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
    // Every sample takes at least one bit (a run of predicted samples costs one bit
    // each), which bounds the allocation by the input's size.
    if n > b.len() * 8 {
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
    out.extend_from_slice(&mode.to_bytes());
    let exceptional = |v: f64| match mode {
        ValueMode::Decimal { .. } => is_special(v),
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
        ValueMode::Decimal { scale, .. } => {
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
        ValueMode::Decimal { scale, .. } => {
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

pub(super) fn write_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

pub(super) fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64, ChunkError> {
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

#[cfg(test)]
mod tests {
    use super::super::decimal;
    use super::super::tests::*;
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
        let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
        let vs: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let b = encode_columns(&ts, &vs);
        let (dt, dv) = decode_columns(&b).unwrap();
        assert_same(&dt.into_iter().zip(dv).collect::<Vec<_>>(), samples);
        b
    }

    /// A block's worth of 1 s samples from `value(i)`.
    fn block(value: impl Fn(usize) -> f64) -> Vec<(i64, f64)> {
        (0..7200)
            .map(|i| (1_767_225_600_000 + i as i64 * 1000, value(i)))
            .collect()
    }

    #[test]
    fn round_trips_all_shapes() {
        for set in sample_sets() {
            round_trip(&set);
        }
        round_trip(&[]);
    }

    #[test]
    fn long_columns_use_pco_and_keep_specials() {
        let mut rng = Rng(5);
        let walk: Vec<i64> = (0..7200)
            .scan(10_000i64, |h, _| {
                *h += rng.below(201) as i64 - 100;
                Some(*h)
            })
            .collect();
        let specials = adversarial_values()
            .into_iter()
            .filter(|v| decimal::is_special(*v))
            .collect::<Vec<_>>();
        let set = block(|i| match i {
            7199 => f64::from_bits(STALE_NAN),
            i if i % 1000 == 7 => specials[i / 1000 % specials.len()],
            i => walk[i] as f64 / 100.0,
        });
        let b = round_trip(&set);
        assert_eq!(b[0], TAG_PCO);
        assert_eq!(b[1 + 2], 2, "decimal mode with scale 2 despite the specials");
        // Floats that are not decimals take the f64 path, with NaNs on the side.
        let set = block(|i| if i % 100 == 0 { f64::NAN } else { (i as f64).sqrt() });
        let b = round_trip(&set);
        assert_eq!((b[0], b[3]), (TAG_PCO, 5));
        // Byte counts that move in pages: the stream form codes deltas in pages.
        let pages: Vec<_> = (0..50)
            .map(|i| (i * 1000, ((1i64 << 33) + (i * i % 7) * 4096) as f64))
            .collect();
        let b = round_trip(&pages);
        assert_eq!(b[..4], [TAG_STREAM, 50, 0, 12]);
    }

    #[test]
    fn picks_the_smaller_encoding() {
        let short: Vec<_> = (0..10).map(|i| (i * 1000, i as f64)).collect();
        assert_eq!(round_trip(&short)[0], TAG_STREAM, "pco metadata outweighs 10 samples");
        let long = block(|i| (i * 37 % 101) as f64);
        let b = round_trip(&long);
        let ts: Vec<i64> = long.iter().map(|s| s.0).collect();
        let vs: Vec<f64> = long.iter().map(|s| s.1).collect();
        let mode = ValueMode::for_values(vs.iter().copied());
        let stream = encode_stream(&ts, &vs, mode);
        assert!(b.len() <= stream.len());
        assert_eq!(
            decode_columns(&stream).unwrap().0,
            ts,
            "the stream form decodes on its own"
        );
    }

    #[test]
    fn corrupt_columns_are_errors_not_panics() {
        let mut rng = Rng(11);
        let mut inputs: Vec<Vec<(i64, f64)>> = sample_sets().into_iter().step_by(4).collect();
        inputs.push(block(|i| (i / 3) as f64));
        inputs.push(block(|i| {
            if i % 500 == 0 {
                f64::from_bits(STALE_NAN)
            } else {
                i as f64 / 4.0
            }
        }));
        for set in inputs {
            let b = round_trip(&set);
            for bad in damaged(&b, &mut rng) {
                if let Ok((ts, vs)) = decode_columns(&bad) {
                    assert_eq!(ts.len(), vs.len());
                    assert!(ts.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
        for bad in [
            &[][..],
            &[0x04, 0, 0],
            &[TAG_CHUNKS, 0, 0],
            &[TAG_STREAM, 0x80],
            &[TAG_STREAM, 1, 9],
            &[TAG_PCO, 0xff, 0xff, 0xff, 0x7f, 0],
        ] {
            assert!(decode_columns(bad).is_err(), "{bad:?}");
        }
    }

    /// Head chunks of `set`, cut where a head would cut them.
    fn head_chunks(set: &[(i64, f64)]) -> Vec<super::super::HeadChunk> {
        let mut chunks = vec![super::super::HeadChunk::new()];
        for &(t, v) in set {
            if chunks.last().unwrap().is_full() {
                chunks.push(super::super::HeadChunk::new());
            }
            chunks.last_mut().unwrap().append(t, v);
        }
        chunks.retain(|c| !c.is_empty());
        chunks
    }

    #[test]
    fn head_chunks_become_columns_without_re_encoding() {
        let mut rng = Rng(3);
        for set in sample_sets().into_iter().filter(|s| !s.is_empty()) {
            let chunks = head_chunks(&set);
            let parts: Vec<ChunkParts> = chunks.iter().map(|c| c.parts().unwrap()).collect();
            let mut col = vec![0xAA];
            assert_eq!(column_from_chunks(&mut col, &parts), set.len() as u64);
            assert_eq!(col.remove(0), 0xAA, "appends to what is there");
            let want_tag = if chunks.len() == 1 { TAG_STREAM } else { TAG_CHUNKS };
            assert_eq!(col[0], want_tag);
            let (ts, vs) = decode_columns(&col).unwrap();
            assert_same(&ts.into_iter().zip(vs).collect::<Vec<_>>(), &set);
            if chunks.len() == 1 {
                assert_eq!(
                    &col[col.len() - parts[0].stream.len()..],
                    parts[0].stream,
                    "the chunk's stream, copied"
                );
            }
            for bad in damaged(&col, &mut rng) {
                if let Ok((ts, vs)) = decode_columns(&bad) {
                    assert_eq!(ts.len(), vs.len());
                    assert!(ts.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
    }

    #[test]
    fn a_chunk_list_with_overlapping_chunks_or_a_wrong_count_is_refused() {
        let a = head_chunks(&(0..5).map(|i| (i * 1000, i as f64)).collect::<Vec<_>>());
        let b = head_chunks(&(3..8).map(|i| (i * 1000, i as f64)).collect::<Vec<_>>());
        let mut col = Vec::new();
        column_from_chunks(&mut col, &[a[0].parts().unwrap(), b[0].parts().unwrap()]);
        assert!(decode_columns(&col).is_err(), "times go back at the second chunk");
        let c = head_chunks(&(5..8).map(|i| (i * 1000, i as f64)).collect::<Vec<_>>());
        let mut col = Vec::new();
        column_from_chunks(&mut col, &[a[0].parts().unwrap(), c[0].parts().unwrap()]);
        assert_eq!(decode_columns(&col).unwrap().0.len(), 8);
        col[1] = 7;
        assert!(decode_columns(&col).is_err(), "count says 7, chunks hold 8");
    }

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for x in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            write_varint(&mut b, x);
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos).unwrap(), x);
            assert_eq!(pos, b.len());
        }
        let mut pos = 0;
        assert!(read_varint(&[0xff; 10], &mut pos).is_err());
        let mut pos = 0;
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], &mut pos).is_err());
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    /// Regression: perfectly regular series cost one bit per sample in the stream form,
    /// and the decoder's size check used to assume two.
    #[test]
    fn regular_series_round_trip_through_the_column_codec() {
        for n in [2usize, 10, 100, 1000] {
            let ts: Vec<i64> = (0..n as i64).map(|i| i * 1000).collect();
            let vs: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
            let (t2, v2) = decode_columns(&encode_columns(&ts, &vs)).unwrap();
            assert_eq!(t2, ts);
            assert_eq!(v2, vs);
        }
    }
}
