//! Prometheus-style durations (`15s`, `1m30s`, `500ms`) and byte sizes (`64MiB`).

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as Prometheus writes them: a sequence of `<number><unit>` with
/// units `ms`, `s`, `m`, `h`, `d`, `w`, `y` in decreasing order (`1h30m`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let bad = || format!("invalid duration {s:?}: write it like \"15s\", \"1m30s\" or \"500ms\"");
        if s.is_empty() {
            return Err(bad());
        }
        let mut rest = s;
        let mut total_ms: u64 = 0;
        let mut last_unit = usize::MAX;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            // "ms" must be tried before "m".
            let (idx, unit_len, ms) = match rest {
                r if r.starts_with("ms") => (6, 2, 1),
                r => {
                    let c = r.get(..1).ok_or_else(bad)?;
                    let i = UNITS.iter().position(|(u, _)| *u == c).ok_or_else(bad)?;
                    (i, 1, UNITS[i].1)
                }
            };
            if last_unit != usize::MAX && idx <= last_unit {
                return Err(format!(
                    "invalid duration {s:?}: units must go from largest to smallest, each once"
                ));
            }
            last_unit = idx;
            total_ms = n
                .checked_mul(ms)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(bad)?;
            rest = &rest[unit_len..];
        }
        Ok(PromDuration(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for PromDuration {
    /// Formats like Prometheus's model.Duration (`1m30s`, `500ms`, `0s`, `10d`): years
    /// and weeks only when they divide the duration exactly ("90d", not "12w6d").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        const DAY: u64 = 86_400_000;
        let units: [(&str, u64, bool); 7] = [
            ("y", 365 * DAY, true),
            ("w", 7 * DAY, true),
            ("d", DAY, false),
            ("h", 3_600_000, false),
            ("m", 60_000, false),
            ("s", 1000, false),
            ("ms", 1, false),
        ];
        for (unit, size, exact) in units {
            if (exact && !ms.is_multiple_of(size)) || ms < size {
                continue;
            }
            write!(f, "{}{unit}", ms / size)?;
            ms %= size;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PromDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes: an integer, or a number with `KiB`/`MiB`/`GiB` (powers of 1024)
/// or `KB`/`MB`/`GB` (powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        let bad = || format!("invalid size {s:?}: write it like \"64MiB\", \"1GiB\" or a number of bytes");
        let n: u64 = t[..digits].parse().map_err(|_| bad())?;
        let mult: u64 = match t[digits..].trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Int(n)) => Ok(ByteSize(n)),
            Ok(Raw::Str(s)) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(
                "expected a size such as \"64MiB\" or a number of bytes",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        PromDuration::parse(s).unwrap().0.as_millis()
    }

    #[test]
    fn durations() {
        assert_eq!(ms("15s"), 15_000);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("2d"), 172_800_000);
        assert_eq!(ms("1s500ms"), 1500);
        for bad in ["", "15", "s", "1.5s", "15 s", "1s1m", "1s1s", "-1s", "1x"] {
            assert!(PromDuration::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn durations_format_like_prometheus() {
        assert_eq!(PromDuration::parse("90s").unwrap().to_string(), "1m30s");
        assert_eq!(PromDuration::parse("500ms").unwrap().to_string(), "500ms");
        assert_eq!(PromDuration::parse("15s").unwrap().to_string(), "15s");
        assert_eq!(PromDuration::parse("10d").unwrap().to_string(), "10d");
        assert_eq!(PromDuration::parse("14d").unwrap().to_string(), "2w");
        assert_eq!(PromDuration::parse("365d").unwrap().to_string(), "1y");
        assert_eq!(PromDuration::parse("366d").unwrap().to_string(), "366d");
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert!(ByteSize::parse("64 megs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }
}
