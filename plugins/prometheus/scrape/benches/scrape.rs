//! Native micro-benchmark of the scrape hot path on a 10,000-series text body:
//! parsing alone, the first scrape (every series parsed, relabelled and registered)
//! and the steady state (every series found in the scrape cache), in ns per sample.
//! Run: `cargo bench -p sonde-scrape --bench scrape`. Prints figures, asserts nothing.

use sonde_plugin_sdk::Collection;
use sonde_scrape::exposition::{Format, Lines};
use sonde_scrape::relabel::{RelabelConfig, compile};
use sonde_scrape::scrape::Scraper;
use std::hint::black_box;
use std::time::Instant;

const SERIES: usize = 10_000;

/// A node_exporter / client_golang-like page: 100 families of 100 series, counters,
/// gauges and histogram buckets, 2-4 labels each, values with fractions.
fn body() -> String {
    let mut s = String::new();
    let mut n = 0;
    let mut family = 0;
    while n < SERIES {
        let kind = ["counter", "gauge", "histogram"][family % 3];
        let name = format!("app_subsystem_metric_{family}");
        s.push_str(&format!(
            "# HELP {name} Help text of family {family}.\n# TYPE {name} {kind}\n"
        ));
        for i in 0..100 {
            if n == SERIES {
                break;
            }
            let v = (n as f64) * 1.25 + 0.5;
            match kind {
                "histogram" => {
                    let le = [
                        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
                    ][i % 10];
                    s.push_str(&format!(
                        "{name}_bucket{{handler=\"/api/v1/items/{}\",method=\"GET\",le=\"{le}\"}} {v}\n",
                        i / 10
                    ))
                }
                _ => s.push_str(&format!(
                    "{name}{{instance_id=\"i-{i:04}\",device=\"sd{i}\",mode=\"user\"}} {v:e}\n"
                )),
            }
            n += 1;
        }
        family += 1;
    }
    s
}

fn per_sample(total_ns: u128, rounds: usize) -> f64 {
    total_ns as f64 / (rounds * SERIES) as f64
}

fn scrape_loop(body: &[u8], relabel: &str, label: &str) {
    let configs: Vec<RelabelConfig> = serde_json::from_str(relabel).unwrap();
    let mut scraper = Scraper::new(compile(&configs).unwrap(), true);
    let mut reg = Collection::native_registry();
    let t = Instant::now();
    let batch = reg
        .collect(|c| {
            scraper.emit(body, Format::Text, c).unwrap();
            Ok(())
        })
        .unwrap();
    let cold = t.elapsed().as_nanos();
    assert_eq!(batch.ids.len(), SERIES);
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        let batch = reg
            .collect(|c| {
                scraper.emit(black_box(body), Format::Text, c).unwrap();
                Ok(())
            })
            .unwrap();
        assert!(batch.series.is_empty());
        black_box(batch);
    }
    let warm = t.elapsed().as_nanos();
    println!(
        "{label:<34} first scrape {:>7.1} ns/sample, steady state {:>6.1} ns/sample",
        per_sample(cold, 1),
        per_sample(warm, rounds)
    );
}

fn main() {
    let body = body();
    let bytes = body.as_bytes();
    println!(
        "body: {SERIES} series, {} bytes ({:.0} bytes/sample)",
        bytes.len(),
        bytes.len() as f64 / SERIES as f64
    );

    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        let mut n = 0;
        for l in Lines::new(black_box(bytes), Format::Text) {
            black_box(l.unwrap());
            n += 1;
        }
        assert!(n >= SERIES);
    }
    println!(
        "{:<34} {:>6.1} ns/sample",
        "split lines only (no cache, no emit)",
        per_sample(t.elapsed().as_nanos(), rounds)
    );

    scrape_loop(bytes, "[]", "parse + emit");
    scrape_loop(
        bytes,
        r#"[{"source_labels":["__name__"],"regex":"go_.*","action":"drop"},{"regex":"instance_id","action":"labeldrop"}]"#,
        "parse + emit, 2 relabel rules",
    );
}
