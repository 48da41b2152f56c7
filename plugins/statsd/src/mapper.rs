//! Finding the mapping of a StatsD name: glob mappings first (the first one in the file
//! that matches, as statsd_exporter's ordered FSM), then regex mappings in file order;
//! and expanding `$n` / `${n}` in the mapped name and labels.

use crate::mapping::{MappingConfig, MatchType, MetricType};

/// A `name:` or label value with capture references.
#[derive(Debug, Clone)]
pub enum Template {
    /// Glob mappings: statsd_exporter's `TemplateFormatter` pieces.
    Glob(Vec<Piece>),
    /// Regex mappings: Go's `Regexp.Expand` syntax, which `regex::Captures::expand`
    /// shares (`$1`, `${1}`, `$name`; `$1x` names the group `1x`).
    Regex(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// 0-based index of a `*` capture.
    Capture(usize),
    /// `$0`: the whole StatsD name.
    Whole,
}

impl Template {
    pub fn new(template: &str, match_type: MatchType, captures: usize) -> Template {
        match match_type {
            MatchType::Regex => Template::Regex(template.to_string()),
            MatchType::Glob => Template::Glob(glob_pieces(template, captures)),
        }
    }
}

/// statsd_exporter finds references with `\$\{?([a-zA-Z0-9_\$]+)\}?` and replaces
/// those whose group is not a number from 0 to the capture count with "". So `$1_$2`
/// is one reference named `1_$2` and expands to "": write `${1}_${2}`.
fn glob_pieces(t: &str, captures: usize) -> Vec<Piece> {
    let b = t.as_bytes();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let mut j = i + 1;
            if j < b.len() && b[j] == b'{' {
                j += 1;
            }
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                j += 1;
            }
            if j > start {
                let group = &t[start..j];
                if j < b.len() && b[j] == b'}' {
                    j += 1;
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                match group.parse::<usize>() {
                    Ok(0) => pieces.push(Piece::Whole),
                    Ok(n) if n <= captures => pieces.push(Piece::Capture(n - 1)),
                    _ => {}
                }
                i = j;
                continue;
            }
        }
        let ch = t[i..].chars().next().expect("in bounds");
        text.push(ch);
        i += ch.len_utf8();
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// A successful lookup.
#[derive(Debug)]
pub struct Matched {
    pub index: usize,
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl MappingConfig {
    pub fn lookup(&self, name: &str, metric_type: MetricType) -> Option<Matched> {
        let type_ok = |t: Option<MetricType>| t.is_none_or(|t| t == metric_type);
        let fields: Vec<&str> = name.split('.').collect();
        let mut best: Option<usize> = None;
        for (i, m) in self.mappings.iter().enumerate() {
            if m.match_type != MatchType::Glob || m.glob.len() != fields.len() || !type_ok(m.match_metric_type) {
                continue;
            }
            let hit = m
                .glob
                .iter()
                .zip(&fields)
                .all(|(g, f)| g.as_deref().is_none_or(|g| g == *f));
            if !hit {
                continue;
            }
            if !self.defaults.glob_disable_ordering {
                best = Some(i);
                break;
            }
            // Unordered: at the first component where two matches differ, a name beats
            // a `*` (the FSM tries the exact transition first).
            if best.is_none_or(|b| more_specific(&m.glob, &self.mappings[b].glob)) {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            let m = &self.mappings[i];
            let caps: Vec<&str> = m
                .glob
                .iter()
                .zip(&fields)
                .filter(|(g, _)| g.is_none())
                .map(|(_, f)| *f)
                .collect();
            let expand = |t: &Template| match t {
                Template::Glob(pieces) => format_glob(pieces, &caps, name),
                Template::Regex(s) => s.clone(),
            };
            return Some(Matched {
                index: i,
                name: expand(&m.name),
                labels: m.labels.iter().map(|(k, t)| (k.clone(), expand(t))).collect(),
            });
        }
        for (i, m) in self.mappings.iter().enumerate() {
            let Some(re) = &m.regex else { continue };
            let Some(caps) = re.captures(name) else { continue };
            if !type_ok(m.match_metric_type) {
                continue;
            }
            let expand = |t: &Template| {
                let mut out = String::new();
                match t {
                    Template::Regex(s) => caps.expand(s, &mut out),
                    Template::Glob(_) => unreachable!("regex mappings have regex templates"),
                }
                out
            };
            return Some(Matched {
                index: i,
                name: expand(&m.name),
                labels: m.labels.iter().map(|(k, t)| (k.clone(), expand(t))).collect(),
            });
        }
        None
    }
}

fn more_specific(a: &[Option<String>], b: &[Option<String>]) -> bool {
    for (x, y) in a.iter().zip(b) {
        match (x.is_some(), y.is_some()) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
    }
    false
}

fn format_glob(pieces: &[Piece], caps: &[&str], whole: &str) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Capture(i) => out.push_str(caps.get(*i).copied().unwrap_or("")),
            Piece::Whole => out.push_str(whole),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::mapping::{MetricType, parse};

    fn map(yaml: &str, name: &str, t: MetricType) -> Option<(String, Vec<(String, String)>)> {
        let c = parse("test", yaml).unwrap();
        c.lookup(name, t).map(|m| (m.name, m.labels))
    }

    #[test]
    fn first_glob_wins_and_captures_fill_templates() {
        let yaml = r#"
mappings:
- match: "test.*.*"
  name: "first_${1}_${2}"
  labels: {job: "$1", what: "x${2}y", quirk: "x$2y"}
- match: "test.a.*"
  name: "second"
"#;
        let (n, l) = map(yaml, "test.a.b", MetricType::Counter).unwrap();
        assert_eq!(n, "first_a_b");
        // `$2y` is a reference to a group named "2y": statsd_exporter expands it to "".
        let want = [("job", "a"), ("what", "xby"), ("quirk", "x")];
        assert_eq!(l, want.map(|(k, v)| (k.to_string(), v.to_string())));
        assert!(map(yaml, "test.a", MetricType::Counter).is_none());
    }

    #[test]
    fn dollar_n_followed_by_a_word_character_is_one_unknown_reference() {
        let yaml = "mappings:\n- match: a.*.*\n  name: \"x_$1_$2\"\n";
        assert_eq!(map(yaml, "a.b.c", MetricType::Gauge).unwrap().0, "x_");
    }

    #[test]
    fn unordered_globs_prefer_names_over_stars() {
        let yaml = "defaults:\n  glob_disable_ordering: true\nmappings:\n- match: a.*\n  name: star\n- match: a.b\n  name: exact\n";
        assert_eq!(map(yaml, "a.b", MetricType::Gauge).unwrap().0, "exact");
        assert_eq!(map(yaml, "a.c", MetricType::Gauge).unwrap().0, "star");
    }

    #[test]
    fn globs_win_over_earlier_regexes() {
        let yaml =
            "mappings:\n- match: '(.*)\\.(.*)'\n  match_type: regex\n  name: re_$2\n- match: '*.*'\n  name: glob_$2\n";
        assert_eq!(map(yaml, "a.b", MetricType::Counter).unwrap().0, "glob_b");
    }

    #[test]
    fn regexes_are_unanchored_and_typed() {
        let yaml = "mappings:\n- match: 'req\\.(\\w+)'\n  match_type: regex\n  match_metric_type: gauge\n  name: g_${1}\n- match: 'req\\.(\\w+)'\n  match_type: regex\n  name: any_${1}\n";
        assert_eq!(map(yaml, "x.req.get", MetricType::Gauge).unwrap().0, "g_get");
        assert_eq!(map(yaml, "x.req.get", MetricType::Counter).unwrap().0, "any_get");
    }
}
