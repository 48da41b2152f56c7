//! Bytes per sample of sonde's sample encodings against Gorilla XOR (Prometheus's chunk encoding),
//! measured in the same run on synthetic data:
//!
//! - `bench`: 10k series at 1 s for 2 h; half counters with uniform 0..=100 increments (rare
//!   resets), half 2-decimal random walks (start 100.00, steps uniform in [-1.00, 1.00]);
//! - `node`: a node_exporter-like mix at 1 s with a few ms of scrape jitter: constants, slowly
//!   changing memory gauges, cpu-seconds counters with 2 decimals (USER_HZ=100), byte counters.
//!
//! Run: `cargo run --release -p sonde-tsdb --example chunk_sizes [series]`.

use std::time::{Duration, Instant};

use sonde_tsdb::chunk::bits::BitWriter;
use sonde_tsdb::chunk::{HeadChunk, decode_columns, encode_columns};

const SAMPLES: usize = 7200; // 2 h at 1 s
const GORILLA_CHUNK: usize = 120;
const START_MS: i64 = 1_767_225_600_000;

use sonde_tsdb::testing::Rng;

fn regular_times() -> Vec<i64> {
    (0..SAMPLES as i64).map(|i| START_MS + i * 1000).collect()
}

fn jittered_times(rng: &mut Rng) -> Vec<i64> {
    (0..SAMPLES as i64)
        .map(|i| START_MS + i * 1000 + rng.range(-3, 3))
        .collect()
}

/// Series `i` of the benchmark dataset.
fn bench_series(i: usize) -> (Vec<i64>, Vec<f64>) {
    let mut rng = Rng(i as u64 * 7919 + 1);
    let mut vs = Vec::with_capacity(SAMPLES);
    if i.is_multiple_of(2) {
        let mut c = rng.range(0, 1_000_000);
        for _ in 0..SAMPLES {
            c = if rng.chance(20_000) { 0 } else { c + rng.range(0, 100) };
            vs.push(c as f64);
        }
    } else {
        // Hundredths, as a scrape of "100.37" parses: the nearest double to the decimal.
        let mut h: i64 = 10_000;
        for _ in 0..SAMPLES {
            h += rng.range(-100, 100);
            vs.push(h as f64 / 100.0);
        }
    }
    (regular_times(), vs)
}

/// Series `i` of the node_exporter-like mix.
fn node_series(i: usize, jitter: bool) -> (Vec<i64>, Vec<f64>) {
    let mut rng = Rng(i as u64 * 104_729 + 3);
    let ts = if jitter {
        jittered_times(&mut rng)
    } else {
        regular_times()
    };
    let mut vs = Vec::with_capacity(SAMPLES);
    match i % 20 {
        // Constants: info metrics, sizes, flags.
        0..=5 => {
            let v = [1.0, 0.0, 4096.0, 1.0e12, 8.0][i % 5];
            vs.resize(SAMPLES, v);
        }
        // Memory gauges: bytes that move by pages every few tens of seconds.
        6..=9 => {
            let mut b: i64 = rng.range(1 << 30, 16 << 30) & !4095;
            for _ in 0..SAMPLES {
                if rng.chance(20) {
                    b += rng.range(-2000, 2000) * 4096;
                }
                vs.push(b as f64);
            }
        }
        // node_cpu_seconds_total: hundredths of a second per second of wall time.
        10..=14 => {
            let busy = rng.range(0, 100);
            let mut h: i64 = rng.range(0, 1 << 30);
            for _ in 0..SAMPLES {
                h += (busy + rng.range(-10, 10)).clamp(0, 100);
                vs.push(h as f64 / 100.0);
            }
        }
        // Byte and packet counters: quiet with bursts.
        _ => {
            let mut c: i64 = rng.range(0, 1 << 40);
            let base = rng.range(0, 5000);
            for _ in 0..SAMPLES {
                c += if rng.chance(10) {
                    rng.range(0, 10_000_000)
                } else {
                    base + rng.range(0, base / 4 + 1)
                };
                vs.push(c as f64);
            }
        }
    }
    (ts, vs)
}

/// Prometheus's XOR chunk (Gorilla), sizes only: 2-byte header, t0 varint, first delta uvarint,
/// delta-of-delta buckets of 14/17/20/64 bits; first value raw, then XOR with 5-bit leading zeros and
/// 6-bit significant bits.
fn gorilla_chunk_bytes(ts: &[i64], vs: &[f64]) -> usize {
    let mut w = BitWriter::new();
    let mut bytes = 2;
    let (mut prev_t, mut prev_d, mut prev_v) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0xffu32, 0u32);
    for (i, (&t, &v)) in ts.iter().zip(vs).enumerate() {
        let bits = v.to_bits();
        match i {
            0 => {
                bytes += varint_len(((t << 1) ^ (t >> 63)) as u64);
                w.write_bits(bits, 64);
            }
            1 => {
                bytes += varint_len((t - prev_t) as u64);
                prev_d = t - prev_t;
            }
            _ => {
                let d = t - prev_t;
                let dod = d - prev_d;
                match dod {
                    0 => w.write_bits(0, 1),
                    -8191..=8192 => w.write_bits((0b10 << 14) | (dod as u64 & 0x3fff), 16),
                    -65535..=65536 => w.write_bits((0b110 << 17) | (dod as u64 & 0x1ffff), 20),
                    -524287..=524288 => w.write_bits((0b1110 << 20) | (dod as u64 & 0xfffff), 24),
                    _ => {
                        w.write_bits(0b1111, 4);
                        w.write_bits(dod as u64, 64);
                    }
                }
                prev_d = d;
            }
        }
        if i > 0 {
            let x = bits ^ prev_v;
            if x == 0 {
                w.write_bits(0, 1);
            } else {
                let (l, tz) = (x.leading_zeros().min(31), x.trailing_zeros());
                if leading != 0xff && l >= leading && tz >= trailing {
                    w.write_bits(0b10, 2);
                    w.write_bits(x >> trailing, 64 - leading - trailing);
                } else {
                    leading = l;
                    trailing = tz;
                    let sig = 64 - l - tz;
                    w.write_bits(0b11, 2);
                    w.write_bits(l as u64, 5);
                    w.write_bits(sig as u64, 6);
                    w.write_bits(x >> tz, sig);
                }
            }
        }
        prev_t = t;
        prev_v = bits;
    }
    bytes + w.bytes().len()
}

