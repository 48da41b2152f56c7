//! The scrape cache: raw series text (the bytes before the value) → what the series
//! became, the SDK's series handle or "dropped by relabelling", as Prometheus's scrape
//! cache maps it to a storage reference.
//!
//! Exporters print their series in the same order every time, so the cache first
//! compares a line with the series at the same position in the previous scrape: a
//! sequential walk over the entries, with no hashing. Only a line that moved or is
//! new goes to the hash table. In wasm32 this matters: a hash table probe that
//! misses the CPU cache cost ~200 ns per sample, the positional check ~10 ns.

use hashbrown::HashTable;

/// Cache entry value for a series that metric relabelling drops.
pub const DROPPED: u64 = u64::MAX;

struct Entry {
    /// The raw series text.
    key: Box<[u8]>,
    hash: u64,
    /// `Collection::sample_handle` of the series, or [`DROPPED`].
    handle: u64,
    /// The scrape that last saw this series.
    seen: u32,
}

#[derive(Default)]
pub struct Cache {
    /// Entries by index; `None` = free (listed in `free`).
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Entries in `slab`.
    len: usize,
    /// Slab indices by key hash.
    table: HashTable<u32>,
    /// Slab index of each sample of the previous scrape, in page order.
    order: Vec<u32>,
    /// The same for the scrape under way.
    next_order: Vec<u32>,
    epoch: u32,
    /// Entries seen by the scrape under way.
    live: usize,
}

impl Cache {
    /// Starts a scrape.
    pub fn begin(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.live = 0;
        self.next_order.clear();
    }

    /// The entry of `series`, the next sample of the page, if cached; marks it seen.
    pub fn lookup(&mut self, series: &[u8]) -> Option<u32> {
        let pos = self.next_order.len();
        let at_position = self
            .order
            .get(pos)
            .copied()
            .filter(|&i| matches!(&self.slab[i as usize], Some(e) if same(&e.key, series)));
        let idx = match at_position {
            Some(i) => i,
            None => {
                let hash = key_hash(series);
                let slab = &self.slab;
                *self
                    .table
                    .find(hash, |&i| matches!(&slab[i as usize], Some(e) if same(&e.key, series)))?
            }
        };
        self.touch(idx);
        Some(idx)
    }

    /// Adds `series` (not cached yet: [`Cache::lookup`] said so) as the next sample.
    pub fn insert(&mut self, series: &[u8], handle: u64) -> u32 {
        let hash = key_hash(series);
        let entry = Entry {
            key: series.into(),
            hash,
            handle,
            seen: 0,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(entry);
                i
            }
            None => {
                self.slab.push(Some(entry));
                (self.slab.len() - 1) as u32
            }
        };
        self.len += 1;
        let slab = &self.slab;
        self.table
            .insert_unique(hash, idx, |&i| slab[i as usize].as_ref().map_or(0, |e| e.hash));
        self.touch(idx);
        idx
    }

    fn touch(&mut self, idx: u32) {
        self.next_order.push(idx);
        let e = self.slab[idx as usize].as_mut().expect("live entry");
        if e.seen != self.epoch {
            e.seen = self.epoch;
            self.live += 1;
        }
    }

    pub fn handle(&self, idx: u32) -> u64 {
        self.slab[idx as usize].as_ref().map_or(DROPPED, |e| e.handle)
    }

    pub fn set_handle(&mut self, idx: u32, handle: u64) {
        if let Some(e) = self.slab[idx as usize].as_mut() {
            e.handle = handle;
        }
    }

    /// Ends a successful scrape: its order is the one to expect next time, and the
    /// series it did not see are forgotten.
    pub fn end(&mut self) {
        std::mem::swap(&mut self.order, &mut self.next_order);
        if self.live == self.len {
            return;
        }
        let epoch = self.epoch;
        let slab = &self.slab;
        self.table
            .retain(|&mut i| slab[i as usize].as_ref().is_some_and(|e| e.seen == epoch));
        for (i, slot) in self.slab.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|e| e.seen != epoch) {
                *slot = None;
                self.free.push(i as u32);
                self.len -= 1;
            }
        }
    }

    /// Series cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Hash of a raw series text, eight bytes per step (in wasm32 about twice as fast as
/// the word-sized, 32-bit there, FxHasher).
fn key_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // The multiplications only carry differences upwards, and the table takes its
    // bucket from the low bits: mix everything down (murmur3's finaliser).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Byte equality eight bytes at a time: `==` on slices calls memcmp, a byte loop in
/// wasi-libc.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    ca.zip(cb)
        .all(|(x, y)| u64::from_le_bytes(x.try_into().expect("8")) == u64::from_le_bytes(y.try_into().expect("8")))
        && ra == rb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_hits_moved_series_and_pruning() {
        let mut c = Cache::default();
        c.begin();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(c.lookup(k.as_bytes()), None);
            c.insert(k.as_bytes(), i as u64);
        }
        c.end();
        // Same order, then a moved and a missing series.
        c.begin();
        let got: Vec<u64> = ["a", "c", "b"]
            .iter()
            .map(|k| {
                let i = c.lookup(k.as_bytes()).expect("cached");
                c.handle(i)
            })
            .collect();
        assert_eq!(got, [0, 2, 1]);
        c.end();
        c.begin();
        let i = c.lookup(b"c").expect("cached");
        assert_eq!(c.handle(i), 2);
        c.end();
        assert_eq!(c.len(), 1, "a and b were not seen");
        c.begin();
        assert_eq!(c.lookup(b"a"), None);
        let i = c.insert(b"a", 7);
        assert_eq!(c.handle(i), 7);
        let i = c.lookup(b"c").expect("cached");
        assert_eq!(c.handle(i), 2);
        c.end();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn equality_and_hash_cover_every_byte() {
        let base: Vec<u8> = (0..40u8).collect();
        for i in 0..base.len() {
            let mut other = base.clone();
            other[i] ^= 1;
            assert!(!same(&base, &other));
            assert_ne!(key_hash(&base), key_hash(&other));
        }
        assert!(same(&base, &base.clone()));
        assert!(!same(b"ab", b"abc"));
    }
}
