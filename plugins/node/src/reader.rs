//! Reads /proc, /sys and udev files into one reusable buffer.
//!
//! A collection reads a few dozen small files; reusing the path and content buffers
//! keeps that free of allocations, and reading with plain `read` calls avoids the
//! extra `stat`/`seek` round trips through WASI that `fs::read_to_string` makes to
//! size its buffer (procfs reports size 0 anyway).

use crate::failure::Failure;
use std::fs::File;
use std::io::{self, ErrorKind, Read};

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

#[derive(Default)]
pub struct Reader {
    path: String,
    /// Always fully initialised; `len` bytes of it hold the last file.
    buf: Vec<u8>,
    len: usize,
    lossy: String,
}

impl Reader {
    /// Reads the file at `parts` joined with `/` and returns its text (invalid UTF-8
    /// is replaced, as a label value must be UTF-8 anyway).
    pub fn read(&mut self, parts: &[&str]) -> Result<&str, ReadError> {
        self.read_head(parts, MAX_FILE)
    }

    /// Reads at most about `limit` bytes from the start of the file: for files such as
    /// /proc/self/smaps whose first lines suffice and whose whole is costly to produce.
    pub fn read_head(&mut self, parts: &[&str], limit: usize) -> Result<&str, ReadError> {
        self.load(parts, limit)?;
        Ok(self.text())
    }

    /// Reads the file into the buffer; [`Reader::text`] then returns it.
    pub fn load(&mut self, parts: &[&str], limit: usize) -> Result<(), ReadError> {
        self.load_with(parts, limit, false)
    }

    fn load_with(&mut self, parts: &[&str], limit: usize, short_read_ends: bool) -> Result<(), ReadError> {
        self.path.clear();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.path.push('/');
            }
            self.path.push_str(p);
        }
        self.len = 0;
        self.lossy.clear();
        let result = File::open(&self.path).and_then(|f| fill(f, &mut self.buf, limit, short_read_ends));
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

    /// Reads a one-value sysfs attribute, trimmed. sysfs hands out an attribute
    /// (at most a page) whole on the first `read`, so a short first read is the end
    /// of the file and the usual extra `read` that returns 0 is skipped: one WASI
    /// round trip less per file, and netclass reads dozens of them.
    pub fn read_attribute(&mut self, parts: &[&str]) -> Result<&str, ReadError> {
        self.load_with(parts, MAX_FILE, true)?;
        Ok(self.text().trim())
    }
}

/// Reads `f` to EOF (or past `limit`) into `buf` and returns the length read. `buf`
/// only grows, and is zeroed only when it grows (`read` needs initialised memory).
/// With `short_read_ends`, a read that leaves room in `buf` is taken as the end.
fn fill(mut f: File, buf: &mut Vec<u8>, limit: usize, short_read_ends: bool) -> io::Result<usize> {
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
            Ok(0) => return Ok(len),
            Ok(n) => {
                len += n;
                if short_read_ends && len < buf.len() {
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

    #[test]
    fn reads_whole_files_and_reports_missing_ones_with_their_path() {
        let dir = std::env::temp_dir().join(format!("sonde-node-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        let e = r.read(&[d, "absent"]).unwrap_err();
        assert!(e.is_absent());
        assert!(e.message.contains("absent"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
