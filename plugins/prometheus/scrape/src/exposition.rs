//! The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0, read line by
//! line from the raw body without copying.
//!
//! A sample line is only split into its raw series text (`name{labels}`, the scrape
//! cache's key), its value and its timestamp; the labels are parsed by
//! [`parse_series`] only for a series the cache has not seen, as Prometheus's scrape
//! loop does. Errors name the line and what was expected there.

mod decimal;

use memchr::{memchr, memchr2};
use sonde_plugin_sdk::text::same;
use std::borrow::Cow;
use std::fmt;

/// The two formats, chosen by the response's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything that is not OpenMetrics, as
    /// Prometheus 2.42 falls back to it).
    Text,
    /// `application/openmetrics-text; version=1.0.0` (or 0.0.1).
    OpenMetrics,
}

impl Format {
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Kind {
    fn parse(s: &[u8], format: Format) -> Option<Kind> {
        Some(match (s, format) {
            (b"counter", _) => Kind::Counter,
            (b"gauge", _) => Kind::Gauge,
            (b"histogram", _) => Kind::Histogram,
            (b"summary", _) => Kind::Summary,
            (b"untyped", Format::Text) => Kind::Unknown,
            (b"unknown", Format::OpenMetrics) => Kind::Unknown,
            (b"gaugehistogram", Format::OpenMetrics) => Kind::GaugeHistogram,
            (b"info", Format::OpenMetrics) => Kind::Info,
            (b"stateset", Format::OpenMetrics) => Kind::StateSet,
            _ => return None,
        })
    }

    /// Suffixes a sample name may add to the family name (`""` first).
    pub fn suffixes(self, format: Format) -> &'static [&'static str] {
        match (self, format) {
            (Kind::Counter, Format::OpenMetrics) => &["_total", "_created"],
            (Kind::Counter, Format::Text) => &[""],
            (Kind::Histogram, _) => &["_bucket", "_sum", "_count", "_created"],
            (Kind::GaugeHistogram, _) => &["_bucket", "_gsum", "_gcount"],
            (Kind::Summary, _) => &["", "_sum", "_count", "_created"],
            (Kind::Info, Format::OpenMetrics) => &["_info"],
            _ => &[""],
        }
    }
}

/// One meaningful line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Sample {
        /// The whole line.
        line: &'a [u8],
        /// The raw series text: the metric name and its `{...}`, unparsed.
        series: &'a [u8],
        value: f64,
        /// Milliseconds since the epoch, when the line carries a timestamp.
        timestamp_ms: Option<i64>,
    },
    /// `# HELP name text`; `text` is still escaped (see [`unescape_help`]).
    Help {
        name: &'a [u8],
        text: &'a [u8],
    },
    Type {
        name: &'a [u8],
        kind: Kind,
    },
    Unit {
        name: &'a [u8],
        unit: &'a [u8],
    },
}

/// A malformed exposition: the 1-based line and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// The lines of one body, or of one piece of a body read as it arrives.
pub struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
    line: usize,
    format: Format,
    /// `# EOF` was read (OpenMetrics).
    eof: bool,
    /// `body` ends the page (else it is a piece of whole lines and more follow).
    last: bool,
    done: bool,
}

/// Where the lines of a page read in pieces stand between two pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Lines read so far.
    pub line: usize,
    /// `# EOF` was read (OpenMetrics).
    pub eof: bool,
}

impl<'a> Lines<'a> {
    /// The lines of a whole body.
    pub fn new(body: &'a [u8], format: Format) -> Self {
        Self::resume(body, format, Position::default(), true)
    }

    /// The lines of the piece `body` of a page, after the lines at `at`; `last`: the
    /// piece ends the page. A piece that does not end the page must end with `\n`.
    pub fn resume(body: &'a [u8], format: Format, at: Position, last: bool) -> Self {
        Lines {
            body,
            pos: 0,
            line: at.line,
            format,
            eof: at.eof,
            last,
            done: false,
        }
    }

    /// The number of the line last returned (1-based).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Where the next piece starts.
    pub fn position(&self) -> Position {
        Position {
            line: self.line,
            eof: self.eof,
        }
    }

