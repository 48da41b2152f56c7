//! The plugin's configuration (the `config` table of its plugins.toml entry).

use crate::collectors::Name;
use crate::collectors::netclass::Detail;
use serde::Deserialize;

/// Keys of the `config` table. Every key is optional; the defaults reproduce
/// node_exporter 1.5 run without flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Collectors to run, by node_exporter's names: cpu, diskstats, filefd, filesystem,
    /// loadavg, meminfo, netclass, netdev, netstat, os, pressure, sockstat, stat, time,
    /// uname, vmstat. Default: all of them.
    pub collectors: Vec<Name>,
    /// Where the host's procfs is visible to the plugin (a `grants.read` directory).
    pub proc_path: String,
    /// Where the host's sysfs is visible to the plugin (a `grants.read` directory);
    /// needed by netclass and time, used when present by cpu, netdev and diskstats.
    pub sys_path: String,
    /// udev's device database, read for the labels of `node_disk_info` and for
    /// `node_disk_{filesystem,device_mapper}_info` and `node_disk_ata_*`. Optional:
    /// without a grant for it, those labels are empty, as node_exporter without udev.
    pub udev_data_path: String,
    /// os-release files, tried in order by the os collector. Optional grants: when
    /// none is readable the collector reports no data. /etc/os-release is usually a
    /// symlink to ../usr/lib/os-release, which a WASI guest may follow only when
    /// /usr/lib is granted as well: grant "/usr/lib" (or both).
    pub os_release_paths: Vec<String>,
    /// Mount points the filesystem collector skips. An entry excludes that mount
    /// point and everything below it; an entry ending in `/` excludes only what is
    /// below it. The default is node_exporter's
    /// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
    pub mount_points_exclude: Vec<String>,
    /// File-system types the filesystem collector skips (exact names). The default is
    /// node_exporter's list (autofs, binfmt_misc, bpf, cgroup, cgroup2, ...).
    pub fs_types_exclude: Vec<String>,
    /// Devices the netclass collector skips (exact names). Default: none.
    pub netclass_devices_exclude: Vec<String>,
    /// Which /sys/class/net attributes to report: "basic" (default) reads the five
    /// families dashboards use (`node_network_{up,info,mtu_bytes,speed_bytes,carrier}`);
    /// "all" adds the rest of node_exporter's (flags, iface_id, carrier_changes_total,
    /// ...) at about three times the CPU cost, a sysfs file being ~10 µs to read.
    pub netclass_detail: Detail,
    /// Leave out `node_network_speed_bytes` for devices reporting a negative speed,
    /// as node_exporter's `--collector.netclass.ignore-invalid-speed`.
    pub netclass_ignore_invalid_speed: bool,
    /// Devices the netdev collector skips (exact names). Default: none.
    pub netdev_devices_exclude: Vec<String>,
    /// /proc/vmstat fields to report besides the default set
    /// (`^(oom_kill|pgpg|pswp|pg.*fault).*`), by exact name, e.g. `nr_dirty`.
    pub vmstat_extra_fields: Vec<String>,
    /// netstat fields to report besides node_exporter's default set, by exact
    /// `<Protocol>_<Field>` name, e.g. `TcpExt_TCPOFOQueue`.
    pub netstat_extra_fields: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collectors: Name::ALL.to_vec(),
            proc_path: "/proc".into(),
            sys_path: "/sys".into(),
            udev_data_path: "/run/udev/data".into(),
            os_release_paths: strings(&["/etc/os-release", "/usr/lib/os-release"]),
            mount_points_exclude: strings(&[
                "/dev",
                "/proc",
                "/run/credentials/",
                "/sys",
                "/var/lib/docker/",
                "/var/lib/containers/storage/",
            ]),
            fs_types_exclude: strings(&[
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "procfs",
                "pstore",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "sysfs",
                "tracefs",
            ]),
            netclass_devices_exclude: Vec::new(),
            netclass_detail: Detail::Basic,
            netclass_ignore_invalid_speed: false,
            netdev_devices_exclude: Vec::new(),
            vmstat_extra_fields: Vec::new(),
            netstat_extra_fields: Vec::new(),
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Config {
    /// Checks what serde cannot: paths are absolute, collectors are listed once.
    pub fn validate(&mut self) -> Result<(), String> {
        for (key, path) in [("proc_path", &self.proc_path), ("sys_path", &self.sys_path)] {
            if !path.starts_with('/') {
                return Err(format!("{key} must be an absolute path, got {path:?}"));
            }
        }
        for entry in &self.mount_points_exclude {
            if !entry.starts_with('/') {
                return Err(format!(
                    "mount_points_exclude entries must be absolute paths, got {entry:?}"
                ));
            }
        }
        // Trailing slashes would make "/proc/" mean "below /proc" by accident only for
        // the root paths; normalise the two path settings, not the exclusion entries.
        for path in [&mut self.proc_path, &mut self.sys_path] {
            while path.len() > 1 && path.ends_with('/') {
                path.pop();
            }
        }
        let mut seen = Vec::new();
        self.collectors.retain(|c| {
            let first = !seen.contains(c);
            seen.push(*c);
            first
        });
        Ok(())
    }

    pub fn enabled(&self, name: Name) -> bool {
        self.collectors.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let mut c: Config = sonde_plugin_sdk::parse_config(json).map_err(|e| format!("{e:?}"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn empty_config_enables_everything_with_node_exporter_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c.collectors.len(), 16);
        assert!(c.enabled(Name::Netstat));
        assert_eq!(c.proc_path, "/proc");
        assert!(c.fs_types_exclude.iter().any(|t| t == "cgroup2"));
    }

    #[test]
    fn unknown_keys_and_collectors_are_rejected() {
        assert!(
            parse(r#"{"colectors": ["cpu"]}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            parse(r#"{"collectors": ["cpu", "wifi"]}"#)
                .unwrap_err()
                .contains("unknown variant")
        );
    }

    #[test]
    fn collectors_are_deduplicated_and_paths_checked() {
        let c = parse(r#"{"collectors": ["cpu", "cpu", "stat"], "proc_path": "/host/proc/"}"#).unwrap();
        assert_eq!(c.collectors, vec![Name::Cpu, Name::Stat]);
        assert_eq!(c.proc_path, "/host/proc");
        assert!(parse(r#"{"sys_path": "sys"}"#).unwrap_err().contains("sys_path"));
    }
}
