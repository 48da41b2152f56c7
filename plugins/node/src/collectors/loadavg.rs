//! loadavg: `node_load1`, `node_load5`, `node_load15` from /proc/loadavg.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::sink::Sink;

/// The 1, 5 and 15 minute load averages.
pub fn parse(text: &str) -> Result<[f64; 3], Failure> {
    let mut fields = text.split_ascii_whitespace();
    let mut loads = [0.0; 3];
    for load in &mut loads {
        *load = fields
            .next()
            .and_then(number::float)
            .ok_or_else(|| malformed("/proc/loadavg", text))?;
    }
    Ok(loads)
}

pub fn emit(out: &mut dyn Sink, loads: [f64; 3]) {
    out.gauge("node_load1", &"1m load average.", &[], loads[0]);
    out.gauge("node_load5", &"5m load average.", &[], loads[1]);
    out.gauge("node_load15", &"15m load average.", &[], loads[2]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    #[test]
    fn three_loads_become_three_gauges() {
        let loads = parse("2.90 1.61 0.65 4/213 3822\n").unwrap();
        let mut r = Recorder::default();
        emit(&mut r, loads);
        assert_eq!(r.value("node_load1", &[]), Some(2.9));
        assert_eq!(r.value("node_load5", &[]), Some(1.61));
        assert_eq!(r.value("node_load15", &[]), Some(0.65));
    }

    #[test]
    fn short_or_garbled_content_is_an_error() {
        assert!(parse("0.5 0.2\n").is_err());
        assert!(parse("0.5 x 0.1 1/2 3\n").is_err());
        assert!(parse("").is_err());
    }
}
