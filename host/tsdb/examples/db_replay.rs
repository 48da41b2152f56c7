//! Store-level WAL replay speed: what a restart costs, head rebuilding included.
//!
//!     cargo run --release -p sonde-tsdb --example db_replay -- [series] [samples_per_series]
//!
//! Appends `series` (default 10,000) series × `samples` (default 300, 1 s apart:
//! within one head range, so everything is replayed from the WAL) in scrape-sized
//! batches, closes, reopens and reports samples per second of `Db::open`.

mod common;

use sonde_tsdb::db::{Db, Options};
use std::time::Instant;

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let series = *args.first().unwrap_or(&10_000);
    let per = *args.get(1).unwrap_or(&300) as i64;
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_795_320_000_000i64;
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut data = common::Synthetic::create(&db, series);
        let started = Instant::now();
        for step in 0..per {
            let batch = data.batch(t0 + step * 1000);
            db.append(&batch).unwrap();
            db.sync().unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let n = (series as i64 * per) as f64;
        println!(
            "append: {n} samples in {secs:.2} s = {:.2} M samples/s ({:.0} ns/sample)",
            n / secs / 1e6,
            secs * 1e9 / n
        );
        db.close().unwrap();
    }
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(db.open_stats.samples, series * per as u64);
    }
    let n = (series * per as u64) as f64;
    println!(
        "replay: {n} samples ({:.1} B/sample of WAL) in {best:.3} s = {:.2} M samples/s (best of 3, head rebuilt)",
        wal_bytes as f64 / n,
        n / best / 1e6
    );
}
