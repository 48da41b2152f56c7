//! Float value coder: XOR with the previous value's bits, Gorilla style. Used when a chunk's values
//! are not all short decimals. Exact for every bit pattern, NaN payloads included.
//!
//! ```text
//! first value:   64 raw bits
//! same bits:     0
//! inside window: 10, then the window's bits of the XOR   (window = previous leading/trailing zeros)
//! new window:    11, 5 bits leading zeros (≤ 31), 6 bits (significant bits - 1), significant bits
//! ```

use super::ChunkError;
use super::bits::{BitReader, BitWriter};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XorCoder {
    prev: u64,
    leading: u8,
    /// Significant bits in the current window; 0 until a window exists.
    sig: u8,
    seen: bool,
}

impl XorCoder {
    /// The bits of a repeated value, once there is one to repeat.
    #[inline]
    pub fn predicted(&self) -> Option<u64> {
        self.seen.then_some(self.prev)
    }

    pub fn encode(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        if !self.seen {
            w.write_bits(bits, 64);
            self.prev = bits;
            self.seen = true;
            return;
        }
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        let leading = x.leading_zeros().min(31);
        let trailing = x.trailing_zeros();
        let (wl, ws) = (self.leading as u32, self.sig as u32);
        if ws > 0 && leading >= wl && trailing >= 64 - wl - ws {
            w.write_bits(0b10, 2);
            w.write_bits(x >> (64 - wl - ws), ws);
            return;
        }
        let sig = 64 - leading - trailing;
        w.write_bits(0b11, 2);
        w.write_bits(leading as u64, 5);
        w.write_bits((sig - 1) as u64, 6);
        w.write_bits(x >> trailing, sig);
        self.leading = leading as u8;
        self.sig = sig as u8;
    }

    pub fn decode(&mut self, r: &mut BitReader) -> Result<f64, ChunkError> {
        let bit = r.position();
        let short = move || ChunkError::Truncated { bit };
        if !self.seen {
            self.prev = r.read_bits(64).ok_or_else(short)?;
            self.seen = true;
            return Ok(f64::from_bits(self.prev));
        }
        if !r.read_bit().ok_or_else(short)? {
            return Ok(f64::from_bits(self.prev));
        }
        if r.read_bit().ok_or_else(short)? {
            let leading = r.read_bits(5).ok_or_else(short)? as u32;
            let sig = r.read_bits(6).ok_or_else(short)? as u32 + 1;
            if leading + sig > 64 {
                return Err(ChunkError::Corrupt {
                    what: "XOR window wider than 64 bits",
                    bit,
                });
            }
            self.leading = leading as u8;
            self.sig = sig as u8;
        } else if self.sig == 0 {
            return Err(ChunkError::Corrupt {
                what: "XOR window reused before one was set",
                bit,
            });
        }
        let (wl, ws) = (self.leading as u32, self.sig as u32);
        let x = r.read_bits(ws).ok_or_else(short)? << (64 - wl - ws);
        self.prev ^= x;
        Ok(f64::from_bits(self.prev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_bit_patterns_round_trip() {
        let mut s: u64 = 7;
        let mut vals = vec![
            f64::from_bits(0x7ff0_0000_0000_0002),
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
        ];
        for _ in 0..5000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let prev = vals.last().copied().unwrap_or(0.0).to_bits();
            vals.push(f64::from_bits(match s % 4 {
                0 => s,
                1 => prev ^ (s >> (s % 64)),
                2 => prev ^ (1 << (s % 64)),
                _ => prev,
            }));
        }
        let mut w = BitWriter::new();
        let mut enc = XorCoder::default();
        vals.iter().for_each(|&v| enc.encode(&mut w, v));
        let bytes = w.into_vec();
        let mut r = BitReader::new(&bytes);
        let mut dec = XorCoder::default();
        for v in &vals {
            assert_eq!(dec.decode(&mut r).unwrap().to_bits(), v.to_bits());
        }
        assert_eq!(dec, enc);
    }
}
