//! Streaming reader for OpenMetrics text with timestamps: the input of
//! `sonde import openmetrics`, the same file `promtool tsdb create-blocks-from
//! openmetrics` takes.
//!
//! It accepts what promtool 2.42 accepts and rejects what it rejects — its lexer and
//! parser (model/textparse/openmetricslex.l, openmetricsparse.go), its backfill loop
//! (cmd/promtool/backfill.go) and the TSDB appender checks a backfill runs into — and
//! names the line of every problem (`line 17: ...`):
//!
//! - the input ends with `# EOF` (a final newline is optional) and nothing follows it;
//! - the only comments are `# HELP`, `# TYPE`, `# UNIT` and `# EOF`; no blank lines;
//!   fields are separated by exactly one space; every other line ends in `\n` (so CRLF
//!   files are rejected, as promtool rejects them);
//! - metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, label
//!   values are quoted UTF-8 with the escapes `\\`, `\"` and `\n` (any other `\x` is
//!   kept verbatim, as promtool keeps it); a `# UNIT` must be a suffix of its metric name;
//! - values and timestamps are Go floats: decimal and exponent forms, `NaN`, `Inf`,
//!   `+Inf`, `-Inf` (any case); no hex, `_` or signed NaN; overflow is an error;
//! - every sample has a timestamp, in seconds, stored as promtool stores it:
//!   `int64(seconds * 1000)`, i.e. truncated toward zero after a float multiplication;
//! - per series, time ascends: an older timestamp is an error, a repeated timestamp with
//!   the same value is dropped and with another value is an error (the TSDB's
//!   out-of-order and duplicate-sample errors; promtool reports them only across its
//!   5,000-sample commit batches and drops them silently within one — we always report);
//! - a label name may appear once; `__name__` may not appear in braces; labels with an
//!   empty value are left out (the TSDB drops them: empty means absent);
//! - exemplars (`# {...} value [timestamp]`, only on `_total` and `_bucket` samples) are
//!   checked and skipped.
//!
//! Like promtool, it does not enforce OpenMetrics' grouping of a family's samples: the
//! metadata is reported as it comes, and a sample carries its family's type when it
//! follows that family's metadata with a name the type allows.
//!
//! Cost: one reused line buffer; consecutive samples of the same series (the usual
//! layout, one series' points in a row) are recognised by comparing bytes and skip label
//! decoding, sorting and hashing. The order check keeps about 32 bytes per series (a
//! 64-bit series hash → last timestamp and value; two series colliding on 64 bits, odds
//! ~n²/2⁶⁵, would share that state); it can be turned off in [`Options`].

// The reader's API is complete (positions, hashes, kinds) and exercised by its tests;
// the importer uses a subset of it.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, BufRead, Read};
use std::ops::Range;

/// Longest line accepted. promtool has none (it maps the whole file); this one only
/// stops a file without newlines from taking all memory.
const MAX_LINE: u64 = 64 << 20;

/// The NaN bits Prometheus stores for a `NaN` in text (`value.NormalNaN`, what Go's
/// `strconv.ParseFloat("NaN")` returns), distinct from the staleness marker.
pub const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

/// An OpenMetrics metric family type, from `# TYPE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    fn parse(text: &[u8]) -> Option<Self> {
        Some(match text {
            b"counter" => Self::Counter,
            b"gauge" => Self::Gauge,
            b"histogram" => Self::Histogram,
            b"gaugehistogram" => Self::GaugeHistogram,
            b"summary" => Self::Summary,
            b"info" => Self::Info,
            b"stateset" => Self::StateSet,
            b"unknown" => Self::Unknown,
            _ => return None,
        })
    }

    /// The name used in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
            Self::Unknown => "unknown",
        }
    }

    /// Suffixes a sample name may add to its family name (besides none at all, which is
    /// accepted for every type so Prometheus-style `# TYPE x_total counter` works too).
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Counter => &["_total", "_created"],
            Self::Histogram => &["_bucket", "_count", "_sum", "_created"],
            Self::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            Self::Summary => &["_count", "_sum", "_created"],
            Self::Info => &["_info"],
            Self::Gauge | Self::StateSet | Self::Unknown => &[],
        }
    }
}

impl std::fmt::Display for MetricType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the input was rejected. Parsing stops at the first error, as promtool's does.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {msg} (column {column})")]
    Syntax { line: u64, column: usize, msg: String },
    #[error("line {line}: {msg}")]
    Invalid { line: u64, msg: String },
    #[error("line {line}: reading the input: {source}")]
    Io {
        line: u64,
        #[source]
        source: io::Error,
    },
}

impl ParseError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> u64 {
        match self {
            Self::Syntax { line, .. } | Self::Invalid { line, .. } | Self::Io { line, .. } => *line,
        }
    }
}

/// Reader options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Reject samples older than their series' previous one and drop exact repeats
    /// (default true). Off, every sample is returned as written and no per-series state
    /// is kept.
    pub check_order: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { check_order: true }
    }
}

/// One item of the input, borrowed from the reader until the next call.
#[derive(Debug)]
pub enum Entry<'a> {
    /// `# HELP family text`, unescaped.
    Help {
        family: &'a str,
        text: &'a str,
    },
    /// `# TYPE family type`.
    Type {
        family: &'a str,
        kind: MetricType,
    },
    /// `# UNIT family unit` (possibly empty).
    Unit {
        family: &'a str,
        unit: &'a str,
    },
    Sample(Sample<'a>),
}

/// One sample: metric name, labels sorted by name, value and timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub value: f64,
    /// Milliseconds since the epoch, as promtool computes them.
    pub timestamp_ms: i64,
    /// The type of the family this sample belongs to; `Unknown` when it follows no
    /// metadata of its own.
    pub kind: MetricType,
    /// False when the previous sample had the same series (same bytes before the value),
    /// so an importer can reuse its series lookup.
    pub new_series: bool,
    /// 64-bit hash of name and sorted labels (SipHash-1-3, fixed keys: stable across
    /// runs of the same build).
    pub series_hash: u64,
    strings: &'a str,
    labels: &'a [LabelSpan],
}

impl<'a> Sample<'a> {
    /// Labels other than the metric name, sorted by name, empty values left out.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let strings = self.strings;
        self.labels
            .iter()
            .map(move |l| (&strings[l.name.clone()], &strings[l.value.clone()]))
    }
}

#[derive(Debug, Clone)]
struct LabelSpan {
    name: Range<usize>,
    value: Range<usize>,
}

/// The series of the current line, decoded; reused while lines repeat it.
#[derive(Default)]
struct Series {
    /// `name{labels}` exactly as written, to recognise the next line's series by bytes.
    raw: Vec<u8>,
    /// The decoded metric name, then label names and values.
    strings: String,
    name_end: usize,
    labels: Vec<LabelSpan>,
    hash: u64,
    kind: MetricType,
}

/// What `advance` found; `next` turns it into a borrowed [`Entry`].
enum Found {
    Help,
    Type,
    Unit,
    Sample,
}

