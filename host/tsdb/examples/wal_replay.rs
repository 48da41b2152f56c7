//! WAL write and replay speed, and WAL bytes per sample.
//!
//! Writes `series` series (default 10 000) in targets of 1 000 series, each target scraped
//! `samples` times (default 1 000) at a 1 s interval with a few ms of jitter; every scrape is
//! one Samples record, as the scrape loop appends it. Half the series are counters with
//! integer increments, half 2-decimal gauges (random walks); 1 % of scrapes end a series
//! with Prometheus's staleness NaN. The owner's 1 s sync timer is simulated by one `sync()`
//! per simulated second. Then it times replay (`Wal::open`, page cache warm) a few times,
//! checkpoints all but the last segment and times replay from the checkpoint.
//!
//! Run: `cargo run --release -p sonde-tsdb --example wal_replay [series] [samples] [dir]`.
//! For comparison, Prometheus's WAL replay measured on the same machine: 1.16 M samples/s.

use std::path::Path;
use std::time::{Duration, Instant};

use sonde_tsdb::wal::{self, Options, Record, RecordRef, Wal};

const TARGET_SIZE: u64 = 1000;
const START_MS: i64 = 1_767_225_600_000;
const PROMETHEUS_REPLAY: f64 = 1.16e6;
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

use sonde_tsdb::testing::Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series: u64 = args.get(1).map_or(10_000, |s| s.parse().expect("series: a number"));
    let samples: u64 = args.get(2).map_or(1_000, |s| s.parse().expect("samples: a number"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = args.get(3).map_or(tmp.path().join("wal"), |d| Path::new(d).join("wal"));
    let _ = std::fs::remove_dir_all(&dir);

    let (written, write_time, fsyncs) = write(&dir, series, samples);
    let total = series * samples;
    let bytes = dir_size(&dir);
    println!(
        "wrote {series} series x {samples} samples = {total} samples in {:.2} s ({:.2} M samples/s, {fsyncs} fsyncs)",
        write_time.as_secs_f64(),
        total as f64 / write_time.as_secs_f64() / 1e6
    );
    println!(
        "WAL: {bytes} bytes on disk = {:.2} bytes/sample ({written} records)",
        bytes as f64 / total as f64
    );

    let best = time_replay(&dir, total, "replay");
    println!(
        "replay: best {:.1} M samples/s = {:.1}x Prometheus ({:.2} M/s), {:.0} MB/s",
        total as f64 / best / 1e6,
        total as f64 / best / PROMETHEUS_REPLAY,
        PROMETHEUS_REPLAY / 1e6,
        bytes as f64 / best / 1e6
    );

    let (mut w, _) = Wal::open(&dir, Options::default(), |_| {}).expect("open");
    let up_to = w.cut().expect("cut") - 1;
    w.close().expect("close");
    let t = Instant::now();
    let cp = wal::checkpoint(&dir, up_to, |_| true, i64::MIN).expect("checkpoint");
    println!(
        "checkpoint of segments ..={up_to}: {:.2} s, {} bytes, {} series, {} samples",
        t.elapsed().as_secs_f64(),
        cp.bytes,
        cp.series_kept,
        cp.samples_kept
    );
    let best = time_replay(&dir, total, "replay from checkpoint");
    println!(
        "replay from checkpoint: best {:.1} M samples/s",
        total as f64 / best / 1e6
    );
}

/// Logs the workload; returns (records, elapsed, fsyncs).
fn write(dir: &Path, series: u64, samples: u64) -> (u64, Duration, u64) {
    let start = Instant::now();
    let (mut w, _) = Wal::open(dir, Options::default(), |_| {}).expect("open");
    let mut rng = Rng(42);
    for r in 0..series {
        let kind = if r % 2 == 0 { "counter" } else { "gauge" };
        let name = format!("bench_{kind}_{}", r % 50);
        if r < 100 {
            let help = format!("A {kind} of the synthetic benchmark.");
            w.log(RecordRef::Metadata {
                metric: &name,
                kind,
                help: &help,
                unit: "",
            })
            .expect("log");
        }
        let labels = vec![
            ("__name__".to_owned(), name),
            (
                "instance".to_owned(),
                format!("10.0.{}.{}:9100", r / TARGET_SIZE / 256, r / TARGET_SIZE % 256),
            ),
            ("job".to_owned(), "node".to_owned()),
            ("series".to_owned(), r.to_string()),
        ];
        w.log(&Record::Series { ref_: r + 1, labels }).expect("log");
    }
    // Counters hold integer totals; gauges a 2-decimal value in hundredths.
    let mut values: Vec<i64> = (0..series).map(|r| if r % 2 == 0 { 0 } else { 10_000 }).collect();
    let mut batch = Vec::with_capacity(TARGET_SIZE as usize);
    let targets = series.div_ceil(TARGET_SIZE);
    for i in 0..samples {
        for target in 0..targets {
            let t = START_MS + i as i64 * 1000 + target as i64 * 97 + rng.below(4) as i64;
            batch.clear();
            for r in target * TARGET_SIZE..((target + 1) * TARGET_SIZE).min(series) {
                let v = &mut values[r as usize];
                let value = if r % 2 == 0 {
                    *v += rng.below(101) as i64;
                    *v as f64
                } else {
                    *v += rng.below(201) as i64 - 100;
                    *v as f64 / 100.0
                };
                let stale = rng.below(100_000) == 0;
                batch.push((r + 1, t, if stale { f64::from_bits(STALE_NAN) } else { value }));
            }
            w.log(RecordRef::Samples(&batch)).expect("log");
        }
        w.sync().expect("sync");
    }
    let stats = w.stats();
    w.close().expect("close");
    (stats.seq, start.elapsed(), stats.fsyncs)
}

/// Replays the WAL five times; returns the best time in seconds.
fn time_replay(dir: &Path, want: u64, what: &str) -> f64 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut n = 0u64;
        let mut check = 0u64;
        let t = Instant::now();
        let (w, stats) = Wal::open(dir, Options::default(), |rec| {
            if let RecordRef::Samples(s) = rec {
                n += s.len() as u64;
                // Touch every sample so the work is not optimised away.
                check = s.iter().fold(check, |c, &(r, t, v)| c ^ r ^ t as u64 ^ v.to_bits());
            }
        })
        .expect("replay");
        let elapsed = t.elapsed().as_secs_f64();
        drop(w);
        assert_eq!(
            (n, stats.samples, stats.repair),
            (want, want, None),
            "{what}: checksum {check}"
        );
        times.push(elapsed);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{what}: {:.3} s best, {:.3} s median over {} runs",
        times[0],
        times[times.len() / 2],
        times.len()
    );
    times[0]
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("stat"))
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
