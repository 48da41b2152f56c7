//! django: scrapes a Django application's django-prometheus endpoint. It is the
//! prometheus scrape plugin (plugins/prometheus/scrape, the library of the prometheus plugin) with Django's defaults: named
//! `django`, path `/metrics`, and `http://127.0.0.1:8000/metrics` (Django's
//! development server) when neither `url` nor `targets` is given. Setup, config and
//! the dashboard queries: docs/django.md.

use sonde_plugin_sdk::Info;
use sonde_scrape::Preset;
use sonde_scrape::config::Defaults;

pub struct Django;

impl Preset for Django {
    fn info() -> Info {
        Info::new(
            "django",
            env!("CARGO_PKG_VERSION"),
            "Django request, database and cache metrics from django-prometheus",
        )
    }
    fn defaults() -> Defaults {
        Defaults {
            url: Some("http://127.0.0.1:8000/metrics"),
            path: "/metrics",
        }
    }
}

sonde_plugin_sdk::export_plugin!(sonde_scrape::Scrape<Django>);
