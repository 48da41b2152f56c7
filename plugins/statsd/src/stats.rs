//! The plugin's own metrics: statsd_exporter's `statsd_exporter_*` names and labels,
//! plus `sonde_statsd_*` for what statsd_exporter does not have (the series limit).

use crate::line::{LineCounters, SampleError};
use crate::mapping::MetricType;
use crate::store::Kind;
use sonde_plugin_sdk::Collection;
use std::collections::HashMap;

/// Distinct `metric_name` values kept for `statsd_exporter_events_conflict_total`;
/// later names are counted under `metric_name=""` so a flood of conflicting names
/// cannot grow the plugin's own series without bound.
pub const MAX_CONFLICT_NAMES: usize = 1000;

/// `statsd_exporter_events_error_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    EmptyMetricName,
    IllegalNegativeCounter,
}

#[derive(Default)]
pub struct Stats {
    pub lines: u64,
    pub line: LineCounters,
    /// By [`MetricType`].
    pub events: [u64; 3],
    pub unmapped: u64,
    /// map, drop.
    pub actions: [u64; 2],
    pub event_errors: [u64; 2],
    pub conflicts: Vec<(MetricType, Box<str>, u64)>,
    conflict_index: HashMap<(u8, Box<str>), u32>,
    pub series_dropped: u64,
    pub lines_too_long: u64,
    pub cache_resets: u64,
    /// Kinds that have had a family, so `statsd_exporter_metrics_total` keeps showing
    /// 0 for them after their last family expired.
    pub kinds_seen: [bool; 4],
}

impl Stats {
    /// The index of the conflict counter for `(t, name)`.
    pub fn conflict(&mut self, t: MetricType, name: &str) -> u32 {
        let name = if self.conflicts.len() >= MAX_CONFLICT_NAMES {
            ""
        } else {
            name
        };
        let key = (t as u8, Box::<str>::from(name));
        if let Some(i) = self.conflict_index.get(&key) {
            return *i;
        }
        let i = self.conflicts.len() as u32;
        self.conflicts.push((t, key.1.clone(), 0));
        self.conflict_index.insert(key, i);
        i
    }

    pub fn emit(&mut self, out: &mut Collection, series: usize, cache: usize, families: [u64; 4], mappings: usize) {
        let c = &self.line;
        let n = |v: u64| v as f64;
        out.counter(
            "statsd_exporter_lines_total",
            "The total number of StatsD lines received.",
            &[],
            n(self.lines),
        );
        out.counter(
            "statsd_exporter_samples_total",
            "The total number of StatsD samples received.",
            &[],
            n(c.samples),
        );
        out.counter(
            "statsd_exporter_tags_total",
            "The total number of DogStatsD tags processed.",
            &[],
            n(c.tags),
        );
        out.counter(
            "statsd_exporter_tag_errors_total",
            "The number of errors parsing DogStatsD tags.",
            &[],
            n(c.tag_errors),
        );
        // Labelled counters show only the label values seen, as client_golang's vectors.
        let mut by_label = |name: &str, help: &str, label: &str, values: &[(&str, u64)]| {
            for (v, count) in values.iter().filter(|(_, count)| *count > 0) {
                out.counter(name, help, &[(label, v)], n(*count));
            }
        };
        let reasons: Vec<(&str, u64)> = SampleError::ALL
            .iter()
            .map(|e| (e.reason(), c.sample_errors[*e as usize]))
            .collect();
        by_label(
            "statsd_exporter_sample_errors_total",
            "The total number of errors parsing StatsD samples.",
            "reason",
            &reasons,
        );
        let types = [MetricType::Counter, MetricType::Gauge, MetricType::Observer];
        let events: Vec<(&str, u64)> = types.iter().map(|t| (t.label(), self.events[*t as usize])).collect();
        by_label(
            "statsd_exporter_events_total",
            "The total number of StatsD events seen.",
            "type",
            &events,
        );
        let actions = [("map", self.actions[0]), ("drop", self.actions[1])];
        by_label(
            "statsd_exporter_events_actions_total",
            "The total number of StatsD events by action.",
            "action",
            &actions,
        );
        let errors = [
            ("empty_metric_name", self.event_errors[0]),
            ("illegal_negative_counter", self.event_errors[1]),
        ];
        by_label(
            "statsd_exporter_events_error_total",
            "The total number of StatsD events discarded due to errors.",
            "reason",
            &errors,
        );
        out.counter(
            "statsd_exporter_events_unmapped_total",
            "The total number of StatsD events no mapping was found for.",
            &[],
            n(self.unmapped),
        );
        for (t, name, count) in self.conflicts.iter().filter(|c| c.2 > 0) {
            out.counter(
                "statsd_exporter_events_conflict_total",
                "The total number of StatsD events with conflicting names.",
                &[("type", t.label()), ("metric_name", name)],
                n(*count),
            );
        }
        for k in [Kind::Counter, Kind::Gauge, Kind::Histogram, Kind::Summary] {
            let count = families[k as usize];
            self.kinds_seen[k as usize] |= count > 0;
            if self.kinds_seen[k as usize] {
                out.gauge(
                    "statsd_exporter_metrics_total",
                    "The total number of metrics.",
                    &[("type", k.label())],
                    n(count),
                );
            }
        }
        out.gauge(
            "statsd_exporter_loaded_mappings",
            "The current number of configured metric mappings.",
            &[],
            mappings as f64,
        );
        out.gauge(
            "sonde_statsd_series",
            "Series the statsd plugin holds (limit: max_series).",
            &[],
            series as f64,
        );
        out.counter(
            "sonde_statsd_series_dropped_total",
            "StatsD events dropped because max_series series exist already.",
            &[],
            n(self.series_dropped),
        );
        out.counter(
            "sonde_statsd_lines_too_long_total",
            "StatsD lines dropped because they are longer than max_line_length.",
            &[],
            n(self.lines_too_long),
        );
        out.gauge(
            "sonde_statsd_cache_entries",
            "Line shapes in the statsd ingest cache.",
            &[],
            cache as f64,
        );
        out.counter(
            "sonde_statsd_cache_resets_total",
            "Times the statsd ingest cache was full and emptied.",
            &[],
            n(self.cache_resets),
        );
    }
}
