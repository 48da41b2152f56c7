//! Number parsing for /proc and /sys text, with the leniency node_exporter's Go parsers have.

/// Parses a decimal integer or a float (`-1`, `4096`, `0.25`), as Go's
/// `strconv.ParseFloat` accepts. Integers take the fast path.
pub fn float(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(v as f64);
    }
    s.parse::<f64>().ok()
}

/// Parses an unsigned decimal integer.
pub fn uint(s: &str) -> Option<u64> {
    s.parse::<u64>().ok()
}

/// Parses an integer the way Go's `strconv.ParseInt(s, 0, 64)` does, which procfs uses
/// for /sys attributes: `0x` hex (`flags` is `0x1003`), `0o`/leading-`0` octal, `0b`
/// binary, else decimal, with an optional sign.
pub fn int_any_base(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.get(..2).map(|p| p.to_ascii_lowercase());
    let (digits, radix) = match lower.as_deref() {
        Some("0x") => (&body[2..], 16),
        Some("0o") => (&body[2..], 8),
        Some("0b") => (&body[2..], 2),
        _ if body.len() > 1 && body.starts_with('0') => (&body[1..], 8),
        _ => (body, 10),
    };
    // from_str_radix accepts its own sign; a second one ("--1", "0x-1") is not Go syntax.
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_accept_integers_negatives_and_fractions() {
        assert_eq!(float("24684092"), Some(24684092.0));
        assert_eq!(float("-1"), Some(-1.0));
        assert_eq!(float("0.25"), Some(0.25));
        assert_eq!(float("kB"), None);
        assert_eq!(float(""), None);
    }

    #[test]
    fn go_base_prefixes() {
        assert_eq!(int_any_base("0x1003"), Some(4099));
        assert_eq!(int_any_base("0x0"), Some(0));
        assert_eq!(int_any_base("1500"), Some(1500));
        assert_eq!(int_any_base("-1"), Some(-1));
        assert_eq!(int_any_base("0"), Some(0));
        assert_eq!(int_any_base("010"), Some(8));
        assert_eq!(int_any_base("0b11"), Some(3));
        assert_eq!(int_any_base("up"), None);
        assert_eq!(int_any_base("0x"), None);
        assert_eq!(int_any_base("--1"), None);
        assert_eq!(int_any_base(""), None);
    }
}
