//! Deterministic data for tests, examples and benchmarks (splitmix64): small and good
//! enough for test inputs, so nothing needs a `rand` dependency.

pub struct Rng(pub u64);

#[allow(
    clippy::should_implement_trait,
    reason = "an infinite generator, not an iterator of items"
)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