/// A syntax error at a byte offset of the current line.
struct At(usize, String);

fn at<T>(col: usize, msg: impl Into<String>) -> Result<T, At> {
    Err(At(col, msg.into()))
}

/// Streaming OpenMetrics reader over any `BufRead`.
///
/// ```ignore
/// let mut p = Parser::new(BufReader::new(File::open(path)?));
/// while let Some(entry) = p.next()? {
///     if let Entry::Sample(s) = entry { append(s.name, s.labels(), s.timestamp_ms, s.value) }
/// }
/// ```
pub struct Parser<R> {
    reader: R,
    opts: Options,
    line: Vec<u8>,
    line_no: u64,
    finished: bool,
    series: Series,
    value: f64,
    timestamp_ms: i64,
    new_series: bool,
    family: String,
    family_kind: MetricType,
    meta_text: String,
    /// Last (timestamp, value bits) of every series but the current one.
    last: HashMap<u64, (i64, u64)>,
    /// Last (timestamp, value bits) of the current series, whose hash is `current_hash`.
    current_last: Option<(i64, u64)>,
    current_hash: u64,
    samples: u64,
    duplicates: u64,
    exemplars: u64,
}

impl<R: BufRead> Parser<R> {
    pub fn new(reader: R) -> Self {
        Self::with_options(reader, Options::default())
    }

    pub fn with_options(reader: R, opts: Options) -> Self {
        Self {
            reader,
            opts,
            line: Vec::with_capacity(256),
            line_no: 0,
            finished: false,
            series: Series::default(),
            value: 0.0,
            timestamp_ms: 0,
            new_series: false,
            family: String::new(),
            family_kind: MetricType::Unknown,
            meta_text: String::new(),
            last: HashMap::new(),
            current_last: None,
            current_hash: 0,
            samples: 0,
            duplicates: 0,
            exemplars: 0,
        }
    }

