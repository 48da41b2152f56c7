//! Reads /proc, /sys and udev files into one reusable buffer, keeping the files open
//! between collections.
//!
//! Each WASI file operation is a round trip through the host's blocking-thread pool,
//! tens of µs of CPU, which dwarfs the parsing. So:
//! - a file read at one collection stays open for the next, which seeks back to the
//!   start and reads again: procfs and sysfs render the content anew for a read from
//!   offset 0, so this is one round trip per file instead of open + read + close.
//!   Files not read during a collection are closed at its end ([`Reader::sweep`]).
//! - a file is not read until a `read` returns 0 when the kernel's way of handing it
//!   out tells its end earlier ([`End`]).
//! - the path and content buffers are reused, so a collection allocates nothing here.

use crate::failure::Failure;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};

/// Why a file could not be read, with the path already in the message.
#[derive(Debug)]
pub struct ReadError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ReadError {
    /// The file (or the directory granting it) is not there: optional data is absent.
    pub fn is_absent(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::Unsupported
        )
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        Failure::Failed(e.message)
    }
}

/// The largest file we accept; /proc/stat of a big host is well below this, and a
/// bound keeps a runaway file from exhausting the instance's memory.
pub const MAX_FILE: usize = 16 << 20;

/// How a file ends. Reading until a `read` returns 0 costs a WASI round trip more
/// than the data needs; the kernel's way of handing out a file often tells earlier.
///
/// The thresholds only assume that a `read` is cut short by the kernel, never by
/// the host below 4 KiB (wasmtime reads up to 64 KiB at a time).
#[derive(Clone, Copy, PartialEq)]
pub enum End {
    /// At a `read` that returns 0.
    Eof,
    /// At a `read` shorter than 4 KiB: sysfs attributes and `single_open` procfs
    /// files are rendered whole and handed out as far as the request allows.
    Whole,
    /// At a `read` shorter than 2 KiB: record-by-record procfs files (seq_file) hand
    /// out one kernel page (4 KiB or more) at a time, cut before the first record that
    /// does not fit; with records under 2 KiB, a shorter read can only be the end.
    Records,
}

impl End {
    fn at(self, n: usize) -> bool {
        match self {
            End::Eof => n == 0,
            End::Whole => n < 4096,
            End::Records => n < 2048,
        }
    }
}

struct Open {
    file: File,
    /// The sweep generation in which the file was last read.
    used: u64,
}

#[derive(Default)]
pub struct Reader {
    path: String,
    /// Always fully initialised; `len` bytes of it hold the last file.
    buf: Vec<u8>,
    len: usize,
    lossy: String,
    open: HashMap<String, Open>,
    generation: u64,
}

impl Reader {
    /// Reads the file at `parts` joined with `/` and returns its text (invalid UTF-8
    /// is replaced, as a label value must be UTF-8 anyway).
    pub fn read(&mut self, parts: &[&str]) -> Result<&str, ReadError> {
        self.load_with(parts, MAX_FILE, End::Eof)?;
        Ok(self.text())
    }

    /// Reads the file into the buffer, for [`Reader::text`] to return: for callers
    /// that try several files and cannot hold the first borrow across the second.
    pub fn load(&mut self, parts: &[&str]) -> Result<(), ReadError> {
        self.load_with(parts, MAX_FILE, End::Eof)
    }

    /// Reads at most about `limit` bytes from the start of the file: for files such as
    /// /proc/self/smaps whose first lines suffice and whose whole is costly to produce.
    pub fn read_head(&mut self, parts: &[&str], limit: usize) -> Result<&str, ReadError> {
        self.load_with(parts, limit, End::Eof)?;
        Ok(self.text())
    }

    /// Reads a procfs file the kernel renders in one piece (`single_open`: loadavg,
    /// meminfo, stat, pressure/*, net/snmp, ...).
    pub fn read_single(&mut self, parts: &[&str]) -> Result<&str, ReadError> {
        self.load_with(parts, MAX_FILE, End::Whole)?;
        Ok(self.text())
    }

    /// Reads a procfs file of short records (vmstat, diskstats, net/dev lines). Not
    /// for mounts, whose lines can be long.
    pub fn read_records(&mut self, parts: &[&str]) -> Result<&str, ReadError> {
        self.load_with(parts, MAX_FILE, End::Records)?;
        Ok(self.text())
    }

    /// Reads a one-value sysfs attribute (at most a page, handed out whole), trimmed.
    pub fn read_attribute(&mut self, parts: &[&str]) -> Result<&str, ReadError> {
        self.load_with(parts, MAX_FILE, End::Whole)?;
        Ok(self.text().trim())
    }

