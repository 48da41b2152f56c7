//! The head's series by ref: an open-addressing table of (ref, boxed series), 16 bytes a
//! slot, with linear probing.
//!
//! Appending a scrape looks up every one of its series, twice (check, then apply). With
//! 100k series the table (2 MiB) does not stay in the CPU cache between scrapes, and a
//! look-up that misses it stalls for the whole memory latency before the series itself
//! can even be asked for. `perf` on this path showed the table's probe loads as ~60% of
//! `Head::check` and `Head::apply`, ~18% of the whole daemon's CPU at 100k series.
//! A std `HashMap` gives no way to ask for a key's slot before reading it; this table
//! does ([`SeriesMap::prefetch`]), so the append loop fetches the slot of a sample a few
//! steps ahead, then (slot in cache) the series, then uses it.
//!
//! Refs are handed out in sequence; the multiplicative (Fibonacci) hash spreads a run
//! of them evenly over the table, so probe runs stay short even at 7/8 load.

use super::{FIB_MUL, MemSeries};
use crate::chunk::bits::prefetch;
use crate::postings::SeriesRef;

type Slot = Option<(SeriesRef, Box<MemSeries>)>;

/// Grown when more than 7/8 full.
const LOAD_NUM: usize = 7;
const LOAD_DEN: usize = 8;
/// Shrunk (by [`SeriesMap::shrink`]) when less than this fraction full.
const SHRINK_DEN: usize = 8;
const MIN_SLOTS: usize = 16;

#[derive(Default)]
pub(crate) struct SeriesMap {
    /// A power of two long (or empty).
    slots: Vec<Slot>,
    len: usize,
}

impl SeriesMap {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the table itself (not of the series).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    fn home(&self, r: SeriesRef) -> usize {
        // The top bits of the product: the well-mixed ones.
        let bits = self.slots.len().trailing_zeros();
        (r.wrapping_mul(FIB_MUL) >> (64 - bits)) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot holding `r`, if any.
    fn find(&self, r: SeriesRef) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mut i = self.home(r);
        loop {
            match &self.slots[i] {
                None => return None,
                Some((k, _)) if *k == r => return Some(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Asks the CPU to fetch the slot where a look-up of `r` starts; a hint only.
    #[inline]
    pub(crate) fn prefetch(&self, r: SeriesRef) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(r)]);
        }
    }

    pub(crate) fn get(&self, r: SeriesRef) -> Option<&MemSeries> {
        let i = self.find(r)?;
        self.slots[i].as_ref().map(|(_, s)| &**s)
    }

    pub(crate) fn get_mut(&mut self, r: SeriesRef) -> Option<&mut MemSeries> {
        let i = self.find(r)?;
        self.slots[i].as_mut().map(|(_, s)| &mut **s)
    }

    pub(crate) fn contains_key(&self, r: SeriesRef) -> bool {
        self.find(r).is_some()
    }

