//! filefd: `node_filefd_allocated` and `node_filefd_maximum` from /proc/sys/fs/file-nr.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::sink::Sink;

/// (allocated, maximum) from `454\t0\t2466177`.
pub fn parse(text: &str) -> Result<(f64, f64), Failure> {
    let bad = || malformed("/proc/sys/fs/file-nr", text);
    // node_exporter splits on tabs only; the kernel writes tabs.
    let mut parts = text.trim().split('\t');
    let allocated = parts.next().and_then(number::float).ok_or_else(bad)?;
    let maximum = parts.nth(1).and_then(number::float).ok_or_else(bad)?;
    Ok((allocated, maximum))
}

pub fn emit(out: &mut dyn Sink, (allocated, maximum): (f64, f64)) {
    out.gauge(
        "node_filefd_allocated",
        &"File descriptor statistics: allocated.",
        &[],
        allocated,
    );
    out.gauge(
        "node_filefd_maximum",
        &"File descriptor statistics: maximum.",
        &[],
        maximum,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    #[test]
    fn first_and_third_fields() {
        let mut r = Recorder::default();
        emit(&mut r, parse("1024\t0\t1631329\n").unwrap());
        assert_eq!(r.value("node_filefd_allocated", &[]), Some(1024.0));
        assert_eq!(r.value("node_filefd_maximum", &[]), Some(1631329.0));
    }

    #[test]
    fn spaces_or_missing_fields_are_errors() {
        assert!(parse("1024 0 1631329\n").is_err());
        assert!(parse("1024\t0\n").is_err());
        assert!(parse("a\t0\tb\n").is_err());
    }
}
