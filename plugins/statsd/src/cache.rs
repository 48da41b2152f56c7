//! The ingest cache: from the shape of a one-sample line (the line minus its value:
//! name part and what follows the value's `|`) to everything the slow path worked out
//! for it (tags, mapping, series slot), so a repeated metric costs one hash, one
//! comparison, one float parse and an update, with no allocation.

use crate::line::Replay;
use crate::mapping::MetricType;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::{BuildHasher, Hasher};

/// Longer shapes are not cached (they take the slow path each time), so the cache's
/// memory is bounded by `capacity × MAX_KEY`.
pub const MAX_KEY: usize = 512;

/// Where the events of a shape go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Series(u32),
    Drop,
    EmptyName,
    /// Index into `Stats::conflicts`.
    Conflict(u32),
    Limit,
    /// Not resolved: a negative counter value seen first (never cached), or a sample
    /// that made no event (unknown type, rate > 1 on an observer).
    Pending,
}

#[derive(Clone, Copy, Debug)]
pub struct Resolved {
    pub outcome: Outcome,
    pub mapped: bool,
    pub scale: Option<f64>,
    pub metric_type: MetricType,
}

struct Entry {
    hash: u64,
    /// `name part ++ rest`, split at `name_len`.
    key: Box<[u8]>,
    name_len: u32,
    replay: Replay,
    resolved: Resolved,
}

pub struct Cache {
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[inline]
    pub fn hash(&self, name: &[u8], rest: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(name);
        h.write_u8(0xFF);
        h.write(rest);
        h.finish()
    }

    #[inline]
    pub fn get(&self, hash: u64, name: &[u8], rest: &[u8]) -> Option<(Replay, Resolved)> {
        self.table
            .find(hash, |e| {
                e.hash == hash
                    && e.key.len() == name.len() + rest.len()
                    && e.name_len as usize == name.len()
                    && same(&e.key[..name.len()], name)
                    && same(&e.key[name.len()..], rest)
            })
            .map(|e| (e.replay, e.resolved))
    }

    /// Adds a shape; empties the cache first when it is full (returns true then).
    pub fn insert(&mut self, hash: u64, name: &[u8], rest: &[u8], replay: Replay, resolved: Resolved) -> bool {
        if name.len() + rest.len() > MAX_KEY {
            return false;
        }
        let reset = self.table.len() >= self.capacity;
        if reset {
            self.table.clear();
        }
        let mut key = Vec::with_capacity(name.len() + rest.len());
        key.extend_from_slice(name);
        key.extend_from_slice(rest);
        let entry = Entry {
            hash,
            key: key.into(),
            name_len: name.len() as u32,
            replay,
            resolved,
        };
        self.table.insert_unique(hash, entry, |e| e.hash);
        reset
    }

    /// Keeps only the entries `keep` approves (after series were removed).
    pub fn retain(&mut self, mut keep: impl FnMut(&Resolved) -> bool) {
        self.table.retain(|e| keep(&e.resolved));
    }
}

/// Equality of two slices of equal length, eight bytes at a time: keys are short, and
/// a call to `memcmp` (a plain byte loop in wasm) costs more than the comparison.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        if u64::from_ne_bytes(p.try_into().expect("8 bytes")) != u64::from_ne_bytes(q.try_into().expect("8 bytes")) {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_every_byte() {
        let a = b"0123456789abcdefXYZ";
        for len in 0..a.len() {
            assert!(same(&a[..len], &a[..len]));
            for i in 0..len {
                let mut b = a[..len].to_vec();
                b[i] ^= 1;
                assert!(!same(&a[..len], &b), "len {len} byte {i}");
            }
        }
        assert!(!same(b"ab", b"abc"));
    }
}
