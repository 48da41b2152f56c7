//! `sonde import openmetrics FILE`: writes the samples of an OpenMetrics file straight
//! into blocks (not through the WAL and head), one block per aligned 6 h window, the
//! way `promtool tsdb create-blocks-from openmetrics` does: a first pass finds the time
//! range, then one pass per window keeps that window's samples compressed per series
//! (head chunks, ~1–2 bytes per sample) and writes them as a block.

use super::openmetrics::{Entry, MetricType, Parser};
use sonde_tsdb::block::BlockWriter;
use sonde_tsdb::chunk::HeadChunk;
use sonde_tsdb::db::{Db, Options};
use sonde_tsdb::head::Metadata;
use sonde_tsdb::labels::{Interner, Labels};
use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

/// Imported blocks cover aligned windows of this size: the store's 6 h compaction level,
/// so later compaction treats them like its own.
const WINDOW: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Default)]
pub struct ImportStats {
    pub samples: u64,
    /// Exact repeats of a sample (same series, time and value), dropped as promtool does.
    pub duplicates: u64,
    pub exemplars_skipped: u64,
    pub series: u64,
    pub blocks: u64,
    pub took: Duration,
}

fn open(file: &Path) -> Result<Parser<BufReader<std::fs::File>>, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    Ok(Parser::new(BufReader::with_capacity(1 << 20, f)))
}

fn err(file: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", file.display())
}

pub fn import_openmetrics(file: &Path, data_dir: &Path) -> Result<ImportStats, String> {
    let started = Instant::now();
    // The store is opened for its lock (no sonde may run on the directory meanwhile)
    // and to record metadata; blocks are written next to its own.
    let db = Db::open(data_dir, Options::default()).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let (min_t, max_t, samples, duplicates, exemplars_skipped) = first_pass(file, &db)?;
    let window = WINDOW.as_millis() as i64;
    let mut stats = ImportStats {
        samples,
        duplicates,
        exemplars_skipped,
        ..Default::default()
    };
    if samples == 0 {
        return Ok(stats);
    }
    let mut start = min_t.div_euclid(window) * window;
    while start <= max_t {
        let series = collect_window(file, start, start + window)?;
        if !series.is_empty() {
            stats.series = stats.series.max(series.len() as u64);
            write_window(&db, start, start + window, series)?;
            stats.blocks += 1;
        }
        start += window;
    }
    db.close().map_err(|e| e.to_string())?;
    stats.took = started.elapsed();
    Ok(stats)
}

/// Validates the whole file (the parser enforces promtool's rules), finds its time
/// range and records family metadata.
fn first_pass(file: &Path, db: &Db) -> Result<(i64, i64, u64, u64, u64), String> {
    let mut p = open(file)?;
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut meta: HashMap<String, (MetricType, String, String)> = HashMap::new();
    while let Some(entry) = p.next().map_err(|e| err(file, e))? {
        match entry {
            Entry::Sample(s) => {
                min_t = min_t.min(s.timestamp_ms);
                max_t = max_t.max(s.timestamp_ms);
            }
            Entry::Type { family, kind } => {
                meta.entry(family.to_string())
                    .or_insert((kind, String::new(), String::new()))
                    .0 = kind
            }
            Entry::Help { family, text } => {
                meta.entry(family.to_string())
                    .or_insert((MetricType::Unknown, String::new(), String::new()))
                    .1 = text.to_string()
            }
            Entry::Unit { family, unit } => {
                meta.entry(family.to_string())
                    .or_insert((MetricType::Unknown, String::new(), String::new()))
                    .2 = unit.to_string()
            }
        }
    }
    for (family, (kind, help, unit)) in meta {
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge | MetricType::Info | MetricType::StateSet => "gauge",
            MetricType::Histogram | MetricType::GaugeHistogram => "histogram",
            MetricType::Summary => "summary",
            _ => "untyped",
        };
        let m = Metadata {
            family: family.clone(),
            kind: kind.into(),
            help,
            unit,
        };
        for name in sample_names(&family, kind) {
            db.set_metadata(&name, m.clone()).map_err(|e| e.to_string())?;
        }
    }
    Ok((min_t, max_t, p.samples(), p.duplicates_dropped(), p.exemplars_skipped()))
}

fn sample_names(family: &str, kind: &str) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        "counter" => &["_total", ""],
        "histogram" => &["_bucket", "_sum", "_count", ""],
        "summary" => &["_sum", "_count", ""],
        _ => &[""],
    };
    suffixes.iter().map(|s| format!("{family}{s}")).collect()
}

/// One window's samples, per series, compressed.
fn collect_window(file: &Path, start: i64, end: i64) -> Result<Vec<(Labels, Vec<HeadChunk>)>, String> {
    let mut p = open(file)?;
    let mut interner = Interner::default();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut series: Vec<(Labels, Vec<HeadChunk>)> = Vec::new();
    let mut current: Option<usize> = None;
    while let Some(entry) = p.next().map_err(|e| err(file, e))? {
        let Entry::Sample(s) = entry else { continue };
        if s.new_series {
            current = None;
        }
        if s.timestamp_ms < start || s.timestamp_ms >= end {
            continue;
        }
        let i = match current {
            Some(i) => i,
            None => {
                let mut pairs = vec![(interner.intern("__name__"), interner.intern(s.name))];
                pairs.extend(s.labels().map(|(n, v)| (interner.intern(n), interner.intern(v))));
                let labels = Labels::from_pairs(pairs);
                let i = *index.entry(labels.clone()).or_insert_with(|| {
                    series.push((labels, vec![HeadChunk::new()]));
                    series.len() - 1
                });
                current = Some(i);
                i
            }
        };
        let chunks = &mut series[i].1;
        if chunks.last().is_some_and(HeadChunk::is_full) {
            chunks.push(HeadChunk::new());
        }
        chunks
            .last_mut()
            .expect("one chunk at least")
            .append(s.timestamp_ms, s.value);
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(series)
}

fn write_window(db: &Db, start: i64, end: i64, series: Vec<(Labels, Vec<HeadChunk>)>) -> Result<(), String> {
    let blocks_dir = db.dir().join("blocks");
    let mut w = BlockWriter::for_label_sets(&blocks_dir, start, end, 3, series.iter().map(|(l, _)| l))
        .map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for (labels, chunks) in series {
        samples.clear();
        samples.extend(chunks.iter().flat_map(|c| c.iter()));
        w.add(&labels, &samples).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(())
}
