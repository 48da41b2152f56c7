//! From a scraped body to samples in the batch: raw series text → SDK series (found
//! by the SDK when the text is the SDK's own text of the series, else through the
//! scrape cache, as Prometheus's scrape cache maps it to a storage ref), family
//! metadata, metric relabelling and the label rules of the WIT.
//!
//! A series seen in an earlier scrape costs a comparison of its raw text (with the
//! series at the same position last time; a hash look-up when it moved), a float
//! parse and a push of `(id, value)`: its labels are neither parsed, relabelled nor
//! hashed again. Only a new series takes the slow path through [`Scraper::register`].

use crate::cache::{Cache, DROPPED};
use crate::exposition::{self, Format, Kind, Line, Lines, ParseError, Position};
use crate::relabel::{self, Rule};
use rustc_hash::FxHashMap;
use sonde_plugin_sdk::{Collection, Kind as WireKind};

/// Limits of the host's batch validation (host/agent/src/scrape/table.rs): a series
/// beyond them would fail the whole batch, so the scrape reports it instead.
const MAX_LABELS: usize = 64;
const MAX_LABEL_VALUE: usize = 16 * 1024;
const MAX_NAME_LEN: usize = 1024;

/// A sample line, as the slow path needs it.
struct Sample<'a> {
    line: &'a [u8],
    series: &'a [u8],
    value: f64,
    timestamp_ms: Option<i64>,
}

/// Per-target state kept across scrapes.
pub struct Scraper {
    rules: Vec<Rule>,
    honor_timestamps: bool,
    /// 0 = none.
    sample_limit: usize,
    cache: Cache,
    /// The SDK's registry (and the cache) were sized for the first page.
    sized: bool,
    /// Kind of each family registered: a later sample outside its `# TYPE` block
    /// (or renamed onto it by relabelling) joins it instead of clashing with it.
    kinds: FxHashMap<String, WireKind>,
}

/// What one scrape stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Sample lines in the body.
    pub scraped: usize,
    /// Samples dropped by metric relabelling.
    pub dropped: usize,
    /// Series new to the cache in this scrape.
    pub new_series: usize,
}

/// The current `# TYPE` / `# HELP` / `# UNIT` context (owned: a page read in pieces
/// outlives each piece).
#[derive(Default)]
struct Meta {
    name: Vec<u8>,
    kind: Option<Kind>,
    help: Vec<u8>,
    unit: Vec<u8>,
}

impl Meta {
    /// The metadata for `name`, starting a new family when it is another one.
    fn for_name(&mut self, name: &[u8]) -> &mut Self {
        if self.name != name {
            self.name.clear();
            self.name.extend_from_slice(name);
            self.kind = None;
            self.help.clear();
            self.unit.clear();
        }
        self
    }

    /// The family a sample named `sample` belongs to: `(family name, kind, help, unit)`.
    fn family_of(&self, sample: &str, format: Format) -> (String, WireKind, String, String) {
        if !self.name.is_empty() {
            let kind = self.kind.unwrap_or(Kind::Unknown);
            let belongs = sample
                .as_bytes()
                .strip_prefix(self.name.as_slice())
                .is_some_and(|suffix| kind.suffixes(format).iter().any(|s| s.as_bytes() == suffix));
            if belongs {
                let base = String::from_utf8_lossy(&self.name);
                // The WIT names families as the text format does: counters with their
                // `_total`, OpenMetrics info families with `_info`.
                let name = match (kind, format) {
                    (Kind::Counter, Format::OpenMetrics) if !base.ends_with("_total") => format!("{base}_total"),
                    (Kind::Info, Format::OpenMetrics) => format!("{base}_info"),
                    _ => base.into_owned(),
                };
                return (
                    name,
                    wire_kind(kind),
                    exposition::unescape_help(&self.help, format),
                    String::from_utf8_lossy(&self.unit).into_owned(),
                );
            }
        }
        (sample.to_string(), WireKind::Unknown, String::new(), String::new())
    }
}

