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
//! decoding, sorting and hashing. The order check keeps 24 bytes per series (a 64-bit
//! series hash → last timestamp and value); it can be turned off in [`Options`].

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, BufRead, Read};
use std::ops::Range;

/// Longest line accepted. promtool has no limit (it reads the whole file into memory);
/// this one only stops a file without newlines from taking all memory.
const MAX_LINE: u64 = 64 << 20;

/// The NaN bits Prometheus stores for a `NaN` in text (`value.NormalNaN`, what Go's
/// `strconv.ParseFloat("NaN")` returns), distinct from the staleness marker.
pub const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

/// An OpenMetrics metric family type, from `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
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
    Help { family: &'a str, text: &'a str },
    /// `# TYPE family type`.
    Type { family: &'a str, kind: MetricType },
    /// `# UNIT family unit` (possibly empty).
    Unit { family: &'a str, unit: &'a str },
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
        self.labels.iter().map(move |l| (&strings[l.name.clone()], &strings[l.value.clone()]))
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

impl Default for MetricType {
    fn default() -> Self {
        Self::Unknown
    }
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
            Found::Help => Entry::Help { family: &self.family, text: &self.meta_text },
            Found::Type => Entry::Type { family: &self.family, kind: self.family_kind },
            Found::Unit => Entry::Unit { family: &self.family, unit: &self.meta_text },
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
            .map_err(|source| ParseError::Io { line: self.line_no, source })?;
        if n as u64 == MAX_LINE && self.line.last() != Some(&b'\n') {
            return Err(self.invalid(format!("line longer than {} MiB", MAX_LINE >> 20)));
        }
        Ok(())
    }

    fn check_nothing_after_eof(&mut self) -> Result<(), ParseError> {
        let more = self.reader.fill_buf().map_err(|source| ParseError::Io { line: self.line_no, source })?;
        if !more.is_empty() {
            self.line_no += 1;
            return Err(self.invalid("unexpected data after `# EOF`"));
        }
        Ok(())
    }

    fn syntax(&self, column: usize, msg: String) -> ParseError {
        ParseError::Syntax { line: self.line_no, column: column + 1, msg }
    }

    fn invalid(&self, msg: impl Into<String>) -> ParseError {
        ParseError::Invalid { line: self.line_no, msg: msg.into() }
    }

    /// A `#` line: metadata (returned), `# EOF` (`None`) or an error.
    fn comment(&mut self) -> Result<Option<Found>, At> {
        let line = &self.line[..];
        if !line.starts_with(b"# ") {
            return at(0, "a comment must be `# HELP`, `# TYPE`, `# UNIT` or `# EOF` (one space after `#`)");
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
                    return at(name_end + 1, format!("invalid metric type {:?}", String::from_utf8_lossy(text)));
                };
                self.set_family(name);
                self.family_kind = kind;
            }
            Found::Help => {
                let Ok(text) = std::str::from_utf8(text) else {
                    return at(name_end + 1, "help text is not valid UTF-8");
                };
                unescape_into(text, &mut self.meta_text);
                self.set_family(name);
            }
            Found::Unit => {
                if !text.is_empty()
                    && !(name.len() > text.len()
                        && name.ends_with(text)
                        && name[name.len() - text.len() - 1] == b'_')
                {
                    return at(name_end + 1, format!(
                        "unit {:?} is not a suffix of metric {:?} (the name must end in `_<unit>`)",
                        String::from_utf8_lossy(text),
                        String::from_utf8_lossy(name)
                    ));
                }
                self.meta_text.push_str(std::str::from_utf8(text).unwrap_or_default());
                self.set_family(name);
            }
            Found::Sample => unreachable!(),
        }
        // The next sample decodes its series again, to pick up the family's type.
        self.series.raw.clear();
        Ok(Some(found))
    }

    fn set_family(&mut self, name: &[u8]) {
        if self.family.as_bytes() != name {
            self.family.clear();
            // Metric names are ASCII (checked by metric_name_len).
            self.family.push_str(std::str::from_utf8(name).unwrap_or_default());
            self.family_kind = MetricType::Unknown;
        }
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
        let (value, ts) = self.value_and_timestamp(series_end).map_err(|At(c, m)| self.syntax(c, m))?;
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

    /// Parse ` value[ timestamp][ # {exemplar} ...]\n` starting at `i`.
    fn value_and_timestamp(&mut self, i: usize) -> Result<(f64, Option<i64>), At> {
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
                Some(b'\n') => return Ok((value, ts)),
                Some(b' ') if line[i..].starts_with(b" # {") => {
                    i = self.exemplar(i + 4)?;
                    return match line.get(i) {
                        Some(b'\n') => Ok((value, ts)),
                        None => at(i, "the input ends without `# EOF` (last line has no newline)"),
                        _ => at(i, "unexpected text after the exemplar"),
                    };
                }
                Some(b' ') if ts.is_none() => {
                    let (tok, next) = token(line, i + 1);
                    if tok.is_empty() {
                        return at(i + 1, "expected a timestamp (exactly one space between fields, none at the end)");
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
    fn exemplar(&mut self, mut i: usize) -> Result<usize, At> {
        let line = &self.line[..];
        let name = &self.series.strings[..self.series.name_end];
        if !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return at(i - 3, format!("metric {name} does not support exemplars (only _total and _bucket do)"));
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
        self.exemplars += 1;
        Ok(i)
    }
}

/// Length of the metric name at the start of `b`: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {
            1 + b[1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b':').count()
        }
        _ => 0,
    }
}

/// Length of the label name at the start of `b`: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            1 + b[1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count()
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
    let Series { raw, strings, name_end, labels, hash, .. } = series;
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
                labels.push(LabelSpan { name: start..mid, value: mid..strings.len() });
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
    if !(-9.223_372_036_854_775_808e18..9.223_372_036_854_775_808e18).contains(&ms) {
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
