//! A strict parser of the Prometheus text exposition format 0.0.4, used to read
//! sonde's `/metrics` and `/federate` and node_exporter's `/metrics`. Any line it
//! does not understand is an error, so the format itself is under test too.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Sorted by label name.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries one.
    pub timestamp: Option<i64>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether every `(name, value)` pair of `want` is among the labels.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(n, v)| self.label(n) == Some(v))
    }
}

/// A parsed exposition: samples in page order, and the `# TYPE` / `# HELP` lines.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name → type (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    pub types: BTreeMap<String, String>,
    pub helps: BTreeMap<String, String>,
}

impl Exposition {
    /// Samples named `name` that carry all of `labels`.
    pub fn find<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && s.has_labels(labels))
    }

    /// The value of the one sample named `name` with `labels` (`None` if absent;
    /// panics if several match, since the caller's selector is then ambiguous).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.find(name, labels);
        let first = it.next()?;
        assert!(it.next().is_none(), "more than one sample matches {name}{labels:?}");
        Some(first.value)
    }

    /// The sum over all samples named `name` that carry `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|s| s.value).sum()
    }

    /// The family a sample belongs to: its own name if typed, else the histogram or
    /// summary whose `_bucket` / `_sum` / `_count` it is.
    pub fn family_of<'a>(&self, sample_name: &'a str) -> &'a str {
        if self.types.contains_key(sample_name) {
            return sample_name;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample_name.strip_suffix(suffix)
                && matches!(self.types.get(base).map(String::as_str), Some("histogram" | "summary"))
            {
                return base;
            }
        }
        sample_name
    }

    /// Family name → the union of label names of its samples, less `exclude`.
    pub fn label_names_by_family(&self, exclude: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in &self.samples {
            let names = out.entry(self.family_of(&s.name).to_string()).or_default();
            for (n, _) in &s.labels {
                if !exclude.contains(&n.as_str()) && n != "le" && n != "quantile" {
                    names.insert(n.clone());
                }
            }
        }
        out
    }
}

/// Parses a whole page; the error names the line number and the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        parse_line(line, &mut out).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?;
    }
    Ok(out)
}

fn parse_line(line: &str, out: &mut Exposition) -> Result<(), String> {
    if line.trim().is_empty() {
        return Ok(());
    }
    if let Some(comment) = line.strip_prefix('#') {
        let mut parts = comment.trim_start().splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("TYPE"), Some(name), Some(kind)) => {
                let kind = kind.trim();
                if !matches!(kind, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                    return Err(format!("unknown metric type {kind}"));
                }
                if out.types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(format!("second # TYPE line for {name}"));
                }
            }
            (Some("HELP"), Some(name), help) => {
                out.helps.insert(name.to_string(), help.unwrap_or("").to_string());
            }
            _ => {}
        }
        return Ok(());
    }
    out.samples.push(parse_sample(line)?);
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name, true) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    let timestamp = match fields.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| format!("bad timestamp {t:?}"))?),
    };
    if fields.next().is_some() {
        return Err("trailing text after the timestamp".into());
    }
    labels.sort();
    for pair in labels.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!("label {} appears twice", pair[0].0));
        }
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp,
    })
}

/// Parses `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let name = s[..eq].trim();
        if !valid_name(name, false) {
            return Err(format!("invalid label name {name:?}"));
        }
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("value of label {name} is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?} in label {name}")),
                },
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated value of label {name}"))?;
        labels.push((name.to_string(), value));
        s = s[end..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

fn valid_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c)) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_labels_values_and_timestamps() {
        let page = "# HELP up Whether the target is up.\n# TYPE up gauge\n\
                    up{job=\"node\",instance=\"a:1\"} 1 1700000000123\n\
                    # TYPE node_cpu_seconds_total counter\n\
                    node_cpu_seconds_total{mode=\"idle\",cpu=\"0\"} 12.5\n\
                    x_total{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\\n\"} +Inf\n";
        let e = parse(page).unwrap();
        assert_eq!(e.types["up"], "gauge");
        assert_eq!(e.helps["up"], "Whether the target is up.");
        let up = &e.samples[0];
        assert_eq!(
            up.labels,
            vec![("instance".into(), "a:1".into()), ("job".into(), "node".into())]
        );
        assert_eq!(up.timestamp, Some(1700000000123));
        assert_eq!(e.value("node_cpu_seconds_total", &[("cpu", "0")]), Some(12.5));
        let x = &e.samples[2];
        assert_eq!(x.label("path"), Some("C:\\dir"));
        assert_eq!(x.label("q"), Some("say \"hi\"\n"));
        assert_eq!(x.value, f64::INFINITY);
    }

    #[test]
    fn histogram_samples_belong_to_their_family() {
        let e =
            parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n").unwrap();
        assert_eq!(e.family_of("h_bucket"), "h");
        assert_eq!(e.family_of("h_count"), "h");
        assert!(e.label_names_by_family(&[])["h"].is_empty());
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "up",
            "up{job=node} 1",
            "up{job=\"x\" 1",
            "up 1 12.5",
            "0up 1",
            "up{a=\"1\",a=\"2\"} 1",
            "up abc",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse("# TYPE a gauge\n# TYPE a gauge\n").is_err());
    }
}
