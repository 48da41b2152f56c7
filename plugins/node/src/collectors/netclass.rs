//! netclass: `node_network_{up,info,mtu_bytes,speed_bytes,carrier,...}{device}` from
//! the attribute files of /sys/class/net/<device>.

use crate::failure::Failure;
use crate::number;
use crate::reader::Reader;
use crate::sink::Sink;
use sonde_plugin_sdk::Kind;

/// Numeric attribute files and the family each becomes, as node_exporter names them.
const NUMERIC: [(&str, &str, Kind); 15] = [
    ("addr_assign_type", "node_network_address_assign_type", Kind::Gauge),
    ("carrier", "node_network_carrier", Kind::Gauge),
    ("carrier_changes", "node_network_carrier_changes_total", Kind::Counter),
    (
        "carrier_up_count",
        "node_network_carrier_up_changes_total",
        Kind::Counter,
    ),
    (
        "carrier_down_count",
        "node_network_carrier_down_changes_total",
        Kind::Counter,
    ),
    ("dev_id", "node_network_device_id", Kind::Gauge),
    ("dormant", "node_network_dormant", Kind::Gauge),
    ("flags", "node_network_flags", Kind::Gauge),
    ("ifindex", "node_network_iface_id", Kind::Gauge),
    ("iflink", "node_network_iface_link", Kind::Gauge),
    ("link_mode", "node_network_iface_link_mode", Kind::Gauge),
    ("mtu", "node_network_mtu_bytes", Kind::Gauge),
    ("name_assign_type", "node_network_name_assign_type", Kind::Gauge),
    ("netdev_group", "node_network_net_dev_group", Kind::Gauge),
    ("tx_queue_len", "node_network_transmit_queue_length", Kind::Gauge),
];

/// Text attribute files, in the label order of `node_network_info`.
const TEXT: [&str; 5] = ["address", "broadcast", "duplex", "operstate", "ifalias"];

/// What one device's directory holds. A file that cannot be read (absent, or EINVAL
/// as `speed` of a down link answers) leaves its value out, as in procfs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attributes {
    pub text: [String; 5],
    pub numeric: [Option<i64>; 15],
    pub speed: Option<i64>,
    pub kind: Option<i64>,
}

impl Attributes {
    pub fn read(&mut self, reader: &mut Reader, dir: &str, device: &str) {
        for (slot, file) in self.text.iter_mut().zip(TEXT) {
            slot.clear();
            if let Ok(value) = reader.read_trimmed(&[dir, device, file]) {
                slot.push_str(value);
            }
        }
        let mut number = |file: &str| {
            reader
                .read_trimmed(&[dir, device, file])
                .ok()
                .and_then(number::int_any_base)
        };
        for (slot, (file, _, _)) in self.numeric.iter_mut().zip(NUMERIC) {
            *slot = number(file);
        }
        self.speed = number("speed");
        self.kind = number("type");
    }
}

pub fn emit(out: &mut dyn Sink, device: &str, a: &Attributes, ignore_invalid_speed: bool) {
    let labels = [("device", device)];
    let up = if a.text[3] == "up" { 1.0 } else { 0.0 };
    out.gauge(
        "node_network_up",
        &"Value is 1 if operstate is 'up', 0 otherwise.",
        &labels,
        up,
    );
    let info = [
        ("device", device),
        ("address", a.text[0].as_str()),
        ("broadcast", a.text[1].as_str()),
        ("duplex", a.text[2].as_str()),
        ("operstate", a.text[3].as_str()),
        ("ifalias", a.text[4].as_str()),
    ];
    let help = "Non-numeric data from /sys/class/net/<iface>, value is always 1.";
    out.gauge("node_network_info", &help, &info, 1.0);
    for ((_, name, kind), value) in NUMERIC.iter().zip(&a.numeric) {
        if let Some(v) = value {
            property(out, name, *kind, &labels, *v as f64);
        }
    }
    if let Some(speed) = a.speed.filter(|s| *s >= 0 || !ignore_invalid_speed) {
        // Mbit/s to bytes/s in integer arithmetic, as node_exporter (so -1 gives -125000).
        property(
            out,
            "node_network_speed_bytes",
            Kind::Gauge,
            &labels,
            speed.saturating_mul(1_000_000 / 8) as f64,
        );
    }
    if let Some(kind) = a.kind {
        property(out, "node_network_protocol_type", Kind::Gauge, &labels, kind as f64);
    }
}

fn property(out: &mut dyn Sink, name: &str, kind: Kind, labels: &[(&str, &str)], value: f64) {
    let key = &name["node_network_".len()..];
    out.emit(
        name,
        kind,
        &format_args!("Network device property: {key}"),
        labels,
        value,
    );
}

#[derive(Default)]
pub struct Netclass {
    attributes: Attributes,
}

impl Netclass {
    pub fn collect(
        &mut self,
        reader: &mut Reader,
        sys: &str,
        exclude: &[String],
        ignore_invalid_speed: bool,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        let dir = format!("{sys}/class/net");
        let entries = std::fs::read_dir(&dir).map_err(|e| Failure::failed(format!("{dir}: {e}")))?;
        let mut devices: Vec<String> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                // Devices are symlinks; regular files there (bonding_masters) are not.
                if e.file_type().ok()?.is_file() {
                    return None;
                }
                e.file_name().into_string().ok()
            })
            .filter(|d| !exclude.contains(d))
            .collect();
        devices.sort_unstable();
        for device in &devices {
            self.attributes.read(reader, &dir, device);
            emit(out, device, &self.attributes, ignore_invalid_speed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    fn tree(files: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("sonde-node-netclass-{}-{}", std::process::id(), files.len()));
        for (path, content) in files {
            let p = root.join("class/net").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        root
    }

    #[test]
    fn attributes_of_a_sysfs_tree() {
        let root = tree(&[
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
        ]);
        let mut r = Recorder::default();
        Netclass::default()
            .collect(&mut Reader::default(), root.to_str().unwrap(), &[], false, &mut r)
            .unwrap();
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
        assert_eq!(r.value("node_network_carrier", &[("device", "bonding_masters")]), None);
        assert_eq!(r.count("node_network_info"), 2);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn unknown_speed_is_negative_unless_ignored() {
        let a = Attributes {
            speed: Some(-1),
            ..Attributes::default()
        };
        let mut r = Recorder::default();
        emit(&mut r, "eth0", &a, false);
        assert_eq!(r.value("node_network_speed_bytes", &[]), Some(-125000.0));
        let mut r = Recorder::default();
        emit(&mut r, "eth0", &a, true);
        assert_eq!(r.value("node_network_speed_bytes", &[]), None);
        assert_eq!(
            r.find("node_network_up", &[]).unwrap().help,
            "Value is 1 if operstate is 'up', 0 otherwise."
        );
    }
}
