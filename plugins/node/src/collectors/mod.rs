//! The collectors, one module each, named as node_exporter names them. Each module
//! keeps its parsing pure (text in, values out) so it is unit-tested natively.

pub mod cpu;
pub mod diskstats;
pub mod filefd;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod os;
pub mod pressure;
pub mod sockstat;
pub mod stat;
pub mod time;
pub mod uname;
pub mod vmstat;

use serde::Deserialize;

/// A collector, as named in the `collectors` setting and the `collector` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Name {
    Cpu,
    Diskstats,
    Filefd,
    Filesystem,
    Loadavg,
    Meminfo,
    Netclass,
    Netdev,
    Netstat,
    Os,
    Pressure,
    Sockstat,
    Stat,
    Time,
    Uname,
    Vmstat,
}

impl Name {
    pub const ALL: [Name; 16] = [
        Name::Cpu,
        Name::Diskstats,
        Name::Filefd,
        Name::Filesystem,
        Name::Loadavg,
        Name::Meminfo,
        Name::Netclass,
        Name::Netdev,
        Name::Netstat,
        Name::Os,
        Name::Pressure,
        Name::Sockstat,
        Name::Stat,
        Name::Time,
        Name::Uname,
        Name::Vmstat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Name::Cpu => "cpu",
            Name::Diskstats => "diskstats",
            Name::Filefd => "filefd",
            Name::Filesystem => "filesystem",
            Name::Loadavg => "loadavg",
            Name::Meminfo => "meminfo",
            Name::Netclass => "netclass",
            Name::Netdev => "netdev",
            Name::Netstat => "netstat",
            Name::Os => "os",
            Name::Pressure => "pressure",
            Name::Sockstat => "sockstat",
            Name::Stat => "stat",
            Name::Time => "time",
            Name::Uname => "uname",
            Name::Vmstat => "vmstat",
        }
    }

    /// Whether the collector cannot work without sysfs (others use it when granted).
    pub fn needs_sys(self) -> bool {
        matches!(self, Name::Netclass | Name::Time)
    }

    /// Whether the collector reads procfs.
    pub fn needs_proc(self) -> bool {
        !matches!(self, Name::Netclass | Name::Time | Name::Uname | Name::Os)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for name in Name::ALL {
            #[derive(serde::Deserialize)]
            struct One {
                name: Name,
            }
            let json = format!("{{\"name\": \"{}\"}}", name.as_str());
            let parsed: One = sonde_plugin_sdk::parse_config(&json).unwrap();
            assert_eq!(parsed.name, name);
        }
    }
}
