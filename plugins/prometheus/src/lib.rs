//! prometheus: scrapes any Prometheus text (0.0.4) or OpenMetrics (1.0) endpoint over
//! `wasi:http` as Prometheus 2.42 does, and stores every series it finds. The code
//! is the `sonde-scrape` library (plugins/prometheus/scrape), shared with presets
//! such as plugins/django; this crate only exports it. User docs: docs/scrape.md.

sonde_plugin_sdk::export_plugin!(sonde_scrape::Scrape<sonde_scrape::Prometheus>);
