//! The StatsD line protocol as statsd_exporter (v0.22+, `pkg/line`) reads it: one line
//! is `name:value|type[|@rate][|#tags][|c:container][|T<ts>]`, with several values per
//! line (`a:1|c:2|c`, and DogStatsD's `a:1:2:3|ms`), and tags in the DogStatsD,
//! InfluxDB (`name,k=v`), Librato (`name#k=v`) and SignalFx (`name[k=v]`) styles.
//!
//! This is the slow path: it runs on the first sight of a line shape (and for lines the
//! ingest cache cannot hold). What it counts and in which order follows statsd_exporter,
//! so the `statsd_exporter_*` self metrics agree.

use crate::escape::escape_metric_name;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Labels of one line: a later tag with the same name replaces an earlier one, as in
/// statsd_exporter's `map[string]string`; sorted, which is the series identity order.
pub type Labels = BTreeMap<String, String>;

/// The `type` field of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatType {
    Counter,
    Gauge,
    /// `ms`: milliseconds, observed in seconds.
    Timer,
    /// `h`, and DogStatsD's `d` (distribution): observed as is.
    Histogram,
    /// `s`, and anything unknown: statsd_exporter has no sets ("no support for StatsD
    /// sets") and counts them as `illegal_event`.
    Illegal,
}

impl StatType {
    fn parse(s: &str) -> StatType {
        match s {
            "c" => StatType::Counter,
            "g" => StatType::Gauge,
            "ms" => StatType::Timer,
            "h" | "d" => StatType::Histogram,
            _ => StatType::Illegal,
        }
    }

    fn is_observer(s: &str) -> bool {
        matches!(s, "ms" | "h" | "d")
    }
}

/// `statsd_exporter_sample_errors_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleError {
    MalformedLine,
    MixedTaggingStyles,
    NotEnoughPartsAfterColon,
    InvalidExtendedAggregateType,
    MalformedComponent,
    MalformedValue,
    InvalidSampleFactor,
    MalformedContainerId,
    IllegalEvent,
}

impl SampleError {
    pub const ALL: [SampleError; 9] = [
        SampleError::MalformedLine,
        SampleError::MixedTaggingStyles,
        SampleError::NotEnoughPartsAfterColon,
        SampleError::InvalidExtendedAggregateType,
        SampleError::MalformedComponent,
        SampleError::MalformedValue,
        SampleError::InvalidSampleFactor,
        SampleError::MalformedContainerId,
        SampleError::IllegalEvent,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            SampleError::MalformedLine => "malformed_line",
            SampleError::MixedTaggingStyles => "mixed_tagging_styles",
            SampleError::NotEnoughPartsAfterColon => "not_enough_parts_after_colon",
            SampleError::InvalidExtendedAggregateType => "invalid_extended_aggregate_type",
            SampleError::MalformedComponent => "malformed_component",
            SampleError::MalformedValue => "malformed_value",
            SampleError::InvalidSampleFactor => "invalid_sample_factor",
            SampleError::MalformedContainerId => "malformed_container_id",
            SampleError::IllegalEvent => "illegal_event",
        }
    }
}

/// What parsing counts, as statsd_exporter's listener does.
#[derive(Default, Clone, Debug)]
pub struct LineCounters {
    pub samples: u64,
    pub tags: u64,
    pub tag_errors: u64,
    pub sample_errors: [u64; SampleError::ALL.len()],
}

impl LineCounters {
    pub fn error(&mut self, e: SampleError) {
        self.sample_errors[e as usize] += 1;
    }
}

/// Which tag styles are parsed (all by default, as in statsd_exporter).
#[derive(Clone, Copy, Debug)]
pub struct TagStyles {
    pub dogstatsd: bool,
    pub influxdb: bool,
    pub librato: bool,
    pub signalfx: bool,
}

impl Default for TagStyles {
    fn default() -> Self {
        TagStyles {
            dogstatsd: true,
            influxdb: true,
            librato: true,
            signalfx: true,
        }
    }
}

