//! `sonde tsdb dump` output, parsed strictly: one `name{labels} value timestamp_ms` per
//! line, every line well-formed, each series' lines together and its timestamps strictly
//! increasing. Anything else is an error, so the dump doubles as a corruption check.
//!
//! Label values are printed as Rust string literals (`{:?}`), so besides `\\`, `\"` and
//! `\n` the escapes `\t`, `\r`, `\0`, `\'` and `\u{…}` are accepted.

use crate::run_sonde;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A series: metric name and its other labels, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    /// From label pairs that include `__name__` (as the WAL stores them).
    pub fn from_pairs(pairs: &[(String, String)]) -> SeriesKey {
        let mut name = String::new();
        let mut labels = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            if n == "__name__" {
                name = v.clone();
            } else {
                labels.push((n.clone(), v.clone()));
            }
        }
        labels.sort();
        SeriesKey { name, labels }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for SeriesKey {
    /// As the dump prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (n, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One dump line.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpLine {
    pub series: SeriesKey,
    pub value: f64,
    pub timestamp: i64,
}

/// A whole dump: every series with its samples `(timestamp_ms, value)` in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    pub series: BTreeMap<SeriesKey, Vec<(i64, f64)>>,
}

impl Dump {
    pub fn num_samples(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }

    /// The value stored for `series` at `timestamp`, if any.
    pub fn value_at(&self, series: &SeriesKey, timestamp: i64) -> Option<f64> {
        let samples = self.series.get(series)?;
        let i = samples.binary_search_by_key(&timestamp, |(t, _)| *t).ok()?;
        Some(samples[i].1)
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.series.values().filter_map(|s| s.last().map(|(t, _)| *t)).max()
    }

    /// Only the samples at or before `max_ts` (series left empty are dropped).
    pub fn until(&self, max_ts: i64) -> Dump {
        let series = self
            .series
            .iter()
            .filter_map(|(k, s)| {
                let kept: Vec<(i64, f64)> = s.iter().copied().take_while(|(t, _)| *t <= max_ts).collect();
                (!kept.is_empty()).then(|| (k.clone(), kept))
            })
            .collect();
        Dump { series }
    }
}

/// Whether two stored values are the same: equal bits, or both NaN (the text format
/// cannot tell NaNs apart, so a staleness marker prints as any other NaN).
pub fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Parses a whole dump; the error names the line number and the line.
pub fn parse(text: &str) -> Result<Dump, String> {
    let mut dump = Dump::default();
    let mut current: Option<SeriesKey> = None;
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        let l = parse_line(line).map_err(at)?;
        if current.as_ref() != Some(&l.series) {
            if dump.series.contains_key(&l.series) {
                return Err(at(format!(
                    "series {} appears again after other series (its lines should be together)",
                    l.series
                )));
            }
            dump.series.insert(l.series.clone(), Vec::new());
            current = Some(l.series.clone());
        }
        let samples = dump.series.get_mut(&l.series).expect("inserted above");
        if let Some(&(prev, _)) = samples.last()
            && l.timestamp <= prev
        {
            return Err(at(format!(
                "timestamp {} is not after the previous one of the series ({prev})",
                l.timestamp
            )));
        }
        samples.push((l.timestamp, l.value));
    }
    Ok(dump)
}

/// Parses one `name{labels} value timestamp_ms` line.
pub fn parse_line(line: &str) -> Result<DumpLine, String> {
    let brace = line.find('{').ok_or("no '{' after the metric name")?;
    let name = &line[..brace];
    if !valid_name(name, true) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut rest = &line[brace + 1..];
    if let Some(r) = rest.strip_prefix('}') {
        rest = r;
    } else {
        loop {
            let eq = rest.find('=').ok_or("label without '='")?;
            let lname = &rest[..eq];
            if !valid_name(lname, false) || lname == "__name__" {
                return Err(format!("invalid label name {lname:?}"));
            }
            let (value, after) = parse_quoted(&rest[eq + 1..]).map_err(|e| format!("label {lname}: {e}"))?;
            if labels.iter().any(|(n, _)| n == lname) {
                return Err(format!("label {lname} appears twice"));
            }
            labels.push((lname.to_string(), value));
            if let Some(r) = after.strip_prefix(',') {
                rest = r;
            } else if let Some(r) = after.strip_prefix('}') {
                rest = r;
                break;
            } else {
                return Err(format!("expected ',' or '}}' after label {lname}"));
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space after the labels")?;
    let mut fields = rest.split(' ');
    let (Some(value), Some(ts), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected exactly `value timestamp` after the labels".into());
    };
    let value = parse_value(value)?;
    if ts.is_empty()
        || !ts
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
    {
        return Err(format!("bad timestamp {ts:?}"));
    }
    let timestamp = ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    labels.sort();
    Ok(DumpLine {
        series: SeriesKey {
            name: name.to_string(),
            labels,
        },
        value,
        timestamp,
    })
}

/// A Rust string literal at the start of `s`: the unescaped value and what follows it.
fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let body = s.strip_prefix('"').ok_or("value is not quoted")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('\\') => value.push('\\'),
                Some('"') => value.push('"'),
                Some('\'') => value.push('\''),
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some('0') => value.push('\0'),
                Some('u') => {
                    let rest = &body[i + 2..];
                    let inner = rest
                        .strip_prefix('{')
                        .and_then(|r| r.find('}').map(|end| &r[..end]))
                        .ok_or("bad \\u escape")?;
                    let c = u32::from_str_radix(inner, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("bad \\u{{{inner}}} escape"))?;
                    value.push(c);
                    // Skip `{hex}`.
                    for _ in 0..inner.len() + 2 {
                        chars.next();
                    }
                }
                other => return Err(format!("bad escape \\{other:?}")),
            },
            c => value.push(c),
        }
    }
    Err("unterminated value".into())
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    // Rust's parser also takes "inf", "nan", "infinity": not what the dump prints.
    let numeric = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && v.bytes().any(|b| b.is_ascii_digit());
    if !numeric {
        return Err(format!("bad value {v:?}"));
    }
    v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))
}

