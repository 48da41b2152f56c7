//! cpu: `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total` from the
//! `cpuN` lines of /proc/stat, plus the /sys extras node_exporter 1.5 reports by
//! default: `node_cpu_isolated`, `node_cpu_{core,package}_throttles_total`.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::refresh::Refresh;
use crate::sink::Sink;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Seconds per mode, in /proc/stat column order.
pub type Times = [f64; 10];

/// Names of the first eight columns for `node_cpu_seconds_total`; the last two
/// (guest, guest_nice) go to `node_cpu_guest_seconds_total` as user and nice.
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
const IDLE: usize = 3;

/// procfs divides jiffies by a fixed USER_HZ of 100, as the kernel exports them.
const USER_HZ: f64 = 100.0;

/// A CPU id above this is taken as corruption rather than allocated for.
const MAX_CPUS: usize = 1 << 16;

/// Per-CPU times indexed by CPU id. Ids missing from the file (offline CPUs) are
/// zero-filled, as procfs does, so `cpu` labels match node_exporter's.
pub fn parse(text: &str) -> Result<Vec<Times>, Failure> {
    let mut cpus: Vec<Times> = Vec::new();
    for line in text.lines() {
        if !line.starts_with("cpu") {
            continue;
        }
        let mut parts = line.split_ascii_whitespace().peekable();
        let name = parts.next().unwrap_or_default();
        // The all-CPU total, and lines without values, which procfs skips too.
        if name == "cpu" || parts.peek().is_none() {
            continue;
        }
        let bad = || malformed("/proc/stat cpu line", line);
        let id: usize = name[3..].parse().map_err(|_| bad())?;
        if id >= MAX_CPUS {
            return Err(bad());
        }
        let mut times = [0.0; 10];
        // Older kernels have fewer columns; the missing ones stay 0.
        for (slot, field) in times.iter_mut().zip(parts) {
            *slot = number::float(field).ok_or_else(bad)? / USER_HZ;
        }
        if cpus.len() <= id {
            cpus.resize(id + 1, [0.0; 10]);
        }
        cpus[id] = times;
    }
    Ok(cpus)
}

/// node_exporter's guard against counters going backwards (hotplug, buggy kernels):
/// a counter keeps its last value rather than decrease, and a CPU whose idle time
/// dropped by 3 s or more starts afresh.
#[derive(Default)]
pub struct Monotonic {
    last: Vec<Times>,
}

impl Monotonic {
    pub fn update(&mut self, now: &[Times]) -> &[Times] {
        if self.last.len() != now.len() {
            self.last = vec![[0.0; 10]; now.len()];
        }
        for (old, new) in self.last.iter_mut().zip(now) {
            if old[IDLE] - new[IDLE] >= 3.0 {
                *old = [0.0; 10];
            }
            for (o, n) in old.iter_mut().zip(new) {
                if *n >= *o {
                    *o = *n;
                }
            }
        }
        &self.last
    }
}

/// State kept across collections.
#[derive(Default)]
pub struct Cpu {
    monotonic: Monotonic,
    /// "0", "1", ...: label values kept to avoid formatting them every time.
    ids: Vec<String>,
    /// CPUs listed in /sys/devices/system/cpu/isolated, read once as node_exporter does.
    isolated: Option<Vec<u32>>,
    /// (package, core) of each CPU directory, read once per CPU: topology is fixed.
    topology: HashMap<u32, Option<(u64, u64)>>,
    /// Whether cpu0 has thermal throttle counters, probed once a minute.
    throttled: bool,
    probe: Refresh,
}

impl Cpu {
    pub fn collect(
        &mut self,
        stat: &str,
        sys: Option<&str>,
        reader: &mut Reader,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        let now = parse(stat)?;
        while self.ids.len() < now.len() {
            self.ids.push(self.ids.len().to_string());
        }
        emit_times(out, self.monotonic.update(&now), &self.ids);
        let Some(sys) = sys else { return Ok(()) };
        let isolated = self.isolated.get_or_insert_with(|| read_isolated(reader, sys));
        for cpu in isolated.iter() {
            let help = "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.";
            out.gauge("node_cpu_isolated", &help, &[("cpu", &cpu.to_string())], 1.0);
        }
        self.throttles(reader, sys, out);
        Ok(())
    }

    /// Thermal throttle counters exist on bare-metal x86 only; a probe of cpu0 once
    /// a minute spares every other host the per-CPU reads.
    fn throttles(&mut self, reader: &mut Reader, sys: &str, out: &mut dyn Sink) {
        let now = Instant::now();
        if self.probe.due(now) {
            let probe = [sys, "devices/system/cpu/cpu0/thermal_throttle/package_throttle_count"];
            self.throttled = reader.read_attribute(&probe).is_ok();
            self.probe.done(now);
        }
        if !self.throttled {
            return;
        }
        let Ok(dir) = std::fs::read_dir(format!("{sys}/devices/system/cpu")) else {
            return;
        };
        let mut cpus: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
            .collect();
        cpus.sort_unstable();
        let mut packages: BTreeMap<u64, u64> = BTreeMap::new();
        let mut cores: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for cpu in cpus {
            let dir = format!("devices/system/cpu/cpu{cpu}");
            let topo = *self
                .topology
                .entry(cpu)
                .or_insert_with(|| read_topology(reader, sys, &dir));
            let Some((package, core)) = topo else { continue };
            if let Entry::Vacant(slot) = cores.entry((package, core))
                && let Some(n) = read_u64(reader, &[sys, &dir, "thermal_throttle/core_throttle_count"])
            {
                slot.insert(n);
            }
            if let Entry::Vacant(slot) = packages.entry(package)
                && let Some(n) = read_u64(reader, &[sys, &dir, "thermal_throttle/package_throttle_count"])
            {
                slot.insert(n);
            }
        }
        for (package, n) in packages {
            let help = "Number of times this CPU package has been throttled.";
            out.counter(
                "node_cpu_package_throttles_total",
                &help,
                &[("package", &package.to_string())],
                n as f64,
            );
        }
        for ((package, core), n) in cores {
            let labels = [("package", package.to_string()), ("core", core.to_string())];
            let labels = [(labels[0].0, labels[0].1.as_str()), (labels[1].0, labels[1].1.as_str())];
            let help = "Number of times this CPU core has been throttled.";
            out.counter("node_cpu_core_throttles_total", &help, &labels, n as f64);
        }
    }
}

