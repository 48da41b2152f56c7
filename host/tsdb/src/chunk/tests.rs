//! Round-trip and corruption tests shared by the head chunk and the block column codec.

pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub use crate::testing::Rng;

/// Values chosen to break codecs: every special, extremes, subnormals, values at the edges of the
/// decimal detection.
pub fn adversarial_values() -> Vec<f64> {
    vec![
        f64::from_bits(STALE_NAN),
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::from_bits(0xfff0_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 3.0,
        -f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        9_007_199_254_740_992.0,
        9_007_199_254_740_993.0,
        -9_007_199_254_740_991.0,
        1e300,
        0.1 + 0.2,
        0.0001,
        -123.4567,
        i64::MAX as f64,
        i64::MIN as f64,
    ]
}

/// Sample sets in many shapes: integers, decimals, floats, mixes, specials, irregular times.
pub fn sample_sets() -> Vec<Vec<(i64, f64)>> {
    let mut sets = Vec::new();
    let mut rng = Rng(42);
    for shape in 0..80 {
        let n = [1, 2, 3, 5, 17, 119, 120, 121, 300][shape % 9];
        let mut t = [0i64, -5_000_000, 1_767_225_600_000, i64::MIN, i64::MAX - 10_000_000][shape % 5];
        let mut x: i64 = (rng.next() >> 20) as i64;
        let mut set = Vec::new();
        for i in 0..n {
            let v = match (shape / 5) % 8 {
                0 => {
                    x += rng.below(101) as i64;
                    x as f64
                }
                1 => {
                    x += rng.below(201) as i64 - 100;
                    x as f64 / 100.0
                }
                2 => f64::from_bits(rng.next()),
                3 => adversarial_values()[i % adversarial_values().len()],
                4 => {
                    // Integers first, then decimals, then an arbitrary float: forces re-encoding.
                    if i < n / 3 {
                        i as f64
                    } else if i < 2 * n / 3 || i + 1 < n {
                        i as f64 / 1000.0
                    } else {
                        std::f64::consts::E
                    }
                }
                5 => {
                    // Bytes in pages, now and then off by a byte (breaks the chunk's shift).
                    x += (rng.below(5) as i64 - 2) * 4096 + (rng.below(40) == 0) as i64;
                    (x << 12) as f64
                }
                6 => {
                    // Mostly flat, with steps and stale markers: exercises the run mode.
                    let r = rng.below(16);
                    x += [1, -1_000_000].get(r as usize).copied().unwrap_or(0);
                    if r == 2 { f64::from_bits(STALE_NAN) } else { x as f64 }
                }
                _ => {
                    if rng.below(7) == 0 {
                        f64::from_bits(STALE_NAN)
                    } else {
                        (rng.below(1000) as f64) / 10.0
                    }
                }
            };
            set.push((t, v));
            let step = match shape % 4 {
                0 => 1000,
                1 => 15_000 + rng.below(7) as i64 - 3,
                2 => {
                    let bits = rng.below(40);
                    1 + rng.below(1 << bits) as i64
                }
                _ => [1000, 1000, 1000, 2000, 1, 86_400_000][rng.below(6) as usize],
            };
            t = t.saturating_add(step);
            if t == i64::MAX {
                break;
            }
        }
        sets.push(set);
    }
    sets
}

pub fn assert_same(got: &[(i64, f64)], want: &[(i64, f64)]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.0, w.0, "timestamp {i}");
        assert_eq!(g.1.to_bits(), w.1.to_bits(), "value {i}: got {} want {}", g.1, w.1);
    }
}

/// Every way to damage an encoding a little: truncation, bit flips, byte changes, extensions.
pub fn damaged(b: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for len in 0..b.len() {
        out.push(b[..len].to_vec());
    }
    for _ in 0..200 {
        let mut c = b.to_vec();
        if c.is_empty() {
            break;
        }
        for _ in 0..=rng.below(3) {
            let i = rng.below(c.len() as u64) as usize;
            match rng.below(3) {
                0 => c[i] ^= 1 << rng.below(8),
                1 => c[i] = rng.next() as u8,
                _ => c.push(rng.next() as u8),
            }
        }
        out.push(c);
    }
    out
}
