//! filesystem: `node_filesystem_{size,free,avail}_bytes`, `files`, `files_free`,
//! `readonly` and `device_error` for the mounts of /proc/1/mounts (or
//! /proc/self/mounts), sized through the host's `statfs` import.

use crate::failure::{Failure, malformed};
use crate::reader::{ReadError, Reader};
use crate::sink::Sink;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// One line of a mounts file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount<'a> {
    pub device: &'a str,
    /// As node_exporter labels it: only `\040` and `\011` decoded.
    pub mount_point: Cow<'a, str>,
    /// As the mounts file has it, every blank and backslash octal-escaped.
    pub escaped: &'a str,
    pub fs_type: &'a str,
    pub options: &'a str,
}

impl Mount<'_> {
    /// node_exporter reads read-only-ness from the mount options, not from statfs.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// The path to ask statfs about: every octal escape decoded, as the host matches
    /// it against its own mount table (the label keeps node_exporter's partial form).
    pub fn path(&self) -> Cow<'_, str> {
        if !self.escaped.contains('\\') {
            return Cow::Borrowed(self.escaped);
        }
        let b = self.escaped.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let octal = b
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
            match (b[i], octal) {
                (b'\\', Some(d)) => {
                    out.push(
                        (d[0] - b'0')
                            .wrapping_mul(64)
                            .wrapping_add((d[1] - b'0') * 8 + (d[2] - b'0')),
                    );
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        Cow::Owned(String::from_utf8_lossy(&out).into_owned())
    }
}

pub fn parse_mounts(text: &str) -> Result<Vec<Mount<'_>>, Failure> {
    let mut mounts = Vec::with_capacity(32);
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type), Some(options)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(malformed("mounts line", line));
        };
        mounts.push(Mount {
            device,
            mount_point: unescape(mount_point),
            escaped: mount_point,
            fs_type,
            options,
        });
    }
    Ok(mounts)
}

/// The kernel escapes blanks in mount points as octal; node_exporter undoes space
/// and tab only, and so do we, so labels match.
fn unescape(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    Cow::Owned(field.replace("\\040", " ").replace("\\011", "\t"))
}

/// Which mounts to skip, from the `mount_points_exclude` and `fs_types_exclude` settings.
pub struct Exclusions<'a> {
    pub mount_points: &'a [String],
    pub fs_types: &'a [String],
}

impl Exclusions<'_> {
    pub fn excludes(&self, m: &Mount) -> bool {
        self.mount_points.iter().any(|e| excludes_path(e, &m.mount_point))
            || self.fs_types.iter().any(|t| t == m.fs_type)
    }
}

/// `/dev` excludes `/dev` and everything below it; `/var/lib/docker/` only what is
/// below it (node_exporter's `var/lib/docker/.+`).
fn excludes_path(entry: &str, mount_point: &str) -> bool {
    if entry.ends_with('/') {
        return mount_point.len() > entry.len() && mount_point.starts_with(entry);
    }
    match mount_point.strip_prefix(entry) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The mounts to report: not excluded, first of each (device, mount point, type).
pub fn select<'a>(mounts: Vec<Mount<'a>>, exclusions: &Exclusions) -> Vec<Mount<'a>> {
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(mounts.len());
    for m in mounts {
        if exclusions.excludes(&m) {
            continue;
        }
        let key = (m.device, m.mount_point.to_string(), m.fs_type);
        if seen.insert(key) {
            kept.push(m);
        }
    }
    kept
}

/// Sizes of a file system, in bytes and inodes (the host's `fs-stats`, minus the
/// read-only flag, which comes from the mount options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

