//! The synthetic data set the storage examples share: `series` series, half counters
//! with random increments (0–100) and half 2-decimal random walks (±1.00), as the
//! storage benchmark in docs/BENCHMARKS.md describes.

use sonde_tsdb::db::Db;

pub struct Synthetic {
    pub refs: Vec<u64>,
    values: Vec<f64>,
    rng: u64,
}

impl Synthetic {
    /// Creates the series in `db`.
    pub fn create(db: &Db, series: u64) -> Synthetic {
        let refs = (0..series)
            .map(|i| {
                let s = i.to_string();
                let name = if i % 2 == 0 {
                    "bench_counter_total"
                } else {
                    "bench_gauge"
                };
                db.get_or_create(&[
                    ("__name__", name),
                    ("job", "bench"),
                    ("instance", "host-1"),
                    ("series", &s),
                ])
                .unwrap()
            })
            .collect::<Vec<_>>();
        Synthetic {
            values: vec![0.0; refs.len()],
            refs,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// One scrape's batch: every series' next value at `t`.
    pub fn batch(&mut self, t: i64) -> Vec<(u64, i64, f64)> {
        let Synthetic { refs, values, rng } = self;
        refs.iter()
            .enumerate()
            .map(|(i, r)| {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                values[i] += if i % 2 == 0 {
                    (*rng % 101) as f64
                } else {
                    ((*rng % 201) as f64 - 100.0) / 100.0
                };
                (*r, t, (values[i] * 100.0).round() / 100.0)
            })
            .collect()
    }
}
