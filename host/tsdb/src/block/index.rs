//! The block index file: the symbol table (every label string once, sorted), then per
//! series its label pairs as symbol numbers and where its column lies in `chunks`;
//! a CRC-32 of everything before it closes the file.
//!
//! ```text
//! "SNDXIDX1"
//! varint n_symbols, n × (varint len, bytes)
//! varint n_series,  n × (varint n_labels, n × (varint name_sym, varint value_sym),
//!                        varint offset, varint length, varint(zigzag) min_t - block_min,
//!                        varint max_t - min_t, varint samples)
//! u32 LE crc32 (IEEE) of all bytes above
//! ```

pub const MAGIC: &[u8; 8] = b"SNDXIDX1";

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Label pairs as symbol numbers, sorted by name.
    pub labels: Vec<(u32, u32)>,
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

pub fn encode(symbols: &[&str], entries: &[Entry], block_min: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(symbols.iter().map(|s| s.len() + 1).sum::<usize>() + entries.len() * 32);
    out.extend_from_slice(MAGIC);
    put_varint(&mut out, symbols.len() as u64);
    for s in symbols {
        put_varint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    put_varint(&mut out, entries.len() as u64);
    for e in entries {
        put_varint(&mut out, e.labels.len() as u64);
        for (n, v) in &e.labels {
            put_varint(&mut out, *n as u64);
            put_varint(&mut out, *v as u64);
        }
        put_varint(&mut out, e.offset);
        put_varint(&mut out, e.length);
        put_varint(&mut out, zigzag(e.min_t - block_min));
        put_varint(&mut out, (e.max_t - e.min_t) as u64);
        put_varint(&mut out, e.samples);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
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

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("index ends inside a string")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Decodes an index file; `Err` names what is wrong (never panics on bad input).
pub fn decode(b: &[u8], block_min: i64) -> Result<(Vec<String>, Vec<Entry>), String> {
    if b.len() < MAGIC.len() + 4 || &b[..MAGIC.len()] != MAGIC {
        return Err("not a sonde block index (bad magic)".into());
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
    for _ in 0..n_sym {
        let len = c.varint()? as usize;
        let s = std::str::from_utf8(c.bytes(len)?).map_err(|_| "symbol is not UTF-8")?;
        symbols.push(s.to_string());
    }
    let n_series = c.varint()? as usize;
    let mut entries = Vec::with_capacity(n_series.min(body.len()));
    for _ in 0..n_series {
        let n_labels = c.varint()? as usize;
        let mut labels = Vec::with_capacity(n_labels.min(64));
        for _ in 0..n_labels {
            let (n, v) = (c.varint()? as u32, c.varint()? as u32);
            if n as usize >= symbols.len() || v as usize >= symbols.len() {
                return Err("label refers to a missing symbol".into());
            }
            labels.push((n, v));
        }
        let offset = c.varint()?;
        let length = c.varint()?;
        let min_t = block_min + unzigzag(c.varint()?);
        let max_t = min_t + c.varint()? as i64;
        let samples = c.varint()?;
        entries.push(Entry {
            labels,
            offset,
            length,
            min_t,
            max_t,
            samples,
        });
    }
    if c.pos != body.len() {
        return Err("trailing bytes in index".into());
    }
    Ok((symbols, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let syms = ["__name__", "a", "job", "x"];
        let entries = vec![
            Entry {
                labels: vec![(0, 1), (2, 3)],
                offset: 0,
                length: 10,
                min_t: 990,
                max_t: 2000,
                samples: 3,
            },
            Entry {
                labels: vec![(0, 3)],
                offset: 10,
                length: 300,
                min_t: 1000,
                max_t: 1000,
                samples: 1,
            },
        ];
        let b = encode(&syms, &entries, 1000);
        let (s, e) = decode(&b, 1000).unwrap();
        assert_eq!(s, syms);
        assert_eq!(e, entries);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad, 1000).is_err(), "flip at {i} not detected");
            assert!(decode(&b[..i], 1000).is_err(), "truncation at {i} not detected");
        }
    }
}
