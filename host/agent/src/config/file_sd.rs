//! Prometheus file-based service discovery (`file_sd`) files: a JSON or YAML list of
//! target groups `{targets: ["host:port", ...], labels: {...}}`, parsed with positions
//! (saphyr; JSON is read as the YAML subset it is, after serde_json has vouched for its
//! syntax) so every mistake is reported as `file:line:col: message`.

use super::Problem;
use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `{targets, labels}` entry of a file_sd file (or the entry's own `targets`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// Addresses as written (`host:port` or `host`), syntax already checked.
    pub targets: Vec<String>,
    /// The group's labels, `__scheme__` and `__metrics_path__` included.
    pub labels: BTreeMap<String, String>,
}

/// The extensions Prometheus accepts for file_sd files; they also pick the parser.
const EXTENSIONS: &[&str] = &["json", "yml", "yaml"];

/// Checks one `file_sd` pattern as Prometheus does: a known extension, and glob
/// characters only in the last path component.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let (dir, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if dir.contains(['*', '?', '[']) {
        return Err(format!(
            "{pattern:?}: a glob may only be in the file name, not in the directory"
        ));
    }
    let ext = last.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if !ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
        return Err(format!(
            "{pattern:?}: file_sd files end in .json, .yml or .yaml (the extension picks the format)"
        ));
    }
    glob::Pattern::new(last).map_err(|e| format!("{pattern:?}: invalid glob: {e}"))?;
    Ok(())
}

/// The files the patterns match now, sorted, each once. A pattern matching nothing is
/// not an error: the file may be written later.
pub fn files(patterns: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let Ok(paths) = glob::glob(&p.display().to_string()) else {
            continue;
        };
        let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
        found.sort();
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// Reads and parses one file. `None` when it cannot be read or has any problem: a
/// half-understood file must not replace the targets it gave before.
pub fn read(path: &Path, problems: &mut Vec<Problem>) -> Option<Vec<Group>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(at(path, 0, 0, format!("cannot read file_sd file: {e}")));
            return None;
        }
    };
    let before = problems.len();
    let groups = parse(path, &text, problems);
    (problems.len() == before).then_some(groups)
}

fn at(path: &Path, line: usize, col: usize, message: String) -> Problem {
    Problem {
        file: path.into(),
        line,
        col,
        message,
    }
}

/// Parses a file's text; the format comes from the extension of `path`.
pub fn parse(path: &Path, text: &str, problems: &mut Vec<Problem>) -> Vec<Group> {
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let msg = e.to_string();
        let msg = msg.trim_end_matches(&format!(" at line {} column {}", e.line(), e.column()));
        problems.push(at(path, e.line(), e.column(), format!("JSON syntax: {msg}")));
        return Vec::new();
    }
    let docs = match MarkedYamlOwned::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let m = e.marker();
            problems.push(at(path, m.line(), m.col() + 1, format!("YAML syntax: {}", e.info())));
            return Vec::new();
        }
    };
    let mut cx = Ctx { path, problems };
    let Some(doc) = docs.first() else {
        return Vec::new();
    };
    let list = match &doc.data {
        YamlDataOwned::Sequence(s) => s.clone(),
        YamlDataOwned::Value(ScalarOwned::Null) => Vec::new(),
        _ => {
            cx.report(
                doc,
                "a file_sd file is a list of target groups, e.g. [{\"targets\": [\"host:9100\"], \"labels\": {\"env\": \"prod\"}}]",
            );
            return Vec::new();
        }
    };
    list.iter().filter_map(|g| cx.group(g)).collect()
}

