//! Test plugin: emits `series` synthetic gauges with `labels` labels each, so tests
//! and benchmarks can measure the boundary and the host pipeline at a chosen size.
//! Config: `{"series": 1000, "labels": 3, "churn": false}`, plus the keys sonde adds
//! for an entry with `targets`/`file_sd` (`__address__`, `__scheme__`,
//! `__metrics_path__`, `__scrape_timeout_ms__`): it then also reports
//! `synthetic_target_info{address, scheme, metrics_path} 1` and
//! `synthetic_scrape_timeout_seconds`, so tests can see what a target was given.
//!
//! It also reports `synthetic_guest_seconds`: how long the previous collection spent
//! inside `collect` (label handling and the SDK's registry), measured by the guest, so
//! the boundary benchmark can subtract guest work from the call time.

use serde::Deserialize;
use sonde_plugin_sdk::{Collection, Error, Info, Kind, Plugin, export_plugin, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Number of series per collection.
    series: u32,
    /// Labels per series (besides `i`).
    labels: u32,
    /// Replace every series with a new one on each collection (new label value).
    churn: bool,
    #[serde(rename = "__address__")]
    address: Option<String>,
    #[serde(rename = "__scheme__")]
    scheme: Option<String>,
    #[serde(rename = "__metrics_path__")]
    metrics_path: Option<String>,
    #[serde(rename = "__scrape_timeout_ms__")]
    scrape_timeout_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            series: 100,
            labels: 3,
            churn: false,
            address: None,
            scheme: None,
            metrics_path: None,
            scrape_timeout_ms: None,
        }
    }
}

struct Synthetic {
    cfg: Config,
    label_values: Vec<(String, String)>,
    index: Vec<String>,
    round: u64,
    last_guest_seconds: f64,
}

impl Plugin for Synthetic {
    fn info() -> Info {
        Info::new(
            "synthetic",
            env!("CARGO_PKG_VERSION"),
            "synthetic series for tests and benchmarks",
        )
    }

    fn configure(config: &str) -> Result<Self, Error> {
        let cfg: Config = parse_config(config)?;
        let label_values = (0..cfg.labels)
            .map(|l| (format!("label{l}"), format!("value-{l}-abcdefgh")))
            .collect();
        let index = (0..cfg.series).map(|i| i.to_string()).collect();
        Ok(Synthetic {
            cfg,
            label_values,
            index,
            round: 0,
            last_guest_seconds: 0.0,
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let start = std::time::Instant::now();
        self.round += 1;
        out.gauge(
            "synthetic_guest_seconds",
            "Guest time of the previous collect.",
            &[],
            self.last_guest_seconds,
        );
        if let Some(address) = &self.cfg.address {
            let mut labels = vec![("address", address.as_str())];
            if let Some(s) = &self.cfg.scheme {
                labels.push(("scheme", s));
            }
            if let Some(p) = &self.cfg.metrics_path {
                labels.push(("metrics_path", p));
            }
            out.gauge(
                "synthetic_target_info",
                "The target sonde gave this instance.",
                &labels,
                1.0,
            );
        }
        if let Some(ms) = self.cfg.scrape_timeout_ms {
            out.gauge(
                "synthetic_scrape_timeout_seconds",
                "The collection timeout sonde gave this instance.",
                &[],
                ms as f64 / 1000.0,
            );
        }
        let f = out.family("synthetic_value", Kind::Gauge, "A synthetic gauge.");
        let round = self.round.to_string();
        let mut labels: Vec<(&str, &str)> = self
            .label_values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        labels.push(("i", ""));
        if self.cfg.churn {
            labels.push(("round", &round));
        }
        let i_pos = self.label_values.len();
        for (i, idx) in self.index.iter().enumerate() {
            labels[i_pos] = ("i", idx);
            out.sample(f, "synthetic_value", &labels, (i as u64 + self.round) as f64);
        }
        self.last_guest_seconds = start.elapsed().as_secs_f64();
        Ok(())
    }
}

export_plugin!(Synthetic);
