//! netstat: `node_netstat_<Protocol>_<Field>` (untyped) from /proc/net/netstat,
//! /proc/net/snmp and /proc/net/snmp6, for node_exporter 1.5's default field set plus
//! configured extras.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::sink::Sink;
use sonde_plugin_sdk::Kind;

/// node_exporter 1.5's default `--collector.netstat.fields`, written out:
/// `^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$`
pub fn default_field(protocol: &str, field: &str) -> bool {
    if field.ends_with("_InErrors") || field.ends_with("_InErrs") || field == "InErrors" || field == "InErrs" {
        return true;
    }
    match protocol {
        "Ip" => field == "Forwarding",
        "Ip6" | "IpExt" => matches!(field, "InOctets" | "OutOctets"),
        "Icmp" | "Icmp6" => matches!(field, "InMsgs" | "OutMsgs"),
        "TcpExt" => {
            field.starts_with("Listen")
                || field.starts_with("Syncookies")
                || field == "TCPSynRetrans"
                || field == "TCPTimeouts"
        }
        "Tcp" => matches!(
            field,
            "ActiveOpens" | "InSegs" | "OutSegs" | "OutRsts" | "PassiveOpens" | "RetransSegs" | "CurrEstab"
        ),
        "Udp" | "Udp6" => {
            matches!(
                field,
                "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
            )
        }
        _ => false,
    }
}

/// One statistic: protocol, field, value.
pub type Stat<'a> = (&'a str, &'a str, f64);

/// Parses the header/value line pairs of /proc/net/netstat and /proc/net/snmp:
/// `Tcp: RtoAlgorithm RtoMin ...` followed by `Tcp: 1 200 ...`.
pub fn parse_pairs<'a>(what: &str, text: &'a str, keep: impl Fn(&str, &str) -> bool) -> Result<Vec<Stat<'a>>, Failure> {
    let mut stats = Vec::with_capacity(32);
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        if header.is_empty() {
            continue;
        }
        let values = lines.next().unwrap_or_default();
        let bad = || malformed(what, header);
        // node_exporter splits on single spaces; so does the kernel.
        let mut names = header.split(' ');
        let mut nums = values.split(' ');
        let protocol = names.next().and_then(|p| p.strip_suffix(':')).ok_or_else(bad)?;
        if nums.next() != Some(header.split(' ').next().unwrap_or_default()) {
            return Err(bad());
        }
        loop {
            match (names.next(), nums.next()) {
                (Some(field), Some(value)) => {
                    if keep(protocol, field) {
                        stats.push((protocol, field, number::float(value).ok_or_else(bad)?));
                    }
                }
                (None, None) => break,
                _ => return Err(bad()),
            }
        }
    }
    Ok(stats)
}

/// Parses /proc/net/snmp6 (`Ip6InReceives   2`): the protocol is the name up to and
/// including its first `6`, as node_exporter splits it.
pub fn parse_snmp6<'a>(text: &'a str, keep: impl Fn(&str, &str) -> bool) -> Result<Vec<Stat<'a>>, Failure> {
    let mut stats = Vec::with_capacity(16);
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(six) = name.find('6') else { continue };
        let (protocol, field) = name.split_at(six + 1);
        if keep(protocol, field) {
            let value = number::float(value).ok_or_else(|| malformed("/proc/net/snmp6 line", line))?;
            stats.push((protocol, field, value));
        }
    }
    Ok(stats)
}

pub fn emit(out: &mut dyn Sink, stats: &[Stat], name: &mut String) {
    for (protocol, field, value) in stats {
        name.clear();
        name.push_str("node_netstat_");
        name.push_str(protocol);
        name.push('_');
        name.push_str(field);
        out.emit(
            name,
            Kind::Unknown,
            &format_args!("Statistic {protocol}{field}."),
            &[],
            *value,
        );
    }
}

