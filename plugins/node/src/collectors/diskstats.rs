//! diskstats: `node_disk_*{device}` from /proc/diskstats, with node_exporter 1.5's
//! default device exclusion, plus `node_disk_info` and the udev-derived families
//! (`node_disk_filesystem_info`, `node_disk_device_mapper_info`, `node_disk_ata_*`).

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::refresh::Refresh;
use crate::sink::Sink;
use std::time::Instant;

/// node_exporter 1.5's default `--collector.diskstats.device-exclude`, written out:
/// `^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`, i.e. partitions and pseudo
/// devices.
pub fn excluded(device: &str) -> bool {
    let digits = device.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    // No alternative ends in a digit, so the number is exactly the trailing digit run.
    let prefix = &device.as_bytes()[..device.len() - digits];
    match prefix {
        b"ram" | b"loop" | b"fd" => true,
        [b'h' | b's' | b'v', b'd', c] | [b'x', b'v', b'd', c] => c.is_ascii_lowercase(),
        _ => is_nvme_partition_prefix(prefix),
    }
}

/// `nvme\d+n\d+p`.
fn is_nvme_partition_prefix(p: &[u8]) -> bool {
    let Some(rest) = p.strip_prefix(b"nvme").and_then(|r| r.strip_suffix(b"p")) else {
        return false;
    };
    let Some(n) = rest.iter().position(|b| *b == b'n') else {
        return false;
    };
    let (controller, namespace) = (&rest[..n], &rest[n + 1..]);
    !controller.is_empty()
        && !namespace.is_empty()
        && controller.iter().all(u8::is_ascii_digit)
        && namespace.iter().all(u8::is_ascii_digit)
}

/// One /proc/diskstats line: major, minor, name, then 11 (kernel < 4.18), 15 (< 5.5)
/// or 17 counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk<'a> {
    pub major: &'a str,
    pub minor: &'a str,
    pub name: &'a str,
    pub stats: [f64; 17],
    /// How many of `stats` the line had.
    pub count: usize,
}

pub fn parse(text: &str) -> Result<Vec<Disk<'_>>, Failure> {
    let mut disks = Vec::with_capacity(16);
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(major), Some(minor), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let bad = || malformed("/proc/diskstats line", line);
        if number::uint(major).is_none() || number::uint(minor).is_none() {
            return Err(bad());
        }
        let mut stats = [0.0; 17];
        let mut count = 0;
        for (slot, field) in stats.iter_mut().zip(fields) {
            *slot = number::float(field).ok_or_else(bad)?;
            count += 1;
        }
        // procfs drops the short lines old kernels print for partitions.
        if count >= 11 {
            disks.push(Disk {
                major,
                minor,
                name,
                stats,
                count,
            });
        }
    }
    Ok(disks)
}

const SECTOR: f64 = 512.0;
const MS: f64 = 0.001;

/// (family, help, kind is counter, scale) for each counter column, in order.
const COLUMNS: [(&str, &str, bool, f64); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        true,
        1.0,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        true,
        1.0,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        true,
        SECTOR,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        true,
        MS,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        true,
        1.0,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        true,
        1.0,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        true,
        SECTOR,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        true,
        MS,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        false,
        1.0,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        true,
        MS,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        true,
        MS,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        true,
        1.0,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        true,
        1.0,
    ),
    // Sectors, not bytes: node_exporter 1.5 does not scale this one.
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        true,
        1.0,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        true,
        MS,
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        true,
        1.0,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        true,
        MS,
    ),
];

/// The udev properties node_exporter reads from /run/udev/data/b<major>:<minor>.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Udev<'a> {
    pub path: &'a str,
    pub wwn: &'a str,
    pub model: &'a str,
    pub serial: &'a str,
    pub revision: &'a str,
    pub fs_type: &'a str,
    pub fs_usage: &'a str,
    pub fs_uuid: &'a str,
    pub fs_version: &'a str,
    pub dm_name: &'a str,
    pub dm_uuid: &'a str,
    pub dm_vg_name: &'a str,
    pub dm_lv_name: &'a str,
    pub dm_lv_layer: &'a str,
    pub ata: &'a str,
    pub ata_write_cache: Option<&'a str>,
    pub ata_write_cache_enabled: Option<&'a str>,
    pub ata_rotation_rate_rpm: Option<&'a str>,
}

