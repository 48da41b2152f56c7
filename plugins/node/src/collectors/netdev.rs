//! netdev: `node_network_{receive,transmit}_*_total{device}` from /proc/net/dev, plus
//! `receive_nohandler` from /sys/class/net/<device>/statistics (node_exporter 1.5
//! reads it over netlink; /proc/net/dev lacks it).

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::refresh::Refresh;
use crate::sink::Sink;
use std::time::Instant;

/// The /proc/net/dev columns, as node_exporter names them (`errs`, `drop`, ...).
const COLUMNS: [&str; 16] = [
    "node_network_receive_bytes_total",
    "node_network_receive_packets_total",
    "node_network_receive_errs_total",
    "node_network_receive_drop_total",
    "node_network_receive_fifo_total",
    "node_network_receive_frame_total",
    "node_network_receive_compressed_total",
    "node_network_receive_multicast_total",
    "node_network_transmit_bytes_total",
    "node_network_transmit_packets_total",
    "node_network_transmit_errs_total",
    "node_network_transmit_drop_total",
    "node_network_transmit_fifo_total",
    "node_network_transmit_colls_total",
    "node_network_transmit_carrier_total",
    "node_network_transmit_compressed_total",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Device<'a> {
    pub name: &'a str,
    pub values: [f64; 16],
}

pub fn parse(text: &str) -> Result<Vec<Device<'_>>, Failure> {
    let mut devices = Vec::with_capacity(8);
    // Two header lines, then `  eth0: 367685957 21533 0 ...` (old kernels glue the
    // first number to the colon, hence the split on ':' rather than on whitespace).
    for line in text.lines().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || malformed("/proc/net/dev line", line);
        let (name, rest) = line.split_once(':').ok_or_else(bad)?;
        let mut values = [0.0; 16];
        let mut fields = rest.split_ascii_whitespace();
        for v in &mut values {
            *v = fields.next().and_then(number::float).ok_or_else(bad)?;
        }
        devices.push(Device {
            name: name.trim(),
            values,
        });
    }
    Ok(devices)
}

pub fn emit(out: &mut dyn Sink, device: &Device, nohandler: Option<f64>) {
    let labels = [("device", device.name)];
    for (name, value) in COLUMNS.iter().zip(&device.values) {
        let key = &name["node_network_".len()..name.len() - "_total".len()];
        out.counter(name, &format_args!("Network device statistic {key}."), &labels, *value);
    }
    if let Some(v) = nohandler {
        let help = "Network device statistic receive_nohandler.";
        out.counter("node_network_receive_nohandler_total", &help, &labels, v);
    }
}

/// `rx_nohandler` per device. It takes one sysfs read per device, counts packets no
/// protocol wanted (almost always 0), and so is read once a minute, not at every
/// collection: increments show with up to a minute's delay.
#[derive(Default)]
pub struct Netdev {
    nohandler: Vec<(String, Option<f64>)>,
    refresh: Refresh,
}

impl Netdev {
    pub fn collect(
        &mut self,
        reader: &mut Reader,
        proc: &str,
        sys: Option<&str>,
        exclude: &[String],
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        // Copied out because reading the nohandler files reuses the reader's buffer.
        let text = reader.read_records(&[proc, "net/dev"])?.to_string();
        let devices = parse(&text)?;
        let due = self.refresh.due(now);
        if due {
            self.refresh.done(now);
        }
        self.nohandler
            .retain(|(name, _)| devices.iter().any(|d| d.name == name));
        for device in devices {
            if exclude.iter().any(|e| e == device.name) {
                continue;
            }
            let cached = self.nohandler.iter().position(|(n, _)| n == device.name);
            let nohandler = match (cached, due) {
                (Some(i), false) => self.nohandler[i].1,
                _ => {
                    let value = sys.and_then(|sys| read_nohandler(reader, sys, device.name));
                    match cached {
                        Some(i) => self.nohandler[i].1 = value,
                        None => self.nohandler.push((device.name.to_string(), value)),
                    }
                    value
                }
            };
            emit(out, &device, nohandler);
        }
        Ok(())
    }
}

