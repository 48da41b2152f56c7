//! Page lists: one series' column made of whole columns of consecutive time ranges, copied as
//! they are. Compacting 1 h blocks into 6 h and 24 h ones concatenates their pco columns
//! instead of decoding and encoding every sample again, and a query decodes only the pages
//! that overlap its range.
//!
//! ```text
//! tag 0x04: varint n (≥ 1), varint k (≥ 2), then k pages:
//!   varint samples (≥ 1)
//!   first page: varint(zigzag) min_t; later pages: varint (min_t − previous page's max_t − 1)
//!   varint (max_t − min_t)
//!   varint length, a column of tag 0x01, 0x02 or 0x03 holding the page's samples
//! ```

use super::ChunkError;
use super::column::{MAX_COLUMN_SAMPLES, decode_flat, read_varint, write_varint};

pub(super) const TAG_PAGES: u8 = 0x04;

/// A column (any tag) and what it holds, for [`column_from_pages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page<'a> {
    pub bytes: &'a [u8],
    pub samples: u64,
    pub min_t: i64,
    pub max_t: i64,
}

fn corrupt(what: &'static str) -> ChunkError {
    ChunkError::CorruptColumn { what }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// The pages of a column: itself, or the pages it lists when it is a page list.
fn pages_of(page: Page<'_>) -> Result<Vec<Page<'_>>, ChunkError> {
    if page.bytes.first() != Some(&TAG_PAGES) {
        return Ok(vec![page]);
    }
    let mut pos = 1;
    let n = read_varint(page.bytes, &mut pos)?;
    let pages = read_headers(page.bytes, &mut pos)?;
    if pages.iter().map(|p| p.samples).sum::<u64>() != n {
        return Err(corrupt("page sample counts differ from the column's"));
    }
    Ok(pages)
}

/// Appends to `out` one column holding every page in order (page lists among them are
/// flattened). The pages' time ranges must ascend without overlapping. Returns the number of
/// samples. With a single page, its column is copied as it is.
pub fn column_from_pages(out: &mut Vec<u8>, pages: &[Page<'_>]) -> Result<u64, ChunkError> {
    let mut flat = Vec::with_capacity(pages.len());
    for p in pages {
        flat.extend(pages_of(*p)?);
    }
    if flat.windows(2).any(|w| w[1].min_t <= w[0].max_t) || flat.iter().any(|p| p.max_t < p.min_t || p.samples == 0) {
        return Err(corrupt("pages overlap or are out of order"));
    }
    let n: u64 = flat.iter().map(|p| p.samples).sum();
    if n > MAX_COLUMN_SAMPLES as u64 {
        return Err(corrupt("more samples than a column may hold"));
    }
    if let [one] = flat[..] {
        out.extend_from_slice(one.bytes);
        return Ok(n);
    }
    out.push(TAG_PAGES);
    write_varint(out, n);
    write_varint(out, flat.len() as u64);
    let mut prev_max: Option<i64> = None;
    for p in &flat {
        write_varint(out, p.samples);
        match prev_max {
            None => write_varint(out, zigzag(p.min_t)),
            Some(m) => write_varint(out, (p.min_t - m - 1) as u64),
        }
        write_varint(out, (p.max_t - p.min_t) as u64);
        write_varint(out, p.bytes.len() as u64);
        out.extend_from_slice(p.bytes);
        prev_max = Some(p.max_t);
    }
    Ok(n)
}

/// Reads the page count and every page header after a page list's sample count.
fn read_headers<'a>(b: &'a [u8], pos: &mut usize) -> Result<Vec<Page<'a>>, ChunkError> {
    let k = read_varint(b, pos)?;
    // A page takes at least 5 bytes, which bounds the allocation by the input's size.
    if k < 2 || k > (b.len() / 5) as u64 {
        return Err(corrupt("a page list holds two pages or more"));
    }
    let mut pages = Vec::with_capacity(k as usize);
    let mut prev_max: Option<i64> = None;
    for _ in 0..k {
        let samples = read_varint(b, pos)?;
        let start = read_varint(b, pos)?;
        let min_t = match prev_max {
            None => Some(unzigzag(start)),
            Some(m) => i64::try_from(start).ok().and_then(|d| m.checked_add(d)?.checked_add(1)),
        };
        let span = i64::try_from(read_varint(b, pos)?).ok();
        let max_t = min_t.zip(span).and_then(|(lo, d)| lo.checked_add(d));
        let (Some(min_t), Some(max_t)) = (min_t, max_t) else {
            return Err(corrupt("page times overflow"));
        };
        let len = read_varint(b, pos)?;
        let end = (*pos as u64).checked_add(len).filter(|&end| end <= b.len() as u64);
        let end = end.ok_or(corrupt("page cut short"))? as usize;
        if samples == 0 {
            return Err(corrupt("empty page"));
        }
        pages.push(Page {
            bytes: &b[*pos..end],
            samples,
            min_t,
            max_t,
        });
        *pos = end;
        prev_max = Some(max_t);
    }
    if *pos != b.len() {
        return Err(corrupt("bytes after the last page"));
    }
    Ok(pages)
}

/// Decodes the pages of a page list (after its tag and sample count `n`) that overlap
/// `[mint, maxt]`; every page header is checked, and every decoded page against its header.
pub(super) fn decode_pages(b: &[u8], n: usize, mint: i64, maxt: i64) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    let mut pos = 0;
    let pages = read_headers(b, &mut pos)?;
    if pages.iter().map(|p| p.samples).sum::<u64>() != n as u64 {
        return Err(corrupt("page sample counts differ from the column's"));
    }
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    for p in pages.iter().filter(|p| p.max_t >= mint && p.min_t <= maxt) {
        let (t, v) = decode_flat(p.bytes, false)?;
        if t.len() as u64 != p.samples || t.first() != Some(&p.min_t) || t.last() != Some(&p.max_t) {
            return Err(corrupt("a page differs from its header"));
        }
        ts.extend(t);
        vs.extend(v);
    }
    Ok((ts, vs))
}