    /// The fast path of a page printed as last time: when the next line is `series`
    /// byte for byte, one space and a plain decimal value (see [`decimal::scan`])
    /// ending the line, its value and the whole line, the line read. `None`, nothing
    /// read, for any other line: [`Lines::next`] reads it the general way, with the
    /// same result for the lines this one takes (their series text is complete and
    /// ends the labels, their value holds no space, `}` or timestamp).
    pub fn next_sample_of(&mut self, series: &[u8]) -> Option<(f64, &'a [u8])> {
        let n = series.len();
        if self.done || self.eof || n == 0 {
            return None;
        }
        let rest = &self.body[self.pos..];
        if rest.len() <= n || rest[n] != b' ' || !same(&rest[..n], series) {
            return None;
        }
        let (value, len) = decimal::scan(&rest[n + 1..])?;
        let end = n + 1 + len;
        if rest.get(end) != Some(&b'\n') {
            return None;
        }
        self.pos += end + 1;
        self.line += 1;
        Some((value, &rest[..end]))
    }

    fn error(&mut self, msg: impl Into<String>) -> Option<Result<Line<'a>, ParseError>> {
        self.done = true;
        Some(Err(ParseError {
            line: self.line,
            msg: msg.into(),
        }))
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let om = self.format == Format::OpenMetrics;
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.body.len() {
                if om && !self.eof && self.last {
                    self.line += 1;
                    return self.error("the exposition does not end with \"# EOF\" (OpenMetrics requires it)");
                }
                return None;
            }
            let rest = &self.body[self.pos..];
            let end = find_newline(rest).unwrap_or(rest.len());
            let line = &rest[..end];
            self.pos += end + 1;
            self.line += 1;
            if self.eof {
                return self.error("unexpected content after \"# EOF\"");
            }
            let line = if om { line } else { trim_start(line) };
            match line.first() {
                None if om => return self.error("empty line (OpenMetrics allows none)"),
                None => continue,
                Some(b'#') => match comment(line, self.format) {
                    Ok(Comment::Line(l)) => return Some(Ok(l)),
                    Ok(Comment::Eof) => self.eof = true,
                    Ok(Comment::Other) => {}
                    Err(msg) => return self.error(msg),
                },
                Some(_) => {
                    return match sample(line, self.format) {
                        Ok(l) => Some(Ok(l)),
                        Err(msg) => self.error(msg),
                    };
                }
            }
        }
    }
}

enum Comment<'a> {
    Line(Line<'a>),
    Eof,
    /// A plain comment (text format only).
    Other,
}

fn comment(line: &[u8], format: Format) -> Result<Comment<'_>, String> {
    let om = format == Format::OpenMetrics;
    if om && line == b"# EOF" {
        return Ok(Comment::Eof);
    }
    let body = if om {
        line.strip_prefix(b"# ").unwrap_or(b"")
    } else {
        trim_start(&line[1..])
    };
    let (keyword, rest) = split_token(body);
    if !matches!(keyword, b"HELP" | b"TYPE" | b"UNIT") || (keyword == b"UNIT" && !om) {
        return if om {
            Err(format!(
                "unexpected comment {:?}: OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF",
                lossy(line)
            ))
        } else {
            Ok(Comment::Other)
        };
    }
    let (name, rest) = split_token(rest);
    if name.is_empty() || !is_metric_name(name) {
        return Err(format!(
            "expected a metric name after # {}, found {:?}",
            lossy(keyword),
            lossy(name)
        ));
    }
    Ok(Comment::Line(match keyword {
        b"HELP" => Line::Help { name, text: rest },
        b"UNIT" => Line::Unit { name, unit: rest },
        _ => {
            let (kind, extra) = split_token(rest);
            if !extra.is_empty() {
                return Err(format!("unexpected text after the type: {:?}", lossy(extra)));
            }
            let kind = Kind::parse(kind, format)
                .ok_or_else(|| format!("invalid metric type {:?} for {}", lossy(kind), lossy(name)))?;
            Line::Type { name, kind }
        }
    }))
}

/// Splits one sample line into series text, value and timestamp; the labels are
/// skipped over, not parsed.
///
/// The text format takes a shortcut: nothing after the labels (value, timestamp) can
/// hold a `}`, so the last `}` of the line closes them, whatever the label values
/// contain. That split is checked properly by [`parse_series`] the first time a
/// series is seen, and a later line can only reuse the cached series when its text
/// is byte for byte the same.
fn sample(line: &[u8], format: Format) -> Result<Line<'_>, String> {
    sample_split(line, format, true)
}

