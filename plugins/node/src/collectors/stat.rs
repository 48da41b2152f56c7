//! stat: boot time, context switches, forks, interrupts and process counts from
//! /proc/stat (whose `cpu` lines belong to the cpu collector).

use crate::failure::{Failure, malformed};
use crate::number;
use crate::sink::Sink;

/// The counters node_exporter's stat collector reports; absent lines stay 0, as in
/// procfs.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Stat {
    pub boot_time: u64,
    pub interrupts: u64,
    pub context_switches: u64,
    pub forks: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
}

pub fn parse(text: &str) -> Result<Stat, Failure> {
    let mut stat = Stat::default();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(key), Some(first)) = (parts.next(), parts.next()) else {
            continue;
        };
        let slot = match key {
            "btime" => &mut stat.boot_time,
            // Only the total: the per-IRQ counts that follow can be thousands long.
            "intr" => &mut stat.interrupts,
            "ctxt" => &mut stat.context_switches,
            "processes" => &mut stat.forks,
            "procs_running" => &mut stat.procs_running,
            "procs_blocked" => &mut stat.procs_blocked,
            _ => continue,
        };
        *slot = number::uint(first).ok_or_else(|| malformed("/proc/stat line", line))?;
    }
    Ok(stat)
}

pub fn emit(out: &mut dyn Sink, s: &Stat) {
    out.counter(
        "node_intr_total",
        &"Total number of interrupts serviced.",
        &[],
        s.interrupts as f64,
    );
    out.counter(
        "node_context_switches_total",
        &"Total number of context switches.",
        &[],
        s.context_switches as f64,
    );
    out.counter("node_forks_total", &"Total number of forks.", &[], s.forks as f64);
    out.gauge(
        "node_boot_time_seconds",
        &"Node boot time, in unixtime.",
        &[],
        s.boot_time as f64,
    );
    out.gauge(
        "node_procs_running",
        &"Number of processes in runnable state.",
        &[],
        s.procs_running as f64,
    );
    let blocked_help = "Number of processes blocked waiting for I/O to complete.";
    out.gauge("node_procs_blocked", &blocked_help, &[], s.procs_blocked as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;
    use sonde_plugin_sdk::Kind;

    pub const STAT: &str = "cpu  39826 0 5958 35473 259 0 78 45 0 0
cpu0 19645 0 2711 18387 45 0 8 19 0 0
cpu1 20181 0 3247 17086 214 0 70 26 0 0
intr 284960 0 9 0 0 0 0 0 0 0 0 0 0 156 0 0 0
ctxt 396100
btime 1795333960
processes 8749
procs_running 4
procs_blocked 1
softirq 125393 2 51015 4 4561 0 0 3 40043 0 29765
";

    #[test]
    fn totals_and_counts() {
        let s = parse(STAT).unwrap();
        assert_eq!(
            s,
            Stat {
                boot_time: 1795333960,
                interrupts: 284960,
                context_switches: 396100,
                forks: 8749,
                procs_running: 4,
                procs_blocked: 1
            }
        );
        let mut r = Recorder::default();
        emit(&mut r, &s);
        assert_eq!(r.value("node_forks_total", &[]), Some(8749.0));
        assert_eq!(r.kind("node_intr_total"), Some(Kind::Counter));
        assert_eq!(r.kind("node_boot_time_seconds"), Some(Kind::Gauge));
        assert_eq!(r.samples.len(), 6);
    }

    #[test]
    fn garbage_in_a_known_line_is_an_error() {
        assert!(parse("ctxt lots\n").is_err());
        assert!(parse("btime -5\n").is_err());
        // Unknown and short lines are ignored, as procfs does.
        assert_eq!(parse("ctxt\nfoo 1\n").unwrap(), Stat::default());
    }
}