/// `usage` is None when statfs failed: node_exporter then reports only
/// `device_error 1`.
pub fn emit(out: &mut dyn Sink, m: &Mount, usage: Option<Usage>) {
    let labels = [
        ("device", m.device),
        ("mountpoint", &m.mount_point),
        ("fstype", m.fs_type),
    ];
    let help = "Whether an error occurred while getting statistics for the given device.";
    out.gauge(
        "node_filesystem_device_error",
        &help,
        &labels,
        if usage.is_some() { 0.0 } else { 1.0 },
    );
    let Some(u) = usage else { return };
    out.gauge(
        "node_filesystem_size_bytes",
        &"Filesystem size in bytes.",
        &labels,
        u.size,
    );
    out.gauge(
        "node_filesystem_free_bytes",
        &"Filesystem free space in bytes.",
        &labels,
        u.free,
    );
    let help = "Filesystem space available to non-root users in bytes.";
    out.gauge("node_filesystem_avail_bytes", &help, &labels, u.avail);
    out.gauge(
        "node_filesystem_files",
        &"Filesystem total file nodes.",
        &labels,
        u.files,
    );
    out.gauge(
        "node_filesystem_files_free",
        &"Filesystem total free file nodes.",
        &labels,
        u.files_free,
    );
    let ro = if m.read_only() { 1.0 } else { 0.0 };
    out.gauge("node_filesystem_readonly", &"Filesystem read-only status.", &labels, ro);
}

/// How long a mount whose statfs timed out is left alone. node_exporter stops
/// calling statfs on a stuck mount until the hung call returns; the host's deadline
/// ends our call instead, so we wait a while before paying that deadline again.
const STUCK_RETRY: Duration = Duration::from_secs(120);

/// Mount points whose statfs timed out, and when.
#[derive(Default)]
pub struct Filesystem {
    stuck: HashMap<String, Instant>,
}

/// What the host's statfs answered.
pub enum Answer {
    Usage(Usage),
    /// A stale mount (NFS and the like): the host gave up after its deadline.
    Timeout,
    /// Any other error; reported as `device_error`.
    Error,
}

impl Filesystem {
    /// `statfs` is the host import (a parameter so this stays testable natively).
    pub fn collect(
        &mut self,
        reader: &mut Reader,
        proc: &str,
        exclusions: &Exclusions,
        statfs: &mut dyn FnMut(&str) -> Answer,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        let text = read_mounts(reader, proc)?;
        let now = Instant::now();
        self.stuck.retain(|_, since| now.duration_since(*since) < STUCK_RETRY);
        for m in select(parse_mounts(text)?, exclusions) {
            if self.stuck.contains_key(&*m.mount_point) {
                emit(out, &m, None);
                continue;
            }
            let usage = match statfs(&m.path()) {
                Answer::Usage(u) => Some(u),
                Answer::Timeout => {
                    self.stuck.insert(m.mount_point.to_string(), now);
                    None
                }
                Answer::Error => None,
            };
            emit(out, &m, usage);
        }
        Ok(())
    }
}