    /// A file kept open from an earlier collection is read again from its start; if
    /// that fails (the device behind a sysfs file went away) it is opened afresh, so
    /// the error reported is the one a first open gives.
    fn load_with(&mut self, parts: &[&str], limit: usize, end: End) -> Result<(), ReadError> {
        self.path.clear();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.path.push('/');
            }
            self.path.push_str(p);
        }
        self.len = 0;
        self.lossy.clear();
        let generation = self.generation;
        let mut result = Err(io::Error::from(ErrorKind::NotFound));
        let mut reopen = true;
        if let Some(open) = self.open.get_mut(self.path.as_str()) {
            open.used = generation;
            result = open
                .file
                .seek(SeekFrom::Start(0))
                .and_then(|_| fill(&mut open.file, &mut self.buf, limit, end));
            match &result {
                Ok(_) => reopen = false,
                // EINVAL is the attribute's answer (`speed` of a link that is down), not
                // a stale descriptor: asking again through a new one would say the same.
                Err(e) if e.kind() == ErrorKind::InvalidInput => reopen = false,
                Err(_) => {
                    self.open.remove(self.path.as_str());
                }
            }
        }
        if reopen {
            result = File::open(&self.path).and_then(|mut file| {
                let read = fill(&mut file, &mut self.buf, limit, end);
                if read
                    .as_ref()
                    .map_or_else(|e| e.kind() == ErrorKind::InvalidInput, |_| true)
                {
                    self.open.insert(self.path.clone(), Open { file, used: generation });
                }
                read
            });
        }
        match result {
            Ok(len) => self.len = len,
            Err(e) => {
                return Err(ReadError {
                    kind: e.kind(),
                    message: format!("{}: {e}", self.path),
                });
            }
        }
        if std::str::from_utf8(&self.buf[..self.len]).is_err() {
            self.lossy.push_str(&String::from_utf8_lossy(&self.buf[..self.len]));
        }
        Ok(())
    }

    /// The text of the last file loaded.
    pub fn text(&self) -> &str {
        if !self.lossy.is_empty() {
            return &self.lossy;
        }
        // Checked in `load`: the buffer holds valid UTF-8 whenever `lossy` is empty.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    /// Ends a collection: closes the files it did not read (devices that went away,
    /// data read once a minute), keeps the others open for the next.
    pub fn sweep(&mut self) {
        let generation = self.generation;
        self.open.retain(|_, open| open.used == generation);
        self.generation += 1;
    }
}

/// Reads `f` from its current position to its end (or past `limit`) into `buf` and
/// returns the length read. `buf` only grows, and is zeroed only when it grows
/// (`read` needs initialised memory).
fn fill(f: &mut File, buf: &mut Vec<u8>, limit: usize, end: End) -> io::Result<usize> {
    let mut len = 0;
    loop {
        if len >= limit {
            if limit == MAX_FILE {
                return Err(io::Error::other("file too large"));
            }
            return Ok(len);
        }
        if len == buf.len() {
            buf.resize((len * 2).max(8192), 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(n) => {
                len += n;
                if end.at(n) {
                    return Ok(len);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sonde-node-reader-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_whole_files_and_reports_missing_ones_with_their_path() {
        let dir = scratch("whole");
        let big: String = (0..5000).map(|i| format!("{i}\n")).collect();
        std::fs::write(dir.join("big"), &big).unwrap();
        let d = dir.to_str().unwrap();
        let mut r = Reader::default();
        assert_eq!(r.read(&[d, "big"]).unwrap(), big);
        std::fs::write(dir.join("one"), "0x1003\n").unwrap();
        assert_eq!(r.read_attribute(&[d, "one"]).unwrap(), "0x1003");
        let page: String = "x".repeat(20000);
        std::fs::write(dir.join("page"), &page).unwrap();
        assert_eq!(
            r.read_attribute(&[d, "page"]).unwrap(),
            page,
            "a full first read is not the end"
        );
        assert_eq!(r.read_records(&[d, "big"]).unwrap(), big);
        let e = r.read(&[d, "absent"]).unwrap_err();
        assert!(e.is_absent());
        assert!(e.message.contains("absent"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kept_files_are_read_again_from_the_start_and_closed_when_unused() {
        let dir = scratch("kept");
        let d = dir.to_str().unwrap();
        std::fs::write(dir.join("a"), "first\n").unwrap();
        let mut r = Reader::default();
        assert_eq!(r.read(&[d, "a"]).unwrap(), "first\n");
        r.sweep();
        // Rewritten in place: the kept descriptor sees the new content from offset 0.
        std::fs::write(dir.join("a"), "second\n").unwrap();
        assert_eq!(r.read(&[d, "a"]).unwrap(), "second\n");
        assert_eq!(r.open.len(), 1);
        r.sweep();
        r.sweep();
        assert!(r.open.is_empty(), "not read in the last collection: closed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
