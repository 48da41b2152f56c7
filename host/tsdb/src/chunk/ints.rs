//! Integer sequence coder shared by timestamps and decimal values: adaptive prediction of the next
//! delta plus an adaptive Rice code for the residual.
//!
//! Both sides run the same model on the values already coded, so predictor and code parameters
//! adapt without being stored:
//!
//! - three delta predictors compete: the running mean of recent deltas (regular scrapes, counters
//!   with a steady rate, jittered timestamps), zero (gauges that change rarely) and the previous
//!   delta (delta-of-delta, rates that drift); the one with the smallest recent residuals wins;
//! - the Rice parameter follows the recent residual *bit lengths*, so one large jump (a counter
//!   reset) costs one escape instead of inflating the code for the next hundred samples.
//!
//! Code for one value, after the first (residual `r`, zigzagged, Rice parameter `k`):
//!
//! ```text
//! q < QMAX:  q ones, 0, low k bits of r           (q = r >> k)
//! escape:    QMAX ones, 0, 6 bits (len-2), low len-1 bits of r   (len = bit length of r, ≥ 2)
//! special:   QMAX+1 ones, 64 raw bits             (a value stored verbatim; the model is unchanged)
//! ```
//!
//! The first value and the first delta are `0`, 6 bits (len-1), len bits of the zigzagged number;
//! a special in their place is `1` + 64 raw bits.

use super::ChunkError;
use super::bits::{BitReader, BitWriter};

/// Longest unary quotient before the escape code. An escape costs QMAX + 7 bits plus the value.
const QMAX: u32 = 8;

/// Weights of the running averages, as shifts: `avg += (x - avg) >> SHIFT`.
const MEAN_SHIFT: u32 = 4;
const COST_SHIFT: u32 = 3;
const K_SHIFT: u32 = 2;
/// Residuals count at most this many bits above k towards the next k.
const K_OUTLIER: u32 = 4;

/// The mean moves by at most 2^(k + MEAN_STEP) per sample (in units of 2^-MEAN_SHIFT).
const MEAN_STEP: u32 = 2;
/// Deltas are clamped before entering the mean so the fixed-point sum cannot overflow.
const MEAN_CLAMP: i64 = 1 << 56;

#[inline]
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[inline]
fn bit_len(u: u64) -> u32 {
    64 - u.leading_zeros()
}

/// What a decoder read: a coded integer or a special value stored as raw bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    Int(i64),
    Special(u64),
}

/// Model state for one integer sequence; encoder and decoder hold identical copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntCoder {
    prev: i64,
    last_delta: i64,
    /// Running mean of the deltas, times 2^MEAN_SHIFT.
    mean: i64,
    /// Running mean of residual bit lengths, times 2^K_SHIFT.
    k_avg: u16,
    /// Running mean of each predictor's residual bit lengths, times 2^COST_SHIFT.
    cost: [u16; 3],
    /// Integers coded so far, saturating at 2.
    seen: u8,
    /// Tunes the start of the model for timestamps rather than values.
    timestamps: bool,
    /// Deltas are multiples of 2^shift and coded divided by it (byte counts in pages or KiB).
    shift: u8,
}

impl IntCoder {
    /// A coder for timestamps: after the first interval, residuals are expected to be zero.
    pub fn for_timestamps() -> Self {
        IntCoder {
            timestamps: true,
            ..Self::default()
        }
    }

    /// A coder for values whose differences are all multiples of 2^shift (shift < 64).
    pub fn with_shift(shift: u8) -> Self {
        IntCoder {
            shift: shift.min(63),
            ..Self::default()
        }
    }

    /// A coder in the state a long steady run leaves: `prev` coded last, every recent delta
    /// `delta`, so [`predicted`](Self::predicted) is `prev + delta`.
    #[cfg(test)]
    pub fn steady(prev: i64, delta: i64) -> Self {
        IntCoder {
            prev,
            last_delta: delta,
            mean: delta << MEAN_SHIFT,
            k_avg: 0,
            cost: [0, 8 << COST_SHIFT, 0],
            seen: 2,
            ..Self::default()
        }
    }

    /// Whether `x` can follow: its difference to the previous integer is a multiple of 2^shift.
    #[inline]
    pub fn fits(&self, x: i64) -> bool {
        self.seen == 0 || x.wrapping_sub(self.prev).trailing_zeros() >= self.shift as u32
    }

    /// The integer whose residual is zero, when that costs a single bit (k = 0): the candidate for
    /// the stream's run mode.
    #[inline]
    pub fn predicted(&self) -> Option<i64> {
        (self.seen >= 2 && self.k() == 0).then(|| self.prev.wrapping_add(self.prediction() << self.shift))
    }