fn valid_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c)) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

/// Runs `sonde tsdb dump --data-dir <data_dir> <extra...>` (no sonde may be running on
/// that directory; like a start, it repairs a damaged WAL tail), asserts it succeeds and
/// parses its output strictly.
#[track_caller]
pub fn tsdb_dump(data_dir: &Path, extra: &[&str]) -> Dump {
    let dir = data_dir.display().to_string();
    let mut args = vec!["tsdb", "dump", "--data-dir", dir.as_str()];
    args.extend_from_slice(extra);
    let cwd = data_dir.parent().unwrap_or(data_dir);
    let out = run_sonde(cwd, &args);
    assert!(
        out.status.success(),
        "sonde {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        out.stderr
    );
    parse(&out.stdout).unwrap_or_else(|e| panic!("the output of sonde {} is not a clean dump: {e}", args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        let mut labels: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        labels.sort();
        SeriesKey {
            name: name.into(),
            labels,
        }
    }

    #[test]
    fn parses_lines_values_and_escapes() {
        let text = "up{instance=\"vm\",job=\"node\"} 1 1700000000000\n\
                    up{instance=\"vm\",job=\"node\"} 0 1700000001000\n\
                    x:y{} NaN 5\n\
                    x:y{} +Inf 6\n\
                    x:y{} -1.5e-7 7\n\
                    esc{a=\"q\\\"b\\\\s\\nn\\tt\\u{1b}\",b=\"\"} 0.25 -3\n";
        let d = parse(text).unwrap();
        assert_eq!(d.num_samples(), 6);
        let up = key("up", &[("job", "node"), ("instance", "vm")]);
        assert_eq!(d.series[&up], vec![(1700000000000, 1.0), (1700000001000, 0.0)]);
        assert_eq!(d.value_at(&up, 1700000001000), Some(0.0));
        assert_eq!(d.value_at(&up, 1700000000500), None);
        let xy = &d.series[&key("x:y", &[])];
        assert!(xy[0].1.is_nan());
        assert_eq!(xy[1].1, f64::INFINITY);
        assert_eq!(xy[2].1, -1.5e-7);
        let esc = key("esc", &[("a", "q\"b\\s\nn\tt\u{1b}"), ("b", "")]);
        assert_eq!(d.series[&esc], vec![(-3, 0.25)]);
        // Display prints what the dump prints.
        assert_eq!(esc.to_string(), "esc{a=\"q\\\"b\\\\s\\nn\\tt\\u{1b}\",b=\"\"}");
        assert_eq!(parse_line(&format!("{esc} 0.25 -3")).unwrap().series, esc);
        assert_eq!(d.max_timestamp(), Some(1700000001000));
        assert_eq!(d.until(6).num_samples(), 3);
        assert!(same_value(f64::NAN, f64::from_bits(0x7ff0_0000_0000_0002)));
        assert!(!same_value(0.0, -0.0));
    }

    #[test]
    fn rejects_malformed_lines_and_disorder() {
        for bad in [
            "",
            "up 1 2",
            "up{} 1",
            "up{} 1 2 3",
            "up{}  1 2",
            "up{} 1 2.5",
            "up{} inf 2",
            "up{} nan 2",
            "up{} 1 ",
            "up{a=1} 1 2",
            "up{a=\"1\" 1 2",
            "up{a=\"1\",} 1 2",
            "up{a=\"1\",a=\"2\"} 1 2",
            "up{__name__=\"x\"} 1 2",
            "up{a=\"\\x\"} 1 2",
            "0up{} 1 2",
            "up{a=\"1\"}1 2",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should not parse");
            assert!(parse(&format!("ok{{}} 1 1\n{bad}\n")).is_err(), "{bad:?} in a dump");
        }
        assert_eq!(parse("").unwrap().num_samples(), 0);
        let not_increasing = "a{} 1 10\na{} 2 10\n";
        assert!(parse(not_increasing).unwrap_err().contains("not after"));
        let split = "a{} 1 10\nb{} 1 10\na{} 2 20\n";
        assert!(parse(split).unwrap_err().contains("appears again"));
    }

    #[test]
    fn series_keys_from_wal_pairs() {
        let pairs = vec![
            ("job".to_string(), "x".to_string()),
            ("__name__".to_string(), "m".to_string()),
            ("a".to_string(), "1".to_string()),
        ];
        let k = SeriesKey::from_pairs(&pairs);
        assert_eq!(k, key("m", &[("a", "1"), ("job", "x")]));
        assert_eq!(k.label("job"), Some("x"));
        assert_eq!(k.to_string(), "m{a=\"1\",job=\"x\"}");
    }
}