/// Parses the `E:KEY=VALUE` lines of a udev database entry.
pub fn parse_udev(text: &str) -> Udev<'_> {
    let mut u = Udev::default();
    for line in text.lines() {
        let Some((key, value)) = line.strip_prefix("E:").and_then(|kv| kv.split_once('=')) else {
            continue;
        };
        match key {
            "ID_PATH" => u.path = value,
            "ID_WWN" => u.wwn = value,
            "ID_MODEL" => u.model = value,
            "ID_SERIAL_SHORT" => u.serial = value,
            "ID_REVISION" => u.revision = value,
            "ID_FS_TYPE" => u.fs_type = value,
            "ID_FS_USAGE" => u.fs_usage = value,
            "ID_FS_UUID" => u.fs_uuid = value,
            "ID_FS_VERSION" => u.fs_version = value,
            "DM_NAME" => u.dm_name = value,
            "DM_UUID" => u.dm_uuid = value,
            "DM_VG_NAME" => u.dm_vg_name = value,
            "DM_LV_NAME" => u.dm_lv_name = value,
            "DM_LV_LAYER" => u.dm_lv_layer = value,
            "ID_ATA" => u.ata = value,
            "ID_ATA_WRITE_CACHE" => u.ata_write_cache = Some(value),
            "ID_ATA_WRITE_CACHE_ENABLED" => u.ata_write_cache_enabled = Some(value),
            "ID_ATA_ROTATION_RATE_RPM" => u.ata_rotation_rate_rpm = Some(value),
            _ => {}
        }
    }
    u
}

pub fn emit(out: &mut dyn Sink, disk: &Disk, udev: &Udev) {
    let device = disk.name;
    let info = [
        ("device", device),
        ("major", disk.major),
        ("minor", disk.minor),
        ("path", udev.path),
        ("wwn", udev.wwn),
        ("model", udev.model),
        ("serial", udev.serial),
        ("revision", udev.revision),
    ];
    out.gauge("node_disk_info", &"Info of /sys/block/<block_device>.", &info, 1.0);
    let labels = [("device", device)];
    for ((name, help, counter, scale), value) in COLUMNS.iter().zip(&disk.stats).take(disk.count) {
        if *counter {
            out.counter(name, help, &labels, value * scale);
        } else {
            out.gauge(name, help, &labels, value * scale);
        }
    }
    emit_udev(out, device, udev);
}

fn emit_udev(out: &mut dyn Sink, device: &str, u: &Udev) {
    if !u.fs_type.is_empty() {
        let labels = [
            ("device", device),
            ("type", u.fs_type),
            ("usage", u.fs_usage),
            ("uuid", u.fs_uuid),
            ("version", u.fs_version),
        ];
        out.gauge(
            "node_disk_filesystem_info",
            &"Info about disk filesystem.",
            &labels,
            1.0,
        );
    }
    if !u.dm_name.is_empty() {
        let labels = [
            ("device", device),
            ("name", u.dm_name),
            ("uuid", u.dm_uuid),
            ("vg_name", u.dm_vg_name),
            ("lv_name", u.dm_lv_name),
            ("lv_layer", u.dm_lv_layer),
        ];
        out.gauge(
            "node_disk_device_mapper_info",
            &"Info about disk device mapper.",
            &labels,
            1.0,
        );
    }
    if !u.ata.is_empty() {
        let ata = [
            (
                "node_disk_ata_write_cache",
                "ATA disk has a write cache.",
                u.ata_write_cache,
            ),
            (
                "node_disk_ata_write_cache_enabled",
                "ATA disk has its write cache enabled.",
                u.ata_write_cache_enabled,
            ),
            (
                "node_disk_ata_rotation_rate_rpm",
                "ATA disk rotation rate in RPMs (0 for SSDs).",
                u.ata_rotation_rate_rpm,
            ),
        ];
        for (name, help, value) in ata {
            if let Some(v) = value.and_then(number::float) {
                out.gauge(name, &help, &[("device", device)], v);
            }
        }
    }
}

