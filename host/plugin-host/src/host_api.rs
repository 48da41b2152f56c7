//! The `sonde:plugin/host` interface: logging and host facts WASI cannot give.

use crate::bindings::sonde::plugin::host::{FsStats, Host, Level, UnameInfo};
use crate::bindings::sonde::plugin::types::{self, Error, Family, Label, Series};
use crate::state::State;
use std::collections::HashSet;
use std::ffi::CStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Log lines a plugin may write per call; more are dropped (with one notice) so a
/// looping plugin cannot flood the host's log.
pub(crate) const LOG_LINES_PER_CALL: u32 = 100;

/// A statfs on a hung network mount blocks forever; give up after this long.
const STATFS_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest log line kept from a plugin.
const MAX_LOG_LINE: usize = 4096;

impl types::Host for State {}

impl Host for State {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.log_budget == 0 {
            return Ok(());
        }
        self.log_budget -= 1;
        let mut msg = message;
        if msg.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        let plugin = &*self.name;
        match level {
            Level::Trace => tracing::trace!(target: "sonde::plugin", plugin, "{msg}"),
            Level::Debug => tracing::debug!(target: "sonde::plugin", plugin, "{msg}"),
            Level::Info => tracing::info!(target: "sonde::plugin", plugin, "{msg}"),
            Level::Warn => tracing::warn!(target: "sonde::plugin", plugin, "{msg}"),
            Level::Error => tracing::error!(target: "sonde::plugin", plugin, "{msg}"),
        }
        if self.log_budget == 0 {
            tracing::warn!(target: "sonde::plugin", plugin, "log limit of {LOG_LINES_PER_CALL} lines per call reached; dropping the rest");
        }
        Ok(())
    }

    async fn statfs(&mut self, path: String) -> Result<FsStats, Error> {
        if !self.grants.statfs {
            return Err(Error::Denied(format!(
                "statfs({path}) needs `statfs = true` in the grants of plugin {} in plugins.toml",
                self.name
            )));
        }
        let task = tokio::task::spawn_blocking(move || {
            if !is_mount_point(&path) {
                return Err(Error::Denied(format!("statfs: {path} is not a mount point")));
            }
            statfs(&path)
        });
        match tokio::time::timeout(STATFS_TIMEOUT, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(Error::Failed(format!("statfs task failed: {e}"))),
            Err(_) => Err(Error::Timeout(format!(
                "statfs did not answer within {STATFS_TIMEOUT:?}"
            ))),
        }
    }

    fn uname(&mut self) -> wasmtime::Result<UnameInfo> {
        Ok(uname())
    }

    fn define(&mut self, families: Vec<Family>, series: Vec<Series>) -> wasmtime::Result<()> {
        let p = &mut self.pending;
        p.bytes += families
            .iter()
            .map(|f| size_of::<Family>() + f.name.len() + f.help.len() + f.unit.len())
            .sum::<usize>();
        p.bytes += series
            .iter()
            .map(|s| {
                size_of::<Series>()
                    + s.name.len()
                    + s.labels
                        .iter()
                        .map(|l| size_of::<Label>() + l.name.len() + l.value.len())
                        .sum::<usize>()
            })
            .sum::<usize>();
        let limit = self.limits.limit;
        if p.bytes > limit {
            // Reported as the memory limit it is (CallError::OutOfMemory), not a bare trap.
            self.limits.refused.store(p.bytes, std::sync::atomic::Ordering::Relaxed);
            p.clear();
            return Err(wasmtime::format_err!(
                "plugin {} defined more than {limit} bytes of families and series in one collection \
                 (its memory_limit; raise memory_limit in plugins.toml if this is legitimate)",
                self.name
            ));
        }
        p.families.extend(families);
        p.series.extend(series);
        Ok(())
    }
}

/// How long a read of the mount tables is reused: a collection calls statfs once per
/// mount, the tables rarely change, and the kernel formats them anew on every read
/// (measurable at 1 s collections). A new mount is statfs-able within this delay.
const MOUNTS_TTL: Duration = Duration::from_secs(15);

/// Whether `path` is a mount point in the host's mount namespace or in PID 1's (the
/// node plugin lists /proc/1/mounts, as node_exporter does). Restricting statfs to
/// mount points keeps it from being a probe for arbitrary paths.
fn is_mount_point(path: &str) -> bool {
    static CACHE: Mutex<Option<(Instant, HashSet<String>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = cache.as_ref().is_some_and(|(at, _)| at.elapsed() < MOUNTS_TTL);
    if !fresh {
        let mut set = HashSet::new();
        for table in ["/proc/self/mounts", "/proc/1/mounts"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                set.extend(text.lines().filter_map(|l| l.split(' ').nth(1)).map(unescape_mount));
            }
        }
        *cache = Some((Instant::now(), set));
    }
    cache.as_ref().is_some_and(|(_, set)| set.contains(path))
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statfs(path: &str) -> Result<FsStats, Error> {
    let c = std::ffi::CString::new(path).map_err(|_| Error::Failed(format!("statfs: bad path {path:?}")))?;
    // SAFETY: `c` is a valid C string and `buf` a properly sized out-parameter.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut buf) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Failed(format!("statfs({path}): {e}")));
    }
    // f_blocks and friends count fragments (f_frsize); on Linux this equals the
    // statfs(2) f_bsize node_exporter multiplies by.
    let bs = buf.f_frsize as u64;
    Ok(FsStats {
        size_bytes: buf.f_blocks as u64 * bs,
        free_bytes: buf.f_bfree as u64 * bs,
        avail_bytes: buf.f_bavail as u64 * bs,
        files: buf.f_files as u64,
        files_free: buf.f_ffree as u64,
        read_only: (buf.f_flag as u64 & libc::ST_RDONLY) != 0,
    })
}

fn uname() -> UnameInfo {
    // SAFETY: uname fills the zeroed struct; every field is NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut u) };
    let f = |field: &[libc::c_char]| unsafe { CStr::from_ptr(field.as_ptr()) }.to_string_lossy().into_owned();
    UnameInfo {
        sysname: f(&u.sysname),
        nodename: f(&u.nodename),
        release: f(&u.release),
        version: f(&u.version),
        machine: f(&u.machine),
        domainname: f(&u.domainname),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_escapes_are_decoded() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/trailing\\"), "/trailing\\");
    }

    #[test]
    fn root_is_a_mount_point_and_statfs_reads_it() {
        assert!(is_mount_point("/"));
        assert!(!is_mount_point("/definitely/not/a/mount"));
        let s = statfs("/").unwrap();
        assert!(s.size_bytes > 0 && s.avail_bytes <= s.size_bytes);
    }
}
