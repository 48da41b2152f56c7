//! The scrape cache: raw series text (the bytes before the value) → what the series
//! became, the SDK's series handle or "dropped by relabelling", as Prometheus's scrape
//! cache maps it to a storage reference.
//!
//! Only for series the SDK cannot find by their raw text itself: those printed
//! otherwise than the SDK's text of their stored labels (labels unsorted, `{}`, empty
//! values, `__` labels) and every series once metric relabelling is configured. A Go
//! exporter's page needs no cache at all (see `Scraper::emit`).
//!
//! Exporters print their series in the same order every time, so the cache first
//! compares a line with the series at the same position in the previous scrape: a
//! sequential walk over the entries, with no hashing. Only a line that moved or is
//! new goes to the hash table. In wasm32 this matters: a hash table probe that
//! misses the CPU cache cost ~200 ns per sample, the positional check ~10 ns.
//!
//! The texts live back to back in one buffer, in the order they were first seen and
//! rewritten in page order when half of it is dead, so the positional walk reads
//! memory sequentially. With a separate allocation per text, the first load of each
//! one missed the CPU cache: that load was 15 % of the whole daemon's CPU when
//! scraping a 10k-series page every second.

use hashbrown::HashTable;
use sonde_plugin_sdk::text::{hash as key_hash, same};

/// Cache entry value for a series that metric relabelling drops.
pub const DROPPED: u64 = u64::MAX;

/// Dead text bytes tolerated before a rewrite, whatever the buffer's size.
const MIN_DEAD: usize = 64 * 1024;

/// 20 bytes in wasm32 (the hash is recomputed from the text when the table grows).
struct Entry {
    /// The raw series text: `keys[start..start + len]`; `len` [`FREE`]: a free slot.
    start: u32,
    len: u32,
    /// `Collection::sample_handle` of the series, or [`DROPPED`], in two halves (so
    /// the entry needs no 8-byte alignment).
    handle: [u32; 2],
    /// The scrape that last saw this series.
    seen: u32,
}

/// `Entry::len` of a free slot.
const FREE: u32 = u32::MAX;

impl Entry {
    fn live(&self) -> bool {
        self.len != FREE
    }

    fn text<'k>(&self, keys: &'k [u8]) -> &'k [u8] {
        &keys[self.start as usize..(self.start + self.len) as usize]
    }

    fn handle(&self) -> u64 {
        (self.handle[1] as u64) << 32 | self.handle[0] as u64
    }

    fn set_handle(&mut self, h: u64) {
        self.handle = [h as u32, (h >> 32) as u32];
    }
}

#[derive(Default)]
pub struct Cache {
    /// Entries by index; free ones (see [`FREE`]) are listed in `free`.
    slab: Vec<Entry>,
    free: Vec<u32>,
    /// Entries in `slab`.
    len: usize,
    /// The entries' texts, back to back.
    keys: Vec<u8>,
    /// Bytes of `keys` that belong to no entry any more.
    dead: usize,
    /// Slab indices by key hash.
    table: HashTable<u32>,
    /// Slab index of each sample of the previous scrape, in page order.
    order: Vec<u32>,
    /// The same for the scrape under way.
    next_order: Vec<u32>,
    epoch: u32,
    /// Entries seen by the scrape under way.
    live: usize,
    /// `(lines, text bytes)` of a page, until the first insertion reserves them.
    expect: (usize, usize),
}

impl Cache {
    /// Says that a page has about `lines` samples whose series texts take about
    /// `text_bytes`: the first insertion sizes the text buffer and the entries for that
    /// at once. Grown by doubling, they would leave about their own size in freed
    /// blocks behind in the plugin's memory, which never shrinks. (Lazily, because a
    /// page the SDK recognises by its text alone needs no cache.)
    pub fn expect(&mut self, lines: usize, text_bytes: usize) {
        self.expect = (lines, text_bytes);
    }

    /// Starts a scrape.
    pub fn begin(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.live = 0;
        self.next_order.clear();
    }

