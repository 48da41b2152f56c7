//! netclass: `node_network_{up,info,mtu_bytes,speed_bytes,carrier,...}{device}` from
//! the attribute files of /sys/class/net/<device>.
//!
//! Every attribute is a file, and each file read is a round trip through the host's
//! WASI implementation (tens of µs of CPU), so this collector would dominate a
//! collection (node_exporter reads ~25 files per device). Two economies: by default
//! only the attributes dashboards use are read ("basic"; "all" gives node_exporter's
//! full family list), and only the link state (operstate, carrier, and in "all" the
//! carrier counters, dormant and flags) is read at every collection. The rest
//! (address, MTU, speed, ...) changes by administration or with the link: it is
//! re-read when operstate or carrier change, and once a minute. The device list is
//! re-read once a minute too; a device that vanishes is dropped at once.

use crate::failure::Failure;
use crate::number;
use crate::reader::Reader;
use crate::refresh::Refresh;
use crate::sink::Sink;
use serde::Deserialize;
use sonde_plugin_sdk::Kind;
use std::time::Instant;

/// Which attributes the netclass collector reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// up, info, mtu_bytes, speed_bytes, carrier: what dashboards use.
    #[default]
    Basic,
    /// Every family node_exporter 1.5 reports.
    All,
}

/// How a file's content is reported.
#[derive(Clone, Copy, PartialEq)]
enum Report {
    /// A label of `node_network_info`, at this position.
    Info(usize),
    /// A number, reported as this family.
    Value(&'static str, Kind),
}

struct Attribute {
    file: &'static str,
    report: Report,
    /// Read at every collection (link state), rather than on link changes and once a
    /// minute (configuration).
    live: bool,
    basic: bool,
}

impl Attribute {
    fn wanted(&self, detail: Detail) -> bool {
        self.basic || detail == Detail::All
    }
}

const fn attr(file: &'static str, report: Report, live: bool, basic: bool) -> Attribute {
    Attribute {
        file,
        report,
        live,
        basic,
    }
}

const G: Kind = Kind::Gauge;
const C: Kind = Kind::Counter;
const SPEED: &str = "node_network_speed_bytes";

/// Every attribute file node_exporter 1.5 reports, and how.
const ATTRIBUTES: [Attribute; 22] = [
    attr("address", Report::Info(0), false, true),
    attr("broadcast", Report::Info(1), false, true),
    attr("duplex", Report::Info(2), false, true),
    attr("operstate", Report::Info(3), true, true),
    attr("ifalias", Report::Info(4), false, true),
    attr(
        "addr_assign_type",
        Report::Value("node_network_address_assign_type", G),
        false,
        false,
    ),
    attr("carrier", Report::Value("node_network_carrier", G), true, true),
    attr(
        "carrier_changes",
        Report::Value("node_network_carrier_changes_total", C),
        true,
        false,
    ),
    attr(
        "carrier_up_count",
        Report::Value("node_network_carrier_up_changes_total", C),
        true,
        false,
    ),
    attr(
        "carrier_down_count",
        Report::Value("node_network_carrier_down_changes_total", C),
        true,
        false,
    ),
    attr("dev_id", Report::Value("node_network_device_id", G), false, false),
    attr("dormant", Report::Value("node_network_dormant", G), true, false),
    attr("flags", Report::Value("node_network_flags", G), true, false),
    attr("ifindex", Report::Value("node_network_iface_id", G), false, false),
    attr("iflink", Report::Value("node_network_iface_link", G), false, false),
    attr(
        "link_mode",
        Report::Value("node_network_iface_link_mode", G),
        false,
        false,
    ),
    attr("mtu", Report::Value("node_network_mtu_bytes", G), false, true),
    attr(
        "name_assign_type",
        Report::Value("node_network_name_assign_type", G),
        false,
        false,
    ),
    attr(
        "netdev_group",
        Report::Value("node_network_net_dev_group", G),
        false,
        false,
    ),
    attr("speed", Report::Value(SPEED, G), false, true),
    attr(
        "tx_queue_len",
        Report::Value("node_network_transmit_queue_length", G),
        false,
        false,
    ),
    attr("type", Report::Value("node_network_protocol_type", G), false, false),
];

/// Positions in `ATTRIBUTES` (operstate is also the info label at that position).
const OPERSTATE: usize = 3;
const CARRIER: usize = 6;

/// What is known of one device. A file that cannot be read (absent, or EINVAL as
/// `speed` of a down link answers) leaves its value out, as in procfs.
#[derive(Debug, Default, Clone)]
pub struct Device {
    /// Labels of `node_network_info`: address, broadcast, duplex, operstate, ifalias.
    pub info: [String; 5],
    /// Numeric values, by position in `ATTRIBUTES`.
    pub values: [Option<i64>; ATTRIBUTES.len()],
    refresh: Refresh,
}

impl Device {
    /// Reads the wanted attributes that are `live`, or the others.
    fn read(&mut self, reader: &mut Reader, dir: &str, name: &str, detail: Detail, live: bool) {
        for (i, a) in ATTRIBUTES.iter().enumerate() {
            if !a.wanted(detail) || a.live != live {
                continue;
            }
            let value = reader.read_attribute(&[dir, name, a.file]);
            match a.report {
                Report::Info(slot) => {
                    self.info[slot].clear();
                    if let Ok(v) = value {
                        self.info[slot].push_str(v);
                    }
                }
                Report::Value(..) => self.values[i] = value.ok().and_then(number::int_any_base),
            }
        }
    }

