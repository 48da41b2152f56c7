//! pressure: `node_pressure_{cpu,io,memory}_{waiting,stalled}_seconds_total` from the
//! `total=` (microseconds) of /proc/pressure/{cpu,io,memory}.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::reader::Reader;
use crate::sink::Sink;

/// The `total` of the `some` and `full` lines, in seconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Stall {
    pub some: Option<f64>,
    pub full: Option<f64>,
}

/// Parses `some avg10=0.00 avg60=0.00 avg300=0.00 total=99907899` lines.
pub fn parse(what: &str, text: &str) -> Result<Stall, Failure> {
    let mut stall = Stall::default();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let slot = match parts.next() {
            Some("some") => &mut stall.some,
            Some("full") => &mut stall.full,
            _ => continue,
        };
        let total = parts.find_map(|p| p.strip_prefix("total="));
        let micros = total.and_then(number::uint).ok_or_else(|| malformed(what, line))?;
        *slot = Some(micros as f64 / 1e6);
    }
    Ok(stall)
}

/// The three resources, each with its families for `some` and `full`.
const RESOURCES: [(&str, &str, Option<&str>); 3] = [
    ("cpu", "node_pressure_cpu_waiting_seconds_total", None),
    (
        "io",
        "node_pressure_io_waiting_seconds_total",
        Some("node_pressure_io_stalled_seconds_total"),
    ),
    (
        "memory",
        "node_pressure_memory_waiting_seconds_total",
        Some("node_pressure_memory_stalled_seconds_total"),
    ),
];

pub fn collect(reader: &mut Reader, proc: &str, out: &mut dyn Sink) -> Result<(), Failure> {
    for (resource, some_name, full_name) in RESOURCES {
        let text = match reader.read_single(&[proc, "pressure", resource]) {
            Ok(t) => t,
            // No PSI in this kernel (< 4.20, CONFIG_PSI=n, or psi=0): node_exporter's ErrNoData.
            Err(e) if e.is_absent() => return Err(Failure::NoData(e.message)),
            Err(e) => return Err(e.into()),
        };
        let stall = parse(&format!("/proc/pressure/{resource}"), text)?;
        emit(out, resource, some_name, full_name, stall)?;
    }
    Ok(())
}

fn emit(out: &mut dyn Sink, resource: &str, some: &str, full: Option<&str>, stall: Stall) -> Result<(), Failure> {
    let missing = || Failure::failed(format!("/proc/pressure/{resource} has no `some` line"));
    let help = match resource {
        "cpu" => "Total time in seconds that processes have waited for CPU time",
        "io" => "Total time in seconds that processes have waited due to IO congestion",
        _ => "Total time in seconds that processes have waited for memory",
    };
    out.counter(some, &help, &[], stall.some.ok_or_else(missing)?);
    if let Some(full) = full {
        let what = if resource == "io" { "IO" } else { "memory" };
        let help = format_args!("Total time in seconds no process could make progress due to {what} congestion");
        let missing = || Failure::failed(format!("/proc/pressure/{resource} has no `full` line"));
        out.counter(full, &help, &[], stall.full.ok_or_else(missing)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    #[test]
    fn totals_are_microseconds() {
        let text = "some avg10=7.30 avg60=17.74 avg300=19.40 total=99907899
full avg10=0.18 avg60=0.16 avg300=0.16 total=2161859
";
        let stall = parse("io", text).unwrap();
        assert_eq!(
            stall,
            Stall {
                some: Some(99.907899),
                full: Some(2.161859)
            }
        );
        let mut r = Recorder::default();
        emit(&mut r, "io", RESOURCES[1].1, RESOURCES[1].2, stall).unwrap();
        assert_eq!(r.value("node_pressure_io_waiting_seconds_total", &[]), Some(99.907899));
        assert_eq!(r.value("node_pressure_io_stalled_seconds_total", &[]), Some(2.161859));
    }

    #[test]
    fn cpu_reports_only_some_even_when_the_kernel_has_full() {
        let stall = parse(
            "cpu",
            "some avg10=0 avg60=0 avg300=0 total=5000000\nfull avg10=0 total=7\n",
        )
        .unwrap();
        let mut r = Recorder::default();
        emit(&mut r, "cpu", RESOURCES[0].1, RESOURCES[0].2, stall).unwrap();
        assert_eq!(r.names(), ["node_pressure_cpu_waiting_seconds_total"]);
        assert_eq!(r.value("node_pressure_cpu_waiting_seconds_total", &[]), Some(5.0));
    }

    #[test]
    fn missing_or_garbled_totals_fail() {
        assert!(parse("io", "some avg10=1 total=abc\n").is_err());
        assert!(parse("io", "some avg10=1\n").is_err());
        let stall = parse("memory", "full avg10=0 total=1\n").unwrap();
        assert!(
            emit(
                &mut Recorder::default(),
                "memory",
                RESOURCES[2].1,
                RESOURCES[2].2,
                stall
            )
            .is_err()
        );
    }

    #[test]
    fn a_kernel_without_psi_is_no_data() {
        let dir = std::env::temp_dir().join(format!("sonde-node-psi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = collect(&mut Reader::default(), dir.to_str().unwrap(), &mut Recorder::default());
        assert!(matches!(r, Err(Failure::NoData(_))), "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