fn sample_split(line: &[u8], format: Format, shortcut: bool) -> Result<Line<'_>, String> {
    let fast = match format {
        Format::Text if shortcut => match memchr::memrchr(b'}', line) {
            Some(close) => Some(close + 1),
            None => {
                let n = name_len(line);
                line.get(n).is_some_and(|b| is_space(*b)).then_some(n)
            }
        },
        _ => None,
    };
    let (series_end, after) = match fast {
        Some(end) => (end, if line[end - 1] == b'}' { "labels" } else { "metric name" }),
        None => series_end(line, format)?,
    };
    let series = &line[..series_end];
    let rest = &line[series_end..];
    // Most lines are `series value`: one space, then a value running to the end of the
    // line. Parsed in one step here (in wasm, the general path's token splitting was
    // ~5% of the daemon's CPU); anything else, or a value that does not parse, takes
    // the general path, which reports it.
    if let [b' ', value @ ..] = rest
        && !value.is_empty()
        && memchr::memchr2(b' ', b'\t', value).is_none()
        && let Some(value) = parse_float(value)
    {
        return Ok(Line::Sample {
            line,
            series,
            value,
            timestamp_ms: None,
        });
    }
    let spaces = rest.iter().take_while(|b| is_space(**b)).count();
    let (value, rest) = split_token(&rest[spaces..]);
    if value.is_empty() {
        return Err(format!("expected a value after the {after}"));
    }
    if spaces == 0 {
        return Err(format!(
            "expected a space between the {after} and the value, found {:?}",
            lossy(value)
        ));
    }
    let value = parse_float(value).ok_or_else(|| format!("invalid value {:?}", lossy(value)))?;
    let mut timestamp_ms = None;
    let (ts, rest) = split_token(rest);
    let rest = if ts.is_empty() || ts[0] == b'#' {
        // No timestamp; `#` opens an OpenMetrics exemplar.
        if ts.is_empty() { rest } else { line_tail(line, ts) }
    } else {
        timestamp_ms = Some(parse_timestamp(ts, format)?);
        rest
    };
    if !rest.is_empty() {
        if format == Format::OpenMetrics && rest[0] == b'#' {
            // An exemplar: not stored (Prometheus 2.42 stores none without the
            // exemplar-storage feature).
            exemplar(rest)?;
        } else {
            return Err(format!("unexpected text after the sample: {:?}", lossy(rest)));
        }
    }
    Ok(Line::Sample {
        line,
        series,
        value,
        timestamp_ms,
    })
}

/// End of the series text of `line` found the careful way, from the front (quotes
/// and escapes respected), and what precedes the value ("labels" or "metric name").
fn series_end(line: &[u8], format: Format) -> Result<(usize, &'static str), String> {
    let name_len = name_len(line);
    if name_len == 0 || line[0].is_ascii_digit() {
        return Err(format!("expected a metric name, found {:?}", lossy(line)));
    }
    let mut i = name_len;
    if format == Format::Text {
        i += line[i..].iter().take_while(|b| is_space(**b)).count();
    }
    if line.get(i) == Some(&b'{') {
        Ok((closing_brace(line, i + 1)? + 1, "labels"))
    } else {
        Ok((name_len, "metric name"))
    }
}

fn name_len(line: &[u8]) -> usize {
    line.iter().take_while(|b| is_name_byte(**b)).count()
}

/// The first `\n`, eight bytes per step. memchr's portable code (all wasm32 has
/// without SIMD) works on 32-bit words there; this is the longest pass over the body.
fn find_newline(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    let mut i = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ NL;
        // The lowest set bit marks the first zero byte of `w` (bits above it may be
        // false positives, never bits below).
        let zero = w.wrapping_sub(LO) & !w & HI;
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr(b'\n', chunks.remainder()).map(|p| i + p)
}

/// `ts` is a token inside `line`: the rest of the line from it.
fn line_tail<'a>(line: &'a [u8], ts: &'a [u8]) -> &'a [u8] {
    let start = ts.as_ptr() as usize - line.as_ptr() as usize;
    &line[start..]
}