    /// Advances the model past the [`predicted`](Self::predicted) integer without writing it.
    #[inline]
    pub fn skip_predicted(&mut self) {
        let d = self.prediction();
        self.update(self.prev.wrapping_add(d << self.shift), d, 0);
    }

    /// The delta to `x`, divided by 2^shift.
    #[inline]
    fn delta_to(&self, x: i64) -> i64 {
        x.wrapping_sub(self.prev) >> self.shift
    }

    /// The last integer coded (specials aside).
    pub fn last(&self) -> Option<i64> {
        (self.seen > 0).then_some(self.prev)
    }

    /// Predicted delta; ties prefer zero (a value that did not change), then the mean.
    #[inline]
    fn prediction(&self) -> i64 {
        let [mean, zero, last] = self.cost;
        if zero <= mean && zero <= last {
            0
        } else if mean <= last {
            self.mean_delta()
        } else {
            self.last_delta
        }
    }

    #[inline]
    fn mean_delta(&self) -> i64 {
        (self.mean + (1 << (MEAN_SHIFT - 1))) >> MEAN_SHIFT
    }

    #[inline]
    fn k(&self) -> u32 {
        ((self.k_avg as u32 + 1) >> K_SHIFT).min(62)
    }

    /// Updates the model after coding integer `x` (delta `d`, shifted), whose coded residual had
    /// `r_len` bits.
    #[inline]
    fn update(&mut self, x: i64, d: i64, r_len: u32) {
        let clamped = d.clamp(-MEAN_CLAMP, MEAN_CLAMP);
        match self.seen {
            0 => {}
            1 => {
                self.mean = clamped << MEAN_SHIFT;
                // Values: residuals tend to be as large as the first delta. Timestamps: the first
                // delta is the interval, and residuals after it are usually zero.
                let scale = bit_len(zigzag(d)) as u16;
                if self.timestamps {
                    self.cost[1] = scale << COST_SHIFT;
                } else {
                    self.k_avg = scale << K_SHIFT;
                }
            }
            _ => {
                let preds = [self.mean_delta(), 0, self.last_delta];
                for (c, p) in self.cost.iter_mut().zip(preds) {
                    let bits = bit_len(zigzag(d.wrapping_sub(p))) as u16;
                    *c = *c - ((*c + (1 << (COST_SHIFT - 1))) >> COST_SHIFT) + bits;
                }
                // Bounded steps keep one jump from skewing the mean for the samples after it.
                let step = 1i64 << (self.k() + MEAN_STEP).min(56);
                self.mean += (clamped - self.mean_delta()).clamp(-step, step);
                // An outlier (a jump, a reset) raises k by a bounded step, so the zeros after it
                // stay cheap; a lasting change of scale still moves k within a few samples.
                let r_len = r_len.min(self.k() + K_OUTLIER) as u16;
                self.k_avg = self.k_avg - ((self.k_avg + (1 << (K_SHIFT - 1))) >> K_SHIFT) + r_len;
            }
        }
        self.last_delta = if self.seen == 0 { 0 } else { d };
        self.prev = x;
        self.seen = (self.seen + 1).min(2);
    }

    /// Codes `x`, which must [`fit`](Self::fits).
    pub fn encode(&mut self, w: &mut BitWriter, x: i64) {
        debug_assert!(self.fits(x));
        let d = self.delta_to(x);
        if self.seen < 2 {
            let u = zigzag(if self.seen == 0 { x } else { d });
            let len = bit_len(u).max(1);
            w.write_bits((len - 1) as u64, 7);
            w.write_bits(u, len);
            self.update(x, d, 0);
            return;
        }
        let r = zigzag(d.wrapping_sub(self.prediction()));
        let k = self.k();
        let q = r >> k;
        if q < QMAX as u64 {
            let q = q as u32;
            // q ones, a zero, then k low bits, in one write when it fits.
            if q + 1 + k <= 64 {
                let ones = ((1u64 << q) - 1) << (k + 1);
                let low = if k == 0 { 0 } else { r & ((1u64 << k) - 1) };
                w.write_bits(ones | low, q + 1 + k);
            } else {
                w.write_ones(q, true);
                w.write_bits(r, k);
            }
        } else {
            let len = bit_len(r);
            w.write_ones(QMAX, true);
            w.write_bits((len - 2) as u64, 6);
            w.write_bits(r, len - 1);
        }
        self.update(x, d, bit_len(r));
    }