/// `(sample lines, bytes of their series texts)` of `body`, about: comments are not
/// counted, and a line's series text is taken to end at its last `}`, or its first
/// space when it has none.
fn page_shape(body: &[u8]) -> (usize, usize) {
    let (mut lines, mut bytes) = (0, 0);
    for line in body.split(|&b| b == b'\n') {
        if line.first().is_none_or(|&b| b == b'#') {
            continue;
        }
        lines += 1;
        bytes += memchr::memrchr(b'}', line)
            .map(|i| i + 1)
            .or_else(|| memchr::memchr(b' ', line))
            .unwrap_or(line.len());
    }
    (lines, bytes)
}

/// [`page_shape`] of a whole page of `total` bytes from its first bytes, `sample`:
/// scaled up, with 3 % to spare (too little would make the registry grow by doubling).
fn estimated_shape(sample: &[u8], total: usize) -> (usize, usize) {
    let (lines, bytes) = page_shape(sample);
    if sample.len() >= total || sample.is_empty() {
        return (lines, bytes);
    }
    let scale = |n: usize| (n as f64 * total as f64 / sample.len() as f64 * 1.03).ceil() as usize;
    (scale(lines), scale(bytes))
}

/// A page being read: where its lines stand, what it stored so far.
pub struct Page {
    format: Format,
    stats: Stats,
    meta: Meta,
    at: Position,
    /// A line begun in one piece and not ended yet.
    carry: Vec<u8>,
    /// Series are first looked up by their raw text in the SDK (no relabelling).
    by_text: bool,
}

fn wire_kind(k: Kind) -> WireKind {
    match k {
        Kind::Counter => WireKind::Counter,
        Kind::Gauge => WireKind::Gauge,
        Kind::Histogram => WireKind::Histogram,
        Kind::GaugeHistogram => WireKind::GaugeHistogram,
        Kind::Summary => WireKind::Summary,
        Kind::Info => WireKind::Info,
        Kind::StateSet => WireKind::StateSet,
        Kind::Unknown => WireKind::Unknown,
    }
}

impl Scraper {
    pub fn new(rules: Vec<Rule>, honor_timestamps: bool) -> Self {
        Scraper {
            rules,
            honor_timestamps,
            sample_limit: 0,
            cache: Cache::default(),
            sized: false,
            kinds: FxHashMap::default(),
        }
    }

    /// Most samples one scrape may store after relabelling (0 = no limit).
    pub fn set_sample_limit(&mut self, limit: usize) {
        self.sample_limit = limit;
    }

    /// Parses `body` and emits its samples into `out`. A malformed body fails as a
    /// whole (nothing is stored), as in Prometheus.
    pub fn emit(&mut self, body: &[u8], format: Format, out: &mut Collection) -> Result<Stats, ParseError> {
        self.size_for(body, body.len(), out);
        let mut page = self.begin(format);
        self.feed(&mut page, body, out)?;
        self.finish(page, out)
    }

    /// Whether the registry is still to be sized by [`Scraper::size_for`] (before the
    /// first page).
    pub fn needs_size(&self) -> bool {
        !self.sized
    }

    /// Sizes the SDK's registry (and the cache, should the page need it) once, before
    /// the first page, for a page of `total` bytes that starts with `sample`: linear
    /// memory never shrinks, so what growth by doubling copies would stay.
    /// An empty page sizes nothing (a later, real one will).
    pub fn size_for(&mut self, sample: &[u8], total: usize, out: &mut Collection) {
        if self.sized || sample.is_empty() {
            return;
        }
        self.sized = true;
        let (lines, text_bytes) = estimated_shape(sample, total);
        out.reserve_samples(lines, text_bytes);
        self.cache.expect(lines, text_bytes);
    }

    /// Starts reading a page; give it to [`Scraper::feed`] in pieces, then
    /// [`Scraper::finish`].
    pub fn begin(&mut self, format: Format) -> Page {
        self.cache.begin();
        Page {
            format,
            stats: Stats::default(),
            meta: Meta::default(),
            at: Position::default(),
            carry: Vec::new(),
            // Without relabelling, a series printed as the SDK's text of its labels
            // (the names sorted, values escaped, no empty ones: what Go exporters
            // print) is found by that text; the cache keeps the texts of the others.
            by_text: self.rules.is_empty(),
        }
    }

