//! netdev: `node_network_{receive,transmit}_*_total{device}` from /proc/net/dev, plus
//! `receive_nohandler` from /sys/class/net/<device>/statistics (node_exporter 1.5
//! reads it over netlink; /proc/net/dev lacks it).

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::sink::Sink;

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

pub fn collect(
    reader: &mut Reader,
    proc: &str,
    sys: Option<&str>,
    exclude: &[String],
    out: &mut dyn Sink,
) -> Result<(), Failure> {
    // Copied out because reading the nohandler files reuses the reader's buffer.
    let text = reader.read(&[proc, "net/dev"])?.to_string();
    for device in parse(&text)? {
        if exclude.iter().any(|e| e == device.name) {
            continue;
        }
        let nohandler = sys.and_then(|sys| {
            let value = reader
                .read_attribute(&[sys, "class/net", device.name, "statistics/rx_nohandler"])
                .ok()?;
            number::float(value)
        });
        emit(out, &device, nohandler);
    }
    Ok(())
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
    fn short_rows_fail() {
        assert!(parse("h\nh\n eth0: 1 2 3\n").is_err());
        assert!(parse("h\nh\n eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n").is_err());
        assert!(parse("h\nh\n").unwrap().is_empty());
    }
}