    /// Stores `bits` verbatim; the model does not change.
    pub fn encode_special(&mut self, w: &mut BitWriter, bits: u64) {
        if self.seen < 2 {
            w.write_bit(true);
        } else {
            w.write_ones(QMAX + 1, false);
        }
        w.write_bits(bits, 64);
    }

    pub fn decode(&mut self, r: &mut BitReader) -> Result<Decoded, ChunkError> {
        let bit = r.position();
        let short = move || ChunkError::Truncated { bit };
        if self.seen < 2 {
            let head = r.read_bits(7).ok_or_else(short)?;
            if head >> 6 == 1 {
                // The flag bit of a special followed by the first 6 of its 64 bits.
                let rest = r.read_bits(58).ok_or_else(short)?;
                return Ok(Decoded::Special(((head & 0x3f) << 58) | rest));
            }
            let n = unzigzag(r.read_bits(head as u32 + 1).ok_or_else(short)?);
            let x = if self.seen == 0 {
                n
            } else {
                self.prev.wrapping_add(n << self.shift)
            };
            self.update(x, n, 0);
            return Ok(Decoded::Int(x));
        }
        let q = r.read_ones(QMAX + 1).ok_or_else(short)?;
        let res = if q < QMAX {
            let k = self.k();
            let low = r.read_bits(k).ok_or_else(short)?;
            if k > 0 && q as u64 > (u64::MAX >> k) {
                return Err(ChunkError::Corrupt {
                    what: "residual out of range",
                    bit,
                });
            }
            ((q as u64) << k) | low
        } else if q == QMAX {
            let len = r.read_bits(6).ok_or_else(short)? as u32 + 2;
            if len > 64 {
                return Err(ChunkError::Corrupt {
                    what: "escape length over 64 bits",
                    bit,
                });
            }
            (1u64 << (len - 1)) | r.read_bits(len - 1).ok_or_else(short)?
        } else {
            return Ok(Decoded::Special(r.read_bits(64).ok_or_else(short)?));
        };
        let d = self.prediction().wrapping_add(unzigzag(res));
        let x = self.prev.wrapping_add(d << self.shift);
        self.update(x, d, bit_len(res));
        Ok(Decoded::Int(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(xs: &[Option<i64>]) -> usize {
        let mut w = BitWriter::new();
        let mut enc = IntCoder::default();
        for x in xs {
            match *x {
                Some(x) => enc.encode(&mut w, x),
                None => enc.encode_special(&mut w, 0x7ff0_0000_0000_0002),
            }
        }
        let bits = w.bit_len();
        let bytes = w.into_vec();
        let mut r = BitReader::new(&bytes);
        let mut dec = IntCoder::default();
        for x in xs {
            let want = match *x {
                Some(x) => Decoded::Int(x),
                None => Decoded::Special(0x7ff0_0000_0000_0002),
            };
            assert_eq!(dec.decode(&mut r).unwrap(), want);
        }
        assert_eq!(dec, enc, "decoder model must track the encoder's");
        assert_eq!(r.position(), bits);
        bits
    }

    #[test]
    fn zigzag_is_a_bijection_at_the_edges() {
        for x in [0, 1, -1, i64::MAX, i64::MIN, i64::MIN + 1, 12345, -12345] {
            assert_eq!(unzigzag(zigzag(x)), x);
        }
    }

    #[test]
    fn extremes_round_trip() {
        round_trip(&[
            Some(i64::MIN),
            Some(i64::MAX),
            Some(i64::MIN),
            Some(0),
            Some(i64::MAX),
            Some(-1),
        ]);
        round_trip(&[None, None, Some(5), None, Some(i64::MIN), None]);
        round_trip(&[Some(0)]);
        round_trip(&[None]);
    }

    #[test]
    fn random_sequences_round_trip() {
        let mut s: u64 = 99;
        for shape in 0..200 {
            let mut xs = Vec::new();
            let mut x: i64 = 0;
            for _ in 0..300 {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let step = match shape % 5 {
                    0 => (s >> 33) as i64 % 100,
                    1 => ((s >> 20) as i64) >> (s % 63),
                    2 => (s >> 60) as i64 - 8,
                    3 => (s as i64).wrapping_mul(3),
                    _ => 1000,
                };
                x = x.wrapping_add(step);
                xs.push(if s.is_multiple_of(97) { None } else { Some(x) });
            }
            round_trip(&xs);
        }
    }

    #[test]
    fn regular_steps_cost_about_one_bit() {
        let xs: Vec<_> = (0..1000).map(|i| Some(1_700_000_000_000 + i * 15_000)).collect();
        let bits = round_trip(&xs);
        assert!(bits < 1000 + 200, "{bits} bits");
    }
}