    /// The next entry; `Ok(None)` after `# EOF`. After an error the reader is finished.
    #[allow(clippy::should_implement_trait)] // a lending iterator: entries borrow the reader
    pub fn next(&mut self) -> Result<Option<Entry<'_>>, ParseError> {
        let found = match self.advance() {
            Ok(found) => found,
            Err(e) => {
                self.finished = true;
                return Err(e);
            }
        };
        Ok(found.map(|f| match f {
            Found::Help => Entry::Help {
                family: &self.family,
                text: &self.meta_text,
            },
            Found::Type => Entry::Type {
                family: &self.family,
                kind: self.family_kind,
            },
            Found::Unit => Entry::Unit {
                family: &self.family,
                unit: &self.meta_text,
            },
            Found::Sample => Entry::Sample(Sample {
                name: &self.series.strings[..self.series.name_end],
                value: self.value,
                timestamp_ms: self.timestamp_ms,
                kind: self.series.kind,
                new_series: self.new_series,
                series_hash: self.series.hash,
                strings: &self.series.strings,
                labels: &self.series.labels,
            }),
        }))
    }

    /// Lines read so far (the line of the last entry returned).
    pub fn line_number(&self) -> u64 {
        self.line_no
    }

    /// Samples returned so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples dropped because they repeated their series' previous timestamp and value.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates
    }

    /// Exemplars checked and skipped.
    pub fn exemplars_skipped(&self) -> u64 {
        self.exemplars
    }

    fn advance(&mut self) -> Result<Option<Found>, ParseError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            self.read_line()?;
            if self.line.is_empty() {
                return Err(self.invalid("the input ends without `# EOF`"));
            }
            if self.line[0] == b'#' {
                match self.comment().map_err(|At(col, msg)| self.syntax(col, msg))? {
                    Some(found) => return Ok(Some(found)),
                    None => {
                        self.check_nothing_after_eof()?;
                        self.finished = true;
                        return Ok(None);
                    }
                }
            }
            if self.sample()? {
                self.samples += 1;
                return Ok(Some(Found::Sample));
            }
        }
    }

    fn read_line(&mut self) -> Result<(), ParseError> {
        self.line.clear();
        self.line_no += 1;
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut self.line)
            .map_err(|source| ParseError::Io {
                line: self.line_no,
                source,
            })?;
        if n as u64 == MAX_LINE && self.line.last() != Some(&b'\n') {
            return Err(self.invalid(format!("line longer than {} MiB", MAX_LINE >> 20)));
        }
        Ok(())
    }

    fn check_nothing_after_eof(&mut self) -> Result<(), ParseError> {
        let more = self.reader.fill_buf().map_err(|source| ParseError::Io {
            line: self.line_no,
            source,
        })?;
        if !more.is_empty() {
            self.line_no += 1;
            return Err(self.invalid("unexpected data after `# EOF`"));
        }
        Ok(())
    }

    fn syntax(&self, column: usize, msg: String) -> ParseError {
        ParseError::Syntax {
            line: self.line_no,
            column: column + 1,
            msg,
        }
    }

    fn invalid(&self, msg: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            line: self.line_no,
            msg: msg.into(),
        }
    }

    /// A `#` line: metadata (returned), `# EOF` (`None`) or an error.
    fn comment(&mut self) -> Result<Option<Found>, At> {
        let line = &self.line[..];
        if !line.starts_with(b"# ") {
            return at(
                0,
                "a comment must be `# HELP`, `# TYPE`, `# UNIT` or `# EOF` (one space after `#`)",
            );
        }
        let rest = &line[2..];
        if rest.starts_with(b"EOF") {
            return if rest == b"EOF" || rest == b"EOF\n" {
                Ok(None)
            } else {
                at(5, "unexpected data after `# EOF`")
            };
        }
        let found = match rest.get(..5) {
            Some(b"HELP ") => Found::Help,
            Some(b"TYPE ") => Found::Type,
            Some(b"UNIT ") => Found::Unit,
            _ => return at(2, "a comment must be `# HELP`, `# TYPE`, `# UNIT` or `# EOF`"),
        };
        let start = 7;
        let name_len = metric_name_len(&line[start..]);
        if name_len == 0 {
            return at(start, "expected a metric name");
        }
        let name_end = start + name_len;
        if line.get(name_end) != Some(&b' ') {
            return at(name_end, "expected a space and text after the metric name");
        }
        let Some(text) = line[name_end + 1..].strip_suffix(b"\n") else {
            return at(line.len(), "the input ends without `# EOF`");
        };
        let name = &line[start..name_end];
        self.meta_text.clear();
        match found {
            Found::Type => {
                let Some(kind) = MetricType::parse(text) else {
                    return at(
                        name_end + 1,
                        format!("invalid metric type {:?}", String::from_utf8_lossy(text)),
                    );
                };
                set_family(&mut self.family, &mut self.family_kind, name);
                self.family_kind = kind;
            }
            Found::Help => {
                let Ok(text) = std::str::from_utf8(text) else {
                    return at(name_end + 1, "help text is not valid UTF-8");
                };
                unescape_into(text, &mut self.meta_text);
                set_family(&mut self.family, &mut self.family_kind, name);
            }
            Found::Unit => {
                let suffix_ok =
                    name.len() > text.len() && name.ends_with(text) && name[name.len() - text.len() - 1] == b'_';
                if !text.is_empty() && !suffix_ok {
                    return at(
                        name_end + 1,
                        format!(
                            "unit {:?} is not a suffix of metric {:?} (the name must end in `_<unit>`)",
                            String::from_utf8_lossy(text),
                            String::from_utf8_lossy(name)
                        ),
                    );
                }
                self.meta_text.push_str(std::str::from_utf8(text).unwrap_or_default());
                set_family(&mut self.family, &mut self.family_kind, name);
            }
            Found::Sample => unreachable!(),
        }
        // The next sample decodes its series again, to pick up the family's type.
        self.series.raw.clear();
        Ok(Some(found))
    }

    /// A sample line. Ok(false): an exact repeat of the series' previous sample, dropped.
    fn sample(&mut self) -> Result<bool, ParseError> {
        let raw_len = self.series.raw.len();
        let same_series =
            raw_len > 0 && self.line.starts_with(&self.series.raw) && self.line.get(raw_len) == Some(&b' ');
        let series_end = if same_series {
            raw_len
        } else {
            let end = decode_series(&self.line, &mut self.series).map_err(|At(c, m)| self.syntax(c, m))?;
            self.series.kind = family_kind_of(
                &self.series.strings[..self.series.name_end],
                &self.family,
                self.family_kind,
            );
            end
        };
        self.new_series = !same_series;
        let (value, ts, exemplar) = self
            .value_and_timestamp(series_end)
            .map_err(|At(c, m)| self.syntax(c, m))?;
        self.exemplars += u64::from(exemplar);
        let Some(ts) = ts else {
            return Err(self.invalid(format!(
                "sample of {} has no timestamp (backfill needs one on every sample)",
                String::from_utf8_lossy(&self.series.raw)
            )));
        };
        self.value = value;
        self.timestamp_ms = ts;
        if !self.opts.check_order {
            return Ok(true);
        }
        if self.new_series {
            self.switch_order_state();
        }
        let bits = value.to_bits();
        if let Some((prev_ts, prev_bits)) = self.current_last {
            if ts < prev_ts {
                return Err(self.invalid(format!(
                    "out-of-order sample of {}: timestamp {ts} ms is before the series' previous {prev_ts} ms",
                    String::from_utf8_lossy(&self.series.raw)
                )));
            }
            if ts == prev_ts {
                if bits == prev_bits {
                    self.duplicates += 1;
                    return Ok(false);
                }
                return Err(self.invalid(format!(
                    "duplicate sample of {} at {ts} ms with a different value",
                    String::from_utf8_lossy(&self.series.raw)
                )));
            }
        }
        self.current_last = Some((ts, bits));
        Ok(true)
    }

    /// The series changed: park the previous one's last sample, fetch this one's.
    fn switch_order_state(&mut self) {
        let hash = self.series.hash;
        if hash == self.current_hash && self.current_last.is_some() {
            return; // same series, re-decoded after a metadata line
        }
        if let Some(last) = self.current_last.take() {
            self.last.insert(self.current_hash, last);
        }
        self.current_hash = hash;
        self.current_last = self.last.remove(&hash);
    }

    /// Parse ` value[ timestamp][ # {exemplar} ...]\n` starting at `i`; the flag says
    /// whether an exemplar was skipped.
    fn value_and_timestamp(&self, i: usize) -> Result<(f64, Option<i64>, bool), At> {
        let line = &self.line[..];
        if line.get(i) != Some(&b' ') {
            return at(i, "expected a space and a value after the series");
        }
        let (tok, mut i) = token(line, i + 1);
        if tok.is_empty() {
            return at(i, "expected a value (exactly one space between fields)");
        }
        let value = parse_float(tok).or_else(|m| at(i - tok.len(), format!("invalid value: {m}")))?;
        let mut ts = None;
        loop {
            match line.get(i) {
                None => return at(i, "the input ends without `# EOF` (last line has no newline)"),
                Some(b'\n') => return Ok((value, ts, false)),
                Some(b' ') if line[i..].starts_with(b" # {") => {
                    i = self.exemplar(i + 4)?;
                    return match line.get(i) {
                        Some(b'\n') => Ok((value, ts, true)),
                        None => at(i, "the input ends without `# EOF` (last line has no newline)"),
                        _ => at(i, "unexpected text after the exemplar"),
                    };
                }
                Some(b' ') if line[i..] == *b" \n" => return at(i, "trailing space at the end of the line"),
                Some(b' ') if ts.is_none() => {
                    let (tok, next) = token(line, i + 1);
                    if tok.is_empty() {
                        return at(
                            i + 1,
                            "expected a timestamp (exactly one space between fields, none at the end)",
                        );
                    }
                    ts = Some(parse_timestamp(tok).or_else(|m| at(i + 1, m))?);
                    i = next;
                }
                Some(_) => return at(i, "unexpected text after the timestamp"),
            }
        }
    }

    /// Check an exemplar `{labels} value[ timestamp]` starting after `# {`; returns the
    /// offset after it.
    fn exemplar(&self, mut i: usize) -> Result<usize, At> {
        let line = &self.line[..];
        let name = &self.series.strings[..self.series.name_end];
        if !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return at(
                i - 3,
                format!("metric {name} does not support exemplars (only _total and _bucket do)"),
            );
        }
        i = scan_labels(line, i, |_, _| Ok(()))?;
        if line.get(i) != Some(&b' ') {
            return at(i, "expected a space and the exemplar value");
        }
        let (tok, next) = token(line, i + 1);
        parse_float(tok).or_else(|m| at(i + 1, format!("invalid exemplar value: {m}")))?;
        i = next;
        if line.get(i) == Some(&b' ') {
            let (tok, next) = token(line, i + 1);
            let t = parse_float(tok).or_else(|m| at(i + 1, format!("invalid exemplar timestamp: {m}")))?;
            if !t.is_finite() {
                return at(i + 1, "invalid exemplar timestamp");
            }
            i = next;
        }
        Ok(i)
    }
}

/// Metadata for `name` starts a new family unless it names the current one.
fn set_family(family: &mut String, kind: &mut MetricType, name: &[u8]) {
    if family.as_bytes() != name {
        family.clear();
        // Metric names are ASCII (checked by metric_name_len).
        family.push_str(std::str::from_utf8(name).unwrap_or_default());
        *kind = MetricType::Unknown;
    }
}

/// Length of the metric name at the start of `b`: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {
            1 + b[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b':')
                .count()
        }
        _ => 0,
    }
}

/// Length of the label name at the start of `b`: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            1 + b[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count()
        }
        _ => 0,
    }
}

/// The bytes from `i` up to the next space or newline, and the offset after them.
fn token(line: &[u8], i: usize) -> (&[u8], usize) {
    let rest = line.get(i..).unwrap_or_default();
    let n = rest.iter().position(|&c| c == b' ' || c == b'\n').unwrap_or(rest.len());
    (&rest[..n], i + n)
}

