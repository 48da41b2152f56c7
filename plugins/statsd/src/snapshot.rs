//! The state carried across a hot reload: a compact binary format.
//!
//! ```text
//! snapshot = "SDST" version:u8 stats series_count:u32 series*
//! stats    = 24 × u64 (lines, samples, tags, tag_errors, 9 sample errors, 3 events,
//!            unmapped, 2 actions, 2 event errors, series_dropped, lines_too_long, 1 spare)
//! series   = name:str kind:u8 help:str ttl_ms:u64 label_count:u32 (name:str value:str)* value
//! value    = counter|gauge: f64
//!          | histogram: bound_count:u32 bound:f64* count:u64*(bound_count+1) sum:f64 count:u64
//!          | summary: sum:f64 count:u64          (the quantile window restarts empty)
//! str      = len:u32 utf8 bytes; all integers and floats little-endian
//! ```
//! A series is restored as it was (name, labels, buckets), whatever the new mapping
//! says, and expires by its TTL like any other; the TTL clock restarts at the restore.

use crate::aggregator::Aggregator;
use crate::line::SampleError;
use crate::store::{Hist, Kind, SeriesSpec, Value};
use crate::summary::Summary;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"SDST";
const VERSION: u8 = 1;
const STAT_WORDS: usize = 24;

pub fn write(agg: &mut Aggregator) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    for w in stat_words(agg) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let store = agg.store();
    out.extend_from_slice(&(store.live() as u32).to_le_bytes());
    for (f, s) in store.iter() {
        put_str(&mut out, &f.name);
        out.push(f.kind as u8);
        put_str(&mut out, &f.help);
        out.extend_from_slice(&s.ttl_ms.to_le_bytes());
        out.extend_from_slice(&(s.labels.len() as u32).to_le_bytes());
        for (n, v) in s.labels.iter() {
            put_str(&mut out, n);
            put_str(&mut out, v);
        }
        match &s.value {
            Value::Counter(x) | Value::Gauge(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Histogram(h) => {
                out.extend_from_slice(&(f.buckets.len() as u32).to_le_bytes());
                for b in f.buckets.iter() {
                    out.extend_from_slice(&b.to_le_bytes());
                }
                for c in h.counts.iter() {
                    out.extend_from_slice(&c.to_le_bytes());
                }
                out.extend_from_slice(&h.sum.to_le_bytes());
                out.extend_from_slice(&h.count.to_le_bytes());
            }
            Value::Summary(sm) => {
                out.extend_from_slice(&sm.sum.to_le_bytes());
                out.extend_from_slice(&sm.count.to_le_bytes());
            }
        }
    }
    out
}

fn stat_words(agg: &mut Aggregator) -> [u64; STAT_WORDS] {
    let (s, c) = agg.stats_mut();
    let mut w = [0u64; STAT_WORDS];
    w[0] = s.lines;
    w[1] = c.samples;
    w[2] = c.tags;
    w[3] = c.tag_errors;
    w[4..13].copy_from_slice(&c.sample_errors);
    w[13..16].copy_from_slice(&s.events);
    w[16] = s.unmapped;
    w[17..19].copy_from_slice(&s.actions);
    w[19..21].copy_from_slice(&s.event_errors);
    w[21] = s.series_dropped;
    w[22] = s.lines_too_long;
    w
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("snapshot is truncated".into());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| "snapshot has a string that is not UTF-8".to_string())
    }
    /// A count of items each at least `min` bytes long, checked against what is left
    /// (so a corrupt count cannot make us allocate gigabytes).
    fn count(&mut self, min: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.buf.len() {
            return Err("snapshot count exceeds its length".into());
        }
        Ok(n)
    }
}

