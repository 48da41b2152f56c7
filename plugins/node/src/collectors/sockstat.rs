//! sockstat: `node_sockstat_*` from /proc/net/sockstat and /proc/net/sockstat6,
//! including `<PROTO>_mem_bytes` (pages times the host's page size).

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::sink::Sink;

/// The counters of one protocol line, e.g. `TCP: inuse 1 orphan 0 tw 1 alloc 1 mem 429`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Protocol<'a> {
    pub name: &'a str,
    pub inuse: f64,
    pub orphan: Option<f64>,
    pub tw: Option<f64>,
    pub alloc: Option<f64>,
    /// In pages.
    pub mem: Option<f64>,
    /// In bytes (FRAG).
    pub memory: Option<f64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sockstat<'a> {
    /// `sockets: used N`, only in the IPv4 file.
    pub used: Option<f64>,
    pub protocols: Vec<Protocol<'a>>,
}

pub fn parse<'a>(what: &str, text: &'a str) -> Result<Sockstat<'a>, Failure> {
    let mut stat = Sockstat::default();
    for line in text.lines() {
        let bad = || malformed(what, line);
        // procfs splits on single spaces and wants a name and at least one pair.
        let mut fields = line.split(' ');
        let name = fields.next().and_then(|n| n.strip_suffix(':')).ok_or_else(bad)?;
        let mut proto = Protocol {
            name,
            ..Protocol::default()
        };
        let mut pairs = 0;
        while let Some(key) = fields.next() {
            let value = fields.next().and_then(number::float).ok_or_else(bad)?;
            pairs += 1;
            match key {
                "used" if name == "sockets" => stat.used = Some(value),
                "inuse" => proto.inuse = value,
                "orphan" => proto.orphan = Some(value),
                "tw" => proto.tw = Some(value),
                "alloc" => proto.alloc = Some(value),
                "mem" => proto.mem = Some(value),
                "memory" => proto.memory = Some(value),
                _ => {}
            }
        }
        if pairs == 0 {
            return Err(bad());
        }
        if name == "sockets" {
            stat.used.get_or_insert(0.0);
        } else {
            stat.protocols.push(proto);
        }
    }
    Ok(stat)
}

pub fn emit(out: &mut dyn Sink, stat: &Sockstat, ipv6: bool, page_size: f64, name: &mut String) {
    if let (false, Some(used)) = (ipv6, stat.used) {
        out.gauge(
            "node_sockstat_sockets_used",
            &"Number of IPv4 sockets in use.",
            &[],
            used,
        );
    }
    for p in &stat.protocols {
        let values = [
            ("inuse", Some(p.inuse)),
            ("orphan", p.orphan),
            ("tw", p.tw),
            ("alloc", p.alloc),
            ("mem", p.mem),
            ("memory", p.memory),
            ("mem_bytes", p.mem.map(|pages| pages * page_size)),
        ];
        for (state, value) in values {
            let Some(value) = value else { continue };
            name.clear();
            name.push_str("node_sockstat_");
            name.push_str(p.name);
            name.push('_');
            name.push_str(state);
            let help = format_args!("Number of {} sockets in state {state}.", p.name);
            out.gauge(name, &help, &[], value);
        }
    }
}

pub fn collect(reader: &mut Reader, proc: &str, page_size: f64, out: &mut dyn Sink) -> Result<(), Failure> {
    let mut name = String::new();
    for (file, ipv6) in [("sockstat", false), ("sockstat6", true)] {
        match reader.read_single(&[proc, "net", file]) {
            Ok(text) => emit(out, &parse(file, text)?, ipv6, page_size, &mut name),
            // No IPv6 (or no IPv4) in this kernel: skipped, as node_exporter does.
            Err(e) if e.kind == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The host's page size, for `_mem_bytes`. A WASI guest cannot ask the kernel, but
/// the first mapping listed in /proc/self/smaps (the host process) states it.
pub fn page_size(reader: &mut Reader, proc: &str) -> Option<f64> {
    let text = reader.read_head(&[proc, "self/smaps"], 4096).ok()?;
    let line = text.lines().find(|l| l.starts_with("KernelPageSize:"))?;
    let mut parts = line.split_ascii_whitespace().skip(1);
    let kb = parts.next().and_then(number::float)?;
    (parts.next() == Some("kB")).then_some(kb * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    const SOCKSTAT: &str = "sockets: used 14
TCP: inuse 1 orphan 0 tw 1 alloc 1 mem 429
UDP: inuse 0 mem 3
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
";
    const SOCKSTAT6: &str = "TCP6: inuse 2
UDP6: inuse 0
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
";

    #[test]
    fn ipv4_and_ipv6_families() {
        let mut r = Recorder::default();
        let mut name = String::new();
        emit(&mut r, &parse("sockstat", SOCKSTAT).unwrap(), false, 4096.0, &mut name);
        emit(&mut r, &parse("sockstat6", SOCKSTAT6).unwrap(), true, 4096.0, &mut name);
        assert_eq!(r.value("node_sockstat_sockets_used", &[]), Some(14.0));
        assert_eq!(r.value("node_sockstat_TCP_tw", &[]), Some(1.0));
        assert_eq!(r.value("node_sockstat_TCP_mem", &[]), Some(429.0));
        assert_eq!(r.value("node_sockstat_TCP_mem_bytes", &[]), Some(429.0 * 4096.0));
        assert_eq!(r.value("node_sockstat_UDP_mem_bytes", &[]), Some(3.0 * 4096.0));
        assert_eq!(r.value("node_sockstat_FRAG_memory", &[]), Some(0.0));
        assert_eq!(r.value("node_sockstat_TCP6_inuse", &[]), Some(2.0));
        assert_eq!(r.value("node_sockstat_UDPLITE_mem", &[]), None);
        assert_eq!(r.samples.len(), 1 + 6 + 3 + 1 + 1 + 2 + 5 + 1);
        let help = &r.find("node_sockstat_TCP_mem_bytes", &[]).unwrap().help;
        assert_eq!(help, "Number of TCP sockets in state mem_bytes.");
    }

    #[test]
    fn odd_pairs_or_bad_numbers_fail() {
        assert!(parse("sockstat", "TCP: inuse\n").is_err());
        assert!(parse("sockstat", "TCP: inuse x\n").is_err());
        assert!(parse("sockstat", "TCP inuse 1\n").is_err());
        assert!(parse("sockstat", "TCP:\n").is_err());
    }

    #[test]
    fn page_size_from_smaps() {
        let root = std::env::temp_dir().join(format!("sonde-node-smaps-{}", std::process::id()));
        std::fs::create_dir_all(root.join("self")).unwrap();
        let smaps = "55d0c0a00000-55d0c0a2c000 r--p 00000000 fe:00 1234 /usr/bin/sonde
Size:                176 kB
KernelPageSize:       64 kB
MMUPageSize:          64 kB
";
        std::fs::write(root.join("self/smaps"), smaps).unwrap();
        assert_eq!(page_size(&mut Reader::default(), root.to_str().unwrap()), Some(65536.0));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