struct Ctx<'a> {
    path: &'a Path,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    fn report(&mut self, node: &MarkedYamlOwned, message: impl Into<String>) {
        let m = node.span.start;
        self.problems.push(at(self.path, m.line(), m.col() + 1, message.into()));
    }

    /// A scalar's text (numbers and booleans as written).
    fn scalar(node: &MarkedYamlOwned) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => Some(i.to_string()),
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(f)) => Some(f.to_string()),
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(b.to_string()),
            YamlDataOwned::Representation(s, ..) => Some(s.clone()),
            _ => None,
        }
    }

    fn group(&mut self, node: &MarkedYamlOwned) -> Option<Group> {
        let YamlDataOwned::Mapping(m) = &node.data else {
            self.report(node, "a target group is a mapping with `targets` and `labels`");
            return None;
        };
        let before = self.problems.len();
        let mut g = Group::default();
        for (k, v) in m.iter() {
            match Self::scalar(k).as_deref() {
                Some("targets") => g.targets = self.targets(v),
                Some("labels") => g.labels = self.labels(v),
                other => self.report(
                    k,
                    format!(
                        "unknown field {:?} in a target group (expected `targets` and `labels`)",
                        other.unwrap_or("?")
                    ),
                ),
            }
        }
        (self.problems.len() == before).then_some(g)
    }

    fn targets(&mut self, node: &MarkedYamlOwned) -> Vec<String> {
        let items = match &node.data {
            YamlDataOwned::Sequence(s) => s,
            YamlDataOwned::Value(ScalarOwned::Null) => return Vec::new(),
            _ => {
                self.report(node, "targets must be a list of \"host:port\" strings");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for t in items {
            let YamlDataOwned::Value(ScalarOwned::String(addr)) = &t.data else {
                self.report(t, "targets must be a list of \"host:port\" strings");
                continue;
            };
            match check_address(addr) {
                Ok(()) => out.push(addr.clone()),
                Err(e) => self.report(t, format!("target {addr:?}: {e}")),
            }
        }
        out
    }

    fn labels(&mut self, node: &MarkedYamlOwned) -> BTreeMap<String, String> {
        let m = match &node.data {
            YamlDataOwned::Mapping(m) => m,
            YamlDataOwned::Value(ScalarOwned::Null) => return BTreeMap::new(),
            _ => {
                self.report(node, "labels must be a mapping of label names to string values");
                return BTreeMap::new();
            }
        };
        let mut out = BTreeMap::new();
        for (k, v) in m.iter() {
            let Some(name) = Self::scalar(k) else {
                self.report(k, "label names are strings");
                continue;
            };
            if !is_label_name(&name) {
                self.report(
                    k,
                    format!("invalid label name {name:?}: label names match [a-zA-Z_][a-zA-Z0-9_]*"),
                );
                continue;
            }
            let Some(value) = Self::scalar(v) else {
                self.report(v, format!("label {name}: the value must be a string"));
                continue;
            };
            if name == "__scheme__" && value != "http" && value != "https" {
                self.report(v, format!("__scheme__ {value:?}: must be http or https"));
                continue;
            }
            if name == "__metrics_path__" && !value.starts_with('/') {
                self.report(v, format!("__metrics_path__ {value:?}: must start with /"));
                continue;
            }
            out.insert(name, value);
        }
        out
    }
}

fn is_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A target address: `host:port`, `[v6]:port`, or a host alone (the scheme's default
/// port is added later). No scheme, path, user or spaces.
pub fn check_address(a: &str) -> Result<(), String> {
    const HOW: &str = "write it as \"host:port\", without scheme or path (e.g. \"127.0.0.1:9100\")";
    if a.is_empty() || a.contains(['/', '@', ' ', '\t', '?', '#']) {
        return Err(HOW.into());
    }
    let (host, port) = split_address(a);
    if host.is_empty() {
        return Err(HOW.into());
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("port {p:?} is not a number in 1..65535; {HOW}"));
    }
    if host.contains(':') && !a.starts_with('[') {
        return Err("an IPv6 address is written in brackets, e.g. \"[::1]:9100\"".into());
    }
    Ok(())
}

/// `(host, port)` of an address; the host keeps an IPv6 address's brackets.
fn split_address(a: &str) -> (&str, Option<&str>) {
    if a.starts_with('[') {
        return match a.split_once(']') {
            Some((h, rest)) => (&a[..h.len() + 1], rest.strip_prefix(':')),
            None => ("", None),
        };
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (a, None),
    }
}

/// The address with the scheme's default port when it has none, as Prometheus 2
/// does before scraping (`host` → `host:80`, or `host:443` for https).
pub fn with_port(a: &str, scheme: &str) -> String {
    match split_address(a) {
        (_, Some(_)) => a.to_string(),
        (h, None) => format!("{h}:{}", if scheme == "https" { 443 } else { 80 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, text: &str) -> (Vec<Group>, Vec<String>) {
        let mut p = vec![];
        let g = parse(Path::new(name), text, &mut p);
        (g, p.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn file_sd_yaml_and_json_give_the_same_groups() {
        let yaml = "- targets: ['a:9100', \"b\"]\n  labels:\n    env: prod\n    __scheme__: https\n- targets: []\n";
        let json =
            r#"[{"targets": ["a:9100", "b"], "labels": {"env": "prod", "__scheme__": "https"}}, {"targets": []}]"#;
        let (y, p) = check("sd/web.yml", yaml);
        assert!(p.is_empty(), "{p:?}");
        let (j, p) = check("sd/web.json", json);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(y, j);
        assert_eq!(y[0].targets, vec!["a:9100", "b"]);
        assert_eq!(y[0].labels["__scheme__"], "https");
        assert_eq!(y.len(), 2);
    }

    #[test]
    fn file_sd_problems_have_file_line_and_column() {
        let yaml = "- labels: {env: prod}\n  targets:\n    bad: 1\n- targets: ['http://x:1', 'h:99999', 'ok:1']\n  labels: {0bad: x, __scheme__: ftp}\n  extra: 1\n";
        let (g, p) = check("sd/web.yml", yaml);
        assert!(g.is_empty(), "every group had a problem: {g:?}");
        let want = [
            "sd/web.yml:3:5: targets must be a list of \"host:port\" strings",
            "sd/web.yml:4:13: target \"http://x:1\": write it as",
            "sd/web.yml:4:27: target \"h:99999\": port",
            "sd/web.yml:5:12: invalid label name \"0bad\"",
            "sd/web.yml:5:33: __scheme__ \"ftp\"",
            "sd/web.yml:6:3: unknown field \"extra\"",
        ];
        for w in want {
            assert!(p.iter().any(|m| m.starts_with(w)), "{w}\n{p:#?}");
        }
        assert_eq!(p.len(), want.len(), "{p:#?}");
    }

    #[test]
    fn file_sd_json_syntax_error_and_wrong_shape_are_located() {
        let (_, p) = check("a.json", "[{\"targets\": [\"x:1\",]}]");
        assert_eq!(p, ["a.json:1:21: JSON syntax: expected value"]);
        let (_, p) = check("a.json", "{\n\"targets\": []}");
        assert!(p[0].starts_with("a.json:1:1: a file_sd file is a list"), "{p:?}");
        let (_, p) = check("a.json", "[\n  {\"targets\": [9100]}\n]");
        assert!(p[0].starts_with("a.json:2:16: targets must be a list"), "{p:?}");
        let (_, p) = check("a.yml", "- targets: [a\n");
        assert!(p[0].starts_with("a.yml:2:"), "{p:?}");
        let (g, p) = check("a.yml", "");
        assert!(g.is_empty() && p.is_empty());
    }

    #[test]
    fn file_sd_addresses_and_patterns() {
        for ok in ["a:1", "a", "[::1]:9100", "[::1]", "10.0.0.1:65535"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in ["", "http://a:1", "a:1/metrics", "a:0", "a:x", "::1", "u@a:1", ":80"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert_eq!(with_port("a", "http"), "a:80");
        assert_eq!(with_port("a", "https"), "a:443");
        assert_eq!(with_port("[::1]", "http"), "[::1]:80");
        assert_eq!(with_port("a:9", "https"), "a:9");
        assert!(check_pattern("sd/*.json").is_ok());
        assert!(check_pattern("/etc/sonde/targets/web-?.YML").is_ok());
        assert!(check_pattern("sd/*/x.json").unwrap_err().contains("file name"));
        assert!(check_pattern("sd/x.txt").unwrap_err().contains(".json"));
    }

    #[test]
    fn file_sd_globs_match_in_order_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.yml", "a.yml", "c.json", "skip.txt"] {
            std::fs::write(dir.path().join(f), "[]").unwrap();
        }
        let got = files(&[
            dir.path().join("*.yml"),
            dir.path().join("a.yml"),
            dir.path().join("*.json"),
        ]);
        let names: Vec<_> = got.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.yml", "b.yml", "c.json"]);
    }
}
