//! node: host metrics compatible with Prometheus node_exporter 1.5 (same metric
//! names, types, labels and units), so dashboards such as Grafana's "Node Exporter
//! Full" work unchanged.
//!
//! The plugin reads procfs and sysfs through read-only grants and asks the host for
//! the two facts a WASI guest cannot get itself: `statfs` of mount points and
//! `uname`. Each collector reports `node_scrape_collector_{duration_seconds,success}`
//! like node_exporter; a failing collector is logged and does not fail the others.

mod collectors;
mod config;
mod failure;
mod number;
mod reader;
mod refresh;
mod sink;

use collectors::Name;
use collectors::filesystem::{Answer, Exclusions, Filesystem, Usage};
use collectors::{cpu::Cpu, diskstats::Diskstats, netclass::Netclass, netdev::Netdev, os::Os, time::Time};
use config::Config;
use failure::Failure;
use reader::Reader;
use sink::{Batch, Memory, Sink};
#[cfg(target_arch = "wasm32")]
use sonde_plugin_sdk::export_plugin;
use sonde_plugin_sdk::{Collection, Error, Info, Plugin, log, parse_config};
use std::time::Instant;

/// Page size assumed when the host's cannot be read (x86-64 and most arm64 hosts).
const DEFAULT_PAGE_SIZE: f64 = 4096.0;

pub struct Node {
    memory: Memory,
    state: State,
}

/// Everything but the sink's memory, so a collection can borrow both at once.
struct State {
    cfg: Config,
    reader: Reader,
    /// `sys_path` when readable: optional for cpu, netdev (required ones are checked
    /// in `configure`).
    sys: Option<String>,
    /// `udev_data_path` when readable.
    udev: Option<String>,
    page_size: f64,
    /// /proc/stat, read once per collection for both cpu and stat.
    proc_stat: String,
    proc_stat_loaded: bool,
    cpu: Cpu,
    diskstats: Diskstats,
    filesystem: Filesystem,
    netclass: Netclass,
    netdev: Netdev,
    os: Os,
    time: Time,
    /// Scratch buffer for metric names built from file content.
    name: String,
    /// The last failure of each collector (by position in `Name::ALL`), so a lasting
    /// failure is logged when it starts or changes rather than at every collection.
    failing: [Option<Failure>; Name::ALL.len()],
}

impl Plugin for Node {
    fn info() -> Info {
        Info::new(
            "node",
            env!("CARGO_PKG_VERSION"),
            "node_exporter-compatible host metrics",
        )
    }

