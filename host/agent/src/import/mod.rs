//! Backfill: readers for the files `sonde import` loads into storage.

mod backfill;
pub mod openmetrics;

pub use backfill::import_openmetrics;