fn read_nohandler(reader: &mut Reader, sys: &str, device: &str) -> Option<f64> {
    let value = reader
        .read_attribute(&[sys, "class/net", device, "statistics/rx_nohandler"])
        .ok()?;
    number::float(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   63233      67    0    0    0     0          0         0    63233      67    0    0    0     0       0          0
  eth0: 367685957   21533    1    2    3     4          5         6  1146844   12300    7    8    9    10      11         12
wlan0:1234 5 0 0 0 0 0 0 99 4 0 0 0 0 0 0
";

    #[test]
    fn all_sixteen_columns_per_device() {
        let devices = parse(NET_DEV).unwrap();
        assert_eq!(
            devices.iter().map(|d| d.name).collect::<Vec<_>>(),
            ["lo", "eth0", "wlan0"]
        );
        let mut r = Recorder::default();
        emit(&mut r, &devices[1], Some(13.0));
        let eth0 = [("device", "eth0")];
        assert_eq!(r.value("node_network_receive_bytes_total", &eth0), Some(367685957.0));
        assert_eq!(r.value("node_network_receive_errs_total", &eth0), Some(1.0));
        assert_eq!(r.value("node_network_receive_multicast_total", &eth0), Some(6.0));
        assert_eq!(r.value("node_network_transmit_packets_total", &eth0), Some(12300.0));
        assert_eq!(r.value("node_network_transmit_colls_total", &eth0), Some(10.0));
        assert_eq!(r.value("node_network_transmit_compressed_total", &eth0), Some(12.0));
        assert_eq!(r.value("node_network_receive_nohandler_total", &eth0), Some(13.0));
        assert_eq!(r.samples.len(), 17);
        let help = &r.find("node_network_transmit_carrier_total", &eth0).unwrap().help;
        assert_eq!(help, "Network device statistic transmit_carrier.");
        assert_eq!(devices[2].values[8], 99.0);
    }

    #[test]
    fn nohandler_is_read_once_a_minute_and_for_new_devices() {
        let root = std::env::temp_dir().join(format!("sonde-node-netdev-{}", std::process::id()));
        let stats = |dev: &str, n: &str| {
            let dir = root.join("sys/class/net").join(dev).join("statistics");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("rx_nohandler"), n).unwrap();
        };
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        let header = "h\nh\n";
        let row = |dev: &str| format!("{dev}: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
        std::fs::write(root.join("proc/net/dev"), format!("{header}{}", row("eth0"))).unwrap();
        stats("eth0", "5\n");
        stats("eth1", "9\n");
        let (proc, sys) = (root.join("proc"), root.join("sys"));
        let (proc, sys) = (proc.to_str().unwrap(), sys.to_str().unwrap());
        let mut netdev = Netdev::default();
        let t0 = Instant::now();
        let mut run = |at: u64| {
            let mut r = Recorder::default();
            let now = t0 + std::time::Duration::from_secs(at);
            netdev
                .collect(&mut Reader::default(), proc, Some(sys), &[], now, &mut r)
                .unwrap();
            let value = |dev| r.value("node_network_receive_nohandler_total", &[("device", dev)]);
            (value("eth0"), value("eth1"))
        };
        assert_eq!(run(0), (Some(5.0), None));
        stats("eth0", "6\n");
        std::fs::write(
            root.join("proc/net/dev"),
            format!("{header}{}{}", row("eth0"), row("eth1")),
        )
        .unwrap();
        assert_eq!(run(1), (Some(5.0), Some(9.0)), "eth0 cached, eth1 new");
        assert_eq!(run(60), (Some(6.0), Some(9.0)));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn short_rows_fail() {
        assert!(parse("h\nh\n eth0: 1 2 3\n").is_err());
        assert!(parse("h\nh\n eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n").is_err());
        assert!(parse("h\nh\n").unwrap().is_empty());
    }
}
