//! The WAL's logical records and their payload encoding (the framing lives in `segment`).
//!
//! Every integer is a LEB128 varint; signed ones are zigzag-encoded first. Strings are a
//! varint byte length followed by UTF-8. Sample values are the raw IEEE-754 bits, 8 bytes
//! little-endian, so every NaN payload (Prometheus's staleness marker is
//! `0x7ff0000000000002`) survives exactly.
//!
//! ```text
//! Series   (type 1): ref:uvarint  n:uvarint  n × (name:string value:string)
//! Samples  (type 2): n:uvarint  [t0:varint  n × (dref:varint dt:varint v:8 bytes)]
//!                    dref = ref − previous ref (the first is relative to 0), dt = t − t0
//! Metadata (type 3): metric:string kind:string help:string unit:string
//! Dropped  (type 4): n:uvarint  n × dref:varint   (dref as in Samples)
//! ```
//!
//! Decoding takes untrusted bytes: every length and count is checked against what is left
//! of the payload before anything is allocated, and trailing bytes are an error.

/// One sample: series reference, timestamp in milliseconds, value.
pub type Sample = (u64, i64, f64);

/// Record type byte, stored in the frame header. Zero is never a record type, so a zeroed
/// (preallocated or never-written) tail is recognised as garbage straight away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Series = 1,
    Samples = 2,
    Metadata = 3,
    Dropped = 4,
}

impl RecordType {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Series),
            2 => Some(Self::Samples),
            3 => Some(Self::Metadata),
            4 => Some(Self::Dropped),
            _ => None,
        }
    }
}

/// An owned WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A new series. `labels` includes `__name__`; `ref_` is the head's series id.
    Series { ref_: u64, labels: Vec<(String, String)> },
    /// A batch of samples, in append order.
    Samples(Vec<Sample>),
    /// Metric metadata (TYPE/HELP/UNIT), keyed by metric family name.
    Metadata {
        metric: String,
        kind: String,
        help: String,
        unit: String,
    },
    /// Series removed from the head; a checkpoint forgets them.
    Dropped { refs: Vec<u64> },
}

/// A borrowed WAL record: what [`Wal::log`](super::Wal::log) takes and what replay hands out
/// (pointing into reused buffers, so replay allocates nothing per record).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RecordRef<'a> {
    Series {
        ref_: u64,
        labels: &'a [(String, String)],
    },
    Samples(&'a [Sample]),
    Metadata {
        metric: &'a str,
        kind: &'a str,
        help: &'a str,
        unit: &'a str,
    },
    Dropped(&'a [u64]),
}

impl<'a> From<&'a Record> for RecordRef<'a> {
    fn from(r: &'a Record) -> Self {
        match r {
            Record::Series { ref_, labels } => RecordRef::Series { ref_: *ref_, labels },
            Record::Samples(s) => RecordRef::Samples(s),
            Record::Metadata {
                metric,
                kind,
                help,
                unit,
            } => RecordRef::Metadata {
                metric,
                kind,
                help,
                unit,
            },
            Record::Dropped { refs } => RecordRef::Dropped(refs),
        }
    }
}