    /// The next `bytes` of `page`, cut anywhere: whole lines are parsed and emitted
    /// now, a line cut short waits for the rest. On error the page is malformed, and
    /// the collection must fail as a whole (nothing is stored), as in Prometheus.
    pub fn feed(&mut self, page: &mut Page, bytes: &[u8], out: &mut Collection) -> Result<(), ParseError> {
        let mut rest = bytes;
        if !page.carry.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                page.carry.extend_from_slice(rest);
                return Ok(());
            };
            page.carry.extend_from_slice(&rest[..=nl]);
            rest = &rest[nl + 1..];
            let line = std::mem::take(&mut page.carry);
            let parsed = self.parse(page, &line, false, out);
            page.carry = line;
            page.carry.clear();
            parsed?;
        }
        let whole = memchr::memrchr(b'\n', rest).map_or(0, |nl| nl + 1);
        self.parse(page, &rest[..whole], false, out)?;
        page.carry.extend_from_slice(&rest[whole..]);
        Ok(())
    }

    /// Ends `page`: its last line, the page's own checks (`# EOF`, `sample_limit`);
    /// the series it did not print are forgotten by the cache.
    pub fn finish(&mut self, mut page: Page, out: &mut Collection) -> Result<Stats, ParseError> {
        let last = std::mem::take(&mut page.carry);
        self.parse(&mut page, &last, true, out)?;
        let stats = page.stats;
        if self.sample_limit > 0 && stats.scraped - stats.dropped > self.sample_limit {
            return Err(ParseError {
                line: page.at.line,
                msg: format!(
                    "sample limit exceeded: {} samples after relabelling, sample_limit is {}",
                    stats.scraped - stats.dropped,
                    self.sample_limit
                ),
            });
        }
        self.cache.end();
        Ok(stats)
    }

    /// Parses whole lines of `page` (`last`: the page ends with them) and emits them.
    fn parse(&mut self, page: &mut Page, body: &[u8], last: bool, out: &mut Collection) -> Result<(), ParseError> {
        let format = page.format;
        let mut lines = Lines::resume(body, format, page.at, last);
        let result = self.parse_lines(page, &mut lines, out);
        page.at = lines.position();
        result
    }

    fn parse_lines(&mut self, page: &mut Page, lines: &mut Lines, out: &mut Collection) -> Result<(), ParseError> {
        let (format, by_text) = (page.format, page.by_text);
        loop {
            // The fast path: the line is the series that came next last time, printed
            // as then, with a plain value. The line is neither split nor looked up.
            if by_text && out.sample_in_order(|series| lines.next_sample_of(series).map(|(value, _)| value)) {
                page.stats.scraped += 1;
                continue;
            }
            let fast = self.cache.expected().and_then(|(idx, series)| {
                let (value, line) = lines.next_sample_of(series)?;
                Some((idx, value, line, series.len()))
            });
            let (text, series, value, ts, mut cached) = match fast {
                Some((idx, value, line, len)) => {
                    self.cache.confirm(idx);
                    (line, &line[..len], value, None, Some(idx))
                }
                None => {
                    let Some(line) = lines.next() else {
                        return Ok(());
                    };
                    match line? {
                        Line::Sample {
                            line,
                            series,
                            value,
                            timestamp_ms,
                        } => {
                            let ts = if self.honor_timestamps { timestamp_ms } else { None };
                            (line, series, value, ts, self.cache.at_position(series))
                        }
                        Line::Help { name, text } => {
                            let m = page.meta.for_name(name);
                            m.help.clear();
                            m.help.extend_from_slice(text);
                            continue;
                        }
                        Line::Type { name, kind } => {
                            page.meta.for_name(name).kind = Some(kind);
                            continue;
                        }
                        Line::Unit { name, unit } => {
                            let m = page.meta.for_name(name);
                            m.unit.clear();
                            m.unit.extend_from_slice(unit);
                            continue;
                        }
                    }
                }
            };
            let stats = &mut page.stats;
            stats.scraped += 1;
            if cached.is_none() {
                if by_text && out.sample_by_text(series, value, ts) {
                    continue;
                }
                cached = self.cache.find(series);
            }
            if let Some(idx) = cached {
                match self.cache.handle(idx) {
                    DROPPED => {
                        stats.dropped += 1;
                        continue;
                    }
                    h if out.sample_by_handle(h, value, ts) => continue,
                    _ => {}
                }
            }
            // A new series, or one the SDK released since (absent from a scrape, or
            // registered by a scrape that failed).
            stats.new_series += 1;
            let sample = Sample {
                line: text,
                series,
                value,
                timestamp_ms: ts,
            };
            let handle = self
                .register(&sample, format, &page.meta, out)
                .map_err(|msg| ParseError {
                    line: lines.line(),
                    msg,
                })?;
            if handle == DROPPED {
                page.stats.dropped += 1;
            }
            match cached {
                Some(idx) => self.cache.set_handle(idx, handle),
                None if by_text && handle != DROPPED && out.series_text(handle) == Some(series) => {}
                None => {
                    self.cache.insert(series, handle);
                }
            }
        }
    }

    /// The slow path: parses the labels, relabels, registers the series and emits
    /// the sample. Returns the handle or [`DROPPED`].
    fn register(&mut self, s: &Sample, format: Format, meta: &Meta, out: &mut Collection) -> Result<u64, String> {
        let Some((name, set)) = self.final_labels(s.line, s.series, format)? else {
            return Ok(DROPPED);
        };
        if set.len() > MAX_LABELS {
            return Err(format!("series {name} has {} labels (at most {MAX_LABELS})", set.len()));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(format!("metric name longer than {MAX_NAME_LEN} bytes"));
        }
        if let Some((n, _)) = set.iter().find(|(_, v)| v.len() > MAX_LABEL_VALUE) {
            return Err(format!(
                "series {name}: the value of label {n} is longer than {MAX_LABEL_VALUE} bytes"
            ));
        }
        let (family, kind, help, unit) = meta.family_of(&name, format);
        let kind = *self.kinds.entry(family.clone()).or_insert(kind);
        let f = out.family_with_unit(&family, kind, &help, &unit);
        let pairs: Vec<(&str, &str)> = set.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        Ok(out.sample_handle(f, &name, &pairs, s.value, s.timestamp_ms))
    }

    /// The stored name and labels (sorted, without `__` ones or empty values) of a
    /// series, after relabelling; `None` when relabelling drops it.
    #[allow(clippy::type_complexity)]
    fn final_labels(
        &self,
        line: &[u8],
        series: &[u8],
        format: Format,
    ) -> Result<Option<(String, Vec<(String, String)>)>, String> {
        let (name, labels) = exposition::parse_series(line, series, format)?;
        let mut set: Vec<(String, String)> = Vec::with_capacity(labels.len() + 1);
        let name = if self.rules.is_empty() {
            set.extend(labels.into_iter().map(|(n, v)| (n.to_string(), v.into_owned())));
            name.to_string()
        } else {
            set.push(("__name__".to_string(), name.to_string()));
            set.extend(labels.into_iter().map(|(n, v)| (n.to_string(), v.into_owned())));
            if !relabel::process(&self.rules, &mut set) {
                return Ok(None);
            }
            let Some(pos) = set.iter().position(|(n, _)| n == "__name__") else {
                return Ok(None);
            };
            let (_, name) = set.remove(pos);
            if !exposition::is_metric_name(name.as_bytes()) {
                return Ok(None);
            }
            name
        };
        // The WIT reserves `__`: such labels do not leave the plugin.
        set.retain(|(n, v)| !n.starts_with("__") && !v.is_empty());
        set.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Some((name, set)))
    }

    /// Series in the cache (for tests and the benchmark).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests;
