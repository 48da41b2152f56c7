//! statsd: a StatsD receiver that is a drop-in replacement for prometheus
//! statsd_exporter (v0.22+): the same line protocol and tag styles, the same mapping
//! YAML, the same exported names, types and labels, and the same
//! `statsd_exporter_*` self metrics. See docs/statsd.md.
//!
//! The host owns the socket (`grants.listen_udp` / `grants.listen_tcp`) and hands the
//! datagrams over in batches ([`Receiver::ingest`]); `collect` exposes the aggregated
//! state at the instance's interval.

pub mod aggregator;
pub mod cache;
pub mod escape;
pub mod line;
pub mod mapper;
pub mod mapping;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod summary;

use aggregator::{Aggregator, Limits};
use line::TagStyles;
use sonde_plugin_sdk::{Collection, Datagrams, Error, Info, Plugin, Receiver, export_receiver, log, parse_config};
use std::time::Instant;

/// The `[<name>.config]` table.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The statsd_exporter mapping YAML (`defaults:` / `mappings:`), inline.
    #[serde(default)]
    pub mapping: Option<String>,
    /// A file holding the mapping YAML, as statsd_exporter's `--statsd.mapping-config`;
    /// its directory needs a `grants.read` entry. Read at configure (a reload of the
    /// plugin configuration reads it again).
    #[serde(default)]
    pub mapping_file: Option<String>,
    /// Most series held at once, all metrics together (a histogram or summary series
    /// with its buckets counts once). Events that would create more are dropped and
    /// counted in `sonde_statsd_series_dropped_total`. The ingest cache of line shapes
    /// holds at most as many entries.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Longest line accepted, in bytes; longer lines are dropped and counted in
    /// `sonde_statsd_lines_too_long_total` (statsd_exporter's TCP reader drops lines
    /// over 4096 bytes too).
    #[serde(default = "default_max_line_length")]
    pub max_line_length: usize,
    /// Parse DogStatsD tags (`|#k:v`), as statsd_exporter's
    /// `--statsd.parse-dogstatsd-tags`.
    #[serde(default = "yes")]
    pub parse_dogstatsd_tags: bool,
    /// Parse InfluxDB tags (`name,k=v`).
    #[serde(default = "yes")]
    pub parse_influxdb_tags: bool,
    /// Parse Librato tags (`name#k=v`).
    #[serde(default = "yes")]
    pub parse_librato_tags: bool,
    /// Parse SignalFx tags (`name[k=v]`).
    #[serde(default = "yes")]
    pub parse_signalfx_tags: bool,
}

fn default_max_series() -> usize {
    100_000
}

fn default_max_line_length() -> usize {
    4096
}

fn yes() -> bool {
    true
}

impl Config {
    /// Reads the mapping named by the config (none: every metric unmapped).
    pub fn load_mapping(&self) -> Result<mapping::MappingConfig, Error> {
        let (source, text) = match (&self.mapping, &self.mapping_file) {
            (Some(_), Some(_)) => {
                return Err(Error::config("plugin config: set mapping or mapping_file, not both"));
            }
            (Some(text), None) => ("mapping".to_string(), text.clone()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Error::denied(format!(
                        "cannot read mapping_file {file}: {e} (grant its directory with grants.read)"
                    ))
                })?;
                (file.clone(), text)
            }
            (None, None) => return Ok(mapping::MappingConfig::default()),
        };
        mapping::parse(&source, &text).map_err(|problems| {
            Error::config(format!(
                "statsd mapping has {} problem(s):\n{}",
                problems.len(),
                problems.join("\n")
            ))
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.max_series == 0 {
            return Err(Error::config("plugin config: max_series must be at least 1"));
        }
        if self.max_line_length == 0 {
            return Err(Error::config("plugin config: max_line_length must be at least 1"));
        }
        Ok(())
    }

    pub fn aggregator(&self) -> Result<Aggregator, Error> {
        self.validate()?;
        let styles = TagStyles {
            dogstatsd: self.parse_dogstatsd_tags,
            influxdb: self.parse_influxdb_tags,
            librato: self.parse_librato_tags,
            signalfx: self.parse_signalfx_tags,
        };
        let limits = Limits {
            max_series: self.max_series,
            max_line_length: self.max_line_length,
        };
        Ok(Aggregator::new(self.load_mapping()?, styles, limits))
    }
}

pub struct Statsd {
    agg: Aggregator,
    start: Instant,
}

impl Statsd {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Plugin for Statsd {
    fn info() -> Info {
        Info::new(
            "statsd",
            env!("CARGO_PKG_VERSION"),
            "statsd_exporter-compatible StatsD receiver (mapping YAML, DogStatsD/InfluxDB/Librato/SignalFx tags)",
        )
    }

    fn configure(config: &str) -> Result<Self, Error> {
        let c: Config = parse_config(config)?;
        Ok(Statsd {
            agg: c.aggregator()?,
            start: Instant::now(),
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let now = self.now_ms();
        self.agg.collect(out, now);
        Ok(())
    }
}

impl Receiver for Statsd {
    fn ingest(&mut self, data: Datagrams<'_>) -> Result<(), Error> {
        let now = self.now_ms();
        for d in data.iter() {
            self.agg.ingest(d, now);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Vec<u8> {
        snapshot::write(&mut self.agg)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let now = self.now_ms();
        let n =
            snapshot::read(&mut self.agg, state, now).map_err(|e| Error::config(format!("statsd snapshot: {e}")))?;
        log::info(&format!("statsd: restored {n} series from the previous instance"));
        Ok(())
    }
}

export_receiver!(Statsd);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Aggregator, String> {
        parse_config::<Config>(json)
            .and_then(|c| c.aggregator())
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn mapping_file_is_read_and_its_problems_name_it() {
        let dir = std::env::temp_dir().join(format!("sonde-statsd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yml");
        std::fs::write(&good, "mappings:\n- match: a.*\n  name: a_$1\n").unwrap();
        let bad = dir.join("bad.yml");
        std::fs::write(
            &bad,
            "mappings:\n- match: a.*\n  name: a\n  buckets: [2, 1]\n  oops: 1\n",
        )
        .unwrap();
        let mut agg = config(&format!(r#"{{"mapping_file": {:?}}}"#, good.display().to_string())).unwrap();
        agg.ingest(b"a.b:1|c", 0);
        assert_eq!(
            agg.store().iter().next().map(|(f, _)| f.name.to_string()),
            Some("a_b".into())
        );
        let err = config(&format!(r#"{{"mapping_file": {:?}}}"#, bad.display().to_string()))
            .err()
            .unwrap();
        let file = bad.display().to_string();
        assert!(err.contains("2 problem(s)"), "{err}");
        assert!(
            err.contains(&format!("{file}:4:12: histogram buckets must be in increasing order")),
            "{err}"
        );
        assert!(
            err.contains(&format!("{file}:5:3: field oops not found in a mapping")),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn limits_must_be_positive() {
        assert!(config(r#"{"max_series": 0}"#).err().unwrap().contains("max_series"));
        assert!(
            config(r#"{"max_line_length": 0}"#)
                .err()
                .unwrap()
                .contains("max_line_length")
        );
        assert!(config(r#"{"max_series": "x"}"#).err().unwrap().contains("invalid type"));
    }
}
