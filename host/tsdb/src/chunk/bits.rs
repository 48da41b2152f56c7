//! Bit-level I/O: a writer that appends bits MSB-first to a byte vector, and a bounds-checked reader.
//!
//! The writer keeps no accumulator between calls: a head chunk holds one writer per series for hours,
//! so its state must be exactly the bytes plus the number of free bits in the last byte.

/// Appends bits MSB-first to a `Vec<u8>`. Unused low bits of the last byte are zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits in the last byte of `buf` (0..=7).
    free: u8,
}

impl BitWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues writing after the first `bit_len` bits of `buf`; bytes past them are dropped and the
    /// unused bits of the last byte are cleared.
    pub fn from_vec(mut buf: Vec<u8>, bit_len: usize) -> Self {
        let bytes = bit_len.div_ceil(8).min(buf.len());
        buf.truncate(bytes);
        let used = (bit_len % 8) as u8;
        let free = if used == 0 || bytes * 8 < bit_len { 0 } else { 8 - used };
        if let Some(last) = buf.last_mut() {
            *last &= !((1u16 << free) - 1) as u8;
        }
        BitWriter { buf, free }
    }

    /// Writes the low `n` bits of `bits` (n ≤ 64), most significant first. Higher bits are ignored.
    #[inline]
    pub fn write_bits(&mut self, bits: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let bits = if n == 64 { bits } else { bits & ((1u64 << n) - 1) };
        let mut n = n;
        if self.free > 0 {
            let free = self.free as u32;
            let last = self.buf.len() - 1;
            if n <= free {
                self.buf[last] |= (bits << (free - n)) as u8;
                self.free = (free - n) as u8;
                return;
            }
            n -= free;
            self.buf[last] |= (bits >> n) as u8;
            self.free = 0;
        }
        // n bits remain (1..=64), left-align them in a u64 and push whole bytes.
        let aligned = bits << (64 - n);
        let bytes = n.div_ceil(8) as usize;
        self.buf.extend_from_slice(&aligned.to_be_bytes()[..bytes]);
        self.free = (bytes as u32 * 8 - n) as u8;
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1);
    }

    /// Writes `n` one bits followed by a zero when `terminate` is set (n ≤ 64).
    #[inline]
    pub fn write_ones(&mut self, n: u32, terminate: bool) {
        let ones = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        if terminate {
            if n >= 64 {
                self.write_bits(ones, 64);
                self.write_bits(0, 1);
            } else {
                self.write_bits(ones << 1, n + 1);
            }
        } else {
            self.write_bits(ones, n);
        }
    }

    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 - self.free as usize
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Mutable access to already written bytes (e.g. to patch a header).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// Grows the buffer to exactly `capacity` bytes when it is smaller (no doubling).
    pub fn grow_to(&mut self, capacity: usize) {
        if let Some(more) = capacity.checked_sub(self.buf.len()) {
            self.buf.reserve_exact(more);
        }
    }

    /// Asks the CPU to bring the byte the next write goes to into its cache.
    #[inline]
    pub fn prefetch_end(&self) {
        if let Some(last) = self.buf.last() {
            prefetch(last);
        }
    }
}

/// A cache prefetch hint for the line holding `p` (no-op where unsupported).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    prefetch_ptr(std::ptr::from_ref(p).cast());
}

/// A cache prefetch hint for every cache line of `v`.
#[inline(always)]
pub fn prefetch_all<T>(v: &T) {
    let p = std::ptr::from_ref(v).cast::<u8>();
    for offset in (0..std::mem::size_of::<T>()).step_by(64) {
        prefetch_ptr(p.wrapping_add(offset));
    }
}