/// The udev database entry of each device, by `b<major>:<minor>`. Entries change
/// when a disk is partitioned or formatted, so they are re-read once a minute (and
/// at once for a device not seen before), not at every collection.
#[derive(Default)]
pub struct Diskstats {
    udev: Vec<(String, String)>,
    refresh: Refresh,
}

impl Diskstats {
    /// `udev` is the udev database directory, when readable.
    pub fn collect(
        &mut self,
        reader: &mut Reader,
        proc: &str,
        udev: Option<&str>,
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        // Copied out because the udev reads reuse the reader's buffer.
        let text = reader.read_records(&[proc, "diskstats"])?.to_string();
        let disks = parse(&text)?;
        if self.refresh.due(now) {
            self.udev.clear();
            self.refresh.done(now);
        }
        let mut key = String::new();
        for disk in disks.iter().filter(|d| !excluded(d.name)) {
            key.clear();
            key.push('b');
            key.push_str(disk.major);
            key.push(':');
            key.push_str(disk.minor);
            let i = match self.udev.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let entry = udev.and_then(|dir| reader.read(&[dir, &key]).ok()).unwrap_or_default();
                    self.udev.push((key.clone(), entry.to_string()));
                    self.udev.len() - 1
                }
            };
            emit(out, disk, &parse_udev(&self.udev[i].1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;
    use sonde_plugin_sdk::Kind;

    #[test]
    fn default_exclusion_matches_node_exporter_regexp() {
        for dev in [
            "sda1",
            "sdz12",
            "hda3",
            "vdb1",
            "xvda1",
            "loop0",
            "loop12",
            "ram0",
            "fd0",
            "nvme0n1p1",
            "nvme10n2p3",
        ] {
            assert!(excluded(dev), "{dev} should be excluded");
        }
        for dev in [
            "sda",
            "vda",
            "nvme0n1",
            "dm-0",
            "md0",
            "mmcblk0p1",
            "zram0",
            "sdaa1",
            "sr0",
            "nvmen1p1",
            "nvme0n1p",
            "xvd1",
            "loop",
        ] {
            assert!(!excluded(dev), "{dev} should be kept");
        }
    }

    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 55503 9666 4492962 43226 9515 34130 4798048 20241 0 9384 64271 6772 43 702816 776 627 26
 254       1 vda1 100 0 800 5 0 0 0 0 0 7 5 0 0 0 0 0 0
   8       0 sdb 10 1 160 20 5 2 80 30 1 40 50
   8      16 sdc 1 2 3 4
";

    #[test]
    fn counters_are_scaled_like_node_exporter() {
        let disks = parse(DISKSTATS).unwrap();
        assert_eq!(
            disks.iter().map(|d| d.name).collect::<Vec<_>>(),
            ["loop0", "vda", "vda1", "sdb"]
        );
        let mut r = Recorder::default();
        emit(&mut r, &disks[1], &Udev::default());
        let vda = [("device", "vda")];
        assert_eq!(r.value("node_disk_reads_completed_total", &vda), Some(55503.0));
        assert_eq!(r.value("node_disk_read_bytes_total", &vda), Some(4492962.0 * 512.0));
        assert_eq!(r.value("node_disk_read_time_seconds_total", &vda), Some(43.226));
        assert_eq!(r.value("node_disk_io_now", &vda), Some(0.0));
        assert_eq!(r.kind("node_disk_io_now"), Some(Kind::Gauge));
        assert_eq!(r.value("node_disk_io_time_weighted_seconds_total", &vda), Some(64.271));
        assert_eq!(r.value("node_disk_discarded_sectors_total", &vda), Some(702816.0));
        assert_eq!(r.value("node_disk_flush_requests_total", &vda), Some(627.0));
        // node_exporter multiplies milliseconds by 0.001; its output for 26 ms is this.
        assert_eq!(
            r.value("node_disk_flush_requests_time_seconds_total", &vda),
            Some(0.026000000000000002)
        );
        let info = [
            ("device", "vda"),
            ("major", "254"),
            ("minor", "0"),
            ("model", ""),
            ("wwn", ""),
        ];
        assert_eq!(r.value("node_disk_info", &info), Some(1.0));
        assert_eq!(r.samples.len(), 18);
    }

    #[test]
    fn old_kernels_have_fewer_families() {
        let disks = parse(DISKSTATS).unwrap();
        let mut r = Recorder::default();
        emit(&mut r, &disks[3], &Udev::default());
        assert_eq!(
            r.value("node_disk_io_time_weighted_seconds_total", &[("device", "sdb")]),
            Some(0.05)
        );
        assert_eq!(r.count("node_disk_discards_completed_total"), 0);
        assert_eq!(r.samples.len(), 12);
    }

    #[test]
    fn udev_properties_label_and_add_families() {
        let entry = "S:disk/by-id/ata-Samsung_SSD_860\nE:ID_ATA=1\nE:ID_MODEL=Samsung_SSD_860\nE:ID_SERIAL_SHORT=S3Z9\nE:ID_WWN=0x5002538e\nE:ID_PATH=pci-0000:00:17.0-ata-1\nE:ID_REVISION=RVT04B6Q\nE:ID_ATA_ROTATION_RATE_RPM=0\nE:ID_ATA_WRITE_CACHE=1\nE:ID_ATA_WRITE_CACHE_ENABLED=1\nE:ID_FS_TYPE=LVM2_member\nE:ID_FS_USAGE=raid\nE:ID_FS_UUID=c3C3uW\nE:ID_FS_VERSION=LVM2 001\nE:DM_NAME=vg-root\n";
        let udev = parse_udev(entry);
        let disks = parse(DISKSTATS).unwrap();
        let mut r = Recorder::default();
        emit(&mut r, &disks[1], &udev);
        let info = [
            ("device", "vda"),
            ("model", "Samsung_SSD_860"),
            ("serial", "S3Z9"),
            ("path", "pci-0000:00:17.0-ata-1"),
        ];
        assert_eq!(r.value("node_disk_info", &info), Some(1.0));
        assert_eq!(
            r.value(
                "node_disk_filesystem_info",
                &[("type", "LVM2_member"), ("version", "LVM2 001")]
            ),
            Some(1.0)
        );
        assert_eq!(
            r.value("node_disk_device_mapper_info", &[("name", "vg-root"), ("vg_name", "")]),
            Some(1.0)
        );
        assert_eq!(
            r.value("node_disk_ata_rotation_rate_rpm", &[("device", "vda")]),
            Some(0.0)
        );
        assert_eq!(
            r.value("node_disk_ata_write_cache_enabled", &[("device", "vda")]),
            Some(1.0)
        );
    }

    #[test]
    fn udev_entries_are_read_once_a_minute() {
        let root = std::env::temp_dir().join(format!("sonde-node-udev-{}", std::process::id()));
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("udev")).unwrap();
        std::fs::write(root.join("proc/diskstats"), DISKSTATS).unwrap();
        std::fs::write(root.join("udev/b254:0"), "E:ID_MODEL=old\n").unwrap();
        let (proc, udev) = (root.join("proc"), root.join("udev"));
        let (proc, udev) = (proc.to_str().unwrap(), udev.to_str().unwrap());
        let mut d = Diskstats::default();
        let t0 = Instant::now();
        let mut model = |at: u64| {
            let mut r = Recorder::default();
            let now = t0 + std::time::Duration::from_secs(at);
            d.collect(&mut Reader::default(), proc, Some(udev), now, &mut r)
                .unwrap();
            let info = r.find("node_disk_info", &[("device", "vda")]).unwrap();
            info.labels.iter().find(|(n, _)| n == "model").unwrap().1.clone()
        };
        assert_eq!(model(0), "old");
        std::fs::write(root.join("udev/b254:0"), "E:ID_MODEL=new\n").unwrap();
        assert_eq!(model(30), "old");
        assert_eq!(model(60), "new");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn garbage_counters_fail() {
        assert!(parse("8 0 sda 1 2 x 4 5 6 7 8 9 10 11\n").is_err());
        assert!(parse("x 0 sda 1 2 3 4 5 6 7 8 9 10 11\n").is_err());
    }
}
