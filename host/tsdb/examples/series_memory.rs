//! Heap bytes per active series in the store, by phase: what creating a series costs
//! (labels, postings, the label-set map, the series struct) and what its samples cost
//! in the head after some minutes at 1 s.
//!
//!     cargo run --release -p sonde-tsdb --example series_memory -- [series] [minutes]
//!
//! Uses the synthetic set (4 labels a series, `series` default 100,000, `minutes`
//! default 3: with `Db`'s default cut delay, half a range, a head spans up to 1.5 block
//! ranges of 2 min). Heap bytes in use come
//! from glibc's `mallinfo2` (allocated, not resident: malloc slack and fragmentation
//! show in RSS on top); `Head::memory_bytes` is the head's own estimate beside it.

mod common;

use sonde_tsdb::db::{Db, Options};

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let series = *args.first().unwrap_or(&100_000);
    let minutes = *args.get(1).unwrap_or(&3) as i64;
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_795_320_000_000i64 / 3_600_000 * 3_600_000;
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let per = |bytes: usize| bytes as f64 / series as f64;

    let before = heap_in_use();
    let mut data = common::Synthetic::create(&db, series);
    let refs_vec = data.refs.capacity() * 8;
    let created = heap_in_use();
    let head_created = db.head().memory_bytes();
    println!(
        "{series} series created: {:.0} B per series on the heap (head's estimate {:.0} B)",
        per(created - before - refs_vec),
        per(head_created)
    );

    for step in 0..minutes * 60 {
        let t = t0 + step * 1000;
        db.append_at(&data.batch(t), t).unwrap();
        if step % 10 == 9 {
            db.flush().unwrap();
            db.maintain(t).unwrap();
        }
    }
    let filled = heap_in_use();
    let head_filled = db.head().memory_bytes();
    println!(
        "after {minutes} min at 1 s: {:.0} B per series more ({:.0} B in all; head's estimate {:.0} B)",
        per(filled - created),
        per(filled - before - refs_vec),
        per(head_filled)
    );
}
