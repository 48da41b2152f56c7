//! The scrape plugin as a library: fetches a Prometheus text (0.0.4) or OpenMetrics
//! (1.0) endpoint over `wasi:http` as Prometheus 2.42 does (Accept, gzip, timeout
//! header, body size limit, timestamps, metric relabelling) and emits every series.
//!
//! [`Scrape<P>`] is the plugin for any [`Preset`], which gives its name and defaults:
//! plugins/prometheus exports `Scrape<Prometheus>`, plugins/django `Scrape<Django>`.
//! User documentation: docs/scrape.md.

pub mod cache;
pub mod config;
pub mod exposition;
pub mod http;
pub mod relabel;
pub mod scrape;

use config::{Defaults, Settings};
use exposition::Format;
use scrape::Scraper;
use sonde_plugin_sdk::{Collection, Error, Info, Plugin};
use std::marker::PhantomData;

/// What distinguishes a preset of the scrape plugin.
pub trait Preset: 'static {
    fn info() -> Info;
    fn defaults() -> Defaults;
}

/// The generic scrape plugin (`prometheus`).
pub struct Prometheus;

impl Preset for Prometheus {
    fn info() -> Info {
        Info::new(
            "prometheus",
            env!("CARGO_PKG_VERSION"),
            "scrapes a Prometheus / OpenMetrics endpoint",
        )
    }
    fn defaults() -> Defaults {
        Defaults {
            url: None,
            path: "/metrics",
        }
    }
}

/// One scrape target.
pub struct Scrape<P: Preset> {
    settings: Settings,
    scraper: Scraper,
    preset: PhantomData<P>,
}

impl<P: Preset> Plugin for Scrape<P> {
    fn info() -> Info {
        P::info()
    }

    fn configure(config: &str) -> Result<Self, Error> {
        let mut settings = Settings::from_json(config, &P::defaults())?;
        let rules = std::mem::take(&mut settings.rules);
        let mut scraper = Scraper::new(rules, settings.honor_timestamps);
        scraper.set_sample_limit(settings.sample_limit);
        Ok(Scrape {
            settings,
            scraper,
            preset: PhantomData,
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let s = &self.settings;
        // Leave a little of the deadline for parsing, so a slow target is reported
        // as a timeout by the plugin rather than cut off by the host.
        let margin = (s.timeout / 10).min(std::time::Duration::from_millis(250));
        let authorization = s.auth.as_ref().map(|a| a.header()).transpose()?;
        let response = http::get(
            &s.endpoint,
            authorization.as_deref(),
            s.timeout - margin,
            s.body_size_limit,
        )?;
        let format = Format::from_content_type(&response.content_type);
        self.scraper
            .emit(&response.body, format, out)
            .map_err(|e| Error::failed(format!("{}: {e}", s.endpoint.url())))?;
        Ok(())
    }
}