/// One parsed event (statsd_exporter makes `repeat` copies of it; we pass the count).
#[derive(Debug)]
pub struct Event<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
    pub stat: StatType,
    /// Already in seconds for timers and divided by the sample rate for counters.
    pub value: f64,
    /// A gauge value written with a sign (`+3`, `-2`) adds to the gauge.
    pub relative: bool,
    /// How many events the sample stands for: `1/rate` for observers, 1 otherwise.
    pub repeat: u64,
}

/// What a one-sample line did besides carrying its value, so that the ingest cache can
/// replay it for the next line of the same shape without parsing.
#[derive(Clone, Copy, Debug)]
pub struct Replay {
    /// Tag errors counted while reading the name (counted even when the value is bad).
    pub name_tag_errors: u32,
    /// Tag errors and `invalid_sample_factor` errors counted after a good value.
    pub sample_tag_errors: u32,
    pub factor_errors: u32,
    pub tagged: bool,
    pub stat: StatType,
    /// The counter's sample rate (1 when none).
    pub rate: f64,
    pub repeat: u64,
}

/// What a sample's modifiers did.
struct Modifiers {
    rates: u32,
    /// The counter's rate (1 when none).
    rate: f64,
    /// Events for an observer: `int(1/rate)`.
    repeat: u64,
    /// `invalid_sample_factor` errors that kept the sample.
    factor_errors: u32,
}

/// Splits a line into `(name part, value, rest after the value's '|')` when it is a
/// one-sample line whose meaning, apart from the value, depends only on the name part
/// and the rest: the key of the ingest cache.
pub fn fast_shape(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let colon = memchr(b':', line)?;
    let (name, rest) = (&line[..colon], &line[colon + 1..]);
    let bar = memchr(b'|', rest)?;
    let (value, suffix) = (&rest[..bar], &rest[bar + 1..]);
    if memchr(b':', value).is_some() {
        return None; // DogStatsD's several values of one observer
    }
    if memchr(b':', suffix).is_some() && !(suffix.first() == Some(&b'#') || contains_bar_hash(suffix)) {
        return None; // several values per line
    }
    Some((name, value, suffix))
}

fn contains_bar_hash(s: &[u8]) -> bool {
    s.windows(2).any(|w| w == b"|#")
}

/// The first `needle` in `hay`, eight bytes at a time (SWAR: wasm32 has 64-bit integer
/// operations but no SIMD by default, and every byte of every line is scanned here).
#[inline]
pub fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * needle as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ pattern;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| b == needle).map(|i| base + i)
}

pub struct Parser {
    pub styles: TagStyles,
}