pub fn collect(reader: &mut Reader, proc: &str, extra: &[String], out: &mut dyn Sink) -> Result<(), Failure> {
    let keep = |protocol: &str, field: &str| {
        default_field(protocol, field)
            || extra
                .iter()
                .any(|e| e.strip_prefix(protocol).and_then(|r| r.strip_prefix('_')) == Some(field))
    };
    let mut name = String::new();
    for file in ["netstat", "snmp"] {
        let text = reader.read_single(&[proc, "net", file])?;
        emit(out, &parse_pairs(file, text, keep)?, &mut name);
    }
    match reader.read_single(&[proc, "net", "snmp6"]) {
        Ok(text) => emit(out, &parse_snmp6(text, keep)?, &mut name),
        // IPv6 disabled: node_exporter carries on without it.
        Err(e) if e.kind == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    const NETSTAT: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts TCPTimeouts ListenOverflows ListenDrops TCPOFOQueue TCPSynRetrans
TcpExt: 0 1 2 0 17 3 4 9 5
IpExt: InNoRoutes InOctets OutOctets InCsumErrors
IpExt: 0 367387838 977315 0
";
    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors
Ip: 2 64 21600 0
Icmp: InMsgs InErrors InCsumErrors OutMsgs
Icmp: 1 0 0 0
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 50 3 0 0 2 21471 12269 0 0 40 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 91 0 0 92 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";
    const SNMP6: &str = "Ip6InReceives                   \t2
Ip6InOctets                     \t128
Ip6OutOctets                    \t880
Icmp6InMsgs                     \t1
Icmp6InErrors                   \t1
Icmp6OutMsgs                    \t9
Icmp6InType133                  \t0
Udp6InDatagrams                 \t0
UdpLite6InErrors                \t0
";

    fn names(text: &str, snmp6: bool, extra: &[String]) -> Vec<String> {
        let keep = |p: &str, f: &str| default_field(p, f) || extra.iter().any(|e| *e == format!("{p}_{f}"));
        let stats = if snmp6 {
            parse_snmp6(text, keep).unwrap()
        } else {
            parse_pairs("t", text, keep).unwrap()
        };
        stats.iter().map(|(p, f, _)| format!("{p}_{f}")).collect()
    }

    #[test]
    fn default_fields_of_netstat_and_snmp() {
        assert_eq!(
            names(NETSTAT, false, &[]),
            [
                "TcpExt_SyncookiesSent",
                "TcpExt_SyncookiesRecv",
                "TcpExt_SyncookiesFailed",
                "TcpExt_TCPTimeouts",
                "TcpExt_ListenOverflows",
                "TcpExt_ListenDrops",
                "TcpExt_TCPSynRetrans",
                "IpExt_InOctets",
                "IpExt_OutOctets"
            ]
        );
        let snmp = names(SNMP, false, &[]);
        for kept in [
            "Ip_Forwarding",
            "Icmp_InErrors",
            "Tcp_InErrs",
            "Tcp_CurrEstab",
            "Udp_NoPorts",
            "UdpLite_InErrors",
        ] {
            assert!(snmp.iter().any(|n| n == kept), "{kept} missing from {snmp:?}");
        }
        for dropped in [
            "Ip_DefaultTTL",
            "Tcp_MaxConn",
            "Udp_IgnoredMulti",
            "UdpLite_InDatagrams",
            "Icmp_InCsumErrors",
        ] {
            assert!(!snmp.iter().any(|n| n == dropped), "{dropped} kept");
        }
        assert_eq!(snmp.len(), 3 + 7 + 1 + 6 + 1 + 1);
    }

    #[test]
    fn snmp6_protocols_split_at_the_first_six() {
        assert_eq!(
            names(SNMP6, true, &[]),
            [
                "Ip6_InOctets",
                "Ip6_OutOctets",
                "Icmp6_InMsgs",
                "Icmp6_InErrors",
                "Icmp6_OutMsgs",
                "Udp6_InDatagrams",
                "UdpLite6_InErrors"
            ]
        );
    }

    #[test]
    fn extra_fields_and_values() {
        let extra = ["TcpExt_TCPOFOQueue".to_string(), "Tcp_MaxConn".to_string()];
        assert!(names(NETSTAT, false, &extra).contains(&"TcpExt_TCPOFOQueue".to_string()));
        let keep = |p: &str, f: &str| default_field(p, f) || (p == "Tcp" && f == "MaxConn");
        let mut r = Recorder::default();
        emit(&mut r, &parse_pairs("snmp", SNMP, keep).unwrap(), &mut String::new());
        assert_eq!(r.value("node_netstat_Tcp_MaxConn", &[]), Some(-1.0));
        assert_eq!(r.value("node_netstat_Tcp_InSegs", &[]), Some(21471.0));
        assert_eq!(r.kind("node_netstat_Tcp_InSegs"), Some(Kind::Unknown));
        assert_eq!(
            r.find("node_netstat_Tcp_InSegs", &[]).unwrap().help,
            "Statistic TcpInSegs."
        );
    }

    #[test]
    fn mismatched_lines_fail() {
        let keep = |_: &str, _: &str| true;
        assert!(parse_pairs("t", "Tcp: A B\nTcp: 1\n", keep).is_err());
        assert!(parse_pairs("t", "Tcp: A B\nUdp: 1 2\n", keep).is_err());
        assert!(parse_pairs("t", "Tcp: A B\n", keep).is_err());
        assert!(parse_pairs("t", "Tcp: A\nTcp: x\n", keep).is_err());
        assert!(parse_snmp6("Ip6InOctets zero\n", keep).is_err());
    }
}
