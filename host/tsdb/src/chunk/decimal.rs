//! Decimal detection: which floats are exactly `n / 10^k` for an integer `n` and a small scale `k`.
//!
//! Scraped values are mostly integers (counters, bytes) or short decimals (seconds with USER_HZ=100,
//! percentages). Storing the scaled integer lets the codecs work on small integer deltas instead of
//! float bit patterns. A value counts as decimal only when decoding gives back the identical bits.

/// Largest scale tried: values are `n / 10^k` with `k ≤ MAX_SCALE`.
pub const MAX_SCALE: u8 = 4;

const POW10: [f64; MAX_SCALE as usize + 1] = [1.0, 10.0, 100.0, 1000.0, 10000.0];

/// Scaled integers stay within ±2^53 so that `n as f64` is exact: then a value that round-trips at
/// scale `k` also round-trips at any larger scale whose integer stays in range (the division
/// `n / 10^k` is correctly rounded and the rational number does not change).
const MAX_SCALED: f64 = (1u64 << 53) as f64;

/// The float a scaled integer stands for.
#[inline]
pub fn from_scaled(n: i64, scale: u8) -> f64 {
    n as f64 / POW10[scale as usize]
}

/// `Some(n)` when `v` is exactly `from_scaled(n, scale)` (bit for bit), `None` otherwise.
/// `scale` must be ≤ [`MAX_SCALE`].
#[inline]
pub fn to_scaled(v: f64, scale: u8) -> Option<i64> {
    let x = v * POW10[scale as usize];
    // Also rejects NaN and ±Inf.
    if x.is_nan() || x.abs() > MAX_SCALED {
        return None;
    }
    // Rounded by hand: `f64::round` is a libm call on baseline x86-64 (no SSE4.1), and this
    // runs for every sample appended. The candidate is checked below either way.
    let n = (x + 0.5f64.copysign(x)) as i64;
    if from_scaled(n, scale).to_bits() == v.to_bits() {
        return Some(n);
    }
    // Past 2^40 the product `v × 10^k` carries v's own rounding error times 10^k, up to about 1.5
    // at 2^53: the integer can be a neighbour of the rounded product.
    if x.abs() < (1u64 << 40) as f64 {
        return None;
    }
    [n - 1, n + 1, n - 2, n + 2]
        .into_iter()
        .find(|&m| from_scaled(m, scale).to_bits() == v.to_bits())
}

/// The smallest scale at which `v` is an exact decimal, if any.
pub fn min_scale(v: f64) -> Option<u8> {
    (0..=MAX_SCALE).find(|&k| to_scaled(v, k).is_some())
}

/// Values that no scale represents but that every codec stores verbatim on the side, so that a
/// stale marker or an Inf does not push a whole series of decimals into the float codec.
#[inline]
pub fn is_special(v: f64) -> bool {
    !v.is_finite() || v.to_bits() == (-0.0f64).to_bits()
}

/// The scale all of `values` share (ignoring specials), or `None` when some value is not a decimal
/// with at most [`MAX_SCALE`] digits.
pub fn common_scale(values: impl Iterator<Item = f64> + Clone) -> Option<u8> {
    let mut scale = 0;
    for v in values.clone() {
        if is_special(v) || to_scaled(v, scale).is_some() {
            continue;
        }
        scale = min_scale(v)?.max(scale);
    }
    // Raising the scale for one value keeps the earlier ones exact unless their integers leave ±2^53.
    values
        .into_iter()
        .all(|v| is_special(v) || to_scaled(v, scale).is_some())
        .then_some(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_scales() {
        assert_eq!(min_scale(42.0), Some(0));
        assert_eq!(min_scale(-7.0), Some(0));
        assert_eq!(min_scale(0.0), Some(0));
        assert_eq!(min_scale(0.1), Some(1));
        assert_eq!(min_scale(123.45), Some(2));
        assert_eq!(min_scale(0.29), Some(2));
        assert_eq!(min_scale(-1.0001), Some(4));
        assert_eq!(min_scale(0.00001), None);
        assert_eq!(min_scale(std::f64::consts::PI), None);
        assert_eq!(min_scale(1e300), None);
        assert_eq!(min_scale(f64::NAN), None);
        assert_eq!(min_scale(f64::INFINITY), None);
        assert_eq!(min_scale(-0.0), None);
        assert_eq!(min_scale(f64::MIN_POSITIVE / 2.0), None);
    }

    #[test]
    fn scaled_values_round_trip_bits() {
        let mut s: u64 = 12345;
        for _ in 0..100_000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = (s >> 60) as u8 % (MAX_SCALE + 1);
            let n = (((s >> 11) as i64) >> (s % 50)) * if s & 1 == 0 { 1 } else { -1 };
            let v = from_scaled(n, k);
            let got = to_scaled(v, k).expect("a decoded decimal is a decimal");
            assert_eq!(from_scaled(got, k).to_bits(), v.to_bits());
            // The larger scales represent it too while the integer stays in range.
            for k2 in k..=MAX_SCALE {
                if (n as i128 * 10i128.pow((k2 - k) as u32)).abs() <= 1 << 53 {
                    assert!(to_scaled(v, k2).is_some(), "{v} at scale {k2}");
                }
            }
        }
    }

    #[test]
    fn common_scale_of_mixed_values() {
        assert_eq!(common_scale([1.0, 2.5, 3.25, f64::NAN].into_iter()), Some(2));
        assert_eq!(common_scale([1.0, 0.1 + 0.2].into_iter()), None);
        assert_eq!(common_scale([f64::NAN, -0.0].into_iter()), Some(0));
        assert_eq!(common_scale([9e15, 0.5].into_iter()), None);
    }
}