    fn reserve_expected(&mut self) {
        let (lines, text_bytes) = std::mem::take(&mut self.expect);
        self.keys.reserve_exact(text_bytes);
        self.slab.reserve_exact(lines);
        self.order.reserve_exact(lines);
        self.next_order.reserve_exact(lines);
        let (slab, keys) = (&self.slab, &self.keys);
        self.table.reserve(lines, |&i| key_hash(slab[i as usize].text(keys)));
    }

    fn key(&self, idx: u32) -> Option<&[u8]> {
        let e = &self.slab[idx as usize];
        e.live().then(|| e.text(&self.keys))
    }

    /// The entry that came next in the previous scrape (not counting the samples the
    /// cache did not serve) and its text. When the line is that series, say so with
    /// [`Cache::confirm`].
    pub fn expected(&self) -> Option<(u32, &[u8])> {
        let idx = *self.order.get(self.next_order.len())?;
        self.key(idx).map(|k| (idx, k))
    }

    /// The line read is the series [`Cache::expected`] gave: marks it seen.
    pub fn confirm(&mut self, idx: u32) {
        self.touch(idx);
    }

    /// The entry of `series` if it is the one [`Cache::expected`] gives; marks it seen.
    pub fn at_position(&mut self, series: &[u8]) -> Option<u32> {
        let (idx, _) = self.expected().filter(|(_, k)| same(k, series))?;
        self.touch(idx);
        Some(idx)
    }