impl RecordRef<'_> {
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordRef::Series { .. } => RecordType::Series,
            RecordRef::Samples(_) => RecordType::Samples,
            RecordRef::Metadata { .. } => RecordType::Metadata,
            RecordRef::Dropped(_) => RecordType::Dropped,
        }
    }

    pub fn to_owned(&self) -> Record {
        match *self {
            RecordRef::Series { ref_, labels } => Record::Series {
                ref_,
                labels: labels.to_vec(),
            },
            RecordRef::Samples(s) => Record::Samples(s.to_vec()),
            RecordRef::Metadata {
                metric,
                kind,
                help,
                unit,
            } => Record::Metadata {
                metric: metric.to_owned(),
                kind: kind.to_owned(),
                help: help.to_owned(),
                unit: unit.to_owned(),
            },
            RecordRef::Dropped(refs) => Record::Dropped { refs: refs.to_vec() },
        }
    }

    /// Appends the payload encoding (no frame header) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            RecordRef::Series { ref_, labels } => {
                put_uvarint(out, ref_);
                put_uvarint(out, labels.len() as u64);
                for (name, value) in labels {
                    put_str(out, name);
                    put_str(out, value);
                }
            }
            RecordRef::Samples(samples) => {
                put_uvarint(out, samples.len() as u64);
                let Some(&(_, t0, _)) = samples.first() else { return };
                put_varint(out, t0);
                out.reserve(samples.len() * 11);
                let mut prev = 0u64;
                for &(r, t, v) in samples {
                    put_varint(out, r.wrapping_sub(prev) as i64);
                    put_varint(out, t.wrapping_sub(t0));
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                    prev = r;
                }
            }
            RecordRef::Metadata {
                metric,
                kind,
                help,
                unit,
            } => {
                for s in [metric, kind, help, unit] {
                    put_str(out, s);
                }
            }
            RecordRef::Dropped(refs) => {
                put_uvarint(out, refs.len() as u64);
                let mut prev = 0u64;
                for &r in refs {
                    put_varint(out, r.wrapping_sub(prev) as i64);
                    prev = r;
                }
            }
        }
    }
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        self.into()
    }

    /// Decodes an owned record (allocating); replay uses [`Decoder`] instead.
    pub fn decode(typ: u8, payload: &[u8]) -> Result<Record, DecodeError> {
        Decoder::default().decode(typ, payload).map(|r| r.to_owned())
    }
}

/// Why a payload could not be decoded. Offsets are within the record payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("record ends early at byte {offset}")]
    Truncated { offset: usize },
    #[error("varint at byte {offset} is longer than 10 bytes")]
    VarintOverflow { offset: usize },
    #[error("string at byte {offset} is not valid UTF-8")]
    Utf8 { offset: usize },
    #[error("count {count} at byte {offset} cannot fit in the {remaining} bytes left")]
    Count {
        count: u64,
        offset: usize,
        remaining: usize,
    },
    #[error("{extra} unexpected bytes after the record")]
    Trailing { extra: usize },
}

/// Decodes payloads into buffers it keeps between records, so steady-state replay does not
/// allocate: sample and ref batches reuse one `Vec`, label strings reuse their capacity.
#[derive(Default)]
pub struct Decoder {
    samples: Vec<Sample>,
    refs: Vec<u64>,
    labels: Vec<(String, String)>,
}

impl Decoder {
    pub fn decode<'a>(&'a mut self, typ: u8, payload: &'a [u8]) -> Result<RecordRef<'a>, DecodeError> {
        let mut c = Cursor { buf: payload, pos: 0 };
        let rec = match RecordType::from_u8(typ).ok_or(DecodeError::UnknownType(typ))? {
            RecordType::Series => {
                let ref_ = c.uvarint()?;
                // Each label takes at least two bytes (two empty strings).
                let n = c.count(2)?;
                for i in 0..n {
                    let name = c.str()?;
                    let value = c.str()?;
                    if let Some((ln, lv)) = self.labels.get_mut(i) {
                        ln.clear();
                        ln.push_str(name);
                        lv.clear();
                        lv.push_str(value);
                    } else {
                        self.labels.push((name.to_owned(), value.to_owned()));
                    }
                }
                self.labels.truncate(n);
                RecordRef::Series {
                    ref_,
                    labels: &self.labels,
                }
            }
            RecordType::Samples => {
                decode_samples(&mut c, &mut self.samples)?;
                RecordRef::Samples(&self.samples)
            }
            RecordType::Metadata => RecordRef::Metadata {
                metric: c.str()?,
                kind: c.str()?,
                help: c.str()?,
                unit: c.str()?,
            },
            RecordType::Dropped => {
                let n = c.count(1)?;
                self.refs.clear();
                self.refs.reserve(n);
                let mut r = 0u64;
                for _ in 0..n {
                    r = r.wrapping_add(c.varint()? as u64);
                    self.refs.push(r);
                }
                RecordRef::Dropped(&self.refs)
            }
        };
        if c.pos != payload.len() {
            return Err(DecodeError::Trailing {
                extra: payload.len() - c.pos,
            });
        }
        Ok(rec)
    }
}

