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

/// How a stream stores values. Encoded in 4 bits: `0..=4` decimal scale, `5` float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueMode {
    Decimal(u8),
    Float,
}

impl ValueMode {
    const FLOAT_CODE: u8 = 5;

    pub fn code(self) -> u8 {
        match self {
            ValueMode::Decimal(k) => k,
            ValueMode::Float => Self::FLOAT_CODE,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            k if k <= decimal::MAX_SCALE => Some(ValueMode::Decimal(k)),
            Self::FLOAT_CODE => Some(ValueMode::Float),
            _ => None,
        }
    }

    /// The cheapest mode that represents all `values`.
    pub fn for_values(values: impl Iterator<Item = f64> + Clone) -> Self {
        decimal::common_scale(values).map_or(ValueMode::Float, ValueMode::Decimal)
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
            ValueMode::Decimal(scale) => ValueCoder::Decimal {
                scale,
                ints: IntCoder::default(),
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
                Some(n) => ints.encode(w, n),
                None if is_special(v) => ints.encode_special(w, v.to_bits()),
                None => return false,
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