/// Decode `name{labels}` at the start of the line into `series`; returns the offset after it.
fn decode_series(line: &[u8], series: &mut Series) -> Result<usize, At> {
    let n = metric_name_len(line);
    if n == 0 {
        return match line.first() {
            Some(b'\n') | Some(b'\r') => at(0, "blank line"),
            Some(b' ') | Some(b'\t') => at(0, "leading whitespace"),
            _ => at(0, "expected a metric name, `# HELP`, `# TYPE`, `# UNIT` or `# EOF`"),
        };
    }
    let Series {
        raw,
        strings,
        name_end,
        labels,
        hash,
        ..
    } = series;
    strings.clear();
    labels.clear();
    // Metric names are ASCII.
    strings.push_str(std::str::from_utf8(&line[..n]).unwrap_or_default());
    *name_end = n;
    let mut i = n;
    if line.get(i) == Some(&b'{') {
        i = scan_labels(line, i + 1, |name, value| {
            if !value.is_empty() {
                let start = strings.len();
                strings.push_str(name);
                let mid = strings.len();
                unescape_into(value, strings);
                labels.push(LabelSpan {
                    name: start..mid,
                    value: mid..strings.len(),
                });
            }
            Ok(())
        })?;
        let key = |l: &LabelSpan| &strings[l.name.clone()];
        if !labels.is_sorted_by(|a, b| key(a) <= key(b)) {
            labels.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        }
        for pair in labels.windows(2) {
            if key(&pair[0]) == key(&pair[1]) {
                return at(n, format!("label name {:?} is not unique", key(&pair[0])));
            }
        }
        if labels.iter().any(|l| key(l) == "__name__") {
            return at(n, "label name \"__name__\" is not unique (it repeats the metric name)");
        }
    }
    let mut h = DefaultHasher::new();
    h.write(&strings.as_bytes()[..n]);
    h.write_u8(0xff); // never in UTF-8: separators keep the hash unambiguous
    for l in labels.iter() {
        h.write(strings[l.name.clone()].as_bytes());
        h.write_u8(0xfe);
        h.write(strings[l.value.clone()].as_bytes());
        h.write_u8(0xff);
    }
    *hash = h.finish();
    raw.clear();
    raw.extend_from_slice(&line[..i]);
    Ok(i)
}

/// Check `name="value",...}` starting after `{`, calling `f(name, escaped value)` for
/// each label; returns the offset after `}`.
fn scan_labels(line: &[u8], mut i: usize, mut f: impl FnMut(&str, &str) -> Result<(), At>) -> Result<usize, At> {
    if line.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        let n = label_name_len(line.get(i..).unwrap_or_default());
        if n == 0 {
            return at(i, "expected a label name");
        }
        let name = &line[i..i + n];
        i += n;
        if line.get(i) != Some(&b'=') {
            return at(i, "expected `=` after the label name");
        }
        i += 1;
        if line.get(i) != Some(&b'"') {
            return at(i, "expected a quoted label value");
        }
        i += 1;
        let start = i;
        loop {
            match line.get(i) {
                Some(b'"') => break,
                Some(b'\\') if !matches!(line.get(i + 1), None | Some(b'\n')) => i += 2,
                None | Some(b'\n') | Some(b'\\') => {
                    return at(start - 1, "unterminated label value (no closing `\"` on this line)");
                }
                Some(_) => i += 1,
            }
        }
        let Ok(value) = std::str::from_utf8(&line[start..i]) else {
            return at(start, "label value is not valid UTF-8");
        };
        // Label names are ASCII.
        f(std::str::from_utf8(name).unwrap_or_default(), value)?;
        i += 1;
        match line.get(i) {
            Some(b'}') => return Ok(i + 1),
            Some(b',') => i += 1,
            _ => return at(i, "expected `,` or `}` after a label value"),
        }
    }
}

/// Undo the escapes promtool undoes (`\\`, `\"`, `\n`); any other backslash stays.
fn unescape_into(s: &str, out: &mut String) {
    let mut rest = s;
    while let Some(p) = rest.find('\\') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let (c, skip) = match after.as_bytes().first() {
            Some(b'\\') => ('\\', 1),
            Some(b'"') => ('"', 1),
            Some(b'n') => ('\n', 1),
            _ => ('\\', 0),
        };
        out.push(c);
        rest = &after[skip..];
    }
    out.push_str(rest);
}