/// The replay hot loop: kept separate and small so it stays easy to optimise.
fn decode_samples(c: &mut Cursor<'_>, out: &mut Vec<Sample>) -> Result<(), DecodeError> {
    out.clear();
    let n = c.count(1)?;
    if n == 0 {
        return Ok(());
    }
    let t0 = c.varint()?;
    // A sample takes at least 10 bytes (two one-byte varints and the value).
    let remaining = c.buf.len() - c.pos;
    if n > remaining / 10 {
        return Err(DecodeError::Count {
            count: n as u64,
            offset: c.pos,
            remaining,
        });
    }
    out.reserve(n);
    let mut r = 0u64;
    for _ in 0..n {
        r = r.wrapping_add(c.varint()? as u64);
        let t = t0.wrapping_add(c.varint()?);
        let v = f64::from_bits(c.u64_le()?);
        out.push((r, t, v));
    }
    Ok(())
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated { offset: self.pos });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintOverflow { offset: start });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    #[inline]
    fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let bytes = self.bytes(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    #[inline]
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(DecodeError::Truncated { offset: self.buf.len() })?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.uvarint()?;
        let offset = self.pos;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated { offset })?;
        let b = self.bytes(len)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::Utf8 { offset })
    }

    /// Reads a count of items that take at least `min_bytes` each, rejecting counts the
    /// rest of the payload cannot hold (so a corrupt count never drives a huge allocation).
    fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = self.uvarint()?;
        let remaining = self.buf.len() - self.pos;
        if n > (remaining / min_bytes) as u64 {
            return Err(DecodeError::Count {
                count: n,
                offset,
                remaining,
            });
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn roundtrip(r: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        r.as_ref().encode(&mut buf);
        let typ = r.as_ref().record_type() as u8;
        assert_eq!(&Record::decode(typ, &buf).unwrap(), r);
        let mut d = Decoder::default();
        assert_eq!(d.decode(typ, &buf).unwrap(), r.as_ref());
        buf
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn series_roundtrip() {
        roundtrip(&Record::Series {
            ref_: 42,
            labels: labels(&[
                ("__name__", "up"),
                ("job", "node"),
                ("instance", "héllo:9100"),
                ("empty", ""),
            ]),
        });
        roundtrip(&Record::Series {
            ref_: u64::MAX,
            labels: vec![],
        });
    }

    #[test]
    fn samples_roundtrip_keeps_nan_payloads_exactly() {
        let samples = vec![
            (7, 1_700_000_000_000, 1.5),
            (8, 1_700_000_000_000, f64::from_bits(STALE_NAN)),
            (3, 1_699_999_999_000, f64::NAN),
            (u64::MAX, i64::MAX, f64::INFINITY),
            (0, i64::MIN, -0.0),
            (9, 0, f64::from_bits(0xfff8_dead_beef_0001)),
        ];
        let r = Record::Samples(samples.clone());
        let mut buf = Vec::new();
        r.as_ref().encode(&mut buf);
        let Record::Samples(back) = Record::decode(2, &buf).unwrap() else {
            panic!()
        };
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!((a.0, a.1, a.2.to_bits()), (b.0, b.1, b.2.to_bits()));
        }
        roundtrip(&Record::Samples(vec![]));
    }

    #[test]
    fn samples_encoding_is_compact() {
        // One scrape of 1000 consecutive series at one timestamp: ~10 bytes per sample.
        let samples: Vec<Sample> = (0..1000).map(|i| (1000 + i, 1_700_000_000_000, i as f64)).collect();
        let buf = roundtrip(&Record::Samples(samples));
        assert!(buf.len() <= 10 * 1000 + 16, "{} bytes", buf.len());
    }

    #[test]
    fn metadata_and_dropped_roundtrip() {
        roundtrip(&Record::Metadata {
            metric: "http_requests_total".into(),
            kind: "counter".into(),
            help: "Requests served.\nSecond line".into(),
            unit: "".into(),
        });
        roundtrip(&Record::Dropped {
            refs: vec![5, 3, u64::MAX, 0, 1 << 40],
        });
        roundtrip(&Record::Dropped { refs: vec![] });
    }

    #[test]
    fn decoder_reuses_label_buffers_across_shapes() {
        let mut d = Decoder::default();
        for n in [3usize, 1, 5, 0, 2] {
            let pairs: Vec<(String, String)> = (0..n).map(|i| (format!("n{i}"), format!("v{i}{n}"))).collect();
            let r = Record::Series {
                ref_: n as u64,
                labels: pairs,
            };
            let mut buf = Vec::new();
            r.as_ref().encode(&mut buf);
            assert_eq!(d.decode(1, &buf).unwrap(), r.as_ref());
        }
    }

    #[test]
    fn decoding_garbage_returns_errors_never_panics() {
        let records = [
            Record::Series {
                ref_: 300,
                labels: labels(&[("__name__", "x"), ("a", "b")]),
            },
            Record::Samples(vec![(1, 10, 1.0), (2, 20, 2.0)]),
            Record::Metadata {
                metric: "m".into(),
                kind: "gauge".into(),
                help: "h".into(),
                unit: "s".into(),
            },
            Record::Dropped { refs: vec![1, 2, 3] },
        ];
        for r in &records {
            let typ = r.as_ref().record_type() as u8;
            let mut buf = Vec::new();
            r.as_ref().encode(&mut buf);
            // Every truncation is an error (none of these payloads has a valid proper prefix).
            for cut in 0..buf.len() {
                assert!(Record::decode(typ, &buf[..cut]).is_err(), "{r:?} cut at {cut}");
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert_eq!(Record::decode(typ, &longer), Err(DecodeError::Trailing { extra: 1 }));
            // Every single-byte corruption decodes to something or fails; it must not panic.
            for i in 0..buf.len() {
                for b in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = buf.clone();
                    bad[i] = b;
                    for t in 0..=5 {
                        let _ = Record::decode(t, &bad);
                    }
                }
            }
        }
        assert_eq!(Record::decode(0, &[]), Err(DecodeError::UnknownType(0)));
        assert_eq!(Record::decode(9, &[]), Err(DecodeError::UnknownType(9)));
    }

    #[test]
    fn huge_counts_and_overlong_varints_are_rejected() {
        // n = u64::MAX samples in a 12-byte payload.
        let mut buf = Vec::new();
        put_uvarint(&mut buf, u64::MAX);
        buf.extend_from_slice(&[0; 2]);
        assert!(matches!(Record::decode(2, &buf), Err(DecodeError::Count { .. })));
        // Eleven continuation bytes.
        let buf = [0xffu8; 11];
        assert!(matches!(
            Record::decode(4, &buf),
            Err(DecodeError::VarintOverflow { .. })
        ));
        // Ten-byte varint whose last byte overflows 64 bits.
        let mut buf = vec![0xffu8; 9];
        buf.push(0x02);
        assert!(matches!(
            Record::decode(1, &buf),
            Err(DecodeError::VarintOverflow { .. })
        ));
        // String length larger than usize on any platform / than the payload.
        let mut buf = vec![1u8, 1];
        put_uvarint(&mut buf, u64::MAX);
        assert!(Record::decode(1, &buf).is_err());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let buf = [1u8, 0xff, 0, 0, 0];
        assert_eq!(Record::decode(3, &buf), Err(DecodeError::Utf8 { offset: 1 }));
    }
}
