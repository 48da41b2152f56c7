//! The sample stream shared by head chunks and the block column fallback: per sample, the value's
//! code followed by the timestamp's code, with the value mode fixed for the whole stream.
//!
//! - timestamps: [`IntCoder`] over milliseconds (regular scrapes cost 1 bit per sample);
//! - values in decimal mode `k`: [`IntCoder`] over `v × 10^k`, with NaN/±Inf/-0.0 as specials;
//! - values in float mode: [`XorCoder`].

use super::ChunkError;
use super::bits::{BitReader, BitWriter};
use super::decimal::{self, from_scaled, is_special, to_scaled};
use super::ints::{Decoded, IntCoder};
use super::xor::XorCoder;

/// How a stream stores values. Encoded in two bytes: the mode (`0..=4` decimal scale, `5` float)
/// and the shift (decimal modes: scaled integers differ by multiples of 2^shift; else 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueMode {
    Decimal { scale: u8, shift: u8 },
    Float,
}

/// Shifts below this are not worth the re-encoding when a value breaks them; byte counts in KiB
/// or pages (2^10, 2^12) are what the shift is for.
const MIN_SHIFT: u32 = 8;
const MAX_SHIFT: u32 = 32;

impl ValueMode {
    const FLOAT_CODE: u8 = 5;

    pub fn to_bytes(self) -> [u8; 2] {
        match self {
            ValueMode::Decimal { scale, shift } => [scale, shift],
            ValueMode::Float => [Self::FLOAT_CODE, 0],
        }
    }

    pub fn from_bytes(code: u8, shift: u8) -> Option<Self> {
        match code {
            scale if scale <= decimal::MAX_SCALE && shift as u32 <= MAX_SHIFT => {
                Some(ValueMode::Decimal { scale, shift })
            }
            Self::FLOAT_CODE if shift == 0 => Some(ValueMode::Float),
            _ => None,
        }
    }

    /// The cheapest mode that represents all `values`.
    pub fn for_values(values: impl Iterator<Item = f64> + Clone) -> Self {
        let Some(scale) = decimal::common_scale(values.clone()) else {
            return ValueMode::Float;
        };
        let mut ints = values.filter(|v| !is_special(*v)).filter_map(|v| to_scaled(v, scale));
        let first = ints.next().unwrap_or(0);
        let tz = ints.map(|n| n.wrapping_sub(first).trailing_zeros()).min().unwrap_or(0);
        ValueMode::Decimal {
            scale,
            shift: useful_shift(tz),
        }
    }

    /// A guess from a chunk's first value: a multiple of 2^10 or more is probably a byte count
    /// that moves in KiB or pages.
    pub fn for_first(v: f64) -> Self {
        match ValueMode::for_values(std::iter::once(v)) {
            ValueMode::Decimal { scale: 0, .. } => {
                let tz = to_scaled(v, 0).map_or(0, |n| n.trailing_zeros()).min(12);
                ValueMode::Decimal {
                    scale: 0,
                    shift: if tz >= 10 { tz as u8 } else { 0 },
                }
            }
            mode => mode,
        }
    }
}

fn useful_shift(tz: u32) -> u8 {
    match tz {
        64 => 0, // all equal: any shift fits, and none helps
        tz if tz >= MIN_SHIFT => tz.min(MAX_SHIFT) as u8,
        _ => 0,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ValueCoder {
    Decimal { scale: u8, ints: IntCoder },
    Float(XorCoder),
}

/// Encoder or decoder state of one sample stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCoder {
    values: ValueCoder,
    times: IntCoder,
}

impl StreamCoder {
    pub fn new(mode: ValueMode) -> Self {
        let values = match mode {
            ValueMode::Decimal { scale, shift } => ValueCoder::Decimal {
                scale,
                ints: IntCoder::with_shift(shift),
            },
            ValueMode::Float => ValueCoder::Float(XorCoder::default()),
        };
        StreamCoder {
            values,
            times: IntCoder::for_timestamps(),
        }
    }

    /// Timestamp of the last sample coded.
    pub fn last_time(&self) -> Option<i64> {
        self.times.last()
    }

    /// Appends one sample. Returns false, having written nothing, when `v` does not fit the mode.
    #[inline]
    pub fn encode(&mut self, w: &mut BitWriter, t: i64, v: f64) -> bool {
        match &mut self.values {
            ValueCoder::Decimal { scale, ints } => match to_scaled(v, *scale) {
                Some(n) if ints.fits(n) => ints.encode(w, n),
                None if is_special(v) => ints.encode_special(w, v.to_bits()),
                _ => return false,
            },
            ValueCoder::Float(xor) => xor.encode(w, v),
        }
        self.times.encode(w, t);
        true
    }

    /// Reads one sample; timestamps must increase strictly.
    #[inline]
    pub fn decode(&mut self, r: &mut BitReader) -> Result<(i64, f64), ChunkError> {
        let v = match &mut self.values {
            ValueCoder::Decimal { scale, ints } => match ints.decode(r)? {
                Decoded::Int(n) => from_scaled(n, *scale),
                Decoded::Special(bits) => f64::from_bits(bits),
            },
            ValueCoder::Float(xor) => xor.decode(r)?,
        };
        let bit = r.position();
        let last = self.times.last();
        let t = match self.times.decode(r)? {
            Decoded::Int(t) => t,
            Decoded::Special(_) => {
                return Err(ChunkError::Corrupt {
                    what: "raw value in the timestamps",
                    bit,
                });
            }
        };
        if last.is_some_and(|last| t <= last) {
            return Err(ChunkError::Corrupt {
                what: "timestamps out of order",
                bit,
            });
        }
        Ok((t, v))
    }
}