    /// Reads the link state, then the rest if the link changed or it is due. False
    /// when the device is gone (its operstate cannot be read).
    fn update(&mut self, reader: &mut Reader, dir: &str, name: &str, detail: Detail, now: Instant) -> bool {
        let before = (std::mem::take(&mut self.info[OPERSTATE]), self.values[CARRIER]);
        self.read(reader, dir, name, detail, true);
        if self.info[OPERSTATE].is_empty() {
            return false;
        }
        let changed = before.0 != self.info[OPERSTATE] || before.1 != self.values[CARRIER];
        if changed || self.refresh.due(now) {
            self.read(reader, dir, name, detail, false);
            self.refresh.done(now);
        }
        true
    }
}

pub fn emit(out: &mut dyn Sink, name: &str, d: &Device, detail: Detail, ignore_invalid_speed: bool) {
    let labels = [("device", name)];
    let up = if d.info[OPERSTATE] == "up" { 1.0 } else { 0.0 };
    out.gauge(
        "node_network_up",
        &"Value is 1 if operstate is 'up', 0 otherwise.",
        &labels,
        up,
    );
    let info = [
        ("device", name),
        ("address", d.info[0].as_str()),
        ("broadcast", d.info[1].as_str()),
        ("duplex", d.info[2].as_str()),
        ("operstate", d.info[3].as_str()),
        ("ifalias", d.info[4].as_str()),
    ];
    let help = "Non-numeric data from /sys/class/net/<iface>, value is always 1.";
    out.gauge("node_network_info", &help, &info, 1.0);
    for (a, value) in ATTRIBUTES.iter().zip(&d.values) {
        let (Report::Value(family, kind), Some(v)) = (a.report, *value) else {
            continue;
        };
        if !a.wanted(detail) {
            continue;
        }
        let v = if family != SPEED {
            v as f64
        } else if v < 0 && ignore_invalid_speed {
            continue;
        } else {
            // Mbit/s to bytes/s in integer arithmetic, as node_exporter (-1 gives -125000).
            v.saturating_mul(1_000_000 / 8) as f64
        };
        let key = &family["node_network_".len()..];
        out.emit(
            family,
            kind,
            &format_args!("Network device property: {key}"),
            &labels,
            v,
        );
    }
}

/// Settings of the collector.
pub struct Options<'a> {
    pub detail: Detail,
    pub exclude: &'a [String],
    pub ignore_invalid_speed: bool,
}

/// The devices, as of the last listing, with what is known of each.
#[derive(Default)]
pub struct Netclass {
    devices: Vec<(String, Device)>,
    listing: Refresh,
}

