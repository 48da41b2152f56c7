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
use crate::exposition::{self, Format, Kind, Line, Lines, ParseError};
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

/// The current `# TYPE` / `# HELP` / `# UNIT` context.
#[derive(Default)]
struct Meta<'a> {
    name: &'a [u8],
    kind: Option<Kind>,
    help: &'a [u8],
    unit: &'a [u8],
}

impl<'a> Meta<'a> {
    /// The metadata for `name`, starting a new family when it is another one.
    fn for_name(&mut self, name: &'a [u8]) -> &mut Self {
        if self.name != name {
            *self = Meta {
                name,
                ..Meta::default()
            };
        }
        self
    }

    /// The family a sample named `sample` belongs to: `(family name, kind, help, unit)`.
    fn family_of(&self, sample: &str, format: Format) -> (String, WireKind, String, String) {
        if !self.name.is_empty() {
            let kind = self.kind.unwrap_or(Kind::Unknown);
            let belongs = sample
                .as_bytes()
                .strip_prefix(self.name)
                .is_some_and(|suffix| kind.suffixes(format).iter().any(|s| s.as_bytes() == suffix));
            if belongs {
                let base = String::from_utf8_lossy(self.name);
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
                    exposition::unescape_help(self.help, format),
                    String::from_utf8_lossy(self.unit).into_owned(),
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
        // The first scrape sizes the SDK's registry (and the cache, should the page
        // need it) for the page at once.
        if !self.sized {
            self.sized = true;
            let (lines, text_bytes) = page_shape(body);
            out.reserve_samples(lines, text_bytes);
            self.cache.expect(lines, text_bytes);
        }
        // Without relabelling, a series printed as the SDK's text of its labels (the
        // names sorted, values escaped, no empty ones: what Go exporters print) is
        // found by that text; the cache keeps the texts of the others.
        let by_text = self.rules.is_empty();
        self.cache.begin();
        let mut stats = Stats::default();
        let mut meta = Meta::default();
        let mut lines = Lines::new(body, format);
        while let Some(line) = lines.next() {
            let (text, series, value, timestamp_ms) = match line? {
                Line::Sample {
                    line,
                    series,
                    value,
                    timestamp_ms,
                } => (line, series, value, timestamp_ms),
                Line::Help { name, text } => {
                    meta.for_name(name).help = text;
                    continue;
                }
                Line::Type { name, kind } => {
                    meta.for_name(name).kind = Some(kind);
                    continue;
                }
                Line::Unit { name, unit } => {
                    meta.for_name(name).unit = unit;
                    continue;
                }
            };
            stats.scraped += 1;
            let ts = if self.honor_timestamps { timestamp_ms } else { None };
            let mut cached = self.cache.at_position(series);
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
            let handle = self.register(&sample, format, &meta, out).map_err(|msg| ParseError {
                line: lines.line(),
                msg,
            })?;
            if handle == DROPPED {
                stats.dropped += 1;
            }
            match cached {
                Some(idx) => self.cache.set_handle(idx, handle),
                None if by_text && handle != DROPPED && out.series_text(handle) == Some(series) => {}
                None => {
                    self.cache.insert(series, handle);
                }
            }
        }
        if self.sample_limit > 0 && stats.scraped - stats.dropped > self.sample_limit {
            return Err(ParseError {
                line: lines.line(),
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
