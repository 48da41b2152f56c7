//! The block index file: the symbol table (every label string once, sorted), then per
//! series, in label-set order, its label pairs as symbol numbers and where its column
//! lies in `chunks`; a CRC-32 of everything before it closes the file.
//!
//! ```text
//! "SNDXIDX1"
//! varint n_symbols, n × (varint len, bytes)
//! varint n_series,  n × (varint n_labels, n × (varint name_sym, varint value_sym),
//!                        varint offset, varint length, varint(zigzag) min_t - block_min,
//!                        varint max_t - min_t, varint samples)
//! u32 LE crc32 (IEEE) of all bytes above
//! ```
//!
//! A decoded index ([`Index`]) keeps the file's bytes as they are, checked once, with
//! where each symbol and each series starts: ~4 bytes a series beyond the file itself.
//! Decoding every series' label pairs into vectors and every symbol into a string cost
//! ~160 bytes a series, and queries keep the newest blocks' indexes resident.

use std::cmp::Ordering;
use std::io::Write;

pub const MAGIC: &[u8; 8] = b"SNDXIDX1";

/// Where a series' column lies in `chunks` and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub length: u64,
    pub min_t: i64,
    pub max_t: i64,
    pub samples: u64,
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// A number at `*pos` of bytes [`Index::decode`] has checked (so it cannot fail).
fn varint_at(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&byte) = b.get(*pos) {
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
        if byte < 0x80 || shift > 63 {
            break;
        }
    }
    v
}

/// The symbol whose length prefix starts at `pos`.
fn symbol_at(b: &[u8], pos: u32) -> &[u8] {
    let mut p = pos as usize;
    let len = varint_at(b, &mut p) as usize;
    &b[p..p + len]
}

/// The position of `s` in a sorted symbol table (`at`: where each symbol starts in `b`).
fn find_in(b: &[u8], at: &[u32], s: &str) -> Option<u32> {
    at.binary_search_by(|&p| symbol_at(b, p).cmp(s.as_bytes()))
        .ok()
        .map(|i| i as u32)
}

/// Label sets as flattened `(name, value)` symbol numbers compare like the label sets
/// themselves, because symbols are numbered in string order.
fn cmp_ids(a: &[u32], b: &[u32]) -> Ordering {
    a.cmp(b)
}

/// Builds an index file one series at a time (in ascending label-set order), with the
/// symbol table given up front: ~30 bytes a series while a block is written.
pub struct Builder {
    block_min: i64,
    symbols: Vec<u8>,
    sym_at: Vec<u32>,
    body: Vec<u8>,
    series: u64,
    last: Vec<u32>,
    /// Series the caller expects to add (0: unknown).
    expected: u64,
}

/// Series added before the body is sized for the expected rest from their bytes.
const SIZING_SERIES: u64 = 1024;