/// A float as Go's `strconv.ParseFloat` (behind promtool's check for `p`, `P`, `_`) reads it.
fn parse_float(tok: &[u8]) -> Result<f64, String> {
    let Ok(s) = std::str::from_utf8(tok) else {
        return Err("not UTF-8".into());
    };
    if s.ends_with('\r') {
        return Err(format!("{s:?} (CRLF line endings are not allowed)"));
    }
    if s.contains(['p', 'P', '_']) {
        return Err(format!("{s:?} has an unsupported character"));
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("nan") {
        if unsigned.len() != s.len() {
            return Err(format!("{s:?} is not a number (NaN takes no sign)"));
        }
        return Ok(f64::from_bits(NORMAL_NAN));
    }
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_infinite() && !(unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity")) {
        return Err(format!("{s:?} is out of range for a 64-bit float"));
    }
    Ok(v)
}

/// OpenMetrics timestamp (seconds) → milliseconds, as promtool: `int64(ts * 1000)`.
fn parse_timestamp(tok: &[u8]) -> Result<i64, String> {
    // Up to 12 digits, seconds * 1000 is exact in a float: the integer path agrees.
    if !tok.is_empty() && tok.len() <= 12 && tok.iter().all(u8::is_ascii_digit) {
        return Ok(tok.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')) * 1000);
    }
    let t = parse_float(tok).map_err(|m| format!("invalid timestamp: {m}"))?;
    if !t.is_finite() {
        return Err("invalid timestamp: NaN and Inf are not times".into());
    }
    let ms = t * 1000.0;
    // -2^63 ..< 2^63: beyond, Go's int64() conversion is undefined; refuse instead.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63, exact in a float
    if !(-LIMIT..LIMIT).contains(&ms) {
        return Err(format!("timestamp {t} s is out of range"));
    }
    Ok(ms as i64)
}

/// The family type a sample gets: its family's when the name is the family name or the
/// family name plus a suffix the type allows, else `Unknown`.
fn family_kind_of(name: &str, family: &str, kind: MetricType) -> MetricType {
    match name.strip_prefix(family) {
        Some(suffix) if !family.is_empty() && (suffix.is_empty() || kind.suffixes().contains(&suffix)) => kind,
        _ => MetricType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test sees of one entry, owned.
    #[derive(Debug, PartialEq)]
    enum E {
        Help(String, String),
        Type(String, MetricType),
        Unit(String, String),
        S(String, Vec<(String, String)>, f64, i64, MetricType),
    }

    fn parse_with(input: &str, opts: Options) -> Result<Vec<E>, ParseError> {
        let mut p = Parser::with_options(input.as_bytes(), opts);
        let mut out = Vec::new();
        while let Some(e) = p.next()? {
            out.push(match e {
                Entry::Help { family, text } => E::Help(family.into(), text.into()),
                Entry::Type { family, kind } => E::Type(family.into(), kind),
                Entry::Unit { family, unit } => E::Unit(family.into(), unit.into()),
                Entry::Sample(s) => E::S(
                    s.name.into(),
                    s.labels().map(|(k, v)| (k.into(), v.into())).collect(),
                    s.value,
                    s.timestamp_ms,
                    s.kind,
                ),
            });
        }
        Ok(out)
    }

    fn parse(input: &str) -> Result<Vec<E>, ParseError> {
        parse_with(input, Options::default())
    }

    type Owned = (String, Vec<(String, String)>, f64, i64, MetricType);

    fn samples(input: &str) -> Vec<Owned> {
        parse(input)
            .unwrap_or_else(|e| panic!("{e}\n{input}"))
            .into_iter()
            .filter_map(|e| match e {
                E::S(n, l, v, t, k) => Some((n, l, v, t, k)),
                _ => None,
            })
            .collect()
    }

    fn err(input: &str) -> String {
        match parse(input) {
            Ok(v) => panic!("accepted {input:?}: {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn counter_with_total_and_created_metadata_and_sorted_labels() {
        let input = "# HELP http_requests Requests served.\n\
                     # TYPE http_requests counter\n\
                     # UNIT http_requests \n\
                     http_requests_total{path=\"/\",code=\"200\"} 10 1700000000\n\
                     http_requests_total{path=\"/\",code=\"200\"} 12 1700000001.5\n\
                     http_requests_created{path=\"/\",code=\"200\"} 1699999000 1700000000\n\
                     # EOF\n";
        let got = parse(input).unwrap();
        let l = labels(&[("code", "200"), ("path", "/")]);
        assert_eq!(
            got,
            vec![
                E::Help("http_requests".into(), "Requests served.".into()),
                E::Type("http_requests".into(), MetricType::Counter),
                E::Unit("http_requests".into(), "".into()),
                E::S(
                    "http_requests_total".into(),
                    l.clone(),
                    10.0,
                    1_700_000_000_000,
                    MetricType::Counter
                ),
                E::S(
                    "http_requests_total".into(),
                    l.clone(),
                    12.0,
                    1_700_000_001_500,
                    MetricType::Counter
                ),
                E::S(
                    "http_requests_created".into(),
                    l,
                    1_699_999_000.0,
                    1_700_000_000_000,
                    MetricType::Counter
                ),
            ]
        );
    }

    #[test]
    fn histogram_and_summary_samples_carry_their_family_type() {
        let input = "# TYPE rpc_seconds histogram\n\
                     # UNIT rpc_seconds seconds\n\
                     rpc_seconds_bucket{le=\"0.1\"} 1 100\n\
                     rpc_seconds_bucket{le=\"+Inf\"} 3 100\n\
                     rpc_seconds_count 3 100\n\
                     rpc_seconds_sum 0.75 100\n\
                     rpc_seconds_created 50 100\n\
                     # TYPE gc_seconds summary\n\
                     gc_seconds{quantile=\"0.5\"} 0.01 100\n\
                     gc_seconds_sum 1.5 100\n\
                     gc_seconds_count 7 100\n\
                     other_metric 1 100\n\
                     # EOF";
        let got = samples(input);
        let kinds: Vec<_> = got.iter().map(|s| (s.0.as_str(), s.4)).collect();
        use MetricType::*;
        assert_eq!(
            kinds,
            vec![
                ("rpc_seconds_bucket", Histogram),
                ("rpc_seconds_bucket", Histogram),
                ("rpc_seconds_count", Histogram),
                ("rpc_seconds_sum", Histogram),
                ("rpc_seconds_created", Histogram),
                ("gc_seconds", Summary),
                ("gc_seconds_sum", Summary),
                ("gc_seconds_count", Summary),
                ("other_metric", Unknown),
            ]
        );
        assert_eq!(got[1].1, labels(&[("le", "+Inf")]));
        assert!(err("# TYPE a_seconds gauge\n# UNIT a_seconds bytes\n# EOF\n").contains("not a suffix"));
        assert!(err("# TYPE a histogramm\n# EOF\n").contains("invalid metric type"));
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        let got = parse(
            "# HELP m A \\\"quoted\\\" \\\\ help\\nsecond line\n\
             m{a=\"x\\\\y\",b=\"say \\\"hi\\\"\",c=\"two\\nlines\",d=\"tab\\tkept\",e=\"\u{e9}t\u{e9}\"} 1 1\n\
             # EOF\n",
        )
        .unwrap();
        assert_eq!(got[0], E::Help("m".into(), "A \"quoted\" \\ help\nsecond line".into()));
        let E::S(_, l, ..) = &got[1] else { panic!() };
        assert_eq!(
            *l,
            labels(&[
                ("a", "x\\y"),
                ("b", "say \"hi\""),
                ("c", "two\nlines"),
                ("d", "tab\\tkept"),
                ("e", "\u{e9}t\u{e9}")
            ])
        );
        // A value ending in an escaped backslash, and a brace and space inside a value.
        let got = samples("m{a=\"\\\\\",b=\"} {\"} 1 1\n# EOF\n");
        assert_eq!(got[0].1, labels(&[("a", "\\"), ("b", "} {")]));
    }

    #[test]
    fn exemplars_are_checked_and_skipped() {
        let input = "# TYPE r counter\n\
                     r_total 1 10 # {trace_id=\"abc\"} 0.5 9.5\n\
                     r_total 2 11 # {} 1\n\
                     # TYPE h histogram\n\
                     h_bucket{le=\"1\"} 1 10 # {trace_id=\"x\"} 0.3\n\
                     # EOF\n";
        let mut p = Parser::new(input.as_bytes());
        let mut n = 0;
        while let Some(e) = p.next().unwrap() {
            n += matches!(e, Entry::Sample(_)) as usize;
        }
        assert_eq!((n, p.exemplars_skipped()), (3, 3));
        assert!(err("g 1 10 # {a=\"b\"} 1\n# EOF\n").contains("does not support exemplars"));
        assert!(err("r_total 1 10 # {a=\"b\"}\n# EOF\n").contains("exemplar value"));
        assert!(err("r_total 1 10 # {a=\"b\"} 1 NaN\n# EOF\n").contains("exemplar timestamp"));
        assert!(err("r_total 1 10 # {a=\"b\"} 1 2 3\n# EOF\n").contains("after the exemplar"));
        // An exemplar straight after the value leaves the sample without a timestamp.
        assert!(err("r_total 1 # {a=\"b\"} 1\n# EOF\n").contains("no timestamp"));
    }

    #[test]
    fn eof_marker_is_required_and_final() {
        assert!(samples("m 1 1\n# EOF").len() == 1, "no newline after # EOF is fine");
        assert_eq!(err(""), "line 1: the input ends without `# EOF`");
        assert_eq!(err("m 1 1\n"), "line 2: the input ends without `# EOF`");
        assert!(err("m 1 1").starts_with("line 1: the input ends without `# EOF`"));
        assert!(err("# HELP m text").contains("ends without `# EOF`"));
        assert_eq!(err("# EOF\nm 1 1\n"), "line 2: unexpected data after `# EOF`");
        assert_eq!(err("# EOF\n\n"), "line 2: unexpected data after `# EOF`");
        assert!(err("# EOF \n").contains("unexpected data after `# EOF`"));
    }

    #[test]
    fn bad_lines_name_their_line_and_column() {
        let cases: &[(&str, &str)] = &[
            ("m 1 1\n\nm 2 2\n# EOF\n", "line 2: blank line (column 1)"),
            ("# a comment\n# EOF\n", "line 1: a comment must be"),
            ("#HELP m x\n# EOF\n", "line 1: a comment must be"),
            ("# HELP m\n# EOF\n", "expected a space and text after the metric name"),
            ("# HELP 1m x\n# EOF\n", "expected a metric name (column 8)"),
            ("m  1 1\n# EOF\n", "expected a value"),
            ("m 1  1\n# EOF\n", "expected a timestamp"),
            ("m 1 1 \n# EOF\n", "trailing space at the end of the line (column 6)"),
            ("m 1 \n# EOF\n", "trailing space"),
            ("m 1 1 2\n# EOF\n", "unexpected text after the timestamp"),
            (" m 1 1\n# EOF\n", "leading whitespace"),
            ("1m 1 1\n# EOF\n", "expected a metric name"),
            (
                "m{a:b=\"1\"} 1 1\n# EOF\n",
                "expected `=` after the label name (column 4)",
            ),
            ("m{1a=\"1\"} 1 1\n# EOF\n", "expected a label name (column 3)"),
            ("m{a=1} 1 1\n# EOF\n", "expected a quoted label value"),
            ("m{a=\"1\",} 1 1\n# EOF\n", "expected a label name (column 9)"),
            ("m{a=\"1\" b=\"2\"} 1 1\n# EOF\n", "expected `,` or `}`"),
            ("m{a = \"1\"} 1 1\n# EOF\n", "expected `=`"),
            ("m{a=\"1} 1 1\n# EOF\n", "unterminated label value"),
            ("m{a=\"1\"}1 1\n# EOF\n", "expected a space and a value"),
            ("m 1 1\r\n# EOF\n", "CRLF"),
            ("m abc 1\n# EOF\n", "invalid value: \"abc\" is not a number"),
            ("m{a=\"1\",a=\"2\"} 1 1\n# EOF\n", "label name \"a\" is not unique"),
            ("m{__name__=\"x\"} 1 1\n# EOF\n", "\"__name__\" is not unique"),
            ("m\t1 1\n# EOF\n", "expected a space and a value"),
        ];
        for (input, want) in cases {
            let got = err(input);
            assert!(got.contains(want), "{input:?}: got {got:?}, want {want:?}");
        }
        // Invalid UTF-8 in a label value or help text.
        let mut bad = b"m{a=\"".to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(b"\"} 1 1\n# EOF\n");
        let e = Parser::new(&bad[..]).next().unwrap_err();
        assert_eq!(e.line(), 1);
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
    }

    #[test]
    fn values_parse_like_go() {
        let v = |s: &str| samples(&format!("m {s} 1\n# EOF\n"))[0].2;
        assert_eq!(v("NaN").to_bits(), NORMAL_NAN);
        assert_eq!(v("nan").to_bits(), NORMAL_NAN);
        assert_eq!(v("+Inf"), f64::INFINITY);
        assert_eq!(v("Inf"), f64::INFINITY);
        assert_eq!(v("-Inf"), f64::NEG_INFINITY);
        assert_eq!(v("-infinity"), f64::NEG_INFINITY);
        assert_eq!(v("1e3"), 1000.0);
        assert_eq!(v("-1.5E-3"), -0.0015);
        assert_eq!(v("1.446529e+06"), 1_446_529.0);
        assert_eq!(v(".5"), 0.5);
        assert_eq!(v("+7"), 7.0);
        assert_eq!(v("4.9e-324"), 4.9e-324);
        for bad in [
            "1e400", "-1e400", "+NaN", "-nan", "0x1p3", "1_000", "0x10", "1.2.3", "e5", "--1", "Infinit",
        ] {
            assert!(err(&format!("m {bad} 1\n# EOF\n")).contains("invalid value"), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_truncated_milliseconds_like_promtool() {
        let t = |s: &str| samples(&format!("m 1 {s}\n# EOF\n"))[0].3;
        assert_eq!(t("0"), 0);
        assert_eq!(t("1700000000"), 1_700_000_000_000);
        assert_eq!(t("1700000000.123"), 1_700_000_000_123);
        assert_eq!(t("1.5"), 1500);
        assert_eq!(t("1.0009"), 1000, "sub-millisecond digits are truncated");
        assert_eq!(t("-1.5"), -1500, "toward zero");
        assert_eq!(t("1e3"), 1_000_000);
        assert_eq!(t("9999999999999"), 9_999_999_999_999_000, "13 digits: the float path");
        for bad in ["NaN", "+Inf", "1e17", "abc", "1e400"] {
            assert!(err(&format!("m 1 {bad}\n# EOF\n")).contains("timestamp"), "{bad}");
        }
    }

    #[test]
    fn samples_without_timestamps_are_rejected_like_promtool() {
        assert_eq!(
            err("# TYPE m gauge\nm{a=\"1\"} 1\n# EOF\n"),
            "line 2: sample of m{a=\"1\"} has no timestamp (backfill needs one on every sample)"
        );
    }

    #[test]
    fn time_must_ascend_per_series() {
        let input = "m{s=\"a\"} 1 10\nm{s=\"b\"} 1 5\nm{s=\"a\"} 2 11\nm{s=\"b\"} 2 6\nm{s=\"a\"} 3 9\n# EOF\n";
        assert_eq!(
            err(input),
            "line 5: out-of-order sample of m{s=\"a\"}: timestamp 9000 ms is before the series' previous 11000 ms"
        );
        // Same series written with its labels in another order is the same series.
        assert!(err("m{a=\"1\",b=\"2\"} 1 10\nm{b=\"2\",a=\"1\"} 1 9\n# EOF\n").contains("out-of-order"));
        // An exact repeat is dropped; a repeat with another value is an error.
        let mut p = Parser::new("m 1 10\nm 1 10\nm 2 11\n# EOF\n".as_bytes());
        let mut got = Vec::new();
        while let Some(Entry::Sample(s)) = p.next().unwrap() {
            got.push((s.value, s.timestamp_ms));
        }
        assert_eq!((got, p.duplicates_dropped()), (vec![(1.0, 10_000), (2.0, 11_000)], 1));
        assert_eq!(
            err("m 1 10\nm 2 10\n# EOF\n"),
            "line 2: duplicate sample of m at 10000 ms with a different value"
        );
        // Different series at the same time, and series interleaved, are fine.
        assert_eq!(samples("a 1 10\nb 1 10\na 1 11\nb 1 11\n# EOF\n").len(), 4);
        // A metadata line between two samples of one series keeps its history.
        assert!(err("m 1 10\n# TYPE m gauge\nm 1 9\n# EOF\n").contains("out-of-order"));
        // Without the check, everything comes back as written.
        let off = Options { check_order: false };
        let got = parse_with("m 1 10\nm 1 10\nm 2 9\n# EOF\n", off).unwrap();
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn empty_label_values_are_absent_and_braces_may_be_empty() {
        let got = samples("m{a=\"\",b=\"1\"} 1 1\nn{} 2 1\no{a=\"\"} 3 1\n# EOF\n");
        assert_eq!(got[0].1, labels(&[("b", "1")]));
        assert!(got[1].1.is_empty() && got[2].1.is_empty());
        // `m{a=""}` and `m` are the same series.
        assert!(err("m{a=\"\"} 1 10\nm 1 9\n# EOF\n").contains("out-of-order"));
    }

    #[test]
    fn new_series_flag_and_hash() {
        let mut p = Parser::new("m{a=\"1\"} 1 1\nm{a=\"1\"} 2 2\nm{a=\"2\"} 3 3\n# EOF\n".as_bytes());
        let mut got = Vec::new();
        while let Some(Entry::Sample(s)) = p.next().unwrap() {
            got.push((s.new_series, s.series_hash));
        }
        assert_eq!((got[0].0, got[1].0, got[2].0), (true, false, true));
        assert_eq!(got[0].1, got[1].1);
        assert_ne!(got[1].1, got[2].1);
    }

    #[test]
    fn never_panics_on_truncated_or_mangled_input() {
        let good = "# HELP r_total Requests.\n# TYPE r counter\n# UNIT r_seconds seconds\n\
                    r_total{a=\"x\\\"y\",b=\"\\\\\"} 1.5e3 1700000000.5 # {t=\"1\"} 2 3\n# EOF\n";
        let bytes = good.as_bytes();
        for cut in 0..bytes.len() {
            let _ = parse_with(std::str::from_utf8(&bytes[..cut]).unwrap_or(""), Options::default());
            let mut p = Parser::new(&bytes[..cut]);
            while let Ok(Some(_)) = p.next() {}
        }
        // Every single-byte substitution.
        for i in 0..bytes.len() {
            for b in [b' ', b'\n', b'"', b'\\', b'{', b'}', b'#', b',', b'=', 0u8, 0xff] {
                let mut m = bytes.to_vec();
                m[i] = b;
                let mut p = Parser::new(&m[..]);
                while let Ok(Some(_)) = p.next() {}
            }
        }
    }

    #[test]
    fn reads_from_a_bufreader_in_small_pieces() {
        let input = "# TYPE m gauge\nm{a=\"1\"} 1 1\nm{a=\"1\"} 2 2\n# EOF\n";
        let r = io::BufReader::with_capacity(3, input.as_bytes());
        let mut p = Parser::new(r);
        let mut n = 0;
        while let Some(e) = p.next().unwrap() {
            n += matches!(e, Entry::Sample(_)) as usize;
        }
        assert_eq!((n, p.line_number()), (2, 4));
    }

    /// Inputs where promtool 2.42's verdict was checked by running it: accepted (true)
    /// or rejected (false). When `promtool` is on PATH the test runs it again on each.
    const PROMTOOL_VERDICTS: &[(&str, bool)] = &[
        ("m 1 1\n# EOF\n", true),
        ("m 1 1\n# EOF", true),
        ("# EOF\n", true),
        ("m{} 1 1\n# EOF\n", true),
        ("m{__name__=\"\"} 1 1\n# EOF\n", true),
        ("m{a=\"x\\ty\"} 1 1\n# EOF\n", true),
        ("m{a=\"x\\\\\"} 1 1\n# EOF\n", true),
        ("m{a=\"x\0y\"} 1 1\n# EOF\n", true),
        ("a:b 1 1\n# EOF\n", true),
        ("# HELP m \nm 1 1\n# EOF\n", true),
        ("# UNIT m_seconds seconds\nm_seconds 1 1\n# EOF\n", true),
        ("m NaN 1\n# EOF\n", true),
        ("m Inf 1\n# EOF\n", true),
        ("m -Infinity 1\n# EOF\n", true),
        ("m .5 1\n# EOF\n", true),
        ("m 1. 1\n# EOF\n", true),
        ("m +5 1\n# EOF\n", true),
        ("m 1 1.5\n# EOF\n", true),
        ("m 1 1e3\n# EOF\n", true),
        ("m 1 1.0009\n# EOF\n", true),
        ("m 1 10\nm 1 10\n# EOF\n", true),
        ("m_total 1 10 # {a=\"b\"} 1 2\n# EOF\n", true),
        ("m_total 1 10 # {} 1\n# EOF\n", true),
        ("# TYPE a gauge\n# TYPE b gauge\na 1 1\nb 1 1\na 2 2\n# EOF\n", true),
        ("a 1 1\n# TYPE a gauge\na 2 2\n# EOF\n", true),
        ("", false),
        ("m 1 1\n", false),
        ("m 1 1\n# EOF\n\n", false),
        ("m 1 1\n# EOF \n", false),
        ("m 1 1\n# EOF\n# EOF\n", false),
        ("m 1 1\n\nm 2 2\n# EOF\n", false),
        ("# hello\nm 1 1\n# EOF\n", false),
        ("#\nm 1 1\n# EOF\n", false),
        ("# HELP m\nm 1 1\n# EOF\n", false),
        ("# HELP m \u{0}\u{1}\n# EOF\n", true),
        ("# TYPE m foo\nm 1 1\n# EOF\n", false),
        ("# TYPE m gauge \nm 1 1\n# EOF\n", false),
        ("# UNIT m_seconds bytes\nm_seconds 1 1\n# EOF\n", false),
        ("# UNIT seconds seconds\nseconds 1 1\n# EOF\n", false),
        ("m 1\n# EOF\n", false),
        ("m  1 1\n# EOF\n", false),
        ("m 1 1 \n# EOF\n", false),
        ("m 1 1 2\n# EOF\n", false),
        ("m 1 1\r\n# EOF\n", false),
        ("m\t1 1\n# EOF\n", false),
        (" m 1 1\n# EOF\n", false),
        ("1a 1 1\n# EOF\n", false),
        ("m{a=\"1\",} 1 1\n# EOF\n", false),
        ("m{a:b=\"1\"} 1 1\n# EOF\n", false),
        ("m{a = \"1\"} 1 1\n# EOF\n", false),
        ("m{a=\"x\\\ny\"} 1 1\n# EOF\n", false),
        ("m{a=\"1\",a=\"2\"} 1 1\n# EOF\n", false),
        ("m{__name__=\"x\"} 1 1\n# EOF\n", false),
        ("m +NaN 1\n# EOF\n", false),
        ("m 1e400 1\n# EOF\n", false),
        ("m 0x10 1\n# EOF\n", false),
        ("m 1_0 1\n# EOF\n", false),
        ("m 1 NaN\n# EOF\n", false),
        ("m 1 10 # {a=\"b\"} 1\n# EOF\n", false),
        ("m_total 1 # {a=\"b\"} 1\n# EOF\n", false),
    ];

    /// Where we knowingly differ: promtool drops these silently when both samples land
    /// in one 5,000-sample commit batch (and errors across batches); we always reject.
    const STRICTER_THAN_PROMTOOL: &[&str] = &["m 1 10\nm 1 9\n# EOF\n", "m 1 10\nm 2 10\n# EOF\n"];

    #[test]
    fn accepts_and_rejects_what_promtool_does() {
        for (input, ok) in PROMTOOL_VERDICTS {
            assert_eq!(parse(input).is_ok(), *ok, "{input:?}: {:?}", parse(input));
        }
        for input in STRICTER_THAN_PROMTOOL {
            assert!(parse(input).is_err(), "{input:?}");
        }
        let Ok(out) = std::process::Command::new("promtool").arg("--version").output() else {
            eprintln!("promtool not installed: checked against the recorded verdicts only");
            return;
        };
        assert!(out.status.success());
        let dir = std::env::temp_dir().join(format!("sonde-om-promtool-{}", std::process::id()));
        for (i, (input, ok)) in PROMTOOL_VERDICTS.iter().enumerate() {
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{i}.om"));
            std::fs::write(&file, input).unwrap();
            let status = std::process::Command::new("promtool")
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&file)
                .arg(dir.join("blocks"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            assert_eq!(status.success(), *ok, "promtool on {input:?}");
        }
    }

    /// benches/gen_openmetrics.py, or $SONDE_GEN_OPENMETRICS; the test is skipped without
    /// it or without python3.
    fn generator() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("SONDE_GEN_OPENMETRICS")
            .map(Into::into)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/gen_openmetrics.py")
            });
        let python = std::process::Command::new("python3").arg("--version").output();
        (path.exists() && python.is_ok_and(|o| o.status.success())).then_some(path)
    }

    fn generate(args: &[&str]) -> Option<String> {
        let Some(script) = generator() else {
            eprintln!("skipped: benches/gen_openmetrics.py or python3 not found");
            return None;
        };
        let out = std::process::Command::new("python3")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Some(String::from_utf8(out.stdout).unwrap())
    }

    /// A naive reading of a generator line (no escapes, no exemplars in its output).
    fn naive(line: &str) -> (String, Vec<(String, String)>, f64, i64) {
        let (series, rest) = line.rsplit_once(' ').unwrap();
        let (series, value) = series.rsplit_once(' ').unwrap();
        let ts = (rest.parse::<f64>().unwrap() * 1000.0) as i64;
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((n, l)) => {
                let mut v: Vec<(String, String)> = l
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap();
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                v.sort();
                (n.to_string(), v)
            }
        };
        (name, labels, value.parse().unwrap(), ts)
    }

    fn check_round_trip(text: &str) -> usize {
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let got = samples(text);
        assert_eq!(got.len(), lines.len());
        for (line, s) in lines.iter().zip(&got) {
            let (name, labels, value, ts) = naive(line);
            assert_eq!((&s.0, &s.1, s.3), (&name, &labels, ts), "{line}");
            assert!(s.2 == value || (s.2.is_nan() && value.is_nan()), "{line}");
        }
        got.len()
    }

    #[test]
    fn round_trips_the_generators_synthetic_set() {
        let Some(text) = generate(&[
            "synthetic",
            "--series",
            "6",
            "--duration",
            "40s",
            "--start",
            "1700000000",
        ]) else {
            return;
        };
        assert_eq!(check_round_trip(&text), 6 * 40);
        let got = samples(&text);
        assert_eq!(got[0].0, "bench_counter_total");
        assert_eq!(got[0].4, MetricType::Counter);
        assert_eq!(
            got[0].1,
            labels(&[("instance", "host-000"), ("job", "bench"), ("series", "0")])
        );
        assert_eq!(got.last().unwrap().4, MetricType::Gauge);
        assert_eq!(got[0].3, 1_700_000_000_000);
        let jittered = generate(&["synthetic", "--series", "2", "--duration", "20s", "--jitter-ms", "900"]).unwrap();
        check_round_trip(&jittered);
    }

    #[test]
    fn round_trips_the_generators_node_set() {
        let scrape = "# HELP go_gc_duration_seconds GC pauses.\n# TYPE go_gc_duration_seconds summary\n\
            go_gc_duration_seconds{quantile=\"0\"} 1.2e-05\ngo_gc_duration_seconds{quantile=\"1\"} 5e-05\n\
            go_gc_duration_seconds_sum 0.001\ngo_gc_duration_seconds_count 12\n\
            # HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1528.37\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 120.5\n\
            # HELP node_memory_MemFree_bytes Memory information field MemFree_bytes.\n# TYPE node_memory_MemFree_bytes gauge\n\
            node_memory_MemFree_bytes 2.3503020032e+10\n\
            # HELP node_netstat_Tcp_InSegs Statistic TcpInSegs.\n# TYPE node_netstat_Tcp_InSegs untyped\n\
            node_netstat_Tcp_InSegs 99716\n\
            # HELP node_uname_info Labeled system information.\n# TYPE node_uname_info gauge\n\
            node_uname_info{machine=\"x86_64\",nodename=\"h\",version=\"#1 SMP \\\"x\\\"\"} 1\n\
            # HELP node_boot_time_seconds Node boot time.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds 1.79533396e+09\n\
            # HELP node_time_seconds System time.\n# TYPE node_time_seconds gauge\nnode_time_seconds 1.795337e+09\n";
        let dir = std::env::temp_dir().join(format!("sonde-om-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scrape.txt");
        std::fs::write(&path, scrape).unwrap();
        let text = generate(&[
            "node",
            "--duration",
            "5m",
            "--scrape",
            path.to_str().unwrap(),
            "--start",
            "1700000000",
        ]);
        std::fs::remove_dir_all(&dir).unwrap();
        let Some(text) = text else { return };
        let got = samples(&text);
        assert_eq!(got.len(), 11 * 20);
        let kind = |name: &str| got.iter().find(|s| s.0 == name).unwrap().4;
        assert_eq!(kind("node_cpu_seconds_total"), MetricType::Counter);
        assert_eq!(kind("go_gc_duration_seconds_count"), MetricType::Summary);
        assert_eq!(kind("node_netstat_Tcp_InSegs"), MetricType::Unknown);
        let uname = got.iter().find(|s| s.0 == "node_uname_info").unwrap();
        assert!(uname.1.contains(&("version".into(), "#1 SMP \"x\"".into())));
        // Counters never go down.
        let idle: Vec<f64> = got
            .iter()
            .filter(|s| s.0 == "node_cpu_seconds_total" && s.1.contains(&("mode".into(), "idle".into())))
            .map(|s| s.2)
            .collect();
        assert_eq!(idle.len(), 20);
        assert!(idle.windows(2).all(|w| w[0] <= w[1]), "{idle:?}");
    }
}