/// Decodes a column, skipping the pages of a page list that lie outside `[mint, maxt]`
/// (other columns are decoded whole: the caller filters by time either way).
pub fn decode_columns_in(b: &[u8], mint: i64, maxt: i64) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    if b.first() != Some(&TAG_PAGES) {
        return decode_flat(b, false);
    }
    let mut pos = 1;
    let n = read_varint(b, &mut pos)?;
    if n > MAX_COLUMN_SAMPLES as u64 {
        return Err(corrupt("more samples than a column may hold"));
    }
    decode_pages(&b[pos..], n as usize, mint, maxt)
}

#[cfg(test)]
mod tests {
    use super::super::column::decode_columns;
    use super::super::tests::*;
    use super::super::{encode_columns, encode_stream_column};
    use super::*;

    type Encoded<'a> = Vec<(Vec<u8>, &'a [(i64, f64)])>;

    /// Columns of consecutive `len`-sample stretches of `set`, each encoded with `encode`.
    fn columns(set: &[(i64, f64)], len: usize, encode: fn(&[i64], &[f64]) -> Vec<u8>) -> Encoded<'_> {
        set.chunks(len)
            .map(|part| {
                let (ts, vs): (Vec<i64>, Vec<f64>) = part.iter().copied().unzip();
                (encode(&ts, &vs), part)
            })
            .collect()
    }

    fn page<'a>(bytes: &'a [u8], part: &[(i64, f64)]) -> Page<'a> {
        Page {
            bytes,
            samples: part.len() as u64,
            min_t: part[0].0,
            max_t: part[part.len() - 1].0,
        }
    }

    fn series(n: i64) -> Vec<(i64, f64)> {
        (0..n)
            .map(|i| (1_767_225_600_000 + i * 1000, (i * 37 % 101) as f64 / 4.0))
            .collect()
    }

    #[test]
    fn pages_concatenate_flatten_and_decode_by_range() {
        let set = series(1000);
        let cols = columns(&set, 300, encode_columns);
        let pages: Vec<Page> = cols.iter().map(|(b, part)| page(b, part)).collect();
        // Two page lists of two pages each, concatenated again: flattened into one of four.
        let (mut first, mut second) = (Vec::new(), Vec::new());
        assert_eq!(column_from_pages(&mut first, &pages[..2]).unwrap(), 600);
        assert_eq!(column_from_pages(&mut second, &pages[2..]).unwrap(), 400);
        let mut all = Vec::new();
        let halves = [page(&first, &set[..600]), page(&second, &set[600..])];
        assert_eq!(column_from_pages(&mut all, &halves).unwrap(), 1000);
        assert_eq!((all[0], all[1], all[2]), (TAG_PAGES, 0xe8, 0x07));
        assert_eq!(all[3], 4, "four pages, not two lists");
        let (ts, vs) = decode_columns(&all).unwrap();
        assert_same(&ts.into_iter().zip(vs).collect::<Vec<_>>(), &set);
        // A range inside the third page decodes that page only.
        let (lo, hi) = (set[650].0, set[660].0);
        let (ts, _) = decode_columns_in(&all, lo, hi).unwrap();
        assert_eq!((ts.len(), ts[0], ts[299]), (300, set[600].0, set[899].0));
        assert!(decode_columns_in(&all, 0, 10).unwrap().0.is_empty());
        // One page is copied as it is.
        let mut one = Vec::new();
        column_from_pages(&mut one, &pages[..1]).unwrap();
        assert_eq!(one, cols[0].0);
    }

    #[test]
    fn overlapping_pages_are_refused() {
        let set = series(100);
        let cols = columns(&set, 60, encode_stream_column);
        let a = page(&cols[0].0, cols[0].1);
        let b = page(&cols[1].0, cols[1].1);
        assert!(column_from_pages(&mut Vec::new(), &[b, a]).is_err(), "out of order");
        assert!(
            column_from_pages(&mut Vec::new(), &[a, a]).is_err(),
            "the same range twice"
        );
    }

    #[test]
    fn corrupt_page_lists_are_errors_not_panics() {
        let mut rng = Rng(17);
        let set = series(500);
        let cols = columns(&set, 120, encode_columns);
        let pages: Vec<Page> = cols.iter().map(|(b, part)| page(b, part)).collect();
        let mut col = Vec::new();
        column_from_pages(&mut col, &pages).unwrap();
        for bad in damaged(&col, &mut rng) {
            if let Ok((ts, vs)) = decode_columns(&bad) {
                assert_eq!(ts.len(), vs.len());
                assert!(ts.windows(2).all(|w| w[0] < w[1]));
            }
            let _ = decode_columns_in(&bad, set[200].0, set[210].0);
        }
        // A page claiming other times than it holds.
        let mut lying = pages.clone();
        lying[1].max_t += 1;
        let mut col = Vec::new();
        column_from_pages(&mut col, &lying).unwrap();
        assert!(decode_columns(&col).is_err());
        // A page list nested in a page.
        let mut nested = vec![TAG_PAGES, 2, 2, 1, 0, 0, 3];
        nested.extend_from_slice(&[TAG_PAGES, 1, 0]);
        assert!(decode_columns(&nested).is_err());
    }
}