impl Builder {
    /// `symbols` must be sorted and unique: every label string of the block's series.
    pub fn new<'a>(symbols: impl IntoIterator<Item = &'a str>, block_min: i64) -> Result<Builder, String> {
        let mut b = Builder {
            block_min,
            symbols: Vec::new(),
            sym_at: Vec::new(),
            body: Vec::new(),
            series: 0,
            last: Vec::new(),
            expected: 0,
        };
        let mut prev: Option<&str> = None;
        for s in symbols {
            if prev.is_some_and(|p| p >= s) {
                return Err(format!(
                    "symbol {s:?} is out of order (after {:?})",
                    prev.unwrap_or_default()
                ));
            }
            prev = Some(s);
            let at = u32::try_from(b.symbols.len()).map_err(|_| "symbol table over 4 GiB")?;
            b.sym_at.push(at);
            put_varint(&mut b.symbols, s.len() as u64);
            b.symbols.extend_from_slice(s.as_bytes());
        }
        Ok(b)
    }

    /// About how many series will be added: once the first ones show their size, the
    /// body is allocated once for all of them (+5 %) instead of growing by doubling,
    /// which held up to twice its size at the head cut, the daemon's memory peak.
    pub fn expect_series(&mut self, n: u64) {
        self.expected = n;
    }

    /// The number of symbol `s`.
    pub fn symbol(&self, s: &str) -> Option<u32> {
        find_in(&self.symbols, &self.sym_at, s)
    }

    /// Adds a series: `ids` are its `(name, value)` symbol numbers, flattened, sorted by
    /// name; label sets must come in ascending order.
    pub fn add(&mut self, ids: &[u32], e: &Entry) -> Result<(), String> {
        if !ids.len().is_multiple_of(2) || ids.iter().any(|&i| i as usize >= self.sym_at.len()) {
            return Err("label set refers to a symbol the table lacks".into());
        }
        if self.series > 0 && cmp_ids(&self.last, ids) != Ordering::Less {
            return Err("series are not in ascending label-set order".into());
        }
        self.last.clear();
        self.last.extend_from_slice(ids);
        let b = &mut self.body;
        put_varint(b, (ids.len() / 2) as u64);
        for &i in ids {
            put_varint(b, i as u64);
        }
        put_varint(b, e.offset);
        put_varint(b, e.length);
        put_varint(b, zigzag(e.min_t - self.block_min));
        put_varint(b, (e.max_t - e.min_t) as u64);
        put_varint(b, e.samples);
        self.series += 1;
        if self.series == SIZING_SERIES && self.expected > SIZING_SERIES {
            let per_series = b.len() as f64 / SIZING_SERIES as f64;
            let rest = (self.expected - SIZING_SERIES) as f64 * per_series * 1.05;
            b.reserve_exact(rest as usize);
        }
        Ok(())
    }

    pub fn series(&self) -> u64 {
        self.series
    }

    /// Writes the file (without building it whole in memory).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut crc = crc32fast::Hasher::new();
        let mut put = |bytes: &[u8]| -> std::io::Result<()> {
            crc.update(bytes);
            out.write_all(bytes)
        };
        let mut n = Vec::with_capacity(10);
        put(MAGIC)?;
        put_varint(&mut n, self.sym_at.len() as u64);
        put(&n)?;
        put(&self.symbols)?;
        n.clear();
        put_varint(&mut n, self.series);
        put(&n)?;
        put(&self.body)?;
        out.write_all(&crc.finalize().to_le_bytes())
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("index ends inside a number")?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("index has an over-long number".into())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let b: &'a [u8] = self.b;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("index ends inside a string")?;
        let s = &b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// A decoded index file: its bytes, checked once, and where each symbol and each
/// series starts in them.
pub struct Index {
    bytes: Box<[u8]>,
    symbols: Vec<u32>,
    series: Vec<u32>,
    block_min: i64,
}

impl Index {
    /// Checks an index file (checksum, numbers, symbol references, UTF-8, order) and
    /// notes where its parts start; `Err` names what is wrong (never panics on bad input).
    pub fn decode(bytes: Vec<u8>, block_min: i64) -> Result<Index, String> {
        let b = &bytes[..];
        if b.len() < MAGIC.len() + 4 || &b[..MAGIC.len()] != MAGIC {
            return Err("not a sonde block index (bad magic)".into());
        }
        if u32::try_from(b.len()).is_err() {
            return Err("index over 4 GiB".into());
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("index checksum mismatch".into());
        }
        let mut c = Cursor {
            b: body,
            pos: MAGIC.len(),
        };
        let n_sym = c.varint()? as usize;
        let mut symbols = Vec::with_capacity(n_sym.min(body.len()));
        let mut prev: Option<&[u8]> = None;
        for _ in 0..n_sym {
            let at = c.pos as u32;
            let len = c.varint()? as usize;
            let s = c.bytes(len)?;
            std::str::from_utf8(s).map_err(|_| "symbol is not UTF-8")?;
            if prev.is_some_and(|p| p >= s) {
                return Err("symbols are not sorted".into());
            }
            prev = Some(s);
            symbols.push(at);
        }
        let n_series = c.varint()? as usize;
        let mut series = Vec::with_capacity(n_series.min(body.len()));
        let mut last: Vec<u32> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        for _ in 0..n_series {
            series.push(c.pos as u32);
            let n_labels = c.varint()? as usize;
            ids.clear();
            for _ in 0..n_labels * 2 {
                let id = c.varint()?;
                if id as usize >= symbols.len() {
                    return Err("label refers to a missing symbol".into());
                }
                ids.push(id as u32);
            }
            if series.len() > 1 && cmp_ids(&last, &ids) != Ordering::Less {
                return Err("series are not in ascending label-set order".into());
            }
            std::mem::swap(&mut last, &mut ids);
            for _ in 0..5 {
                c.varint()?;
            }
        }
        if c.pos != body.len() {
            return Err("trailing bytes in index".into());
        }
        Ok(Index {
            bytes: bytes.into_boxed_slice(),
            symbols,
            series,
            block_min,
        })
    }

