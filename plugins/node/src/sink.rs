//! Where collectors put samples: the SDK's `Collection` when running as a plugin, a
//! [`Recorder`] in unit tests (the SDK's `Collection` cannot be built outside a guest).

use sonde_plugin_sdk::{Collection, Family, Kind};
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Every node_exporter family has one sample name, the family name, so a sample is
/// fully described by name, kind, help, labels and value.
pub trait Sink {
    /// `help` is only rendered the first time a family is seen, so callers pass
    /// `format_args!` for built names without paying for the formatting each time.
    fn emit(&mut self, name: &str, kind: Kind, help: &dyn Display, labels: &[(&str, &str)], value: f64);

    fn gauge(&mut self, name: &str, help: &dyn Display, labels: &[(&str, &str)], value: f64) {
        self.emit(name, Kind::Gauge, help, labels, value);
    }

    fn counter(&mut self, name: &str, help: &dyn Display, labels: &[(&str, &str)], value: f64) {
        self.emit(name, Kind::Counter, help, labels, value);
    }
}

/// State of [`Batch`] that outlives a collection.
#[derive(Default)]
pub struct Memory {
    /// Families registered with the SDK. The SDK never forgets a family, so a handle
    /// stays valid for the instance's life; caching it saves building the help text.
    families: HashMap<Box<str>, Family>,
    /// Hashes of the series emitted in the current collection.
    seen: HashSet<u64>,
}

/// The plugin's sink: forwards to the SDK and drops duplicate series.
///
/// A series emitted twice makes the SDK fail the whole batch, and malformed /proc
/// content (a repeated meminfo key, two `cpu3` lines) could do that. The first sample
/// wins, as in node_exporter's map-based parsers, and the collector that repeated
/// itself is reported as failed.
pub struct Batch<'a, 'c> {
    out: &'a mut Collection<'c>,
    memory: &'a mut Memory,
    duplicate: Option<String>,
}

impl<'a, 'c> Batch<'a, 'c> {
    pub fn new(out: &'a mut Collection<'c>, memory: &'a mut Memory) -> Self {
        memory.seen.clear();
        Batch {
            out,
            memory,
            duplicate: None,
        }
    }

    /// The first duplicate series since the last call, if any.
    pub fn take_duplicate(&mut self) -> Option<String> {
        self.duplicate.take()
    }
}

impl Sink for Batch<'_, '_> {
    fn emit(&mut self, name: &str, kind: Kind, help: &dyn Display, labels: &[(&str, &str)], value: f64) {
        if !self.memory.seen.insert(series_hash(name, labels)) {
            if self.duplicate.is_none() {
                self.duplicate = Some(format!("series {name}{labels:?} emitted twice"));
            }
            return;
        }
        let family = match self.memory.families.get(name) {
            Some(f) => *f,
            None => {
                let f = self.out.family(name, kind, &help.to_string());
                self.memory.families.insert(name.into(), f);
                f
            }
        };
        self.out.sample(family, name, labels, value);
    }
}

fn series_hash(name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

#[cfg(test)]
pub use recorder::Recorder;

#[cfg(test)]
mod recorder {
    use super::*;

    #[derive(Debug, Clone)]
    pub struct Sample {
        pub name: String,
        pub kind: Kind,
        pub help: String,
        pub labels: Vec<(String, String)>,
        pub value: f64,
    }

    /// Keeps every sample, for assertions on names, kinds, labels and values.
    #[derive(Default)]
    pub struct Recorder {
        pub samples: Vec<Sample>,
    }

    impl Sink for Recorder {
        fn emit(&mut self, name: &str, kind: Kind, help: &dyn Display, labels: &[(&str, &str)], value: f64) {
            self.samples.push(Sample {
                name: name.into(),
                kind,
                help: help.to_string(),
                labels: labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                value,
            });
        }
    }

    impl Recorder {
        /// The value of the sample `name` whose labels include all of `labels`.
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            self.find(name, labels).map(|s| s.value)
        }

        pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
            self.samples.iter().find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(n, v)| s.labels.iter().any(|(n2, v2)| n2 == n && v2 == v))
            })
        }

        /// Distinct family names, in first-seen order.
        pub fn names(&self) -> Vec<&str> {
            let mut out: Vec<&str> = Vec::new();
            for s in &self.samples {
                if !out.contains(&s.name.as_str()) {
                    out.push(&s.name);
                }
            }
            out
        }

        pub fn kind(&self, name: &str) -> Option<Kind> {
            self.samples.iter().find(|s| s.name == name).map(|s| s.kind)
        }

        pub fn count(&self, name: &str) -> usize {
            self.samples.iter().filter(|s| s.name == name).count()
        }
    }
}
