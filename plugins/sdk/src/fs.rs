//! File access through the read-only directories granted in plugins.toml, with
//! errors that name the missing grant.

use crate::Error;
use std::io;
use std::path::Path;

/// Fails with `Error::Denied` naming the grant when `dir` is not readable.
///
/// A path outside every preopened directory looks like "not found" to a WASI guest,
/// so plugins call this once in `configure` for each directory they need; the user
/// then sees which grant to add instead of a puzzling ENOENT.
pub fn require_grant(dir: &str) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Denied(format!("{dir} is not a directory"))),
        Err(e) => Err(Error::Denied(format!(
            "cannot read {dir} ({e}): add \"{dir}\" to grants.read of this plugin in plugins.toml"
        ))),
    }
}

/// Reads a whole file (a /proc or /sys file is read to EOF, whatever its stat size).
pub fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// Reads a file and trims trailing whitespace; handy for one-value /sys files.
pub fn read_trimmed(path: impl AsRef<Path>) -> io::Result<String> {
    let mut s = std::fs::read_to_string(path)?;
    s.truncate(s.trim_end().len());
    Ok(s)
}

/// `statvfs` of a mount point, through the host (requires `grants.statfs = true`).
pub use crate::bindings::sonde::plugin::host::{FsStats, UnameInfo, statfs, uname};
