//! The sample stream shared by head chunks and the block column fallback: per sample, the value's
//! code followed by the timestamp's code, with the value mode fixed for the whole stream.
//!
//! - timestamps: [`IntCoder`] over milliseconds (regular scrapes cost 1 bit per sample);
//! - values in decimal mode `k`: [`IntCoder`] over `v × 10^k`, with NaN/±Inf/-0.0 as specials;
//! - values in float mode: [`XorCoder`];
//! - run mode: after a sample that was exactly as predicted, one bit says whether the next one is
//!   too (see [`StreamCoder`]).

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
    /// The last sample was exactly as predicted, both coders at one bit per zero residual: the
    /// next sample starts with a run bit, `0` = "as predicted again" (nothing else follows),
    /// `1` = the normal codes follow. Constant series on a regular scrape cost 1 bit per sample.
    run: bool,
}

/// A value as the value coder will store it.
#[derive(Clone, Copy)]
enum Planned {
    Int(i64),
    Special(u64),
    Float(f64),
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
            run: false,
        }
    }

    /// Timestamp of the last sample coded.
    pub fn last_time(&self) -> Option<i64> {
        self.times.last()
    }

    /// The value bits whose code is a single bit, if any.
    #[inline]
    fn predicted_value(&self) -> Option<u64> {
        match &self.values {
            ValueCoder::Decimal { scale, ints } => ints.predicted().map(|n| from_scaled(n, *scale).to_bits()),
            ValueCoder::Float(xor) => xor.predicted(),
        }
    }

    /// Whether `v`, planned as `planned`, is the [`predicted_value`](Self::predicted_value),
    /// compared as integers in decimal mode: the float would need a division.
    #[inline]
    fn value_as_predicted(&self, planned: Planned, v: f64) -> bool {
        match (&self.values, planned) {
            (_, Planned::Special(_)) => false,
            (ValueCoder::Decimal { scale, ints }, Planned::Int(n)) => match ints.predicted() {
                None => false,
                Some(p) if p == n => true,
                // Distinct integers up to 2^52 in magnitude stand for distinct floats (their
                // quotients by 10^k are farther apart than an ulp); beyond, two can round to
                // the same float, which is then the predicted value.
                Some(p) if p.unsigned_abs().max(n.unsigned_abs()) <= 1 << 52 => false,
                Some(p) => from_scaled(p, *scale).to_bits() == v.to_bits(),
            },
            (ValueCoder::Float(xor), _) => xor.predicted() == Some(v.to_bits()),
            (ValueCoder::Decimal { .. }, Planned::Float(_)) => unreachable!("planned for this coder"),
        }
    }

    #[inline]
    fn skip_predicted(&mut self) {
        if let ValueCoder::Decimal { ints, .. } = &mut self.values {
            ints.skip_predicted();
        }
        self.times.skip_predicted();
    }

    /// Appends one sample. Returns false, having written nothing, when `v` does not fit the mode.
    #[inline]
    pub fn encode(&mut self, w: &mut BitWriter, t: i64, v: f64) -> bool {
        let planned = match &self.values {
            ValueCoder::Decimal { scale, ints } => match to_scaled(v, *scale) {
                Some(n) if ints.fits(n) => Planned::Int(n),
                None if is_special(v) => Planned::Special(v.to_bits()),
                _ => return false,
            },
            ValueCoder::Float(_) => Planned::Float(v),
        };
        let as_predicted = self.times.predicted() == Some(t) && self.value_as_predicted(planned, v);
        if self.run {
            w.write_bit(!as_predicted);
            if as_predicted {
                self.skip_predicted();
                return true;
            }
        }
        match (&mut self.values, planned) {
            (ValueCoder::Decimal { ints, .. }, Planned::Int(n)) => ints.encode(w, n),
            (ValueCoder::Decimal { ints, .. }, Planned::Special(bits)) => ints.encode_special(w, bits),
            (ValueCoder::Float(xor), Planned::Float(v)) => xor.encode(w, v),
            _ => unreachable!("planned for this coder"),
        }
        self.times.encode(w, t);
        self.run = as_predicted;
        true
    }

    /// Reads one sample; timestamps must increase strictly.
    #[inline]
    pub fn decode(&mut self, r: &mut BitReader) -> Result<(i64, f64), ChunkError> {
        let bit = r.position();
        let last = self.times.last();
        let (predicted_t, predicted_v) = (self.times.predicted(), self.predicted_value());
        let (t, v) = if self.run && !r.read_bit().ok_or(ChunkError::Truncated { bit })? {
            let (Some(t), Some(v)) = (predicted_t, predicted_v) else {
                return Err(ChunkError::Corrupt {
                    what: "run bit without a prediction",
                    bit,
                });
            };
            self.skip_predicted();
            (t, f64::from_bits(v))
        } else {
            let (v, special) = match &mut self.values {
                ValueCoder::Decimal { scale, ints } => match ints.decode(r)? {
                    Decoded::Int(n) => (from_scaled(n, *scale), false),
                    Decoded::Special(bits) => (f64::from_bits(bits), true),
                },
                ValueCoder::Float(xor) => (xor.decode(r)?, false),
            };
            let t = match self.times.decode(r)? {
                Decoded::Int(t) => t,
                Decoded::Special(_) => {
                    return Err(ChunkError::Corrupt {
                        what: "raw value in the timestamps",
                        bit,
                    });
                }
            };
            self.run = predicted_t == Some(t) && !special && predicted_v == Some(v.to_bits());
            (t, v)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::tests::{Rng, sample_sets};

    /// Near 2^53, scale-2 integers are denser than floats (1/64 apart above 2^46): `n` and
    /// `n + 1` can stand for the same float, and `to_scaled` gives one of them. The value
    /// is as predicted when the predicted integer is the other one.
    #[test]
    fn a_float_two_integers_stand_for_is_as_predicted_through_either() {
        let base = 100 * (1i64 << 46);
        // 2^46 + 3/64 is the float of both base + 4 and base + 5; to_scaled gives base + 5.
        let v = from_scaled(base + 4, 2);
        assert_eq!(v.to_bits(), from_scaled(base + 5, 2).to_bits());
        let n = to_scaled(v, 2).unwrap();
        assert_eq!(n, base + 5);
        let coder = |prev: i64| StreamCoder {
            values: ValueCoder::Decimal {
                scale: 2,
                ints: IntCoder::steady(prev, 1),
            },
            times: IntCoder::for_timestamps(),
            run: false,
        };
        assert!(
            coder(base + 3).value_as_predicted(Planned::Int(n), v),
            "predicted base + 4"
        );
        assert!(
            coder(base + 4).value_as_predicted(Planned::Int(n), v),
            "predicted base + 5"
        );
        assert!(
            !coder(base + 5).value_as_predicted(Planned::Int(n), v),
            "predicted base + 6"
        );
        assert!(
            !coder(base + 1).value_as_predicted(Planned::Int(n), v),
            "predicted base + 2"
        );
    }

    /// The integer comparison agrees with comparing the predicted float, on every sample
    /// of the shared sample sets and of runs near 2^53.
    #[test]
    fn values_are_as_predicted_exactly_when_their_float_is() {
        let mut sets = sample_sets();
        let mut rng = Rng(7);
        for scale in 0..=decimal::MAX_SCALE {
            let top = (1i64 << 53) - 2000;
            let mut x = top;
            sets.push(
                (0..1000)
                    .map(|i| {
                        x += [0, 1, 1, 1, 2, 3][rng.below(6) as usize];
                        (i * 1000, from_scaled(x.min(1 << 53), scale))
                    })
                    .collect(),
            );
        }
        let mut checked = 0;
        for set in sets {
            let Some(&(_, first)) = set.first() else { continue };
            let mut c = StreamCoder::new(ValueMode::for_first(first));
            let mut w = BitWriter::new();
            for (t, v) in set {
                let planned = match &c.values {
                    ValueCoder::Decimal { scale, ints } => match to_scaled(v, *scale) {
                        Some(n) if ints.fits(n) => Planned::Int(n),
                        None if is_special(v) => Planned::Special(v.to_bits()),
                        _ => break,
                    },
                    ValueCoder::Float(_) => Planned::Float(v),
                };
                let by_float = !matches!(planned, Planned::Special(_)) && c.predicted_value() == Some(v.to_bits());
                assert_eq!(c.value_as_predicted(planned, v), by_float, "{v} after {:?}", c.values);
                checked += by_float as usize;
                assert!(c.encode(&mut w, t, v));
            }
        }
        assert!(checked > 100, "few samples were as predicted: {checked}");
    }
}