/// Checks an OpenMetrics exemplar `# {labels} value [timestamp]`.
fn exemplar(text: &[u8]) -> Result<(), String> {
    let bad = || format!("invalid exemplar {:?}", lossy(text));
    let body = text.strip_prefix(b"# {").ok_or_else(bad)?;
    let close = closing_brace(body, 0).map_err(|_| bad())?;
    let (value, rest) = split_token(trim_start(&body[close + 1..]));
    parse_float(value).ok_or_else(bad)?;
    let (ts, rest) = split_token(rest);
    if !ts.is_empty() {
        parse_float(ts).ok_or_else(bad)?;
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// Index of the `}` closing the label set that starts at `from`.
fn closing_brace(line: &[u8], from: usize) -> Result<usize, String> {
    let mut k = from;
    loop {
        let rest = line.get(k..).unwrap_or_default();
        match memchr2(b'"', b'}', rest) {
            None => return Err("expected '}' after the labels".into()),
            Some(o) if rest[o] == b'}' => return Ok(k + o),
            Some(o) => {
                k += o + 1;
                loop {
                    let rest = line.get(k..).unwrap_or_default();
                    match memchr2(b'"', b'\\', rest) {
                        None => return Err("unterminated label value (no closing '\"')".into()),
                        Some(o) if rest[o] == b'\\' => k += o + 2,
                        Some(o) => {
                            k += o + 1;
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Label pairs of a series, values unescaped.
pub type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// Name and labels of the series of a [`Line::Sample`], label values unescaped, in
/// the order of the text. Checks the line's split as well (see `sample`).
pub fn parse_series<'a>(line: &'a [u8], series: &'a [u8], format: Format) -> Result<(&'a str, Labels<'a>), String> {
    let (end, _) = series_end(line, format)?;
    if end != series.len() {
        // The shortcut split differently: the careful split says what is wrong.
        sample_split(line, format, false)?;
        return Err(format!(
            "unexpected text after the labels: {:?}",
            lossy(&line[end..series.len()])
        ));
    }
    let name_len = name_len(series);
    let name = std::str::from_utf8(&series[..name_len]).expect("ASCII");
    let mut labels: Labels = Vec::new();
    let mut cur = Cursor {
        s: series,
        i: name_len,
        text: format == Format::Text,
    };
    cur.skip_spaces();
    if cur.i == series.len() {
        return Ok((name, labels));
    }
    // `sample` found the braces, so series[i] is '{' and the text ends with '}'.
    cur.i += 1;
    loop {
        cur.skip_spaces();
        match cur.peek() {
            Some(b'}') => break,
            None => return Err("expected '}' after the labels".into()),
            Some(_) => {}
        }
        let (lname, value) = cur.label()?;
        if labels.iter().any(|(n, _)| *n == lname) {
            return Err(format!("label {lname} appears twice"));
        }
        labels.push((lname, value));
        cur.skip_spaces();
        match cur.peek() {
            Some(b',') => cur.i += 1,
            Some(b'}') => {}
            _ => return Err(format!("expected ',' or '}}' after the value of label {lname}")),
        }
    }
    Ok((name, labels))
}

/// A position in a series text, for [`parse_series`].
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    /// The text format allows spaces around the label syntax; OpenMetrics does not.
    text: bool,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        if self.text {
            while self.peek().is_some_and(is_space) {
                self.i += 1;
            }
        }
    }

    /// One `name="value"`, the value unescaped.
    fn label(&mut self) -> Result<(&'a str, Cow<'a, str>), String> {
        let s = self.s;
        let start = self.i;
        while self.peek().is_some_and(|b| is_name_byte(b) && b != b':') {
            self.i += 1;
        }
        let lname = &s[start..self.i];
        if lname.is_empty() || lname[0].is_ascii_digit() {
            return Err(format!(
                "expected a label name, found {:?}",
                lossy(&s[start..(start + 1).min(s.len())])
            ));
        }
        let lname = std::str::from_utf8(lname).expect("ASCII");
        self.skip_spaces();
        if self.peek() != Some(b'=') {
            return Err(format!("expected '=' after label name {lname}"));
        }
        self.i += 1;
        self.skip_spaces();
        if self.peek() != Some(b'"') {
            return Err(format!("expected '\"' to open the value of label {lname}"));
        }
        self.i += 1;
        let vstart = self.i;
        let mut escaped = false;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.i += 2;
                }
                Some(_) => self.i += 1,
                None => return Err(format!("unterminated value of label {lname}")),
            }
        }
        let raw = &s[vstart..self.i];
        self.i += 1;
        let value = if escaped {
            Cow::Owned(String::from_utf8(unescape(raw, true)).map_err(|_| invalid_utf8(lname))?)
        } else {
            Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| invalid_utf8(lname))?)
        };
        Ok((lname, value))
    }
}

fn invalid_utf8(label: &str) -> String {
    format!("the value of label {label} is not valid UTF-8")
}

/// Undoes the escapes of a label value (`\\`, `\"`, `\n`) or, with `quote` false, a
/// text-format HELP (`\\`, `\n`). Other backslashes stay, as in Prometheus.
fn unescape(raw: &[u8], quote: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1)) {
            (b'\\', Some(b'\\')) => out.push(b'\\'),
            (b'\\', Some(b'n')) => out.push(b'\n'),
            (b'\\', Some(b'"')) if quote => out.push(b'"'),
            (b, _) => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

/// The text of a `# HELP` line, unescaped.
pub fn unescape_help(raw: &[u8], format: Format) -> String {
    let quote = format == Format::OpenMetrics;
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw).into_owned();
    }
    String::from_utf8_lossy(&unescape(raw, quote)).into_owned()
}