fn varint_len(x: u64) -> usize {
    (64 - x.leading_zeros() as usize).max(1).div_ceil(7)
}

#[derive(Default)]
struct Totals {
    samples: usize,
    gorilla: usize,
    head: usize,
    head_chunks: usize,
    head_ram: usize,
    column: usize,
    column_pco: usize,
    append: Duration,
    iterate: Duration,
    encode: Duration,
    decode: Duration,
}

impl Totals {
    fn add(&mut self, ts: &[i64], vs: &[f64]) {
        self.samples += ts.len();
        for (t, v) in ts.chunks(GORILLA_CHUNK).zip(vs.chunks(GORILLA_CHUNK)) {
            self.gorilla += gorilla_chunk_bytes(t, v);
        }

        let start = Instant::now();
        let mut chunks = Vec::new();
        let mut head = HeadChunk::new();
        for (&t, &v) in ts.iter().zip(vs) {
            if head.is_full() {
                chunks.push(std::mem::take(&mut head));
            }
            head.append(t, v);
        }
        chunks.push(head);
        self.append += start.elapsed();
        self.head_chunks += chunks.len();
        self.head_ram += chunks
            .iter()
            .map(|c| c.memory_bytes() + size_of::<HeadChunk>())
            .sum::<usize>();
        self.head += chunks
            .iter()
            .map(|c| c.parts().map_or(0, |p| p.byte_len()))
            .sum::<usize>();

        let start = Instant::now();
        let mut n = 0;
        for c in &chunks {
            for (t, v) in c.iter() {
                assert!(t == ts[n] && v.to_bits() == vs[n].to_bits(), "head chunk round trip");
                n += 1;
            }
        }
        self.iterate += start.elapsed();
        assert_eq!(n, ts.len());

        let start = Instant::now();
        let col = encode_columns(ts, vs);
        self.encode += start.elapsed();
        self.column += col.len();
        self.column_pco += (col[0] == 2) as usize;
        let start = Instant::now();
        let (dt, dv) = decode_columns(&col).expect("column round trip");
        self.decode += start.elapsed();
        assert!(
            dt == ts && dv.iter().zip(vs).all(|(a, b)| a.to_bits() == b.to_bits()),
            "column round trip"
        );
    }

    fn print(&self, name: &str, series: usize) {
        let per = |bytes: usize| bytes as f64 / self.samples as f64;
        let ns = |d: Duration| d.as_nanos() as f64 / self.samples as f64;
        println!("{name}: {series} series x {SAMPLES} samples");
        println!(
            "  gorilla XOR, {GORILLA_CHUNK}-sample chunks   {:6.3} B/sample",
            per(self.gorilla)
        );
        println!(
            "  sonde head chunk (full at {})    {:6.3} B/sample  ({:.2}x smaller)",
            sonde_tsdb::chunk::HEAD_MAX_SAMPLES,
            per(self.head),
            self.gorilla as f64 / self.head as f64
        );
        println!(
            "  sonde block column ({SAMPLES} samples) {:6.3} B/sample  ({:.2}x smaller; pco chosen for {} of {series})",
            per(self.column),
            self.gorilla as f64 / self.column as f64,
            self.column_pco
        );
        println!(
            "  head RAM per chunk (struct + heap) {:.0} B; append {:.1} ns, iterate {:.1} ns, column encode {:.1} ns, decode {:.1} ns per sample",
            self.head_ram as f64 / self.head_chunks as f64,
            ns(self.append),
            ns(self.iterate),
            ns(self.encode),
            ns(self.decode)
        );
    }
}

fn main() {
    let series: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut bench = Totals::default();
    let mut counters = Totals::default();
    let mut walks = Totals::default();
    for i in 0..series {
        let (ts, vs) = bench_series(i);
        bench.add(&ts, &vs);
        if i < 200 {
            if i.is_multiple_of(2) { &mut counters } else { &mut walks }.add(&ts, &vs);
        }
    }
    bench.print("bench (counters + 2-decimal random walks)", series);
    counters.print("  of which counters", counters.samples / SAMPLES);
    walks.print("  of which random walks", walks.samples / SAMPLES);
    let node_series_n = series / 5;
    for jitter in [false, true] {
        let mut node = Totals::default();
        let mut kinds: [Totals; 4] = Default::default();
        for i in 0..node_series_n {
            let (ts, vs) = node_series(i, jitter);
            node.add(&ts, &vs);
            if i < 400 {
                kinds[[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3][i % 20]].add(&ts, &vs);
            }
        }
        let timing = if jitter { "+-3 ms jitter" } else { "aligned timestamps" };
        node.print(&format!("node_exporter-like mix, 1 s, {timing}"), node_series_n);
        for (k, name) in kinds
            .iter()
            .zip(["constants", "memory gauges", "cpu seconds", "byte counters"])
        {
            k.print(&format!("  of which {name}"), k.samples / SAMPLES);
        }
    }
}