impl Netclass {
    pub fn collect(
        &mut self,
        reader: &mut Reader,
        sys: &str,
        opts: &Options,
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        let dir = format!("{sys}/class/net");
        if self.listing.due(now) {
            let mut known = std::mem::take(&mut self.devices);
            self.devices = list_devices(&dir, opts.exclude)?
                .into_iter()
                .map(|name| match known.iter().position(|(n, _)| *n == name) {
                    Some(i) => known.swap_remove(i),
                    None => (name, Device::default()),
                })
                .collect();
            self.listing.done(now);
        }
        self.devices
            .retain_mut(|(name, device)| device.update(reader, &dir, name, opts.detail, now));
        for (name, device) in &self.devices {
            emit(out, name, device, opts.detail, opts.ignore_invalid_speed);
        }
        Ok(())
    }
}

/// The entries of /sys/class/net that are devices (symlinks; `bonding_masters` is a
/// regular file), sorted.
fn list_devices(dir: &str, exclude: &[String]) -> Result<Vec<String>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| Failure::failed(format!("{dir}: {e}")))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            if e.file_type().ok()?.is_file() {
                return None;
            }
            e.file_name().into_string().ok()
        })
        .filter(|d| !exclude.contains(d))
        .collect();
    names.sort_unstable();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;
    use std::time::Duration;

    fn tree(tag: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("sonde-node-netclass-{}-{tag}", std::process::id()));
        write(&root, files);
        root
    }

    fn write(root: &std::path::Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let p = root.join("class/net").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
    }

    const ETH0: [(&str, &str); 14] = [
        ("eth0/address", "02:fc:00:00:00:01\n"),
        ("eth0/broadcast", "ff:ff:ff:ff:ff:ff\n"),
        ("eth0/duplex", "full\n"),
        ("eth0/operstate", "up\n"),
        ("eth0/ifalias", "\n"),
        ("eth0/carrier", "1\n"),
        ("eth0/carrier_changes", "2\n"),
        ("eth0/flags", "0x1003\n"),
        ("eth0/mtu", "1400\n"),
        ("eth0/speed", "10000\n"),
        ("eth0/type", "1\n"),
        ("lo/operstate", "unknown\n"),
        ("lo/mtu", "65536\n"),
        ("bonding_masters", "\n"),
    ];

    fn collect(nc: &mut Netclass, root: &std::path::Path, detail: Detail, now: Instant) -> Recorder {
        let mut r = Recorder::default();
        let opts = Options {
            detail,
            exclude: &[],
            ignore_invalid_speed: false,
        };
        nc.collect(&mut Reader::default(), root.to_str().unwrap(), &opts, now, &mut r)
            .unwrap();
        r
    }

    #[test]
    fn all_attributes_of_a_sysfs_tree() {
        let root = tree("all", &ETH0);
        let r = collect(&mut Netclass::default(), &root, Detail::All, Instant::now());
        let eth0 = [("device", "eth0")];
        assert_eq!(r.value("node_network_up", &eth0), Some(1.0));
        assert_eq!(r.value("node_network_up", &[("device", "lo")]), Some(0.0));
        assert_eq!(r.value("node_network_flags", &eth0), Some(4099.0));
        assert_eq!(r.value("node_network_mtu_bytes", &[("device", "lo")]), Some(65536.0));
        assert_eq!(r.value("node_network_speed_bytes", &eth0), Some(1_250_000_000.0));
        assert_eq!(r.value("node_network_protocol_type", &eth0), Some(1.0));
        assert_eq!(r.kind("node_network_carrier_changes_total"), Some(Kind::Counter));
        let info = [
            ("device", "eth0"),
            ("address", "02:fc:00:00:00:01"),
            ("duplex", "full"),
            ("ifalias", ""),
        ];
        assert_eq!(r.value("node_network_info", &info), Some(1.0));
        assert_eq!(
            r.value("node_network_speed_bytes", &[("device", "lo")]),
            None,
            "absent file, no sample"
        );
        assert_eq!(r.count("node_network_info"), 2, "bonding_masters is not a device");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn basic_detail_keeps_dashboard_families() {
        let root = tree("basic", &ETH0);
        let r = collect(&mut Netclass::default(), &root, Detail::Basic, Instant::now());
        let mut names = r.names();
        names.sort_unstable();
        let expected = [
            "node_network_carrier",
            "node_network_info",
            "node_network_mtu_bytes",
            "node_network_speed_bytes",
            "node_network_up",
        ];
        assert_eq!(names, expected);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn vanished_devices_are_dropped_and_new_ones_found_within_a_minute() {
        let root = tree("vanish", &ETH0);
        let mut nc = Netclass::default();
        let t0 = Instant::now();
        collect(&mut nc, &root, Detail::Basic, t0);
        std::fs::remove_dir_all(root.join("class/net/lo")).unwrap();
        write(&root, &[("wlan0/operstate", "up\n")]);
        let r = collect(&mut nc, &root, Detail::Basic, t0 + Duration::from_secs(1));
        assert_eq!(r.count("node_network_up"), 1, "lo is gone, wlan0 not listed yet");
        let r = collect(&mut nc, &root, Detail::Basic, t0 + Duration::from_secs(60));
        assert_eq!(r.value("node_network_up", &[("device", "wlan0")]), Some(1.0));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn configuration_is_reread_after_a_minute_or_a_link_change() {
        let root = tree("refresh", &ETH0);
        let mut nc = Netclass::default();
        let t0 = Instant::now();
        let eth0 = [("device", "eth0")];
        collect(&mut nc, &root, Detail::Basic, t0);
        write(&root, &[("eth0/mtu", "9000\n"), ("eth0/speed", "1000\n")]);
        let r = collect(&mut nc, &root, Detail::Basic, t0 + Duration::from_secs(10));
        assert_eq!(r.value("node_network_mtu_bytes", &eth0), Some(1400.0), "mtu is cached");
        assert_eq!(
            r.value("node_network_speed_bytes", &eth0),
            Some(1_250_000_000.0),
            "so is speed"
        );
        let r = collect(&mut nc, &root, Detail::Basic, t0 + Duration::from_secs(61));
        assert_eq!(r.value("node_network_mtu_bytes", &eth0), Some(9000.0));
        assert_eq!(r.value("node_network_speed_bytes", &eth0), Some(125_000_000.0));
        write(&root, &[("eth0/mtu", "1500\n"), ("eth0/carrier", "0\n")]);
        let r = collect(&mut nc, &root, Detail::Basic, t0 + Duration::from_secs(62));
        assert_eq!(r.value("node_network_carrier", &eth0), Some(0.0), "carrier is live");
        assert_eq!(
            r.value("node_network_mtu_bytes", &eth0),
            Some(1500.0),
            "a carrier change re-reads the rest"
        );
        write(&root, &[("eth0/mtu", "1280\n"), ("eth0/operstate", "down\n")]);
        let r = collect(&mut nc, &root, Detail::Basic, t0 + Duration::from_secs(63));
        assert_eq!(r.value("node_network_up", &eth0), Some(0.0));
        assert_eq!(
            r.value("node_network_mtu_bytes", &eth0),
            Some(1280.0),
            "so does an operstate change"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn unknown_speed_is_negative_unless_ignored() {
        let mut d = Device::default();
        let speed = ATTRIBUTES.iter().position(|a| a.file == "speed").unwrap();
        d.values[speed] = Some(-1);
        let mut r = Recorder::default();
        emit(&mut r, "eth0", &d, Detail::Basic, false);
        assert_eq!(r.value("node_network_speed_bytes", &[]), Some(-125000.0));
        let mut r = Recorder::default();
        emit(&mut r, "eth0", &d, Detail::Basic, true);
        assert_eq!(r.value("node_network_speed_bytes", &[]), None);
        assert_eq!(
            r.find("node_network_up", &[]).unwrap().help,
            "Value is 1 if operstate is 'up', 0 otherwise."
        );
    }
}
