//! A sample value read eight digits per step: the common decimal forms exporters
//! print (`123`, `-0.25`, `1.234567891e+09`), for the scrape's fast path.
//!
//! [`super::parse_float`] reads a value one byte per loop iteration, with several
//! branches per byte; in wasm32 that loop was the largest single function of the
//! whole daemon's profile (~9 % when scraping a 10k-series page every second). Here a
//! run of up to eight digits is found and converted with a few 64-bit operations
//! (the technique of simdjson and fast_float), and the float is built with Clinger's
//! fast path, which is exact. Anything else (`NaN`, `+Inf`, hex, a value the fast
//! path cannot round exactly, too few bytes left to load a word) returns `None` and
//! the caller reads the line the general way.

/// `'0'` in every byte.
const ZEROS: u64 = 0x3030_3030_3030_3030;

const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

const POW10_U64: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Digits a mantissa may have before it could overflow `u64` (10^19 < 2^64).
const MAX_DIGITS: u32 = 19;

/// The eight bytes of `s` at `i`, first byte lowest.
fn word(s: &[u8], i: usize) -> Option<u64> {
    let w = s.get(i..i + 8)?;
    Some(u64::from_le_bytes(w.try_into().expect("8 bytes")))
}

/// How many of the bytes of `w`, from the first, are ASCII digits (0..=8).
fn digit_run(w: u64) -> u32 {
    // A digit becomes 0..=9; any other byte gets a bit in its high nibble here or
    // after adding 6. A carry out of a byte only reaches later bytes, which come
    // after the first non-digit anyway.
    let t = w ^ ZEROS;
    let bad = (t | t.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0;
    bad.trailing_zeros() / 8
}

/// The number the first `n` (1..=8) bytes of `w` spell, all of them digits.
fn digits_value(w: u64, n: u32) -> u64 {
    debug_assert!((1..=8).contains(&n));
    // Digit values, the first digit moved to byte 8 - n: the bytes below it are
    // leading zeros, the bytes after the digits are shifted out.
    let d = w.wrapping_sub(ZEROS) << (8 * (8 - n));
    // Pairs of digits, then groups of four, then all eight.
    let pairs = d.wrapping_mul(10).wrapping_add(d >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = (pairs & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((pairs >> 16) & MASK).wrapping_mul(MUL2))
        >> 32;
    v & 0xFFFF_FFFF
}

/// Reads a run of digits of `s` from `*i` into `mant` (`digits`: digits read so far).
/// Returns how many digits were read, or `None` when the mantissa would pass
/// [`MAX_DIGITS`] or fewer than eight bytes are left to load.
fn digits(s: &[u8], i: &mut usize, mant: &mut u64, digits: &mut u32) -> Option<u32> {
    let mut run = 0;
    loop {
        let w = word(s, *i)?;
        let n = digit_run(w);
        if n == 0 {
            return Some(run);
        }
        if *digits + n > MAX_DIGITS {
            return None;
        }
        *mant = *mant * POW10_U64[n as usize] + digits_value(w, n);
        *digits += n;
        *i += n as usize;
        run += n;
        if n < 8 {
            return Some(run);
        }
    }
}

/// The value `[-+]digits[.digits][(e|E)[-+]digits]` at the start of `s` and its
/// length in bytes; what follows it is the caller's to check. `None` when `s` does
/// not start that way, when the value is not exactly a correctly rounded float
/// operation away (a mantissa over 2^53 or a power of ten over 22), and when the
/// bytes after a run of digits are too few to load eight at a time.
pub fn scan(s: &[u8]) -> Option<(f64, usize)> {
    let (neg, mut i) = match s.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let (mut mant, mut count) = (0u64, 0u32);
    if digits(s, &mut i, &mut mant, &mut count)? == 0 {
        return None;
    }
    let mut exp: i32 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let fraction = digits(s, &mut i, &mut mant, &mut count)?;
        if fraction == 0 {
            return None;
        }
        exp = -(fraction as i32);
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        let eneg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut e: i32 = 0;
        while let Some(&c) = s.get(i)
            && c.is_ascii_digit()
        {
            if i - start == 3 {
                return None;
            }
            e = e * 10 + (c - b'0') as i32;
            i += 1;
        }
        if i == start {
            return None;
        }
        exp += if eneg { -e } else { e };
    }
    Some((exact(neg, mant, exp)?, i))
}

/// `±mant × 10^exp` when Clinger's fast path gives it exactly: the mantissa and the
/// power of ten are both exact floats (mantissa ≤ 2^53, |exp| ≤ 22), so one
/// correctly rounded multiplication or division is the correctly rounded value.
pub fn exact(neg: bool, mant: u64, exp: i32) -> Option<f64> {
    if mant > 1 << 53 {
        return None;
    }
    let m = mant as f64;
    let v = match exp {
        0..=22 => m * POW10_F64[exp as usize],
        -22..=-1 => m / POW10_F64[(-exp) as usize],
        _ if mant == 0 => 0.0,
        _ => return None,
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `s` followed by a newline and enough bytes to load words past the value.
    fn padded(s: &str) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        b.extend_from_slice(b"\nnext_line 1\n");
        b
    }

    #[test]
    fn runs_of_digits_are_measured_and_converted_in_every_length() {
        for n in 0..=8u32 {
            for fill in [b'0', b'7', b'9'] {
                for after in [b'\n', b' ', b'.', b'e', b'/', b':', 0xff, 0x00] {
                    let mut bytes = [after; 8];
                    for (k, b) in bytes.iter_mut().enumerate().take(n as usize) {
                        *b = if k == 0 { b'1' } else { fill };
                    }
                    let w = u64::from_le_bytes(bytes);
                    assert_eq!(digit_run(w), n, "{bytes:?}");
                    if n > 0 {
                        let text = std::str::from_utf8(&bytes[..n as usize]).unwrap();
                        assert_eq!(digits_value(w, n), text.parse::<u64>().unwrap(), "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn values_read_as_the_standard_parser_reads_them() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "+0",
            "1",
            "-1",
            "7",
            "10",
            "123456",
            "-123.45",
            "0.25",
            "0.000001234",
            "1e3",
            "1E3",
            "2.5e-3",
            "1.234567891e+09",
            "9007199254740992",
            "12345678",
            "123456789",
            "1234567812345678",
            "0.1",
            "0.3",
            "3.14159",
            "-99999999.99999999",
            "1e22",
            "1e-22",
            "5e+00",
            "0.00000000000000000000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Random decimals of every shape the fast path takes (a simple LCG: the test
        // needs no randomness crate).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for _ in 0..20_000 {
            let int: String = (0..1 + next(12)).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let mut s = format!("{}{int}", ["", "-", "+"][next(3) as usize]);
            if next(2) == 0 {
                let frac: String = (0..1 + next(10)).map(|_| char::from(b'0' + next(10) as u8)).collect();
                s = format!("{s}.{frac}");
            }
            if next(3) == 0 {
                s = format!("{s}e{}{}", ["", "-", "+"][next(3) as usize], next(30));
            }
            cases.push(s);
        }
        let mut read = 0;
        for s in &cases {
            let want: f64 = s.parse().unwrap();
            if let Some((v, len)) = scan(&padded(s)) {
                read += 1;
                assert_eq!(len, s.len(), "{s}");
                assert_eq!(v.to_bits(), want.to_bits(), "{s}: {v} against {want}");
            }
        }
        // The fast path must take most of them, or it is no fast path.
        assert!(read > cases.len() / 2, "{read} of {}", cases.len());
        for s in ["0", "-123.45", "1.234567891e+09", "123456", "9007199254740992"] {
            assert!(scan(&padded(s)).is_some(), "{s} is a common value");
        }
    }

    #[test]
    fn other_forms_and_inexact_values_are_left_to_the_general_parser() {
        for s in [
            "",
            "-",
            "+",
            ".5",
            "1.",
            "1.e5",
            "e5",
            "1e",
            "1e+",
            "1e1234",
            "NaN",
            "+Inf",
            "-Inf",
            "0x10",
            "1e23",
            "1e-23",
            "9007199254740993",
            "12345678901234567890",
            "- 1",
        ] {
            // Either nothing, or a shorter value the caller rejects by what follows it.
            let got = scan(&padded(s));
            assert!(got.is_none_or(|(_, len)| len < s.len()), "{s}: {got:?}");
        }
        // A value whose digits run to the end of what is there cannot be loaded whole.
        assert_eq!(scan(b"12345"), None);
        assert_eq!(scan(b"1.5"), None);
    }
}
