//! Storage-only ingest cost with the block cuts and compactions that a long run does:
//! what one scraped sample costs the store, amortised.
//!
//!     cargo run --release -p sonde-tsdb --example ingest_cost -- [series] [minutes] [evict_mib]
//!
//! Appends the synthetic set (`series`, default 10,000; half counters, half 2-decimal
//! random walks) at 1 s for `minutes` (default 130, so the 1 h compaction runs twice) of
//! simulated time, as the daemon would: one batch per second, a WAL flush every second,
//! an fsync every 10 s and `Db::maintain` every 10 s. Reports thread CPU time for the
//! appends and for the maintenance (cuts, checkpoints, compactions) separately.
//!
//! `evict_mib` (default 0): before each batch, write that many MiB of other memory (not
//! timed), as the daemon's HTTP, plugin and query work does between scrapes, so the store's
//! series and chunks are no longer in the CPU caches when the batch comes (32 evicts this
//! machine's L3). Without it, 10k series stay cached and appends look cheaper than in the
//! daemon.

mod common;

use sonde_tsdb::db::{Db, Options};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let series = *args.first().unwrap_or(&10_000);
    let minutes = *args.get(1).unwrap_or(&130) as i64;
    let mut other = vec![0u8; *args.get(2).unwrap_or(&0) as usize * 1024 * 1024];
    let dir = tempfile::tempdir().unwrap();
    // An hour boundary, so the 1 h compaction windows are whole.
    let t0 = 1_795_320_000_000i64 / 3_600_000 * 3_600_000;
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut data = common::Synthetic::create(&db, series);
    let (mut append, mut maintain, mut worst) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut cutting, mut compacting) = (Duration::ZERO, Duration::ZERO);
    let steps = minutes * 60;
    for step in 0..steps {
        let t = t0 + step * 1000;
        let batch = data.batch(t);
        for b in other.iter_mut().step_by(64) {
            *b = b.wrapping_add(step as u8);
        }
        std::hint::black_box(&mut other);
        let c = thread_cpu();
        db.append_at(&batch, t).unwrap();
        db.flush().unwrap();
        if step % 10 == 9 {
            db.sync().unwrap();
        }
        append += thread_cpu() - c;
        if step % 10 == 9 {
            let before = (
                db.stats.blocks_written.load(Relaxed),
                db.stats.compactions.load(Relaxed),
            );
            let c = thread_cpu();
            db.maintain(t).unwrap();
            let took = thread_cpu() - c;
            maintain += took;
            if db.stats.compactions.load(Relaxed) != before.1 {
                compacting += took;
            } else if db.stats.blocks_written.load(Relaxed) != before.0 {
                cutting += took;
            }
            worst = worst.max(took);
        }
    }
    let n = (series as i64 * steps) as f64;
    let stats = &db.stats;
    let (blocks, bytes) = db.blocks_summary();
    let per_k = |d: Duration| d.as_secs_f64() * 1e3 / (n / 1e3);
    println!("{n} samples ({series} series x {minutes} min at 1 s)");
    println!("append (WAL + head):   {:.3} ms CPU per 1k samples", per_k(append));
    println!(
        "maintenance:           {:.3} ms CPU per 1k samples ({} cuts, {} compactions; slowest call {:.0} ms)",
        per_k(maintain),
        stats.blocks_written.load(Relaxed),
        stats.compactions.load(Relaxed),
        worst.as_secs_f64() * 1e3
    );
    println!(
        "  calls that cut only:  {:.3}; calls that compacted: {:.3}",
        per_k(cutting),
        per_k(compacting)
    );
    println!(
        "total:                 {:.3} ms CPU per 1k samples",
        per_k(append + maintain)
    );
    println!("blocks: {blocks} holding {bytes} bytes, WAL {} bytes", db.wal_size());
}
