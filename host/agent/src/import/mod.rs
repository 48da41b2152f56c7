//! Backfill: readers for the files `sonde import` loads into storage.

pub mod openmetrics;
