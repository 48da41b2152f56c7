//! Segment files: naming, the segment header, record framing, and the buffered frame
//! reader and writer shared by the live log and checkpoints.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::WalError;
use super::record::{RecordRef, RecordType};

/// `b"sWAL"`, format version 1, three reserved zero bytes.
pub const SEGMENT_HEADER: [u8; 8] = *b"sWAL\x01\0\0\0";
pub const SEGMENT_HEADER_LEN: u64 = SEGMENT_HEADER.len() as u64;

/// type (1) + payload length (u32 LE) + CRC32 (u32 LE).
pub const FRAME_HEADER_LEN: usize = 9;

/// Largest payload the reader accepts, so a corrupt length cannot make it allocate
/// gigabytes. The writer splits sample and ref batches well below this (`MAX_BATCH`).
pub const MAX_RECORD_LEN: usize = 16 << 20;

/// Samples or refs per record at most; a larger batch is logged as several records.
/// Worst case 64 Ki × 28 bytes ≈ 1.8 MiB, far below `MAX_RECORD_LEN`.
pub const MAX_BATCH: usize = 1 << 16;

/// The reader's block size: large sequential reads are what make replay fast.
const READ_BLOCK: usize = 1 << 20;

/// The writer hands its buffer to the OS (a `write(2)`, not an fsync) past this size.
const WRITE_BUFFER: usize = 256 << 10;

pub fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

pub fn checkpoint_name(index: u32) -> String {
    format!("checkpoint.{index:08}")
}

fn parse_index(s: &str) -> Option<u32> {
    if s.len() >= 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// What a WAL directory (or a checkpoint directory) holds, each list sorted by index.
#[derive(Debug, Default)]
pub struct Listing {
    pub segments: Vec<u32>,
    pub checkpoints: Vec<u32>,
    /// `checkpoint.N.tmp` directories: checkpoints that never finished.
    pub partial_checkpoints: Vec<PathBuf>,
}

pub fn list(dir: &Path) -> Result<Listing, WalError> {
    let mut l = Listing::default();
    for entry in fs::read_dir(dir).map_err(WalError::io("list", dir))? {
        let entry = entry.map_err(WalError::io("list", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(i) = parse_index(&name) {
            l.segments.push(i);
        } else if let Some(rest) = name.strip_prefix("checkpoint.") {
            if let Some(i) = parse_index(rest) {
                l.checkpoints.push(i);
            } else if rest.ends_with(".tmp") {
                l.partial_checkpoints.push(entry.path());
            }
        }
    }
    l.segments.sort_unstable();
    l.checkpoints.sort_unstable();
    Ok(l)
}

/// Makes directory entries (created, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io("fsync directory", dir))
}

/// Fills in the frame header of `frame`, whose payload follows `FRAME_HEADER_LEN` reserved bytes.
fn seal_frame(frame: &mut [u8], typ: RecordType) {
    let len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[0] = typ as u8;
    frame[1..5].copy_from_slice(&len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&frame[..5]);
    h.update(&frame[FRAME_HEADER_LEN..]);
    frame[5..9].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Why reading stopped before the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The segment header is missing, short or not ours.
    BadHeader,
    /// The file ends inside a frame header or payload: a torn write.
    Torn { have: u64, need: u64 },
    /// Type byte zero (never written; a zeroed tail) or a length over `MAX_RECORD_LEN`.
    BadFrame { typ: u8, len: u64 },
    /// The CRC does not match: garbage or a flipped bit.
    Checksum,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::BadHeader => write!(f, "missing or unknown segment header"),
            Damage::Torn { have, need } => write!(f, "torn record: {have} of {need} bytes present"),
            Damage::BadFrame { typ, len } => write!(f, "invalid frame header (type {typ}, length {len})"),
            Damage::Checksum => write!(f, "CRC mismatch"),
        }
    }
}

pub enum Frame<'a> {
    Record { typ: u8, payload: &'a [u8] },
    End,
    Damaged(Damage),
}