/// A sample value as Go's `strconv.ParseFloat` reads it (`NaN`, `+Inf`, `-Inf`,
/// exponents), which Prometheus uses.
pub fn parse_float(s: &[u8]) -> Option<f64> {
    if let Some(v) = exact_decimal(s) {
        return Some(v);
    }
    let s = std::str::from_utf8(s).ok()?;
    // Rust also accepts "infinity" and "inf" in any case, as Go does.
    s.parse::<f64>().ok()
}

/// Clinger's fast path: a decimal of at most 15 significant digits times a power of
/// ten of at most 22 is one correctly rounded float operation (both operands are
/// exact). Most exposition values qualify; the general parser is slow in wasm32,
/// where its 128-bit products are emulated.
fn exact_decimal(s: &[u8]) -> Option<f64> {
    let (neg, mut i) = match s.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut mant: u64 = 0;
    let mut significant = 0;
    let mut exp: i32 = 0;
    let mut digits = 0;
    let mut fraction = false;
    while let Some(&c) = s.get(i) {
        if c.is_ascii_digit() {
            mant = mant * 10 + (c - b'0') as u64;
            if mant != 0 {
                significant += 1;
                if significant > 15 {
                    return None;
                }
            }
            if fraction {
                exp -= 1;
            }
            digits += 1;
        } else if c == b'.' && !fraction {
            fraction = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        let (eneg, start) = match s.get(i) {
            Some(b'-') => (true, i + 1),
            Some(b'+') => (false, i + 1),
            _ => (false, i),
        };
        let e = s.get(start..)?;
        if e.is_empty() || e.len() > 3 || !e.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let e = e.iter().fold(0i32, |n, d| n * 10 + (d - b'0') as i32);
        exp += if eneg { -e } else { e };
        i = s.len();
    }
    if i != s.len() {
        return None;
    }
    decimal::exact(neg, mant, exp)
}

fn parse_timestamp(ts: &[u8], format: Format) -> Result<i64, String> {
    let bad = || format!("invalid timestamp {:?}", lossy(ts));
    match format {
        Format::Text => std::str::from_utf8(ts)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad),
        Format::OpenMetrics => {
            let secs = parse_float(ts).filter(|s| s.is_finite()).ok_or_else(bad)?;
            Ok((secs * 1000.0) as i64)
        }
    }
}

/// The first space-separated token and what follows it (leading spaces skipped).
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    let s = trim_start(s);
    let end = s.iter().position(|b| is_space(*b)).unwrap_or(s.len());
    let (tok, rest) = s.split_at(end);
    (tok, trim_start(rest))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| is_space(**b)).count();
    &s[n..]
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `[a-zA-Z0-9_:]`, by table: this runs for every byte of every metric name.
static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        b += 1;
    }
    t
};

fn is_name_byte(b: u8) -> bool {
    NAME_BYTE[b as usize]
}

pub fn is_metric_name(s: &[u8]) -> bool {
    !s.is_empty() && !s[0].is_ascii_digit() && s.iter().all(|b| is_name_byte(*b))
}

pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[test]
fn newlines_are_found_in_every_position() {
    for len in 0..40 {
        for at in 0..len {
            let mut s = vec![b'a'; len];
            s[at] = b'\n';
            if at + 1 < len {
                s[len - 1] = b'\n';
            }
            assert_eq!(find_newline(&s), Some(at), "len {len} at {at}");
        }
        assert_eq!(find_newline(&vec![0x8a; len]), None);
    }
}
