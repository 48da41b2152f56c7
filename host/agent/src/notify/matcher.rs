//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"` (regexes anchored at both ends, as in Alertmanager).

use regex::Regex;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_equal: bool,
    re: Option<Regex>,
}

impl Matcher {
    pub fn new(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Result<Matcher, String> {
        let re = if is_regex {
            Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("invalid regex {value:?}: {e}"))?)
        } else {
            None
        };
        Ok(Matcher {
            name: name.into(),
            value: value.into(),
            is_equal,
            re,
        })
    }

    /// Parses `name="value"` (quotes optional around the value, as in amtool).
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let s = s.trim();
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("matcher {s:?} has no operator: write it like severity=\"critical\""))?;
        let (name, rest) = s.split_at(name_len);
        if name.is_empty() {
            return Err(format!("matcher {s:?} has no label name"));
        }
        let rest = rest.trim_start();
        let (op, value) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
            .ok_or_else(|| format!("matcher {s:?}: the operator must be =, !=, =~ or !~"))?;
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            serde_json::from_str::<String>(value).map_err(|e| format!("matcher {s:?}: bad quoted value: {e}"))?
        } else {
            value.to_string()
        };
        Matcher::new(name, &value, op.ends_with('~'), !op.starts_with('!'))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        let hit = match &self.re {
            Some(re) => re.is_match(v),
            None => v == self.value,
        };
        hit == self.is_equal
    }
}

pub fn all_match(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn notify_matchers_parse_and_match() {
        let m = Matcher::parse(r#"severity="critical""#).unwrap();
        assert!(m.matches(&l(&[("severity", "critical")])));
        assert!(!m.matches(&l(&[("severity", "warning")])));
        let m = Matcher::parse("severity=~\"crit.*|page\"").unwrap();
        assert!(m.matches(&l(&[("severity", "critical")])));
        assert!(!m.matches(&l(&[("severity", "xcritical")])));
        let m = Matcher::parse("team != ops").unwrap();
        assert!(m.matches(&l(&[])));
        assert!(!m.matches(&l(&[("team", "ops")])));
        let m = Matcher::parse(r#"env!~"prod.*""#).unwrap();
        assert!(m.matches(&l(&[("env", "dev")])));
        assert!(Matcher::parse("nope").is_err());
        assert!(Matcher::parse(r#"a=~"(""#).is_err());
    }
}