/// Restores a [`write`] snapshot into a freshly configured aggregator. Returns how many
/// series were restored; series that now conflict or exceed `max_series` are skipped.
pub fn read(agg: &mut Aggregator, buf: &[u8], now_ms: u64) -> Result<usize, String> {
    let mut r = Reader { buf };
    if r.take(4)? != MAGIC {
        return Err("not a statsd plugin snapshot".into());
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!(
            "snapshot version {version} is not supported (this plugin reads {VERSION})"
        ));
    }
    let mut w = [0u64; STAT_WORDS];
    for x in w.iter_mut() {
        *x = r.u64()?;
    }
    let n = r.count(4 + 1 + 4 + 8 + 4 + 8)?;
    let defaults_summary = agg.default_summary();
    let mut restored = 0;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?.to_string();
        let kind = Kind::from_u8(r.u8()?).ok_or("snapshot has an unknown metric kind")?;
        let help = r.str()?.to_string();
        let ttl_ms = r.u64()?;
        let nl = r.count(8)?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            labels.push((r.str()?.to_string(), r.str()?.to_string()));
        }
        let mut buckets: Arc<[f64]> = Arc::new([]);
        let value = match kind {
            Kind::Counter => Value::Counter(r.f64()?),
            Kind::Gauge => Value::Gauge(r.f64()?),
            Kind::Histogram => {
                let nb = r.count(16)?;
                let mut b = Vec::with_capacity(nb);
                for _ in 0..nb {
                    b.push(r.f64()?);
                }
                buckets = b.into();
                let mut counts = Vec::with_capacity(nb + 1);
                for _ in 0..=nb {
                    counts.push(r.u64()?);
                }
                Value::Histogram(Box::new(Hist {
                    counts: counts.into(),
                    sum: r.f64()?,
                    count: r.u64()?,
                }))
            }
            Kind::Summary => {
                let mut s = Summary::new(defaults_summary.max_age_ms, defaults_summary.age_buckets);
                s.sum = r.f64()?;
                s.count = r.u64()?;
                Value::Summary(Box::new(s))
            }
        };
        series.push((name, kind, help, ttl_ms, labels, buckets, value));
    }
    if !r.buf.is_empty() {
        return Err("snapshot has trailing bytes".into());
    }
    let (s, c) = agg.stats_mut();
    s.lines = w[0];
    c.samples = w[1];
    c.tags = w[2];
    c.tag_errors = w[3];
    c.sample_errors.copy_from_slice(&w[4..4 + SampleError::ALL.len()]);
    s.events.copy_from_slice(&w[13..16]);
    s.unmapped = w[16];
    s.actions.copy_from_slice(&w[17..19]);
    s.event_errors.copy_from_slice(&w[19..21]);
    s.series_dropped = w[21];
    s.lines_too_long = w[22];
    for (name, kind, help, ttl_ms, labels, buckets, value) in series {
        let spec = SeriesSpec {
            name: &name,
            kind,
            help: &help,
            labels: &labels,
            buckets: &buckets,
            summary: &defaults_summary,
            ttl_ms,
        };
        if agg.store_mut().restore(&spec, value, now_ms) {
            restored += 1;
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregator::Limits;
    use crate::line::TagStyles;
    use crate::mapping::parse;

    fn agg(yaml: &str) -> Aggregator {
        let limits = Limits {
            max_series: 100,
            max_line_length: 4096,
        };
        Aggregator::new(parse("m", yaml).unwrap(), TagStyles::default(), limits)
    }

    fn values(a: &Aggregator) -> Vec<String> {
        let mut v: Vec<String> = a
            .store()
            .iter()
            .map(|(f, s)| {
                let val = match &s.value {
                    Value::Counter(x) | Value::Gauge(x) => format!("{x}"),
                    Value::Histogram(h) => format!("{:?} {} {}", h.counts, h.sum, h.count),
                    Value::Summary(sm) => format!("summary {} {}", sm.sum, sm.count),
                };
                format!("{}{:?} {val}", f.name, s.labels)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_reload_keeps_counters_gauges_histograms_and_summary_totals() {
        let yaml = "mappings:\n- match: h.*\n  name: h\n  observer_type: histogram\n  histogram_options: {buckets: [1, 5]}\n  labels: {which: $1}\n";
        let mut old = agg(yaml);
        old.ingest(b"c:3|c|#k:v\ng:-4|g\nh.a:2|h\nh.a:7|h\ns:10|ms\n", 0);
        let bytes = write(&mut old);
        let mut new = agg(yaml);
        assert_eq!(read(&mut new, &bytes, 5_000).unwrap(), 4);
        assert_eq!(values(&new), values(&old));
        assert_eq!(new.stats_mut().0.lines, 5);
        // The restored series keep counting.
        new.ingest(b"c:1|c|#k:v\nh.a:1|h\n", 6_000);
        let v = values(&new);
        assert!(v.contains(&"c[(\"k\", \"v\")] 4".to_string()), "{v:?}");
        assert!(v.contains(&"h[(\"which\", \"a\")] [1, 1, 1] 10 3".to_string()), "{v:?}");
    }

    #[test]
    fn bad_snapshots_are_refused_not_trusted() {
        let mut a = agg("");
        assert!(read(&mut a, b"", 0).is_err());
        assert!(read(&mut a, b"XXXX\x01", 0).is_err());
        assert!(read(&mut a, b"SDST\x09", 0).unwrap_err().contains("version 9"));
        let mut old = agg("");
        old.ingest(b"c:1|c", 0);
        let bytes = write(&mut old);
        for cut in 0..bytes.len() {
            assert!(read(&mut agg(""), &bytes[..cut], 0).is_err(), "truncated at {cut}");
        }
        let mut huge = bytes.clone();
        huge[5 + 24 * 8..5 + 24 * 8 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(&mut agg(""), &huge, 0).is_err());
    }
}