    /// Series in the index.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// Symbol `i` (checked at decode to exist and be UTF-8).
    pub fn symbol(&self, i: u32) -> &str {
        std::str::from_utf8(self.symbol_bytes(i)).unwrap_or_default()
    }

    fn symbol_bytes(&self, i: u32) -> &[u8] {
        symbol_at(&self.bytes, self.symbols[i as usize])
    }

    /// The number of symbol `s`.
    pub fn find_symbol(&self, s: &str) -> Option<u32> {
        find_in(&self.bytes, &self.symbols, s)
    }

    /// Series `i`'s label pairs as symbol numbers, sorted by name.
    pub fn label_ids(&self, i: usize) -> LabelIds<'_> {
        let mut pos = self.series[i] as usize;
        let n = varint_at(&self.bytes, &mut pos) as usize;
        LabelIds {
            b: &self.bytes,
            pos,
            left: n,
        }
    }

    /// Where series `i`'s column lies and what it holds.
    pub fn entry(&self, i: usize) -> Entry {
        let mut ids = self.label_ids(i);
        for _ in ids.by_ref() {}
        let mut pos = ids.pos;
        let mut next = || varint_at(&self.bytes, &mut pos);
        let offset = next();
        let length = next();
        let min_t = self.block_min.wrapping_add(unzigzag(next()));
        let max_t = min_t.wrapping_add(next() as i64);
        Entry {
            offset,
            length,
            min_t,
            max_t,
            samples: next(),
        }
    }
}

/// Iterator over a series' `(name, value)` symbol numbers.
pub struct LabelIds<'a> {
    b: &'a [u8],
    pos: usize,
    left: usize,
}

