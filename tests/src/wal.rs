//! A reader of sonde's WAL files written from the format description alone (module docs
//! of `host/tsdb/src/wal/mod.rs` and `record.rs`), independent of sonde's code: tests use
//! it to find record boundaries in a segment, to check that a segment is intact, and to
//! tell which samples a damaged record held.
//!
//! ```text
//! segment = "sWAL" 01 00 00 00, then frames:
//! frame   = type: u8 | len: u32 LE | crc: u32 LE (CRC-32 IEEE of type, len, payload) | payload
//! Series   (1): ref:uvarint n:uvarint n × (name:string value:string)
//! Samples  (2): n:uvarint [t0:varint n × (dref:varint dt:varint v: 8 bytes LE)]
//! Metadata (3): metric:string kind:string help:string unit:string
//! Dropped  (4): n:uvarint n × dref:varint
//! ```

use crate::dump::SeriesKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const SEGMENT_HEADER: [u8; 8] = *b"sWAL\x01\0\0\0";
pub const FRAME_HEADER_LEN: u64 = 9;

/// One frame of a segment file.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Byte offset of the frame header in the file.
    pub offset: u64,
    pub typ: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Offset of the first byte after the frame.
    pub fn end(&self) -> u64 {
        self.offset + FRAME_HEADER_LEN + self.payload.len() as u64
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series {
        ref_: u64,
        labels: Vec<(String, String)>,
    },
    Samples(Vec<(u64, i64, f64)>),
    Metadata {
        metric: String,
        kind: String,
        help: String,
        unit: String,
    },
    Dropped(Vec<u64>),
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every frame of an intact segment; any damage (bad header, torn frame, CRC mismatch,
/// type 0) is an error naming the offset.
pub fn parse_segment(bytes: &[u8]) -> Result<Vec<Frame>, String> {
    if bytes.len() < SEGMENT_HEADER.len() || bytes[..SEGMENT_HEADER.len()] != SEGMENT_HEADER {
        return Err("bad segment header".into());
    }
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < FRAME_HEADER_LEN as usize {
            return Err(format!("torn frame header at byte {at} ({} bytes left)", rest.len()));
        }
        let typ = rest[0];
        let len = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[5..9].try_into().expect("4 bytes"));
        if typ == 0 {
            return Err(format!("frame of type 0 at byte {at}"));
        }
        let Some(payload) = rest.get(9..9 + len) else {
            return Err(format!(
                "torn frame at byte {at}: payload of {len} bytes, {} left",
                rest.len() - 9
            ));
        };
        let mut covered = Vec::with_capacity(5 + len);
        covered.extend_from_slice(&rest[..5]);
        covered.extend_from_slice(payload);
        if crc32(&covered) != crc {
            return Err(format!("CRC mismatch in the frame at byte {at}"));
        }
        frames.push(Frame {
            offset: at as u64,
            typ,
            payload: payload.to_vec(),
        });
        at += 9 + len;
    }
    Ok(frames)
}

/// [`parse_segment`] of a file.
pub fn read_segment(path: &Path) -> Result<Vec<Frame>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_segment(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Decodes a frame's payload; trailing bytes are an error.
pub fn decode(frame: &Frame) -> Result<Record, String> {
    let mut r = Reader {
        buf: &frame.payload,
        at: 0,
    };
    let rec = match frame.typ {
        1 => {
            let ref_ = r.uvarint()?;
            let n = r.uvarint()?;
            let mut labels = Vec::new();
            for _ in 0..n {
                labels.push((r.string()?, r.string()?));
            }
            Record::Series { ref_, labels }
        }
        2 => {
            let n = r.uvarint()?;
            let mut samples = Vec::new();
            if n > 0 {
                let t0 = r.varint()?;
                let mut prev = 0u64;
                for _ in 0..n {
                    let r_ = prev.wrapping_add(r.varint()? as u64);
                    let t = t0.wrapping_add(r.varint()?);
                    let v = f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes")));
                    samples.push((r_, t, v));
                    prev = r_;
                }
            }
            Record::Samples(samples)
        }
        3 => Record::Metadata {
            metric: r.string()?,
            kind: r.string()?,
            help: r.string()?,
            unit: r.string()?,
        },
        4 => {
            let n = r.uvarint()?;
            let mut refs = Vec::new();
            let mut prev = 0u64;
            for _ in 0..n {
                prev = prev.wrapping_add(r.varint()? as u64);
                refs.push(prev);
            }
            Record::Dropped(refs)
        }
        t => return Err(format!("unknown record type {t} at byte {}", frame.offset)),
    };
    if r.at != r.buf.len() {
        return Err(format!(
            "{} trailing bytes in the record at byte {}",
            r.buf.len() - r.at,
            frame.offset
        ));
    }
    Ok(rec)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.at).ok_or("record ends inside a varint")?;
            self.at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn varint(&mut self) -> Result<i64, String> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let b = self.buf.get(self.at..self.at + n).ok_or("record ends early")?;
        self.at += n;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.uvarint()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
}

/// The numbered segments (`00000001`, …) directly in `dir`, in order.
pub fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut out: Vec<(u32, PathBuf)> = entries
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            (name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()) && p.is_file())
                .then(|| (name.parse().expect("digits"), p.clone()))
        })
        .collect();
    out.sort();
    out
}