    /// The entry of `series`, wherever it came in the previous scrape; marks it seen.
    pub fn find(&mut self, series: &[u8]) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let idx = *self
            .table
            .find(key_hash(series), |&i| self.key(i).is_some_and(|k| same(k, series)))?;
        self.touch(idx);
        Some(idx)
    }

    /// [`Cache::at_position`], then [`Cache::find`] (the scraper asks the SDK in
    /// between).
    #[cfg(test)]
    fn lookup(&mut self, series: &[u8]) -> Option<u32> {
        self.at_position(series).or_else(|| self.find(series))
    }

    /// Adds `series` (not cached yet: [`Cache::lookup`] said so) as the next sample.
    pub fn insert(&mut self, series: &[u8], handle: u64) -> u32 {
        if self.expect.0 > 0 {
            self.reserve_expected();
        }
        let hash = key_hash(series);
        let mut entry = Entry {
            start: self.keys.len() as u32,
            len: series.len() as u32,
            handle: [0; 2],
            seen: 0,
        };
        entry.set_handle(handle);
        self.keys.extend_from_slice(series);
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = entry;
                i
            }
            None => {
                self.slab.push(entry);
                (self.slab.len() - 1) as u32
            }
        };
        self.len += 1;
        let (slab, keys) = (&self.slab, &self.keys);
        self.table
            .insert_unique(hash, idx, |&i| key_hash(slab[i as usize].text(keys)));
        self.touch(idx);
        idx
    }

    fn touch(&mut self, idx: u32) {
        self.next_order.push(idx);
        let e = &mut self.slab[idx as usize];
        debug_assert!(e.live());
        if e.seen != self.epoch {
            e.seen = self.epoch;
            self.live += 1;
        }
    }

    pub fn handle(&self, idx: u32) -> u64 {
        let e = &self.slab[idx as usize];
        if e.live() { e.handle() } else { DROPPED }
    }

    pub fn set_handle(&mut self, idx: u32, handle: u64) {
        let e = &mut self.slab[idx as usize];
        if e.live() {
            e.set_handle(handle);
        }
    }

    /// Ends a successful scrape: its order is the one to expect next time, and the
    /// series it did not see are forgotten.
    pub fn end(&mut self) {
        std::mem::swap(&mut self.order, &mut self.next_order);
        if self.live != self.len {
            let epoch = self.epoch;
            let slab = &self.slab;
            self.table
                .retain(|&mut i| slab[i as usize].live() && slab[i as usize].seen == epoch);
            for (i, e) in self.slab.iter_mut().enumerate() {
                if e.live() && e.seen != epoch {
                    self.dead += e.len as usize;
                    e.len = FREE;
                    self.free.push(i as u32);
                    self.len -= 1;
                }
            }
        }
        if self.dead > MIN_DEAD && self.dead > self.keys.len() / 2 {
            self.rewrite_keys();
        }
    }

    /// Rewrites `keys` with only the live texts, in the page order just seen.
    fn rewrite_keys(&mut self) {
        let mut keys = Vec::with_capacity(self.keys.len() - self.dead);
        let epoch = self.epoch;
        // After `end`, every entry was seen by this scrape and is in `order`; a series
        // printed twice on the page is moved once (marked by clearing `seen`).
        for &i in &self.order {
            let e = &mut self.slab[i as usize];
            if e.live() && e.seen == epoch {
                let start = keys.len() as u32;
                keys.extend_from_slice(e.text(&self.keys));
                e.start = start;
                e.seen = epoch.wrapping_sub(1);
            }
        }
        for e in self.slab.iter_mut().filter(|e| e.live()) {
            e.seen = epoch;
        }
        debug_assert_eq!(keys.len(), self.keys.len() - self.dead);
        self.keys = keys;
        self.dead = 0;
    }

    /// Series cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_scrape_sizes_the_cache_for_the_page_once() {
        let mut c = Cache::default();
        c.expect(5, 64);
        c.begin();
        assert_eq!(c.slab.capacity(), 0, "nothing before the first insertion");
        for i in 0..5u64 {
            c.insert(format!("m{{i=\"{i}\"}}").as_bytes(), i);
            assert_eq!((c.keys.capacity(), c.slab.capacity(), c.order.capacity()), (64, 5, 5));
        }
        c.end();
        c.begin();
        c.insert(b"another", 5);
        assert_eq!(c.slab.capacity(), 10, "later insertions grow as needed");
    }

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

    /// Handles of `keys` looked up as one scrape; `None` for a miss (then inserted
    /// with handle = 1000 + position).
    fn scrape(c: &mut Cache, keys: &[String]) -> Vec<Option<u64>> {
        c.begin();
        let got = keys
            .iter()
            .enumerate()
            .map(|(pos, k)| match c.lookup(k.as_bytes()) {
                Some(i) => Some(c.handle(i)),
                None => {
                    c.insert(k.as_bytes(), 1000 + pos as u64);
                    None
                }
            })
            .collect();
        c.end();
        got
    }

    #[test]
    fn texts_are_rewritten_in_page_order_once_half_are_dead() {
        let page = |from: usize, to: usize| -> Vec<String> {
            (from..to)
                .map(|i| format!("metric_with_a_longish_name{{instance=\"{i}\"}}"))
                .collect()
        };
        let mut c = Cache::default();
        let first = page(0, 4000);
        assert!(scrape(&mut c, &first).iter().all(Option::is_none));
        let bytes_first: usize = first.iter().map(String::len).sum();
        assert_eq!(c.keys.len(), bytes_first);
        // The first 3000 go, 1000 new ones come, printed before the survivors, and
        // one survivor twice: more than half the texts are dead.
        let mut second = page(10_000, 11_000);
        second.extend(page(3000, 4000));
        second.push(first[3999].clone());
        let got = scrape(&mut c, &second);
        assert!(got[..1000].iter().all(Option::is_none));
        for (i, h) in got[1000..2000].iter().enumerate() {
            assert_eq!(*h, Some(1000 + 3000 + i as u64), "survivor {i} keeps its handle");
        }
        assert_eq!(got[2000], Some(1000 + 3999));
        // Rewritten: live texts only, in the page's order.
        let live: usize = second[..2000].iter().map(String::len).sum();
        assert_eq!(c.dead, 0);
        assert_eq!(c.keys.len(), live);
        let in_order: Vec<u8> = second[..2000].iter().flat_map(|k| k.bytes()).collect();
        assert_eq!(c.keys, in_order);
        // Everything is still found, at its position and moved.
        let got = scrape(&mut c, &second);
        assert!(got.iter().all(Option::is_some));
        let mut moved = second.clone();
        moved.reverse();
        let again = scrape(&mut c, &moved);
        let mut expect = got.clone();
        expect.reverse();
        assert_eq!(again, expect);
        assert_eq!(c.len(), 2000);
    }
}