impl Iterator for LabelIds<'_> {
    type Item = (u32, u32);

    fn next(&mut self) -> Option<(u32, u32)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = varint_at(self.b, &mut self.pos) as u32;
        let v = varint_at(self.b, &mut self.pos) as u32;
        Some((n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(syms: &[&str], series: &[(Vec<u32>, Entry)], block_min: i64) -> Vec<u8> {
        let mut b = Builder::new(syms.iter().copied(), block_min).unwrap();
        for (ids, e) in series {
            b.add(ids, e).unwrap();
        }
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_and_damage_detection() {
        let syms = ["__name__", "a", "job", "x"];
        let series = vec![
            (
                vec![0, 1, 2, 3],
                Entry {
                    offset: 0,
                    length: 10,
                    min_t: 990,
                    max_t: 2000,
                    samples: 3,
                },
            ),
            (
                vec![0, 3],
                Entry {
                    offset: 10,
                    length: 300,
                    min_t: 1000,
                    max_t: 1000,
                    samples: 1,
                },
            ),
        ];
        let b = build(&syms, &series, 1000);
        let idx = Index::decode(b.clone(), 1000).unwrap();
        let got: Vec<&str> = (0..idx.symbol_count() as u32).map(|i| idx.symbol(i)).collect();
        assert_eq!(got, syms);
        assert_eq!(idx.len(), 2);
        for (i, (ids, e)) in series.iter().enumerate() {
            let pairs: Vec<u32> = idx.label_ids(i).flat_map(|(n, v)| [n, v]).collect();
            assert_eq!(&pairs, ids);
            assert_eq!(&idx.entry(i), e);
        }
        assert_eq!(idx.find_symbol("job"), Some(2));
        assert_eq!(idx.find_symbol("jo"), None);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(Index::decode(bad, 1000).is_err(), "flip at {i} not detected");
            assert!(
                Index::decode(b[..i].to_vec(), 1000).is_err(),
                "truncation at {i} not detected"
            );
        }
    }

    #[test]
    fn an_expected_series_count_sizes_the_body_once_and_changes_no_byte() {
        let syms: Vec<String> = (0..5000).map(|i| format!("v{i:05}")).collect();
        let series: Vec<(Vec<u32>, Entry)> = (0..5000u32)
            .map(|i| {
                let e = Entry {
                    offset: i as u64 * 40,
                    length: 40,
                    min_t: 1000 + i as i64,
                    max_t: 120_000,
                    samples: 120,
                };
                (vec![0, i], e)
            })
            .collect();
        let mut hinted = Builder::new(syms.iter().map(String::as_str), 1000).unwrap();
        hinted.expect_series(5000);
        for (ids, e) in &series {
            hinted.add(ids, e).unwrap();
        }
        let (len, cap) = (hinted.body.len(), hinted.body.capacity());
        assert!(
            cap >= len && cap <= len * 11 / 10,
            "one allocation of about its size: {cap} for {len}"
        );
        let mut out = Vec::new();
        hinted.write_to(&mut out).unwrap();
        let syms: Vec<&str> = syms.iter().map(String::as_str).collect();
        assert_eq!(out, build(&syms, &series, 1000));
    }

    #[test]
    fn the_builder_refuses_unsorted_symbols_and_series_and_unknown_symbols() {
        assert!(Builder::new(["b", "a"], 0).is_err());
        assert!(Builder::new(["a", "a"], 0).is_err());
        let e = Entry {
            offset: 0,
            length: 1,
            min_t: 0,
            max_t: 0,
            samples: 1,
        };
        let mut b = Builder::new(["__name__", "a", "b"], 0).unwrap();
        assert_eq!(b.symbol("b"), Some(2));
        assert!(b.add(&[0, 3], &e).is_err(), "no symbol 3");
        assert!(b.add(&[0], &e).is_err(), "half a pair");
        b.add(&[0, 2], &e).unwrap();
        assert!(b.add(&[0, 1], &e).is_err(), "a < b: out of order");
        assert!(b.add(&[0, 2], &e).is_err(), "the same label set twice");
        b.add(&[0, 2, 1, 2], &e).unwrap();
        assert_eq!(b.series(), 2);
    }

    #[test]
    fn an_index_with_unsorted_series_is_refused_at_decode() {
        // Hand-built, checksum valid: symbols "_" "a" "b"; series {_="b"} before {_="a"}.
        let mut f = MAGIC.to_vec();
        put_varint(&mut f, 3);
        for s in ["_", "a", "b"] {
            put_varint(&mut f, s.len() as u64);
            f.extend_from_slice(s.as_bytes());
        }
        put_varint(&mut f, 2);
        for value in [2u64, 1] {
            // n_labels, name, value, offset, length, min_t, max_t - min_t, samples
            for v in [1, 0, value, 0, 1, 0, 0, 1] {
                put_varint(&mut f, v);
            }
        }
        let crc = crc32fast::hash(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        let err = Index::decode(f, 0).err().expect("unsorted");
        assert!(err.contains("ascending"), "{err}");
    }
}