/// Reads frames from one segment file in large blocks, verifying each CRC.
pub struct FrameReader {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`: where the next frame begins.
    offset: u64,
    header_checked: bool,
}

impl FrameReader {
    pub fn open(path: &Path) -> Result<Self, WalError> {
        let file = File::open(path).map_err(WalError::io("open", path))?;
        Ok(FrameReader {
            file,
            path: path.to_owned(),
            buf: vec![0; READ_BLOCK],
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            header_checked: false,
        })
    }

    /// File offset just past the last frame returned: the length of the good prefix.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes at least `n` bytes available from `start`, unless the file ends first.
    fn fill(&mut self, n: usize) -> Result<usize, WalError> {
        while self.end - self.start < n && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < n {
                self.buf.resize(n.next_multiple_of(READ_BLOCK), 0);
            }
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WalError::io("read", &self.path)(e)),
            }
        }
        Ok(self.end - self.start)
    }

    pub fn next(&mut self) -> Result<Frame<'_>, WalError> {
        if !self.header_checked {
            let have = self.fill(SEGMENT_HEADER.len())?;
            if have < SEGMENT_HEADER.len() || self.buf[..SEGMENT_HEADER.len()] != SEGMENT_HEADER {
                return Ok(Frame::Damaged(Damage::BadHeader));
            }
            self.start += SEGMENT_HEADER.len();
            self.offset = SEGMENT_HEADER_LEN;
            self.header_checked = true;
        }
        let have = self.fill(FRAME_HEADER_LEN)?;
        if have == 0 {
            return Ok(Frame::End);
        }
        if have < FRAME_HEADER_LEN {
            return Ok(Frame::Damaged(Damage::Torn {
                have: have as u64,
                need: FRAME_HEADER_LEN as u64,
            }));
        }
        let h = &self.buf[self.start..self.start + FRAME_HEADER_LEN];
        let typ = h[0];
        let len = u32::from_le_bytes(h[1..5].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(h[5..9].try_into().expect("4 bytes"));
        if typ == 0 || len > MAX_RECORD_LEN {
            return Ok(Frame::Damaged(Damage::BadFrame { typ, len: len as u64 }));
        }
        let need = FRAME_HEADER_LEN + len;
        let have = self.fill(need)?;
        if have < need {
            return Ok(Frame::Damaged(Damage::Torn {
                have: have as u64,
                need: need as u64,
            }));
        }
        let frame = &self.buf[self.start..self.start + need];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&frame[..5]);
        hasher.update(&frame[FRAME_HEADER_LEN..]);
        if hasher.finalize() != crc {
            return Ok(Frame::Damaged(Damage::Checksum));
        }
        self.start += need;
        self.offset += need as u64;
        Ok(Frame::Record {
            typ,
            payload: &frame[FRAME_HEADER_LEN..],
        })
    }
}

/// Appends frames to numbered segments in one directory, cutting a new segment when the
/// next record would push the active one past `segment_size`. Records never span segments;
/// a record larger than `segment_size` gets a segment to itself.
pub struct SegmentWriter {
    dir: PathBuf,
    segment_size: u64,
    index: u32,
    file: Arc<File>,
    /// Bytes of the active segment handed to the OS.
    written: u64,
    buf: Vec<u8>,
    /// Segments finished by `cut` since the last `drain_finished`.
    finished: Vec<Arc<File>>,
    pub bytes_written: u64,
    pub segments_created: u64,
}

impl SegmentWriter {
    /// Creates segment `index` (which must not exist) and writes its header.
    pub fn create(dir: &Path, index: u32, segment_size: u64) -> Result<Self, WalError> {
        let file = create_segment(dir, index)?;
        let mut w = Self::resume(dir, index, segment_size, file, 0);
        w.buf.extend_from_slice(&SEGMENT_HEADER);
        w.segments_created = 1;
        Ok(w)
    }

    /// Continues appending to an existing segment whose good prefix is `len` bytes long
    /// (`file` must be positioned there).
    pub fn resume(dir: &Path, index: u32, segment_size: u64, file: File, len: u64) -> Self {
        SegmentWriter {
            dir: dir.to_owned(),
            segment_size,
            index,
            file: Arc::new(file),
            written: len,
            buf: Vec::with_capacity(WRITE_BUFFER + 64 * 1024),
            finished: Vec::new(),
            bytes_written: 0,
            segments_created: 0,
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(segment_name(self.index))
    }

    /// Size of the active segment including buffered bytes.
    fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Frames and buffers one record, splitting large sample and ref batches.
    pub fn append(&mut self, rec: RecordRef<'_>) -> Result<(), WalError> {
        match rec {
            RecordRef::Samples(s) if s.len() > MAX_BATCH => s
                .chunks(MAX_BATCH)
                .try_for_each(|c| self.append_one(RecordRef::Samples(c))),
            RecordRef::Dropped(r) if r.len() > MAX_BATCH => r
                .chunks(MAX_BATCH)
                .try_for_each(|c| self.append_one(RecordRef::Dropped(c))),
            _ => self.append_one(rec),
        }
    }

    fn append_one(&mut self, rec: RecordRef<'_>) -> Result<(), WalError> {
        let start = self.buf.len();
        self.buf.resize(start + FRAME_HEADER_LEN, 0);
        rec.encode(&mut self.buf);
        let frame_len = self.buf.len() - start;
        if frame_len - FRAME_HEADER_LEN > MAX_RECORD_LEN {
            self.buf.truncate(start);
            return Err(WalError::RecordTooLarge {
                len: frame_len - FRAME_HEADER_LEN,
                max: MAX_RECORD_LEN,
            });
        }
        seal_frame(&mut self.buf[start..], rec.record_type());
        let before = self.len() - frame_len as u64;
        if before > SEGMENT_HEADER_LEN && self.len() > self.segment_size {
            // Rare (once per segment), so the allocation does not matter.
            let frame = self.buf.split_off(start);
            self.cut()?;
            self.buf.extend_from_slice(&frame);
        }
        if self.buf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes `buf[..upto]` to the active file and keeps the rest buffered.
    fn write_out(&mut self, upto: usize) -> Result<(), WalError> {
        if upto == 0 {
            return Ok(());
        }
        (&*self.file)
            .write_all(&self.buf[..upto])
            .map_err(WalError::io("write", &self.path()))?;
        self.written += upto as u64;
        self.bytes_written += upto as u64;
        self.buf.drain(..upto);
        Ok(())
    }

    /// Hands every buffered byte to the OS: from here the data survives a killed process
    /// (but not a power loss; that takes [`sync_files`](Self::sync_files)).
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.write_out(self.buf.len())
    }

    /// Closes the active segment (after writing out its buffer) and starts the next one.
    pub fn cut(&mut self) -> Result<(), WalError> {
        self.flush()?;
        let file = create_segment(&self.dir, self.index + 1)?;
        let old = std::mem::replace(&mut self.file, Arc::new(file));
        self.finished.push(old);
        self.index += 1;
        self.written = 0;
        self.buf.extend_from_slice(&SEGMENT_HEADER);
        self.segments_created += 1;
        Ok(())
    }

    /// Segments closed by [`cut`](Self::cut) since the last call; complete, so any fsync
    /// from now on makes them durable.
    pub fn drain_finished(&mut self) -> Vec<Arc<File>> {
        std::mem::take(&mut self.finished)
    }

    pub fn active_file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Flushes and fsyncs every segment this writer wrote to (checkpoints use this; the
    /// live log syncs through `Wal::begin_sync`).
    pub fn sync_all(&mut self) -> Result<(), WalError> {
        self.flush()?;
        for f in self.drain_finished().iter().chain([&self.file]) {
            f.sync_data().map_err(WalError::io("fsync a segment in", &self.dir))?;
        }
        Ok(())
    }
}

fn create_segment(dir: &Path, index: u32) -> Result<File, WalError> {
    let path = dir.join(segment_name(index));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(WalError::io("create", &path))?;
    sync_dir(dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{Decoder, Record};

    fn read_all(path: &Path) -> (Vec<Record>, Option<Damage>, u64) {
        let mut r = FrameReader::open(path).unwrap();
        let mut out = Vec::new();
        let mut d = Decoder::default();
        loop {
            match r.next().unwrap() {
                Frame::Record { typ, payload } => out.push(d.decode(typ, payload).unwrap().to_owned()),
                Frame::End => return (out, None, r.offset()),
                Frame::Damaged(dmg) => return (out, Some(dmg), r.offset()),
            }
        }
    }

    fn sync(w: &mut SegmentWriter) {
        w.sync_all().unwrap();
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(segment_name(1), "00000001");
        assert_eq!(checkpoint_name(12), "checkpoint.00000012");
        assert_eq!(parse_index("00000001"), Some(1));
        assert_eq!(parse_index(&segment_name(u32::MAX)), Some(u32::MAX));
        assert_eq!(parse_index("0001"), None);
        assert_eq!(parse_index("0000000x"), None);
        assert_eq!(parse_index("99999999999"), None);
    }

    #[test]
    fn writer_cuts_segments_and_reader_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, 256).unwrap();
        let recs: Vec<Record> = (0..50)
            .map(|i| Record::Samples(vec![(i, i as i64 * 1000, i as f64); 3]))
            .collect();
        for r in &recs {
            w.append(r.as_ref()).unwrap();
        }
        sync(&mut w);
        let l = list(dir.path()).unwrap();
        assert!(l.segments.len() > 5, "{:?}", l.segments);
        assert_eq!(l.segments, (1..=w.index()).collect::<Vec<_>>());
        let mut back = Vec::new();
        for i in l.segments {
            let path = dir.path().join(segment_name(i));
            assert!(fs::metadata(&path).unwrap().len() <= 256);
            let (recs, damage, _) = read_all(&path);
            assert_eq!(damage, None);
            back.extend(recs);
        }
        assert_eq!(back, recs);
    }

    #[test]
    fn oversized_record_gets_a_segment_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, 64).unwrap();
        let big = Record::Samples((0..100).map(|i| (i, 0, 0.0)).collect());
        w.append(big.as_ref()).unwrap();
        w.append(big.as_ref()).unwrap();
        sync(&mut w);
        assert_eq!(w.index(), 2);
        for i in 1..=2 {
            assert_eq!(read_all(&dir.path().join(segment_name(i))).0, vec![big.clone()]);
        }
    }

    #[test]
    fn large_batches_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, 64 << 20).unwrap();
        let samples: Vec<_> = (0..MAX_BATCH as u64 * 2 + 5).map(|i| (i, i as i64, i as f64)).collect();
        w.append(RecordRef::Samples(&samples)).unwrap();
        sync(&mut w);
        let (recs, damage, _) = read_all(&w.path());
        assert_eq!(damage, None);
        assert_eq!(recs.len(), 3);
        let all: Vec<_> = recs
            .into_iter()
            .flat_map(|r| if let Record::Samples(s) = r { s } else { vec![] })
            .collect();
        assert_eq!(all, samples);
    }

    #[test]
    fn reader_reports_each_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, 1 << 20).unwrap();
        w.append(Record::Dropped { refs: vec![1, 2, 3] }.as_ref()).unwrap();
        sync(&mut w);
        let path = w.path();
        let good = fs::read(&path).unwrap();
        let check = |bytes: &[u8], want: Damage| {
            fs::write(&path, bytes).unwrap();
            assert_eq!(read_all(&path).1, Some(want), "{bytes:?}");
        };
        check(&good[..3], Damage::BadHeader);
        check(b"PROMWAL\x01", Damage::BadHeader);
        check(&good[..10], Damage::Torn { have: 2, need: 9 });
        check(&good[..good.len() - 1], Damage::Torn { have: 12, need: 13 });
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 32]);
        check(&zeros, Damage::BadFrame { typ: 0, len: 0 });
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x10;
        check(&flipped, Damage::Checksum);
        let mut huge = good.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        check(
            &huge,
            Damage::BadFrame {
                typ: 4,
                len: u32::MAX as u64,
            },
        );
    }
}