impl Parser {
    /// Parses one line (without its `\n`), counting into `c` and calling `on_event` for
    /// each event. Returns the replay record when the line is cacheable: one sample of
    /// [`fast_shape`], parsed without a per-line error, at most one `@rate`.
    pub fn parse_line(
        &self,
        line: &[u8],
        c: &mut LineCounters,
        labels: &mut Labels,
        mut on_event: impl FnMut(&Event<'_>),
    ) -> Option<Replay> {
        if line.is_empty() {
            return None;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            c.error(SampleError::MalformedLine);
            return None;
        };
        let Some((name_part, rest)) = line.split_once(':') else {
            c.error(SampleError::MalformedLine);
            return None;
        };
        if name_part.is_empty() {
            c.error(SampleError::MalformedLine);
            return None;
        }
        labels.clear();
        let tag_errors_before = c.tag_errors;
        let metric = self.name_and_tags(name_part, labels, c);
        let name_tag_errors = (c.tag_errors - tag_errors_before) as u32;
        let dogstatsd = rest.contains("|#");
        if dogstatsd && !labels.is_empty() {
            c.error(SampleError::MixedTaggingStyles);
            return None;
        }
        let mut parts = rest.splitn(3, '|');
        let (Some(first), Some(kind)) = (parts.next(), parts.next()) else {
            c.error(SampleError::NotEnoughPartsAfterColon);
            return None;
        };
        let samples: Vec<Cow<str>> = if first.contains(':') {
            if !StatType::is_observer(kind) {
                c.error(SampleError::InvalidExtendedAggregateType);
                return None;
            }
            let suffix = rest.split_once('|').map_or("", |(_, s)| s);
            first.split(':').map(|v| Cow::Owned(format!("{v}|{suffix}"))).collect()
        } else if dogstatsd {
            vec![Cow::Borrowed(rest)]
        } else {
            rest.split(':').map(Cow::Borrowed).collect()
        };
        let cacheable = samples.len() == 1 && fast_shape(line.as_bytes()).is_some();
        let mut replay = None;
        for sample in &samples {
            let r = self.sample(sample, &metric, labels, c, &mut on_event);
            if cacheable && let Some(mut r) = r {
                r.name_tag_errors = name_tag_errors;
                replay = Some(r);
            }
        }
        replay
    }

    /// One `value|type|...` sample. Returns its replay record unless it failed.
    fn sample(
        &self,
        sample: &str,
        metric: &str,
        labels: &mut Labels,
        c: &mut LineCounters,
        on_event: &mut impl FnMut(&Event<'_>),
    ) -> Option<Replay> {
        c.samples += 1;
        let mut comps = [""; 6];
        let mut n = 0;
        for part in sample.split('|') {
            if n == comps.len() {
                c.error(SampleError::MalformedComponent);
                return None;
            }
            comps[n] = part;
            n += 1;
        }
        if n < 2 {
            c.error(SampleError::MalformedComponent);
            return None;
        }
        let (value_str, kind) = (comps[0], comps[1]);
        let relative = value_str.starts_with('+') || value_str.starts_with('-');
        let Ok(mut value) = parse_float(value_str) else {
            c.error(SampleError::MalformedValue);
            return None;
        };
        let tag_errors_before = c.tag_errors;
        let m = self.modifiers(&comps[2..n], kind, &mut value, labels, c)?;
        let tagged = !labels.is_empty();
        if tagged {
            c.tags += 1;
        }
        let stat = StatType::parse(kind);
        if stat == StatType::Illegal {
            c.sample_errors[SampleError::IllegalEvent as usize] += m.repeat;
        } else if m.repeat > 0 {
            if stat == StatType::Timer {
                value /= 1000.0;
            }
            on_event(&Event {
                name: metric,
                labels,
                stat,
                value,
                relative,
                repeat: m.repeat,
            });
        }
        (m.rates <= 1).then_some(Replay {
            name_tag_errors: 0,
            sample_tag_errors: (c.tag_errors - tag_errors_before) as u32,
            factor_errors: m.factor_errors,
            tagged,
            stat,
            rate: m.rate,
            repeat: m.repeat,
        })
    }

    /// The `|@rate`, `|#tags`, `|c:container` and `|T<ts>` parts of a sample, in
    /// order, as statsd_exporter applies them. `None`: the sample is dropped (counted).
    fn modifiers(
        &self,
        extra: &[&str],
        kind: &str,
        value: &mut f64,
        labels: &mut Labels,
        c: &mut LineCounters,
    ) -> Option<Modifiers> {
        let mut m = Modifiers {
            rates: 0,
            rate: 1.0,
            repeat: 1,
            factor_errors: 0,
        };
        if extra.iter().any(|p| p.is_empty()) {
            c.error(SampleError::MalformedComponent);
            return None;
        }
        for comp in extra {
            match comp.as_bytes()[0] {
                b'@' => {
                    m.rates += 1;
                    let mut factor = match parse_float(&comp[1..]) {
                        Ok(f) => f,
                        Err(go_value) => {
                            // Counted, and the sample kept with Go's fallback value.
                            c.error(SampleError::InvalidSampleFactor);
                            m.factor_errors += 1;
                            go_value
                        }
                    };
                    if factor == 0.0 {
                        factor = 1.0;
                    }
                    if kind == "c" {
                        *value /= factor;
                        m.rate = factor;
                    } else if StatType::is_observer(kind) {
                        m.repeat = go_int(1.0 / factor);
                    }
                }
                b'#' => {
                    if self.styles.dogstatsd {
                        dogstatsd_tags(&comp[1..], labels, c);
                    }
                }
                b'c' => match comp.strip_prefix("c:") {
                    Some(id) if !id.is_empty() => {
                        labels.insert("container_id".into(), id.into());
                    }
                    _ => {
                        c.error(SampleError::MalformedContainerId);
                        return None;
                    }
                },
                b'T' => {} // DogStatsD timestamp: dropped, as statsd_exporter does
                _ => {
                    c.error(SampleError::InvalidSampleFactor);
                    return None;
                }
            }
        }
        Some(m)
    }

    /// The metric name with SignalFx, InfluxDB or Librato tags taken out into `labels`.
    fn name_and_tags<'n>(&self, name: &'n str, labels: &mut Labels, c: &mut LineCounters) -> Cow<'n, str> {
        if self.styles.signalfx {
            match (name.find('['), name.find(']')) {
                (Some(start), Some(end)) => {
                    // statsd_exporter slices name[start+1:end]; a ']' before the '['
                    // would panic there: such a name keeps no tags here.
                    if start < end {
                        name_tags(&name[start + 1..end], labels, c);
                        return Cow::Owned(format!("{}{}", &name[..start], &name[end + 1..]));
                    }
                    c.tag_errors += 1;
                    return Cow::Borrowed(name);
                }
                (Some(_), None) | (None, Some(_)) => {
                    c.tag_errors += 1;
                    return Cow::Borrowed(name);
                }
                (None, None) => {}
            }
        }
        for (i, ch) in name.char_indices() {
            if (ch == '#' && self.styles.librato) || (ch == ',' && self.styles.influxdb) {
                name_tags(&name[i + 1..], labels, c);
                return Cow::Borrowed(&name[..i]);
            }
        }
        Cow::Borrowed(name)
    }
}

