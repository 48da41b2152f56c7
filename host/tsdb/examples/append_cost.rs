//! Storage-only cost of appending scrapes: N series (half counters with random
//! increments, half 2-decimal random walks, as benches/storage_vs_peers.py serves),
//! one batch of N samples a second of simulated time, through `Db::append_at` (WAL,
//! head chunks), as the daemon appends a scrape. Prints ns per sample (thread CPU
//! time). Run: `cargo run --release -p sonde-tsdb --example append_cost -- 10000 600`.

use sonde_tsdb::db::{Db, Options};
use std::time::Duration;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (n, rounds) = (
        args.first().copied().unwrap_or(10_000),
        args.get(1).copied().unwrap_or(600),
    );
    let dir = std::env::temp_dir().join(format!("append-cost-{}", std::process::id()));
    let db = Db::open(&dir, Options::default()).expect("open");
    let refs: Vec<_> = (0..n)
        .map(|i| {
            let name = if i < n / 2 {
                "bench_counter_total"
            } else {
                "bench_gauge"
            };
            let host = format!("host-{:03}", i / 100);
            let series = i.to_string();
            db.get_or_create(&[("__name__", name), ("host", &host), ("series", &series)])
                .expect("series")
        })
        .collect();
    let mut x: u64 = 1;
    let mut rand = |m: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut values: Vec<i64> = (0..n).map(|_| rand(1_000_000) as i64).collect();
    let t0 = 1_700_000_000_000i64;
    let mut batch = Vec::with_capacity(n);
    let mut spent = Duration::ZERO;
    for round in 0..rounds {
        let t = t0 + round as i64 * 1000 + rand(5) as i64;
        batch.clear();
        for (i, r) in refs.iter().enumerate() {
            let v = if i < n / 2 {
                values[i] += rand(101) as i64;
                values[i] as f64
            } else {
                values[i] += rand(201) as i64 - 100;
                values[i] as f64 / 100.0
            };
            batch.push((*r, t, v));
        }
        let c = thread_cpu();
        db.append_at(&batch, t).expect("append");
        spent += thread_cpu() - c;
        if round % 60 == 59 {
            db.flush().expect("flush");
        }
    }
    println!(
        "{n} series, {rounds} scrapes: {:.1} ns per sample appended (thread CPU, WAL + head)",
        spent.as_nanos() as f64 / (n * rounds) as f64
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
