//! time: `node_time_seconds`, `node_time_zone_offset_seconds` and the clocksource
//! info families from /sys/devices/system/clocksource.

use crate::failure::Failure;
use crate::reader::Reader;
use crate::refresh::Refresh;
use crate::sink::Sink;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Emits the wall clock. WASI exposes no time zone, so the zone is always UTC; the
/// offset family is kept because dashboards join on it.
pub fn emit_now(out: &mut dyn Sink, now: SystemTime) {
    let seconds = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    out.gauge(
        "node_time_seconds",
        &"System time in seconds since epoch (1970).",
        &[],
        seconds,
    );
    out.gauge(
        "node_time_zone_offset_seconds",
        &"System time zone offset in seconds.",
        &[("time_zone", "UTC")],
        0.0,
    );
}

/// The clocksource devices and their available sources, re-listed once a minute:
/// only the current source changes (when the kernel finds one unstable).
#[derive(Default)]
pub struct Time {
    sources: Vec<(String, String)>,
    refresh: Refresh,
}

impl Time {
    pub fn collect(&mut self, reader: &mut Reader, sys: &str, now: Instant, out: &mut dyn Sink) -> Result<(), Failure> {
        emit_now(out, SystemTime::now());
        let dir = format!("{sys}/devices/system/clocksource");
        if self.refresh.due(now) {
            self.sources = list_sources(reader, &dir)?;
            self.refresh.done(now);
        }
        for (index, (name, available)) in self.sources.iter().enumerate() {
            let current = reader.read_attribute(&[&dir, name, "current_clocksource"])?;
            emit_clocksource(out, &index.to_string(), available, current);
        }
        Ok(())
    }
}

/// `clocksource<N>` directories in glob (lexical) order, whose index is the `device`
/// label, with their available sources.
fn list_sources(reader: &mut Reader, dir: &str) -> Result<Vec<(String, String)>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| Failure::failed(format!("{dir}: {e}")))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("clocksource")
                .is_some_and(|d| d.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    names.sort_unstable();
    let mut sources = Vec::with_capacity(names.len());
    for name in names {
        let available = reader
            .read_attribute(&[dir, &name, "available_clocksource"])?
            .to_string();
        sources.push((name, available));
    }
    Ok(sources)
}

pub fn emit_clocksource(out: &mut dyn Sink, device: &str, available: &str, current: &str) {
    for source in available.split_ascii_whitespace() {
        let help = "Available clocksources read from '/sys/devices/system/clocksource'.";
        let labels = [("device", device), ("clocksource", source)];
        out.gauge("node_time_clocksource_available_info", &help, &labels, 1.0);
    }
    let help = "Current clocksource read from '/sys/devices/system/clocksource'.";
    out.gauge(
        "node_time_clocksource_current_info",
        &help,
        &[("device", device), ("clocksource", current)],
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;
    use std::time::Duration;

    #[test]
    fn wall_clock_and_utc_zone() {
        let mut r = Recorder::default();
        emit_now(&mut r, UNIX_EPOCH + Duration::from_millis(1_795_334_370_500));
        assert_eq!(r.value("node_time_seconds", &[]), Some(1_795_334_370.5));
        assert_eq!(
            r.value("node_time_zone_offset_seconds", &[("time_zone", "UTC")]),
            Some(0.0)
        );
    }

    #[test]
    fn clocksources_from_a_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("sonde-node-time-{}", std::process::id()));
        let cs = root.join("devices/system/clocksource/clocksource0");
        std::fs::create_dir_all(&cs).unwrap();
        std::fs::write(cs.join("available_clocksource"), "kvm-clock tsc acpi_pm \n").unwrap();
        std::fs::write(cs.join("current_clocksource"), "tsc\n").unwrap();
        let mut r = Recorder::default();
        let mut time = Time::default();
        let t0 = Instant::now();
        time.collect(&mut Reader::default(), root.to_str().unwrap(), t0, &mut r)
            .unwrap();
        assert_eq!(r.count("node_time_clocksource_available_info"), 3);
        let current = [("device", "0"), ("clocksource", "tsc")];
        assert_eq!(r.value("node_time_clocksource_current_info", &current), Some(1.0));
        std::fs::write(cs.join("current_clocksource"), "hpet\n").unwrap();
        let mut r = Recorder::default();
        time.collect(&mut Reader::default(), root.to_str().unwrap(), t0, &mut r)
            .unwrap();
        let current = [("device", "0"), ("clocksource", "hpet")];
        assert_eq!(
            r.value("node_time_clocksource_current_info", &current),
            Some(1.0),
            "current is read each time"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