/// `k=v,k2=v2` (InfluxDB, Librato, SignalFx).
fn name_tags(tags: &str, labels: &mut Labels, c: &mut LineCounters) {
    // statsd_exporter adds the last tag only when something follows the last ','.
    let mut parts: Vec<&str> = tags.split(',').collect();
    if parts.last() == Some(&"") {
        parts.pop();
    }
    for tag in parts {
        tag_pair(tag, '=', labels, c);
    }
}

/// `#k:v,k2:v2` (each tag may repeat the '#').
fn dogstatsd_tags(tags: &str, labels: &mut Labels, c: &mut LineCounters) {
    let mut parts: Vec<&str> = tags.split(',').collect();
    if parts.last() == Some(&"") {
        parts.pop();
    }
    for tag in parts {
        tag_pair(tag.strip_prefix('#').unwrap_or(tag), ':', labels, c);
    }
}

fn tag_pair(tag: &str, sep: char, labels: &mut Labels, c: &mut LineCounters) {
    match tag.split_once(sep) {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => {
            let name = escape_metric_name(k);
            // Names starting with "__" are reserved in Prometheus (client_golang
            // refuses them at exposition); statsd_exporter would fail the scrape.
            if name.starts_with("__") {
                c.tag_errors += 1;
            } else {
                labels.insert(name.into_owned(), v.to_string());
            }
        }
        _ => c.tag_errors += 1,
    }
}