pub fn emit_times(out: &mut dyn Sink, cpus: &[Times], ids: &[String]) {
    for (times, id) in cpus.iter().zip(ids) {
        for (mode, value) in MODES.iter().zip(times) {
            let labels = [("cpu", id.as_str()), ("mode", *mode)];
            out.counter(
                "node_cpu_seconds_total",
                &"Seconds the CPUs spent in each mode.",
                &labels,
                *value,
            );
        }
        let help = "Seconds the CPUs spent in guests (VMs) for each mode.";
        out.counter(
            "node_cpu_guest_seconds_total",
            &help,
            &[("cpu", id), ("mode", "user")],
            times[8],
        );
        out.counter(
            "node_cpu_guest_seconds_total",
            &help,
            &[("cpu", id), ("mode", "nice")],
            times[9],
        );
    }
}

fn read_u64(reader: &mut Reader, parts: &[&str]) -> Option<u64> {
    reader.read_attribute(parts).ok().and_then(number::uint)
}

fn read_topology(reader: &mut Reader, sys: &str, dir: &str) -> Option<(u64, u64)> {
    let package = read_u64(reader, &[sys, dir, "topology/physical_package_id"])?;
    let core = read_u64(reader, &[sys, dir, "topology/core_id"])?;
    Some((package, core))
}

fn read_isolated(reader: &mut Reader, sys: &str) -> Vec<u32> {
    match reader.read_attribute(&[sys, "devices/system/cpu/isolated"]) {
        Ok(text) => parse_cpu_list(text).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Parses a kernel CPU list such as `1-3,8` (empty when nothing is isolated).
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => (part.parse().ok()?, part.parse().ok()?),
        };
        if last < first || last - first >= MAX_CPUS as u32 {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;
    use sonde_plugin_sdk::Kind;

    const STAT: &str = "cpu  39826 0 5958 35473 259 0 78 45 0 0
cpu0 19645 3 2711 18387 45 1 8 19 7 2
cpu2 20181 0 3247 17086 214 0 70 26 0 0
intr 284960 0 9
ctxt 396100
";

    #[test]
    fn jiffies_become_seconds_and_gaps_are_zero_filled() {
        let cpus = parse(STAT).unwrap();
        assert_eq!(cpus.len(), 3);
        assert_eq!(
            cpus[0],
            [196.45, 0.03, 27.11, 183.87, 0.45, 0.01, 0.08, 0.19, 0.07, 0.02]
        );
        assert_eq!(cpus[1], [0.0; 10]);
        assert_eq!(cpus[2][0], 201.81);
    }

    #[test]
    fn emits_eight_modes_and_two_guest_modes_per_cpu() {
        let cpus = parse(STAT).unwrap();
        let ids: Vec<String> = (0..3).map(|i| i.to_string()).collect();
        let mut r = Recorder::default();
        emit_times(&mut r, &cpus, &ids);
        assert_eq!(r.count("node_cpu_seconds_total"), 24);
        assert_eq!(
            r.value("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "steal")]),
            Some(0.19)
        );
        assert_eq!(
            r.value("node_cpu_seconds_total", &[("cpu", "2"), ("mode", "idle")]),
            Some(170.86)
        );
        assert_eq!(
            r.value("node_cpu_guest_seconds_total", &[("cpu", "0"), ("mode", "nice")]),
            Some(0.02)
        );
        assert_eq!(r.kind("node_cpu_seconds_total"), Some(Kind::Counter));
    }

    #[test]
    fn short_lines_keep_zeros_and_garbage_fails() {
        let cpus = parse("cpu0 100 200 300 400\n").unwrap();
        assert_eq!(cpus[0][..5], [1.0, 2.0, 3.0, 4.0, 0.0]);
        assert!(parse("cpu0 100 x 300\n").is_err());
        assert!(parse("cpuX 1 2 3\n").is_err());
        assert!(parse("cpu99999999 1 2 3\n").is_err());
    }

    #[test]
    fn counters_do_not_go_backwards_until_idle_jumps_back() {
        let mut m = Monotonic::default();
        let mut t = [0.0; 10];
        t[0] = 10.0;
        t[IDLE] = 100.0;
        m.update(&[t]);
        let mut back = t;
        back[0] = 9.0; // user went backwards: hold 10
        back[IDLE] = 99.0; // idle went back by less than 3 s: hold 100
        assert_eq!(m.update(&[back])[0][0], 10.0);
        assert_eq!(m.update(&[back])[0][IDLE], 100.0);
        let mut reset = t;
        reset[0] = 1.0;
        reset[IDLE] = 50.0; // idle dropped by 50 s: hotplug, start afresh
        assert_eq!(m.update(&[reset])[0][0], 1.0);
        assert_eq!(m.update(&[reset, reset]).len(), 2, "a CPU count change resets");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1-3,8\n"), Some(vec![1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("\n"), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }
}
