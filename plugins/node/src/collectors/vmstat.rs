//! vmstat: `node_vmstat_<field>` (untyped) for the /proc/vmstat fields node_exporter
//! 1.5 keeps by default, `^(oom_kill|pgpg|pswp|pg.*fault).*`, plus configured extras.

use crate::failure::{Failure, malformed};
use crate::number;
use crate::sink::Sink;
use sonde_plugin_sdk::Kind;

/// The default field filter, written out instead of compiling a regexp.
pub fn default_field(key: &str) -> bool {
    key.starts_with("oom_kill")
        || key.starts_with("pgpg")
        || key.starts_with("pswp")
        || key.strip_prefix("pg").is_some_and(|rest| rest.contains("fault"))
}

/// The kept `(field, value)` pairs. Every line must parse, kept or not, as in
/// node_exporter (which parses the value before filtering).
pub fn parse<'a>(text: &'a str, extra: &[String]) -> Result<Vec<(&'a str, f64)>, Failure> {
    let mut kept = Vec::with_capacity(16);
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(key) = parts.next() else { continue };
        let value = parts
            .next()
            .and_then(number::float)
            .ok_or_else(|| malformed("/proc/vmstat line", line))?;
        if default_field(key) || extra.iter().any(|e| e == key) {
            kept.push((key, value));
        }
    }
    Ok(kept)
}

pub fn emit(out: &mut dyn Sink, fields: &[(&str, f64)], name: &mut String) {
    for (key, value) in fields {
        name.clear();
        name.push_str("node_vmstat_");
        name.push_str(key);
        out.emit(
            name,
            Kind::Unknown,
            &format_args!("/proc/vmstat information field {key}."),
            &[],
            *value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    const VMSTAT: &str = "nr_free_pages 5438211
nr_dirty 37778
pgpgin 1885881
pgpgout 2201524
pswpin 0
pswpout 7
pgfault 11726239
pgmajfault 1648
pgfree 24463744
thp_fault_alloc 12
oom_kill 2
";

    #[test]
    fn default_filter_keeps_paging_swap_faults_and_oom() {
        let kept = parse(VMSTAT, &[]).unwrap();
        let keys: Vec<&str> = kept.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "pgpgin",
                "pgpgout",
                "pswpin",
                "pswpout",
                "pgfault",
                "pgmajfault",
                "oom_kill"
            ]
        );
        let mut r = Recorder::default();
        emit(&mut r, &kept, &mut String::new());
        assert_eq!(r.value("node_vmstat_pgmajfault", &[]), Some(1648.0));
        assert_eq!(r.value("node_vmstat_pswpout", &[]), Some(7.0));
        assert_eq!(r.kind("node_vmstat_oom_kill"), Some(Kind::Unknown));
    }

    #[test]
    fn extra_fields_are_exact_names() {
        let kept = parse(VMSTAT, &["nr_dirty".to_string()]).unwrap();
        assert!(kept.contains(&("nr_dirty", 37778.0)));
        assert!(!kept.iter().any(|(k, _)| *k == "nr_free_pages"));
    }

    #[test]
    fn a_value_missing_anywhere_is_an_error() {
        assert!(parse("pgfault 1\nnr_dirty\n", &[]).is_err());
        assert!(parse("pgfault many\n", &[]).is_err());
    }
}
