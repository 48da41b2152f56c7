//! meminfo: `node_memory_<Field>[_bytes]` for every line of /proc/meminfo.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::sink::Sink;
use sonde_plugin_sdk::Kind;

/// One /proc/meminfo line: `Active(anon):   1524 kB`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    /// The key as the kernel writes it, without the colon.
    pub key: &'a str,
    /// In bytes when the line had a unit (always kB), else a plain count.
    pub value: f64,
    pub in_bytes: bool,
}

pub fn parse(text: &str) -> Result<Vec<Field<'_>>, Failure> {
    let mut fields = Vec::with_capacity(64);
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(key) = parts.next() else { continue };
        let bad = || malformed("/proc/meminfo line", line);
        let key = key.strip_suffix(':').ok_or_else(bad)?;
        let value = parts.next().and_then(number::float).ok_or_else(bad)?;
        // node_exporter presumes the unit is kB whatever it says; so do we.
        let in_bytes = parts.next().is_some();
        if parts.next().is_some() {
            return Err(bad());
        }
        let value = if in_bytes { value * 1024.0 } else { value };
        fields.push(Field { key, value, in_bytes });
    }
    Ok(fields)
}

/// Writes the metric name node_exporter derives from a key into `name`: `(x)`
/// becomes `_x` (its regexp `\((.*)\)` is greedy: first `(` to last `)`), and `_bytes`
/// is appended for lines with a unit.
pub fn metric_name(name: &mut String, field: &Field) {
    name.clear();
    name.push_str("node_memory_");
    let key = field.key;
    match (key.find('('), key.rfind(')')) {
        (Some(open), Some(close)) if open < close => {
            name.push_str(&key[..open]);
            name.push('_');
            name.push_str(&key[open + 1..close]);
            name.push_str(&key[close + 1..]);
        }
        _ => name.push_str(key),
    }
    if field.in_bytes {
        name.push_str("_bytes");
    }
}

pub fn emit(out: &mut dyn Sink, fields: &[Field], name: &mut String) {
    for field in fields {
        metric_name(name, field);
        let suffix = &name["node_memory_".len()..];
        // node_exporter types a field as a counter when its name ends in `_total`;
        // no kernel has such a field today, but the rule is cheap to keep.
        let kind = if suffix.ends_with("_total") {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        out.emit(
            name,
            kind,
            &format_args!("Memory information field {suffix}."),
            &[],
            field.value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    const MEMINFO: &str = "MemTotal:       24684092 kB
MemFree:        21752844 kB
Active(anon):       1524 kB
Inactive(file):  1095364 kB
NFS_Unstable:          0 kB
HugePages_Total:       0
HugePages_Free:        3
Hugepagesize:       2048 kB
DirectMap1G:    25165824 kB
";

    #[test]
    fn names_units_and_values_follow_node_exporter() {
        let fields = parse(MEMINFO).unwrap();
        let mut r = Recorder::default();
        emit(&mut r, &fields, &mut String::new());
        assert_eq!(r.value("node_memory_MemTotal_bytes", &[]), Some(24684092.0 * 1024.0));
        assert_eq!(r.value("node_memory_Active_anon_bytes", &[]), Some(1524.0 * 1024.0));
        assert_eq!(
            r.value("node_memory_Inactive_file_bytes", &[]),
            Some(1095364.0 * 1024.0)
        );
        assert_eq!(r.value("node_memory_NFS_Unstable_bytes", &[]), Some(0.0));
        assert_eq!(r.value("node_memory_HugePages_Total", &[]), Some(0.0));
        assert_eq!(r.value("node_memory_HugePages_Free", &[]), Some(3.0));
        assert_eq!(r.value("node_memory_Hugepagesize_bytes", &[]), Some(2048.0 * 1024.0));
        assert_eq!(r.samples.len(), 9);
        assert_eq!(r.kind("node_memory_MemFree_bytes"), Some(Kind::Gauge));
        let help = &r.find("node_memory_MemTotal_bytes", &[]).unwrap().help;
        assert_eq!(help, "Memory information field MemTotal_bytes.");
    }

    #[test]
    fn parenthesised_names_are_replaced_greedily() {
        let mut name = String::new();
        metric_name(
            &mut name,
            &Field {
                key: "A(b)c(d)",
                value: 0.0,
                in_bytes: false,
            },
        );
        assert_eq!(name, "node_memory_A_b)c(d");
    }

    #[test]
    fn malformed_lines_fail_instead_of_panicking() {
        assert!(parse("MemTotal 1 kB\n").is_err());
        assert!(parse("MemTotal:\n").is_err());
        assert!(parse("MemTotal: lots kB\n").is_err());
        assert!(parse("MemTotal: 1 kB extra\n").is_err());
        assert!(parse("\n\n").unwrap().is_empty());
    }
}
