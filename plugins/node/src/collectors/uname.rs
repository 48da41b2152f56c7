//! uname: `node_uname_info`, from the host's uname(2) (the `uname` host import).

use crate::sink::Sink;
use sonde_plugin_sdk::fs::UnameInfo;

pub fn emit(out: &mut dyn Sink, u: &UnameInfo) {
    let labels = [
        ("sysname", u.sysname.as_str()),
        ("release", u.release.as_str()),
        ("version", u.version.as_str()),
        ("machine", u.machine.as_str()),
        ("nodename", u.nodename.as_str()),
        ("domainname", u.domainname.as_str()),
    ];
    out.gauge(
        "node_uname_info",
        &"Labeled system information as provided by the uname system call.",
        &labels,
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    #[test]
    fn all_six_fields_become_labels() {
        let u = UnameInfo {
            sysname: "Linux".into(),
            nodename: "vm".into(),
            release: "6.1.0-18-amd64".into(),
            version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1".into(),
            machine: "x86_64".into(),
            domainname: "(none)".into(),
        };
        let mut r = Recorder::default();
        emit(&mut r, &u);
        let s = r
            .find("node_uname_info", &[("nodename", "vm"), ("domainname", "(none)")])
            .unwrap();
        assert_eq!(s.value, 1.0);
        let names: Vec<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["sysname", "release", "version", "machine", "nodename", "domainname"]
        );
    }
}
