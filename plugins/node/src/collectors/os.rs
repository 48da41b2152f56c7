//! os: `node_os_info` and `node_os_version` from /etc/os-release or
//! /usr/lib/os-release, when the plugin is granted one of them.

use crate::failure::Failure;
use crate::reader::Reader;
use crate::refresh::Refresh;
use crate::sink::Sink;
use std::time::{Instant, SystemTime};

/// The os-release keys node_exporter reports, in its label order.
const KEYS: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

/// Values of [`KEYS`], in the same order; absent keys are empty.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Release {
    pub values: [String; 12],
}

impl Release {
    fn get(&self, label: &str) -> &str {
        KEYS.iter()
            .position(|(l, _)| *l == label)
            .map(|i| self.values[i].as_str())
            .unwrap_or_default()
    }

    /// The leading `major[.minor]` of VERSION_ID as a number (node_exporter's
    /// `^[0-9]+\.?[0-9]*`), 0 when there is none.
    pub fn version(&self) -> f64 {
        let v = self.get("version_id");
        let int = v.bytes().take_while(u8::is_ascii_digit).count();
        if int == 0 {
            return 0.0;
        }
        let mut end = int;
        if v[int..].starts_with('.') {
            end += 1 + v[int + 1..].bytes().take_while(u8::is_ascii_digit).count();
        }
        v[..end].trim_end_matches('.').parse().unwrap_or(0.0)
    }
}

/// Parses os-release, a shell-like `KEY=value` file whose values may be double- or
/// single-quoted, with backslash escapes inside double quotes.
pub fn parse(text: &str) -> Result<Release, Failure> {
    let mut release = Release::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            return Err(Failure::failed(format!("os-release: line without '=': {line:?}")));
        };
        let value = unquote(raw.trim()).ok_or_else(|| Failure::failed(format!("os-release: bad quoting: {line:?}")))?;
        if let Some(i) = KEYS.iter().position(|(_, k)| *k == key.trim()) {
            release.values[i] = value;
        }
    }
    Ok(release)
}

fn unquote(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        c @ ('"' | '\\' | '$' | '`') => out.push(c),
                        c => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    c => out.push(c),
                }
            },
            '\\' => out.push(chars.next()?),
            // An unquoted blank ends the value; what follows can only be a comment.
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    Some(out)
}

pub fn emit(out: &mut dyn Sink, r: &Release) {
    let mut labels = [("", ""); 12];
    for (slot, ((label, _), value)) in labels.iter_mut().zip(KEYS.iter().zip(&r.values)) {
        *slot = (label, value.as_str());
    }
    let help = "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, \
                name, pretty_name, variant, variant_id, version, version_codename, version_id.";
    out.gauge("node_os_info", &help, &labels, 1.0);
    let version = r.version();
    if version > 0.0 {
        let labels = [
            ("id", r.get("id")),
            ("id_like", r.get("id_like")),
            ("name", r.get("name")),
        ];
        out.gauge(
            "node_os_version",
            &"Metric containing the major.minor part of the OS version.",
            &labels,
            version,
        );
    }
}

/// The parsed file. Its modification time is checked once a minute (node_exporter
/// checks at every scrape; an OS upgrade showing a minute late is harmless).
#[derive(Default)]
pub struct Os {
    cached: Option<(String, Option<SystemTime>, Release)>,
    refresh: Refresh,
}

impl Os {
    pub fn collect(
        &mut self,
        reader: &mut Reader,
        paths: &[String],
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), Failure> {
        if self.refresh.due(now) {
            self.refresh.done(now);
            self.cached = self.reread(reader, paths)?;
        }
        match &self.cached {
            Some((_, _, release)) => {
                emit(out, release);
                Ok(())
            }
            None => Err(Failure::NoData(format!("no readable os-release file among {paths:?}"))),
        }
    }

    /// The first readable file, parsed again only if its path or mtime changed.
    fn reread(
        &mut self,
        reader: &mut Reader,
        paths: &[String],
    ) -> Result<Option<(String, Option<SystemTime>, Release)>, Failure> {
        for path in paths {
            let modified = match std::fs::metadata(path) {
                Ok(m) => m.modified().ok(),
                // Not there, or not granted (a WASI guest sees both as absent): try the next.
                Err(_) => continue,
            };
            if let Some(cached) = self
                .cached
                .take_if(|(p, t, _)| p == path && *t == modified && t.is_some())
            {
                return Ok(Some(cached));
            }
            let release = parse(reader.read(&[path])?)?;
            return Ok(Some((path.clone(), modified, release)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Recorder;

    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;

    #[test]
    fn debian_release() {
        let r = parse(DEBIAN).unwrap();
        let mut out = Recorder::default();
        emit(&mut out, &r);
        let info = [
            ("id", "debian"),
            ("name", "Debian GNU/Linux"),
            ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
            ("version_codename", "bookworm"),
            ("id_like", ""),
            ("build_id", ""),
        ];
        assert_eq!(out.value("node_os_info", &info), Some(1.0));
        assert_eq!(out.find("node_os_info", &[]).unwrap().labels.len(), 12);
        assert_eq!(
            out.value(
                "node_os_version",
                &[("id", "debian"), ("id_like", ""), ("name", "Debian GNU/Linux")]
            ),
            Some(12.0)
        );
    }

    #[test]
    fn version_numbers() {
        let with = |v: &str| {
            let mut r = Release::default();
            r.values[11] = v.into();
            r.version()
        };
        assert_eq!(with("22.04"), 22.04);
        assert_eq!(with("3.18.4"), 3.18);
        assert_eq!(with("12"), 12.0);
        assert_eq!(with("7."), 7.0);
        assert_eq!(with("rolling"), 0.0);
        assert_eq!(with(""), 0.0);
    }

    #[test]
    fn quoting_rules() {
        let r = parse("NAME='Arch Linux'\nID=arch # comment\nPRETTY_NAME=\"Say \\\"hi\\\" \\$5\"\n").unwrap();
        assert_eq!(r.get("name"), "Arch Linux");
        assert_eq!(r.get("id"), "arch");
        assert_eq!(r.get("pretty_name"), "Say \"hi\" $5");
        assert!(parse("NAME=\"unterminated\n").is_err());
        assert!(parse("just words\n").is_err());
    }

    #[test]
    fn unreadable_files_are_no_data_and_later_paths_are_tried() {
        let dir = std::env::temp_dir().join(format!("sonde-node-os-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("os-release"), DEBIAN).unwrap();
        let missing = dir.join("absent").to_str().unwrap().to_string();
        let present = dir.join("os-release").to_str().unwrap().to_string();
        let mut os = Os::default();
        let mut out = Recorder::default();
        let t0 = Instant::now();
        os.collect(
            &mut Reader::default(),
            &[missing.clone(), present.clone()],
            t0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.count("node_os_info"), 1);
        std::fs::remove_file(&present).unwrap();
        let mut out = Recorder::default();
        os.collect(&mut Reader::default(), &[missing.clone(), present], t0, &mut out)
            .unwrap();
        assert_eq!(out.count("node_os_info"), 1, "not looked at again within a minute");
        let mut os = Os::default();
        let r = os.collect(&mut Reader::default(), &[missing], t0, &mut Recorder::default());
        assert!(matches!(r, Err(Failure::NoData(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