    /// Adds or replaces the series of `r`, returning the one replaced.
    pub(crate) fn insert(&mut self, r: SeriesRef, s: Box<MemSeries>) -> Option<Box<MemSeries>> {
        if let Some(i) = self.find(r) {
            return self.slots[i].replace((r, s)).map(|(_, old)| old);
        }
        if (self.len + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        self.place(r, s);
        self.len += 1;
        None
    }

    /// Puts `r` in the first free slot from its home; `r` must not be in the table.
    fn place(&mut self, r: SeriesRef, s: Box<MemSeries>) {
        let mut i = self.home(r);
        while self.slots[i].is_some() {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = Some((r, s));
    }

    pub(crate) fn remove(&mut self, r: SeriesRef) -> Option<Box<MemSeries>> {
        let mut hole = self.find(r)?;
        let (_, removed) = self.slots[hole].take().expect("found");
        self.len -= 1;
        // Backward shift: move up every later entry of the probe run that may live in the
        // hole (its home is not cyclically within (hole, j]), so no run has a gap.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = &self.slots[j] else { break };
            let home = self.home(*k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        Some(removed)
    }

    /// Gives memory back after many removals: halves the table while it is less than
    /// 1/8 full.
    pub(crate) fn shrink(&mut self) {
        let mut n = self.slots.len();
        while n > MIN_SLOTS && self.len * SHRINK_DEN < n {
            n /= 2;
        }
        if n < self.slots.len() {
            self.resize(if self.len == 0 { 0 } else { n });
        }
    }

    fn resize(&mut self, n: usize) {
        let old = std::mem::take(&mut self.slots);
        self.slots = Vec::with_capacity(n);
        self.slots.resize_with(n, || None);
        for (r, s) in old.into_iter().flatten() {
            self.place(r, s);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (SeriesRef, &MemSeries)> {
        self.slots.iter().flatten().map(|(r, s)| (*r, &**s))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (SeriesRef, &mut MemSeries)> {
        self.slots.iter_mut().flatten().map(|(r, s)| (*r, &mut **s))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &MemSeries> {
        self.iter().map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Symbols;
    use std::collections::HashMap;

    fn series(symbols: &mut Symbols, r: SeriesRef) -> Box<MemSeries> {
        Box::new(MemSeries::new(symbols.acquire_set(&[("r", &r.to_string())])))
    }

    /// The table against a std HashMap under a long pseudo-random mix of inserts and
    /// removals, including refs that collide and wrap around the end of the table.
    #[test]
    fn agrees_with_a_hash_map_through_inserts_removals_and_resizes() {
        let mut symbols = Symbols::default();
        let mut map = SeriesMap::default();
        let mut model: HashMap<SeriesRef, i64> = HashMap::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for step in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly a sliding window of refs (as the head's churn is), some far ones.
            let r = if x.is_multiple_of(10) {
                x >> 40
            } else {
                step / 4 + x % 3000
            };
            if x.is_multiple_of(3) {
                assert_eq!(map.remove(r).is_some(), model.remove(&r).is_some(), "remove {r}");
            } else {
                let mut s = series(&mut symbols, r);
                s.pins = step as u32;
                let replaced = map.insert(r, s).is_some();
                assert_eq!(replaced, model.insert(r, step as i64).is_some(), "insert {r}");
            }
            if step % 5000 == 0 {
                map.shrink();
            }
            assert_eq!(map.len(), model.len());
        }
        for (r, pins) in &model {
            assert_eq!(map.get(*r).map(|s| s.pins as i64), Some(*pins), "ref {r}");
        }
        let mut seen: Vec<SeriesRef> = map.iter().map(|(r, _)| r).collect();
        seen.sort_unstable();
        let mut want: Vec<SeriesRef> = model.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        assert!(!map.contains_key(u64::MAX));
    }

    #[test]
    fn grows_at_seven_eighths_and_shrinks_when_mostly_empty() {
        let mut symbols = Symbols::default();
        let mut map = SeriesMap::default();
        for r in 1..=(MIN_SLOTS * 7 / 8) as u64 {
            map.insert(r, series(&mut symbols, r));
        }
        assert_eq!(map.slots.len(), MIN_SLOTS);
        map.insert(1000, series(&mut symbols, 1000));
        assert_eq!(map.slots.len(), 2 * MIN_SLOTS);
        for r in 1..=100_000u64 {
            map.insert(r, series(&mut symbols, r));
        }
        assert_eq!(map.slots.len(), 131_072, "100k refs fit the 7/8 load of 2^17 slots");
        for r in 10..=100_000u64 {
            map.remove(r);
        }
        map.remove(1000);
        map.shrink();
        assert_eq!(
            (map.len(), map.slots.len()),
            (9, 64),
            "halved while under 1/8 full: 72 > 64"
        );
        assert!((1..10).all(|r| map.get(r).is_some()));
        for r in 1..10 {
            map.remove(r);
        }
        map.shrink();
        assert_eq!(map.memory_bytes(), 0);
        assert!(map.get(1).is_none());
    }
}