/// Go's `int(f)` for the sample-rate multiplier: truncation; NaN, infinities and
/// negatives give no events (Go's conversion of those is undefined and yields no
/// iterations of statsd_exporter's loop on amd64).
fn go_int(f: f64) -> u64 {
    if f.is_finite() && f >= 1.0 { f as u64 } else { 0 }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input: `Err` carries the value Go
/// returns beside its error (0 for a syntax error, ±Inf when out of range). Hex floats
/// and `_` digit separators, which Go also accepts, are refused (documented).
pub fn parse_float(s: &str) -> Result<f64, f64> {
    let b = s.as_bytes();
    let unsigned = match b.first() {
        Some(b'+' | b'-') => &b[1..],
        _ => b,
    };
    // Rust accepts "+nan"/"-nan"; Go only an unsigned "nan".
    if unsigned.len() != b.len() && unsigned.first().is_some_and(|c| c | 0x20 == b'n') {
        return Err(0.0);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_infinite() && unsigned.first().is_some_and(|c| c.is_ascii_digit() || *c == b'.') => Err(v),
        Ok(v) => Ok(v),
        Err(_) => Err(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> (Vec<String>, LineCounters) {
        let p = Parser {
            styles: TagStyles::default(),
        };
        let mut c = LineCounters::default();
        let mut labels = Labels::new();
        let mut out = Vec::new();
        p.parse_line(line.as_bytes(), &mut c, &mut labels, |e| {
            out.push(format!(
                "{} {:?} {:?} {} rel={} x{}",
                e.name, e.labels, e.stat, e.value, e.relative, e.repeat
            ))
        });
        (out, c)
    }

    #[test]
    fn go_float_edges() {
        assert_eq!(parse_float("1e3"), Ok(1000.0));
        assert_eq!(parse_float("+3"), Ok(3.0));
        assert_eq!(parse_float(".5"), Ok(0.5));
        assert!(parse_float("Inf").unwrap().is_infinite());
        assert!(parse_float("-infinity").unwrap().is_infinite());
        assert!(parse_float("nan").unwrap().is_nan());
        assert_eq!(parse_float("+nan"), Err(0.0));
        assert_eq!(parse_float("1e400"), Err(f64::INFINITY));
        assert_eq!(parse_float("abc"), Err(0.0));
        assert_eq!(parse_float(""), Err(0.0));
    }

    #[test]
    fn multi_value_lines_share_the_name() {
        let (ev, c) = parse("a:1|c:2|c");
        assert_eq!(ev.len(), 2);
        assert_eq!(c.samples, 2);
        let (ev, _) = parse("t:1:2|ms");
        assert_eq!(ev, ["t {} Timer 0.001 rel=false x1", "t {} Timer 0.002 rel=false x1"]);
    }

    #[test]
    fn observer_rate_repeats_events() {
        let (ev, _) = parse("t:100|ms|@0.1");
        assert_eq!(ev, ["t {} Timer 0.1 rel=false x10"]);
        let (ev, _) = parse("t:100|ms|@2");
        assert!(ev.is_empty(), "int(1/2) = 0 events");
    }

    #[test]
    fn bad_sample_factor_is_counted_but_the_sample_kept() {
        let (ev, c) = parse("a:2|c|@x");
        assert_eq!(ev, ["a {} Counter 2 rel=false x1"]);
        assert_eq!(c.sample_errors[SampleError::InvalidSampleFactor as usize], 1);
    }

    #[test]
    fn memchr_finds_the_first_match_anywhere() {
        let hay: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for at in 0..hay.len() {
            let mut h = hay.clone();
            h[at] = b':';
            if at + 3 < h.len() {
                h[at + 3] = b':';
            }
            assert_eq!(memchr(b':', &h), Some(at), "at {at}");
        }
        assert_eq!(memchr(b':', &hay), None);
        assert_eq!(memchr(b':', b""), None);
        assert_eq!(memchr(0x80, &[0x7f, 0x00, 0x80]), Some(2));
        assert_eq!(memchr(0x00, &[1, 1, 1, 1, 1, 1, 1, 1, 0x01, 0]), Some(9));
    }

    #[test]
    fn fast_shape_refuses_multi_value_lines() {
        assert!(fast_shape(b"a:1|c:2|c").is_none());
        assert!(fast_shape(b"a:1:2|ms").is_none());
        assert_eq!(fast_shape(b"a:1|c|#k:v"), Some((&b"a"[..], &b"1"[..], &b"c|#k:v"[..])));
    }
}
