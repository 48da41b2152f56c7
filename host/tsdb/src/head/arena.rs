//! Where the head keeps its closed chunks' bytes: packed, one time range after the
//! other, into pages of its own.
//!
//! A closed chunk lives until its range is cut into a block, and then every chunk of
//! that range goes at once. Kept as one heap block each, 100k series leave 100k holes
//! in malloc's heap at every cut, between the blocks that live on (series, label ids,
//! open chunks), and the holes stay resident. Here a range's chunks share pages that
//! hold nothing else, so a cut frees whole pages; pages of 128 KiB and more are mapped
//! by malloc apart from its heap and go back to the system when freed (8–10 MiB less
//! RSS at 100k series). Each chunk also saves malloc's 8-byte header and rounding.
//!
//! A page is shared by its chunks (`Arc`) and freed with the last of them. Bytes are
//! written once, before the chunk holding them exists, and never again.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A range's first page; each further page of the same range doubles, up to [`MAX_PAGE`]:
/// a head of ten series does not reserve a quarter megabyte per range.
const FIRST_PAGE: usize = 4 << 10;
/// Large enough to be mapped apart from malloc's heap (sonde fixes the threshold at 128 KiB).
const MAX_PAGE: usize = 256 << 10;

struct Page {
    ptr: NonNull<u8>,
    cap: usize,
    /// The arena's count of bytes in live pages.
    total: Arc<AtomicUsize>,
}

// SAFETY: a page is a plain byte buffer. Bytes handed out as a `PagedBytes` are
// never written again, so reading them from several threads is race-free; the only
// writes go through the `ChunkArena` holding the page's cursor, to bytes not yet
// handed out (see `ChunkArena::store`).
unsafe impl Send for Page {}
unsafe impl Sync for Page {}

impl Page {
    fn new(cap: usize, total: &Arc<AtomicUsize>) -> Arc<Page> {
        let layout = Layout::from_size_align(cap, 1).expect("page size fits a layout");
        // SAFETY: `cap` is at least FIRST_PAGE, never zero.
        let ptr = NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout));
        total.fetch_add(cap, Ordering::Relaxed);
        Arc::new(Page {
            ptr,
            cap,
            total: total.clone(),
        })
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.total.fetch_sub(self.cap, Ordering::Relaxed);
        // SAFETY: allocated in `Page::new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.cap, 1)) }
    }
}

/// Bytes stored in a page: 16 bytes, as a `Box<[u8]>` is.
pub(crate) struct PagedBytes {
    page: Arc<Page>,
    off: u32,
    len: u32,
}

impl PagedBytes {
    pub(crate) fn get(&self) -> &[u8] {
        // SAFETY: `off..off + len` lies in the page (checked in `store`), was written
        // before this value was made, and is never written again.
        unsafe { std::slice::from_raw_parts(self.page.ptr.as_ptr().add(self.off as usize), self.len as usize) }
    }
}

/// The page a range's chunks are being added to.
struct Cursor {
    range: i64,
    page: Arc<Page>,
    used: usize,
}

/// The head's closed-chunk pages (one per [`Inner`](super::Inner), under its write lock).
#[derive(Default)]
pub(crate) struct ChunkArena {
    /// One per range chunks were recently closed in: usually the current range and the
    /// one before.
    cursors: Vec<Cursor>,
    total: Arc<AtomicUsize>,
}

impl ChunkArena {
    /// Copies `parts`, one after the other, into a page of `range` (a range index: chunk
    /// time / block range). Empty `parts` take no room.
    pub(crate) fn store(&mut self, range: i64, parts: &[&[u8]]) -> PagedBytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len).expect("a chunk is far smaller than 4 GiB");
        let i = match self.cursors.iter().position(|c| c.range == range) {
            Some(i) => i,
            None => {
                self.cursors.push(Cursor {
                    range,
                    page: Page::new(FIRST_PAGE.max(len), &self.total),
                    used: 0,
                });
                self.cursors.len() - 1
            }
        };
        let c = &mut self.cursors[i];
        if c.page.cap - c.used < len {
            let cap = (c.page.cap * 2).min(MAX_PAGE).max(len);
            c.page = Page::new(cap, &self.total);
            c.used = 0;
        }
        let off = c.used;
        let mut at = off;
        for p in parts {
            // SAFETY: `at..at + p.len()` is inside the page (`len` fits after `used`)
            // and past every byte handed out so far, so nothing reads it yet; `p` is
            // not in the page (the page's free bytes are reachable only from here).
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), c.page.ptr.as_ptr().add(at), p.len()) };
            at += p.len();
        }
        c.used = at;
        PagedBytes {
            page: c.page.clone(),
            off: off as u32,
            len: len32,
        }
    }

    /// Stops adding to the pages of ranges before `range`: their chunks are being dropped,
    /// and a page goes with its last chunk once no cursor holds it.
    pub(crate) fn retire_before(&mut self, range: i64) {
        self.cursors.retain(|c| c.range >= range);
    }

    /// Bytes in live pages, used or not.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_back_and_pages_go_with_their_last_chunk() {
        let mut a = ChunkArena::default();
        let x = a.store(5, &[b"head", b"er and stream"]);
        let y = a.store(6, &[b"other range"]);
        let z = a.store(5, &[b"", b"more"]);
        assert_eq!(
            (x.get(), y.get(), z.get()),
            (&b"header and stream"[..], &b"other range"[..], &b"more"[..])
        );
        assert!(Arc::ptr_eq(&x.page, &z.page) && !Arc::ptr_eq(&x.page, &y.page));
        assert_eq!(a.memory_bytes(), 2 * FIRST_PAGE);
        a.retire_before(6);
        drop(x);
        assert_eq!(a.memory_bytes(), 2 * FIRST_PAGE, "z still holds the page");
        drop(z);
        assert_eq!(a.memory_bytes(), FIRST_PAGE);
        assert_eq!(y.get(), b"other range");
    }

    #[test]
    fn a_range_fills_pages_that_double_up_to_the_largest() {
        let mut a = ChunkArena::default();
        let chunk = [7u8; 1000];
        let kept: Vec<_> = (0..2000).map(|_| a.store(0, &[&chunk])).collect();
        assert!(kept.iter().all(|b| b.get() == chunk));
        // The pages in the order they were filled, by their chunks' page.
        let mut pages: Vec<&Arc<Page>> = kept.iter().map(|b| &b.page).collect();
        pages.dedup_by(|x, y| Arc::ptr_eq(x, y));
        let caps: Vec<usize> = pages.iter().map(|p| p.cap).collect();
        assert_eq!(caps[..7], [4, 8, 16, 32, 64, 128, 256].map(|k| k << 10));
        assert!(caps[7..].iter().all(|&c| c == MAX_PAGE) && caps.len() > 8, "{caps:?}");
        // Little is left unused: less than a chunk at the end of each full page, and
        // the rest of the page being filled.
        assert_eq!(a.memory_bytes(), caps.iter().sum::<usize>());
        assert!(a.memory_bytes() < 2000 * 1000 + caps.len() * 1000 + MAX_PAGE);
        // A chunk larger than a page gets a page of its own size.
        let big = vec![1u8; MAX_PAGE + 10];
        assert_eq!(a.store(9, &[&big]).get(), &big[..]);
    }
}
