//! Loading series that OpenMetrics cannot express (staleness markers) into both
//! servers: into Prometheus through its remote-write receiver (protobuf + snappy,
//! `--web.enable-remote-write-receiver`), into sonde by writing its store
//! (`sonde_tsdb`) in a data directory before sonde starts on it.

use super::testdata::Series;
use std::path::Path;
use std::time::Duration;

/// Samples per series per request: the requests go in time order, so every series is
/// appended in order on Prometheus's side.
const SLOTS_PER_REQUEST: usize = 40;

/// Sends `series` to Prometheus's `/api/v1/write` at `base`; panics on any refusal.
#[track_caller]
pub fn to_prometheus(base: &str, series: &[Series]) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let longest = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    let url = format!("{base}/api/v1/write");
    for from in (0..longest).step_by(SLOTS_PER_REQUEST) {
        let body = snappy_literal(&write_request(series, from, from + SLOTS_PER_REQUEST));
        let mut resp = agent
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(&body[..])
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert!(status / 100 == 2, "remote write to {url} answered {status}: {text}");
    }
}

/// Writes `series` into the store in `data_dir` (created), in time order, and closes it.
#[track_caller]
pub fn to_sonde_store(data_dir: &Path, series: &[Series]) {
    use sonde_tsdb::db::{Db, Options};
    std::fs::create_dir_all(data_dir).expect("create the data dir");
    let opts = Options {
        retention: Duration::from_secs(100 * 365 * 86_400),
        ..Options::default()
    };
    let db = Db::open(data_dir, opts).unwrap_or_else(|e| panic!("open the store in {}: {e}", data_dir.display()));
    let refs: Vec<_> = series
        .iter()
        .map(|s| {
            let pairs: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            db.get_or_create(&pairs).expect("create a series")
        })
        .collect();
    let longest = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    for i in 0..longest {
        let samples: Vec<_> = series
            .iter()
            .zip(&refs)
            .filter_map(|(s, r)| s.points.get(i).map(|&(t, v)| (*r, t, v)))
            .collect();
        let summary = db.append(&samples).expect("append");
        assert_eq!(
            summary.appended,
            samples.len(),
            "samples refused by the store: {summary:?}"
        );
    }
    for r in refs {
        db.release(r);
    }
    db.close().expect("close the store");
}

/// A `prometheus.WriteRequest` holding samples `[from, to)` of each series.
fn write_request(series: &[Series], from: usize, to: usize) -> Vec<u8> {
    let mut req = Vec::new();
    for s in series {
        let points = &s.points[from.min(s.points.len())..to.min(s.points.len())];
        if points.is_empty() {
            continue;
        }
        let mut ts = Vec::new();
        let mut labels = s.labels.clone();
        labels.sort();
        for (name, value) in &labels {
            let mut l = Vec::new();
            bytes_field(&mut l, 1, name.as_bytes());
            bytes_field(&mut l, 2, value.as_bytes());
            bytes_field(&mut ts, 1, &l);
        }
        for &(t, v) in points {
            let mut sample = Vec::new();
            varint(&mut sample, (1 << 3) | 1);
            sample.extend_from_slice(&v.to_bits().to_le_bytes());
            varint(&mut sample, 2 << 3);
            varint(&mut sample, t as u64);
            bytes_field(&mut ts, 2, &sample);
        }
        bytes_field(&mut req, 1, &ts);
    }
    req
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2): strings and embedded messages.
fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Snappy's block format with literals only: valid input for any decoder, no
/// compression needed for a test.
fn snappy_literal(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 60_000 * 3 + 8);
    varint(&mut out, data.len() as u64);
    for chunk in data.chunks(1 << 16) {
        let n = chunk.len() - 1;
        if n < 60 {
            out.push((n as u8) << 2);
        } else if n < 256 {
            out.push(60 << 2);
            out.push(n as u8);
        } else {
            out.push(61 << 2);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        assert_eq!(snappy_literal(b"abc"), [3, 2 << 2, b'a', b'b', b'c']);
        let long = snappy_literal(&[7u8; 100]);
        assert_eq!(&long[..3], &[100, 60 << 2, 99]);
    }
}