#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing architecturally and never faults,
    // whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Reads bits MSB-first from a byte slice. Every read is bounds-checked and returns `None` past the end.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    /// Next bit to read, counted from the start of `buf`.
    pos: usize,
    /// Readable bits: `buf.len() * 8` unless limited.
    end: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BitReader {
            buf,
            pos: 0,
            end: buf.len().saturating_mul(8),
        }
    }

    /// Starts reading at bit `pos` (clamped to the end).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        let mut r = Self::new(buf);
        r.pos = pos.min(r.end);
        r
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The 64 bits starting at `pos`, zero-padded past the end of the buffer.
    #[inline]
    fn window(&self) -> u64 {
        let idx = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        let word = match self.buf.get(idx..idx + 8) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            }
            None => {
                let mut a = [0u8; 8];
                let tail = self.buf.get(idx..).unwrap_or(&[]);
                a[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(a)
            }
        };
        let next = if shift == 0 {
            0
        } else {
            self.buf.get(idx + 8).copied().unwrap_or(0) as u64 >> (8 - shift)
        };
        (word << shift) | next
    }

    /// Reads `n` bits (n ≤ 64) as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!(n <= 64);
        if n == 0 {
            return Some(0);
        }
        if self.remaining() < n as usize {
            return None;
        }
        let v = self.window() >> (64 - n);
        self.pos += n as usize;
        Some(v)
    }

    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        if self.pos >= self.end {
            return None;
        }
        let bit = (self.buf[self.pos / 8] >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// Counts one bits up to `max` (≤ 63). Consumes the terminating zero if it came before `max` ones.
    #[inline]
    pub fn read_ones(&mut self, max: u32) -> Option<u32> {
        debug_assert!(max < 64);
        let ones = self.window().leading_ones().min(max);
        let used = if ones < max { ones + 1 } else { ones } as usize;
        if self.remaining() < used {
            return None;
        }
        self.pos += used;
        Some(ones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic generator for test inputs.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn round_trips_random_widths() {
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut items = Vec::new();
        let mut w = BitWriter::new();
        for _ in 0..10_000 {
            let n = (xorshift(&mut s) % 65) as u32;
            let v = xorshift(&mut s);
            let v = if n == 64 {
                v
            } else if n == 0 {
                0
            } else {
                v & ((1 << n) - 1)
            };
            w.write_bits(v, n);
            items.push((v, n));
        }
        let total: usize = items.iter().map(|&(_, n)| n as usize).sum();
        assert_eq!(w.bit_len(), total);
        let bytes = w.into_vec();
        assert_eq!(bytes.len(), total.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(r.read_bits(n), Some(v));
        }
        assert!(r.remaining() < 8);
    }

    #[test]
    fn msb_first_layout() {
        let mut w = BitWriter::new();
        w.write_bit(true);
        w.write_bits(0b01, 2);
        w.write_bits(0xABC, 12);
        // 1 01 1010 1011 1100 -> 1011_0101 0111_100(0)
        assert_eq!(w.bytes(), &[0b1011_0101, 0b0111_1000]);
        assert_eq!(w.bit_len(), 15);
    }

    #[test]
    fn high_bits_are_ignored() {
        let mut w = BitWriter::new();
        w.write_bits(u64::MAX, 3);
        w.write_bits(0, 5);
        assert_eq!(w.bytes(), &[0b1110_0000]);
    }

    #[test]
    fn truncated_reads_return_none() {
        let bytes = [0xFFu8, 0x0F];
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bits(12), Some(0xFF0));
        assert_eq!(r.read_bits(5), None);
        assert_eq!(r.read_bits(4), Some(0xF));
        assert_eq!(r.read_bit(), None);
        assert_eq!(r.read_bits(1), None);
        assert_eq!(BitReader::new(&[]).read_bits(64), None);
        assert_eq!(BitReader::new(&[]).read_ones(5), None);
    }

    #[test]
    fn unary_runs() {
        let mut w = BitWriter::new();
        for n in 0..40 {
            w.write_ones(n, true);
        }
        w.write_ones(17, false);
        let bytes = w.into_vec();
        let mut r = BitReader::new(&bytes);
        for n in 0..40 {
            assert_eq!(r.read_ones(63), Some(n));
        }
        assert_eq!(r.read_ones(17), Some(17));
        // Only padding zeros are left: a capped read of ones sees none.
        assert!(r.remaining() < 8);
    }

    #[test]
    fn unary_run_cut_by_end_of_input() {
        let bytes = [0xFFu8];
        assert_eq!(BitReader::new(&bytes).read_ones(20), None);
        assert_eq!(BitReader::new(&bytes).read_ones(8), Some(8));
    }

    #[test]
    fn writer_resumes_mid_byte() {
        let mut w = BitWriter::new();
        w.write_bits(0b1_0110_1101, 9);
        let len = w.bit_len();
        let mut bytes = w.into_vec();
        bytes.push(0xAA); // garbage past the end is dropped
        let mut w = BitWriter::from_vec(bytes, len);
        w.write_bits(0b111, 3);
        let mut r = BitReader::new(w.bytes());
        assert_eq!(r.read_bits(12), Some(0b1011_0110_1111));
        assert_eq!(w.bit_len(), 12);
    }
}
