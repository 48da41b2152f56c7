//! Metric relabelling: Prometheus's `metric_relabel_configs`, applied to each new
//! series (with `__name__` as a label) exactly as `model/relabel` of Prometheus 2.42
//! does, including its validation messages.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// One entry of `metric_relabel_configs`, as in Prometheus's YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` and matched against `regex`.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the source label values. Default `;`.
    #[serde(default)]
    pub separator: Option<String>,
    /// RE2-style regular expression, anchored at both ends. Default `(.*)`.
    #[serde(default)]
    pub regex: Option<String>,
    /// For `hashmod`: the modulus of the MD5 of the joined source values.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// Label written by `replace`, `hashmod`, `lowercase`, `uppercase`, compared by
    /// `keepequal` / `dropequal`. `replace` expands `$1` / `${name}` in it.
    #[serde(default)]
    pub target_label: Option<String>,
    /// Value written by `replace` (or label name by `labelmap`), with `$1`, `${1}`,
    /// `$name` expanded from the regex's groups. Default `$1`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// `replace` (default), `keep`, `drop`, `keepequal`, `dropequal`, `hashmod`,
    /// `labelmap`, `labeldrop`, `labelkeep`, `lowercase`, `uppercase`.
    #[serde(default)]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// A validated, compiled [`RelabelConfig`].
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// Compiles `configs`, reporting every problem (prefixed with the rule's index).
pub fn compile(configs: &[RelabelConfig]) -> Result<Vec<Rule>, Vec<String>> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        match Rule::new(c) {
            Ok(r) => rules.push(r),
            Err(e) => problems.push(format!("metric_relabel_configs[{i}]: {e}")),
        }
    }
    if problems.is_empty() { Ok(rules) } else { Err(problems) }
}

impl Rule {
    pub fn new(c: &RelabelConfig) -> Result<Rule, String> {
        let action = c.action;
        let regex_src = c.regex.as_deref().unwrap_or(DEFAULT_REGEX);
        let regex = Regex::new(&format!("^(?:{regex_src})$"))
            .map_err(|e| format!("invalid regex {regex_src:?}: {}", e.to_string().replace('\n', " ")))?;
        let target = c.target_label.clone().unwrap_or_default();
        let replacement = c.replacement.clone().unwrap_or_else(|| DEFAULT_REPLACEMENT.into());
        let modulus = c.modulus.unwrap_or(0);
        let name = action.name();
        if action == Action::HashMod && modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target.is_empty() {
            return Err(format!(
                "relabel configuration for {name} action requires 'target_label' value"
            ));
        }
        if matches!(action, Action::Replace) && !is_relabel_target(&target) {
            return Err(format!("{target:?} is invalid 'target_label' for {name} action"));
        }
        if matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual | Action::HashMod
        ) && !crate::exposition::is_label_name(&target)
        {
            return Err(format!("{target:?} is invalid 'target_label' for {name} action"));
        }
        if matches!(action, Action::LabelMap) && !is_relabel_target(&replacement) {
            return Err(format!("{replacement:?} is invalid 'replacement' for {name} action"));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!c.source_labels.is_empty()
                || c.separator.is_some()
                || !target.is_empty()
                || modulus != 0
                || c.replacement.is_some())
        {
            return Err(format!("{name} action requires only 'regex', and no other fields"));
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (c.regex.is_some() || modulus != 0 || c.replacement.is_some())
        {
            return Err(format!(
                "{name} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        for l in &c.source_labels {
            if !crate::exposition::is_label_name(l) {
                return Err(format!("{l:?} is not a valid label name in source_labels"));
            }
        }
        Ok(Rule {
            source_labels: c.source_labels.clone(),
            separator: c.separator.clone().unwrap_or_else(|| ";".into()),
            regex,
            modulus,
            target_label: target,
            replacement,
            action,
        })
    }
}

/// `target_label` of `replace` may hold `$1` / `${name}` references.
fn is_relabel_target(s: &str) -> bool {
    // Prometheus: ^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        let c = b[i];
        if c == b'$' {
            if b.get(i + 1) == Some(&b'{') {
                let close = b[i + 2..].iter().position(|c| *c == b'}');
                match close {
                    Some(n) if n > 0 && b[i + 2..i + 2 + n].iter().all(|c| word(*c)) => i += n + 3,
                    _ => return false,
                }
            } else {
                let n = b[i + 1..].iter().take_while(|c| word(**c)).count();
                if n == 0 {
                    return false;
                }
                i += n + 1;
            }
        } else if (first && (c.is_ascii_alphabetic() || c == b'_')) || (!first && word(c)) {
            i += 1;
        } else {
            return false;
        }
        first = false;
    }
    true
}

/// Applies `rules` to `labels` (name, value pairs including `__name__`). Returns
/// false when a rule drops the series. A label set to "" is removed, as in Prometheus.
pub fn process(rules: &[Rule], labels: &mut Vec<(String, String)>) -> bool {
    for r in rules {
        if !apply(r, labels) {
            return false;
        }
    }
    true
}

fn get<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    let pos = labels.iter().position(|(n, _)| n == name);
    match (pos, value.is_empty()) {
        (Some(p), true) => {
            labels.remove(p);
        }
        (Some(p), false) => labels[p].1 = value,
        (None, true) => {}
        (None, false) => labels.push((name.to_string(), value)),
    }
}

fn apply(r: &Rule, labels: &mut Vec<(String, String)>) -> bool {
    let val = r
        .source_labels
        .iter()
        .map(|n| get(labels, n))
        .collect::<Vec<_>>()
        .join(&r.separator);
    match r.action {
        Action::Drop => return !r.regex.is_match(&val),
        Action::Keep => return r.regex.is_match(&val),
        Action::DropEqual => return get(labels, &r.target_label) != val,
        Action::KeepEqual => return get(labels, &r.target_label) == val,
        Action::Replace => {
            let Some(caps) = r.regex.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&r.target_label, &mut target);
            if !crate::exposition::is_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&r.replacement, &mut res);
            set(labels, &target, res);
        }
        Action::Lowercase => set(labels, &r.target_label, val.to_lowercase()),
        Action::Uppercase => set(labels, &r.target_label, val.to_uppercase()),
        Action::HashMod => {
            let digest = Md5::digest(val.as_bytes());
            let sum = u64::from_be_bytes(digest[8..16].try_into().expect("16-byte digest"));
            set(labels, &r.target_label, (sum % r.modulus).to_string());
        }
        Action::LabelMap => {
            let snapshot = labels.clone();
            for (name, value) in &snapshot {
                if let Some(caps) = r.regex.captures(name) {
                    let mut res = String::new();
                    caps.expand(&r.replacement, &mut res);
                    set(labels, &res, value.clone());
                }
            }
        }
        Action::LabelDrop => labels.retain(|(n, _)| !r.regex.is_match(n)),
        Action::LabelKeep => labels.retain(|(n, _)| r.regex.is_match(n)),
    }
    true
}

#[cfg(test)]
mod tests;