    fn configure(config: &str) -> Result<Self, Error> {
        let mut cfg: Config = parse_config(config)?;
        cfg.validate()
            .map_err(|e| Error::config(format!("plugin config: {e}")))?;
        if cfg.collectors.iter().any(|c| c.needs_proc()) {
            sonde_plugin_sdk::fs::require_grant(&cfg.proc_path)?;
        }
        if cfg.collectors.iter().any(|c| c.needs_sys()) {
            sonde_plugin_sdk::fs::require_grant(&cfg.sys_path)?;
        }
        if cfg.enabled(Name::Filesystem) {
            check_statfs_grant()?;
        }
        Ok(Node {
            memory: Memory::default(),
            state: State::new(cfg),
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let mut batch = Batch::new(out, &mut self.memory);
        let state = &mut self.state;
        state.proc_stat_loaded = false;
        for i in 0..state.cfg.collectors.len() {
            let name = state.cfg.collectors[i];
            let started = Instant::now();
            let mut result = state.run(name, &mut batch);
            if let (Ok(()), Some(duplicate)) = (&result, batch.take_duplicate()) {
                result = Err(Failure::Failed(duplicate));
            }
            let labels = [("collector", name.as_str())];
            let elapsed = started.elapsed().as_secs_f64();
            batch.gauge(
                "node_scrape_collector_duration_seconds",
                &"node_exporter: Duration of a collector scrape.",
                &labels,
                elapsed,
            );
            let success = if result.is_ok() { 1.0 } else { 0.0 };
            batch.gauge(
                "node_scrape_collector_success",
                &"node_exporter: Whether a collector succeeded.",
                &labels,
                success,
            );
            state.report(name, result.err());
        }
        state.reader.sweep();
        // A failing collector never fails the collection: node_exporter serves the
        // other collectors' metrics and success 0 for the failed one.
        Ok(())
    }
}

/// Fails `configure` with the grant to add when statfs is not granted, rather than
/// reporting `node_filesystem_device_error 1` for every mount.
fn check_statfs_grant() -> Result<(), Error> {
    match sonde_plugin_sdk::fs::statfs("/") {
        Err(Error::Denied(msg)) => Err(Error::denied(format!(
            "filesystem collector: statfs is not granted ({msg}): set grants.statfs = true for this plugin \
             in plugins.toml, or leave \"filesystem\" out of collectors"
        ))),
        _ => Ok(()),
    }
}

impl State {
    fn new(cfg: Config) -> Self {
        let readable = |dir: &str| std::fs::read_dir(dir).is_ok().then(|| dir.to_string());
        let mut reader = Reader::default();
        let page_size = match cfg.enabled(Name::Sockstat) {
            true => collectors::sockstat::page_size(&mut reader, &cfg.proc_path).unwrap_or(DEFAULT_PAGE_SIZE),
            false => DEFAULT_PAGE_SIZE,
        };
        State {
            sys: readable(&cfg.sys_path),
            udev: if cfg.enabled(Name::Diskstats) {
                readable(&cfg.udev_data_path)
            } else {
                None
            },
            cfg,
            reader,
            page_size,
            proc_stat: String::new(),
            proc_stat_loaded: false,
            cpu: Cpu::default(),
            diskstats: Diskstats::default(),
            filesystem: Filesystem::default(),
            netclass: Netclass::default(),
            netdev: Netdev::default(),
            os: Os::default(),
            time: Time::default(),
            name: String::new(),
            failing: Default::default(),
        }
    }

    fn run(&mut self, name: Name, out: &mut dyn Sink) -> Result<(), Failure> {
        let proc = self.cfg.proc_path.as_str();
        let reader = &mut self.reader;
        match name {
            Name::Cpu => {
                load_proc_stat(reader, proc, &mut self.proc_stat, &mut self.proc_stat_loaded)?;
                self.cpu.collect(&self.proc_stat, self.sys.as_deref(), reader, out)
            }
            Name::Stat => {
                load_proc_stat(reader, proc, &mut self.proc_stat, &mut self.proc_stat_loaded)?;
                collectors::stat::emit(out, &collectors::stat::parse(&self.proc_stat)?);
                Ok(())
            }
            Name::Diskstats => self
                .diskstats
                .collect(reader, proc, self.udev.as_deref(), Instant::now(), out),
            Name::Filefd => {
                let text = reader.read_single(&[proc, "sys/fs/file-nr"])?;
                collectors::filefd::emit(out, collectors::filefd::parse(text)?);
                Ok(())
            }
            Name::Filesystem => {
                let exclusions = Exclusions {
                    mount_points: &self.cfg.mount_points_exclude,
                    fs_types: &self.cfg.fs_types_exclude,
                };
                self.filesystem
                    .collect(reader, proc, &exclusions, &mut host_statfs, out)
            }
            Name::Loadavg => {
                let text = reader.read_single(&[proc, "loadavg"])?;
                collectors::loadavg::emit(out, collectors::loadavg::parse(text)?);
                Ok(())
            }
            Name::Meminfo => {
                let text = reader.read_single(&[proc, "meminfo"])?;
                collectors::meminfo::emit(out, &collectors::meminfo::parse(text)?, &mut self.name);
                Ok(())
            }
            Name::Netclass => {
                let cfg = &self.cfg;
                let opts = collectors::netclass::Options {
                    detail: cfg.netclass_detail,
                    exclude: &cfg.netclass_devices_exclude,
                    ignore_invalid_speed: cfg.netclass_ignore_invalid_speed,
                };
                self.netclass.collect(reader, &cfg.sys_path, &opts, Instant::now(), out)
            }
            Name::Netdev => {
                let exclude = &self.cfg.netdev_devices_exclude;
                self.netdev
                    .collect(reader, proc, self.sys.as_deref(), exclude, Instant::now(), out)
            }
            Name::Netstat => collectors::netstat::collect(reader, proc, &self.cfg.netstat_extra_fields, out),
            Name::Os => self.os.collect(reader, &self.cfg.os_release_paths, Instant::now(), out),
            Name::Pressure => collectors::pressure::collect(reader, proc, out),
            Name::Sockstat => collectors::sockstat::collect(reader, proc, self.page_size, out),
            Name::Time => self.time.collect(reader, &self.cfg.sys_path, Instant::now(), out),
            Name::Uname => {
                collectors::uname::emit(out, &sonde_plugin_sdk::fs::uname());
                Ok(())
            }
            Name::Vmstat => {
                let text = reader.read_records(&[proc, "vmstat"])?;
                let fields = collectors::vmstat::parse(text, &self.cfg.vmstat_extra_fields)?;
                collectors::vmstat::emit(out, &fields, &mut self.name);
                Ok(())
            }
        }
    }

    /// Logs a collector's failure when it starts or changes, and its recovery.
    fn report(&mut self, name: Name, failure: Option<Failure>) {
        let Some(slot) = Name::ALL.iter().position(|n| *n == name).map(|i| &mut self.failing[i]) else {
            return;
        };
        if *slot == failure {
            return;
        }
        match &failure {
            Some(Failure::Failed(msg)) => log::warn(&format!("collector {} failed: {msg}", name.as_str())),
            Some(Failure::NoData(msg)) => log::debug(&format!("collector {} has no data: {msg}", name.as_str())),
            None => log::info(&format!("collector {} works again", name.as_str())),
        }
        *slot = failure;
    }
}

/// Reads /proc/stat unless this collection already did.
fn load_proc_stat(reader: &mut Reader, proc: &str, text: &mut String, loaded: &mut bool) -> Result<(), Failure> {
    if !*loaded {
        text.clear();
        text.push_str(reader.read_single(&[proc, "stat"])?);
        *loaded = true;
    }
    Ok(())
}

/// The host's statfs, as the filesystem collector wants it.
fn host_statfs(path: &str) -> Answer {
    match sonde_plugin_sdk::fs::statfs(path) {
        Ok(s) => Answer::Usage(Usage {
            size: s.size_bytes as f64,
            free: s.free_bytes as f64,
            avail: s.avail_bytes as f64,
            files: s.files as f64,
            files_free: s.files_free as f64,
        }),
        Err(Error::Timeout(_)) => Answer::Timeout,
        Err(_) => Answer::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    /// Runs every collector that needs no host import against this machine's own
    /// /proc and /sys: real kernel output must parse. Collectors whose data a kernel
    /// may lack (pressure, os) may report no data, but never fail.
    #[test]
    fn live_proc_and_sys_parse() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return; // not Linux
        }
        let json = std::env::var("NODE_LIVE_CONFIG").unwrap_or_else(|_| "{}".into());
        let mut cfg: Config = parse_config(&json).unwrap();
        cfg.validate().unwrap();
        let mut state = State::new(cfg);
        let rounds = std::env::var("NODE_LIVE_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        let started = Instant::now();
        let mut r = Recorder::default();
        let mut per_collector = [std::time::Duration::ZERO; Name::ALL.len()];
        for _ in 0..rounds {
            r = Recorder::default();
            state.proc_stat_loaded = false;
            for (i, name) in Name::ALL.into_iter().enumerate() {
                if matches!(name, Name::Uname | Name::Filesystem) {
                    continue;
                }
                let started = Instant::now();
                let result = state.run(name, &mut r);
                per_collector[i] += started.elapsed();
                match result {
                    Ok(()) | Err(Failure::NoData(_)) => {}
                    Err(Failure::Failed(msg)) => panic!("{} failed on this machine: {msg}", name.as_str()),
                }
            }
            state.reader.sweep();
        }
        eprintln!(
            "{} samples, {:?} per collection",
            r.samples.len(),
            started.elapsed() / rounds
        );
        if let Ok(path) = std::env::var("NODE_LIVE_DUMP") {
            // For side-by-side comparison with node_exporter's /metrics.
            let text: String = r
                .samples
                .iter()
                .map(|s| {
                    let labels: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                    format!("{} {:?} {{{}}} {}\n", s.name, s.kind, labels.join(","), s.value)
                })
                .collect();
            std::fs::write(path, text).unwrap();
        }
        for (name, spent) in Name::ALL.iter().zip(per_collector) {
            eprintln!("  {:<10} {:?}", name.as_str(), spent / rounds);
        }
        for family in [
            "node_cpu_seconds_total",
            "node_memory_MemTotal_bytes",
            "node_load1",
            "node_boot_time_seconds",
        ] {
            assert!(r.count(family) > 0, "{family} missing");
        }
    }
}

// Only for the guest: natively the export names (`sonde:plugin/source@0.1.0#collect`)
// are not valid linker symbols, and `cargo test` builds this crate's cdylib too.
#[cfg(target_arch = "wasm32")]
export_plugin!(Node);
