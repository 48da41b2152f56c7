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
use exposition::{Format, ParseError};
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
        let url = s.endpoint.url();
        let mut reader = Reader {
            scraper: &mut self.scraper,
            out,
            page: None,
            url: &url,
            total: None,
            held: Vec::new(),
        };
        let page_error = |e: ParseError| Error::failed(format!("{url}: {e}"));
        http::get(
            &s.endpoint,
            authorization.as_deref(),
            s.timeout - margin,
            s.body_size_limit,
            &mut reader,
        )?;
        reader.end().map_err(page_error)?;
        Ok(())
    }
}

/// Decoded bytes of the first page held to size the SDK's registry from (when the
/// page's length is known; else the whole page is held).
const SIZING_SAMPLE: usize = 256 * 1024;

/// Parses a page as its body arrives (`http::get` feeds it), so the plugin never holds
/// a whole page: ~60 bytes a series less at 100k series, linear memory never shrinking.
/// The very first page is held until the registry can be sized for it: its first
/// [`SIZING_SAMPLE`] bytes when its length is known, else all of it.
struct Reader<'r, 'c> {
    scraper: &'r mut Scraper,
    out: &'r mut Collection<'c>,
    page: Option<scrape::Page>,
    url: &'r str,
    /// The decoded length, when the response said.
    total: Option<usize>,
    held: Vec<u8>,
}

impl Reader<'_, '_> {
    /// Sizes the registry from the bytes held and parses them.
    fn release(&mut self) -> Result<(), ParseError> {
        let held = std::mem::take(&mut self.held);
        let total = self.total.unwrap_or(0).max(held.len());
        self.scraper.size_for(&held, total, self.out);
        self.feed(&held)
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        let page = self.page.as_mut().expect("started");
        self.scraper.feed(page, bytes, self.out)
    }

    /// The page is complete.
    fn end(mut self) -> Result<scrape::Stats, ParseError> {
        if self.page.is_none() {
            self.page = Some(self.scraper.begin(Format::Text));
        }
        if self.scraper.needs_size() {
            self.release()?;
        }
        let page = self.page.take().expect("started");
        self.scraper.finish(page, self.out)
    }
}

impl http::BodySink for Reader<'_, '_> {
    fn start(&mut self, content_type: &str, decoded_len: Option<u64>) -> Result<(), Error> {
        self.page = Some(self.scraper.begin(Format::from_content_type(content_type)));
        self.total = decoded_len.map(|n| n as usize);
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let fed = if self.scraper.needs_size() {
            self.held.extend_from_slice(bytes);
            match self.total {
                Some(total) if self.held.len() >= SIZING_SAMPLE.min(total) => self.release(),
                _ => Ok(()),
            }
        } else {
            self.feed(bytes)
        };
        fed.map_err(|e| Error::failed(format!("{}: {e}", self.url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::BodySink;

    /// A page of `n` series read through a [`Reader`] in `piece`-byte pieces, the
    /// decoded length told or not; returns the values stored.
    fn read(
        scraper: &mut Scraper,
        reg: &mut sonde_plugin_sdk::NativeRegistry,
        page: &str,
        piece: usize,
        tell_length: bool,
    ) -> Result<Vec<f64>, Error> {
        reg.collect(|out| {
            let url = "http://t/metrics".to_string();
            let mut r = Reader {
                scraper: &mut *scraper,
                out,
                page: None,
                url: &url,
                total: None,
                held: Vec::new(),
            };
            r.start("text/plain; version=0.0.4", tell_length.then_some(page.len() as u64))?;
            for p in page.as_bytes().chunks(piece) {
                r.data(p)?;
            }
            r.end().map_err(|e| Error::failed(format!("{url}: {e}")))?;
            Ok(())
        })
        .map(|b| b.values)
    }

    fn page(n: usize, value: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "bench_gauge{{host=\"h{:03}\",series=\"{i:06}\"}} {}\n",
                    i / 100,
                    value + i
                )
            })
            .collect()
    }

    #[test]
    fn pages_are_parsed_as_they_arrive_after_the_first_sizes_the_registry() {
        for tell_length in [true, false] {
            let mut scraper = Scraper::new(Vec::new(), true);
            let mut reg = Collection::native_registry();
            let first = page(20_000, 0);
            assert!(first.len() > 2 * SIZING_SAMPLE);
            assert!(read(&mut scraper, &mut reg, "", 1, tell_length).unwrap().is_empty());
            assert!(scraper.needs_size(), "an empty page sizes nothing");
            let got = read(&mut scraper, &mut reg, &first, 10_000, tell_length).unwrap();
            assert_eq!(got, (0..20_000).map(|i| i as f64).collect::<Vec<_>>());
            assert!(!scraper.needs_size());
            let got = read(&mut scraper, &mut reg, &page(20_000, 7), 4096, tell_length).unwrap();
            assert_eq!(got.len(), 20_000);
            assert_eq!(got[19_999], (7 + 19_999) as f64);
        }
    }

    #[test]
    fn a_malformed_page_read_in_pieces_names_its_line() {
        let mut scraper = Scraper::new(Vec::new(), true);
        let mut reg = Collection::native_registry();
        let mut body = page(30_000, 0);
        body.push_str("broken{a=\"1\" 2\n");
        let Err(Error::Failed(e)) = read(&mut scraper, &mut reg, &body, 5000, true) else {
            panic!("a malformed page is stored")
        };
        assert_eq!(e, "http://t/metrics: line 30001: expected '}' after the labels");
        assert_eq!(read(&mut scraper, &mut reg, &page(10, 0), 7, true).unwrap().len(), 10);
    }
}