/// The newest segment of the WAL in `wal_dir`.
#[track_caller]
pub fn newest_segment(wal_dir: &Path) -> PathBuf {
    segments(wal_dir)
        .pop()
        .unwrap_or_else(|| panic!("no WAL segment in {}", wal_dir.display()))
        .1
}

/// The complete checkpoints (`checkpoint.NNNNNNNN`) in `wal_dir`, oldest first.
pub fn checkpoints(wal_dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(wal_dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", wal_dir.display()));
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("checkpoint."))
                    .is_some_and(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    out.sort();
    out
}

/// Every segment file of the WAL in log order: the newest checkpoint's, then the WAL's own.
pub fn all_segment_files(wal_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = checkpoints(wal_dir)
        .pop()
        .map(|c| segments(&c).into_iter().map(|(_, p)| p).collect())
        .unwrap_or_default();
    files.extend(segments(wal_dir).into_iter().map(|(_, p)| p));
    files
}

/// Series ref → series, from every Series record of an intact WAL (checkpoint included).
pub fn series_by_ref(wal_dir: &Path) -> Result<HashMap<u64, SeriesKey>, String> {
    let mut out = HashMap::new();
    for file in all_segment_files(wal_dir) {
        for frame in read_segment(&file)? {
            if let Record::Series { ref_, labels } = decode(&frame).map_err(|e| format!("{}: {e}", file.display()))? {
                out.insert(ref_, SeriesKey::from_pairs(&labels));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uvarint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn varint(out: &mut Vec<u8>, v: i64) {
        uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        uvarint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    fn frame(out: &mut Vec<u8>, typ: u8, payload: &[u8]) {
        let mut covered = vec![typ];
        covered.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        covered.extend_from_slice(payload);
        out.extend_from_slice(&covered[..5]);
        out.extend_from_slice(&crc32(&covered).to_le_bytes());
        out.extend_from_slice(payload);
    }

    /// A segment with one record of each type.
    fn segment() -> Vec<u8> {
        let mut seg = SEGMENT_HEADER.to_vec();
        let mut p = Vec::new();
        uvarint(&mut p, 300);
        uvarint(&mut p, 2);
        for s in ["__name__", "up", "job", "node"] {
            string(&mut p, s);
        }
        frame(&mut seg, 1, &p);
        let mut p = Vec::new();
        uvarint(&mut p, 2);
        varint(&mut p, 1_700_000_000_000);
        for (dref, dt, v) in [
            (300i64, 0i64, 1.0f64),
            (-299, -5, f64::from_bits(0x7ff0_0000_0000_0002)),
        ] {
            varint(&mut p, dref);
            varint(&mut p, dt);
            p.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        frame(&mut seg, 2, &p);
        let mut p = Vec::new();
        for s in ["up", "gauge", "help", ""] {
            string(&mut p, s);
        }
        frame(&mut seg, 3, &p);
        let mut p = Vec::new();
        uvarint(&mut p, 2);
        varint(&mut p, 300);
        varint(&mut p, -299);
        frame(&mut seg, 4, &p);
        seg
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn reads_and_decodes_every_record_type() {
        let frames = parse_segment(&segment()).unwrap();
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].offset, 8);
        assert_eq!(frames[1].offset, frames[0].end());
        let recs: Vec<Record> = frames.iter().map(|f| decode(f).unwrap()).collect();
        assert_eq!(
            recs[0],
            Record::Series {
                ref_: 300,
                labels: vec![("__name__".into(), "up".into()), ("job".into(), "node".into())]
            }
        );
        let Record::Samples(s) = &recs[1] else {
            panic!("{:?}", recs[1])
        };
        assert_eq!((s[0].0, s[0].1, s[0].2), (300, 1_700_000_000_000, 1.0));
        assert_eq!(
            (s[1].0, s[1].1, s[1].2.to_bits()),
            (1, 1_699_999_999_995, 0x7ff0_0000_0000_0002)
        );
        assert!(matches!(&recs[2], Record::Metadata { metric, kind, .. } if metric == "up" && kind == "gauge"));
        assert_eq!(recs[3], Record::Dropped(vec![300, 1]));
    }

    #[test]
    fn any_damage_is_an_error() {
        let seg = segment();
        let last = parse_segment(&seg).unwrap().pop().unwrap();
        // Torn anywhere in the last frame.
        for cut in [seg.len() - 1, last.offset as usize + 4, last.offset as usize + 10] {
            assert!(parse_segment(&seg[..cut]).is_err(), "cut at {cut}");
        }
        // A flipped bit anywhere after the header.
        for at in [8, 12, 20, seg.len() - 1] {
            let mut bad = seg.clone();
            bad[at] ^= 0x10;
            assert!(parse_segment(&bad).is_err(), "flip at {at}");
        }
        // Zeros after the last frame.
        let mut zeros = seg.clone();
        zeros.extend_from_slice(&[0; 16]);
        assert!(parse_segment(&zeros).unwrap_err().contains("type 0"));
        assert!(parse_segment(b"sWAL\x02\0\0\0").is_err());
        // A payload with trailing bytes does not decode.
        let mut f = parse_segment(&seg).unwrap().remove(2);
        f.payload.push(0);
        assert!(decode(&f).is_err());
    }
}