/// node_exporter 1.5 reads the mounts of PID 1 (the host's, when run in a container
/// sharing its PID namespace) and falls back to its own when that is missing.
fn read_mounts<'r>(reader: &'r mut Reader, proc: &str) -> Result<&'r str, ReadError> {
    if reader.load(&[proc, "1/mounts"]).is_err() {
        reader.load(&[proc, "self/mounts"])?;
    }
    Ok(reader.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sink::Recorder;

    const MOUNTS: &str = "/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=4937000k,mode=755 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
/dev/vdb /mnt/my\\040data xfs ro,relatime 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/vdc /var/lib/docker ext4 rw 0 0
tmpfs /run/credentials/systemd-sysusers.service tmpfs ro 0 0
/dev/vda / ext4 rw,relatime 0 0
/dev/vdd /devices ext4 rw 0 0
";

    fn selected(text: &str) -> Vec<String> {
        let cfg = Config::default();
        let ex = Exclusions {
            mount_points: &cfg.mount_points_exclude,
            fs_types: &cfg.fs_types_exclude,
        };
        select(parse_mounts(text).unwrap(), &ex)
            .iter()
            .map(|m| m.mount_point.to_string())
            .collect()
    }

    #[test]
    fn default_exclusions_and_deduplication() {
        assert_eq!(
            selected(MOUNTS),
            ["/", "/run", "/mnt/my data", "/var/lib/docker", "/devices"]
        );
    }

    #[test]
    fn exclusion_entries_with_and_without_trailing_slash() {
        assert!(excludes_path("/dev", "/dev"));
        assert!(excludes_path("/dev", "/dev/shm"));
        assert!(!excludes_path("/dev", "/devices"));
        assert!(excludes_path("/run/credentials/", "/run/credentials/x"));
        assert!(!excludes_path("/run/credentials/", "/run/credentials/"));
        assert!(!excludes_path("/run/credentials/", "/run/credentials"));
    }

    #[test]
    fn samples_per_mount_and_device_errors() {
        let mounts = parse_mounts(MOUNTS).unwrap();
        let data = &mounts[6];
        assert!(data.read_only());
        let usage = Usage {
            size: 1e12,
            free: 4e11,
            avail: 3.5e11,
            files: 1e6,
            files_free: 9e5,
        };
        let mut r = Recorder::default();
        emit(&mut r, data, Some(usage));
        emit(&mut r, &mounts[0], None);
        let labels = [
            ("device", "/dev/vdb"),
            ("mountpoint", "/mnt/my data"),
            ("fstype", "xfs"),
        ];
        assert_eq!(r.value("node_filesystem_size_bytes", &labels), Some(1e12));
        assert_eq!(r.value("node_filesystem_avail_bytes", &labels), Some(3.5e11));
        assert_eq!(r.value("node_filesystem_files_free", &labels), Some(9e5));
        assert_eq!(r.value("node_filesystem_readonly", &labels), Some(1.0));
        assert_eq!(r.value("node_filesystem_device_error", &labels), Some(0.0));
        assert_eq!(
            r.value("node_filesystem_device_error", &[("mountpoint", "/")]),
            Some(1.0)
        );
        assert_eq!(r.value("node_filesystem_size_bytes", &[("mountpoint", "/")]), None);
        assert_eq!(r.samples.len(), 8);
    }

    #[test]
    fn stuck_mounts_are_not_asked_again_at_once() {
        let root = std::env::temp_dir().join(format!("sonde-node-mounts-{}", std::process::id()));
        std::fs::create_dir_all(root.join("self")).unwrap();
        std::fs::write(
            root.join("self/mounts"),
            "srv:/x /mnt/nfs nfs4 rw 0 0\n/dev/vda / ext4 rw 0 0\n",
        )
        .unwrap();
        let cfg = Config::default();
        let ex = Exclusions {
            mount_points: &cfg.mount_points_exclude,
            fs_types: &cfg.fs_types_exclude,
        };
        let mut fs = Filesystem::default();
        let mut calls = Vec::new();
        let mut statfs = |p: &str| {
            calls.push(p.to_string());
            if p == "/mnt/nfs" {
                Answer::Timeout
            } else {
                Answer::Usage(Usage {
                    size: 1.0,
                    free: 1.0,
                    avail: 1.0,
                    files: 1.0,
                    files_free: 1.0,
                })
            }
        };
        let proc = root.to_str().unwrap();
        for _ in 0..2 {
            let mut r = Recorder::default();
            fs.collect(&mut Reader::default(), proc, &ex, &mut statfs, &mut r)
                .unwrap();
            assert_eq!(
                r.value("node_filesystem_device_error", &[("mountpoint", "/mnt/nfs")]),
                Some(1.0)
            );
        }
        assert_eq!(calls, ["/mnt/nfs", "/", "/"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn statfs_paths_decode_every_escape_but_labels_only_blanks() {
        let mounts = parse_mounts("/dev/sdb /mnt/a\\134b\\040c ext4 rw 0 0\n").unwrap();
        assert_eq!(mounts[0].mount_point, "/mnt/a\\134b c");
        assert_eq!(mounts[0].path(), "/mnt/a\\b c");
    }

    #[test]
    fn short_lines_fail() {
        assert!(parse_mounts("/dev/vda / ext4\n").is_err());
    }
}
