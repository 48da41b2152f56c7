//! Runs the golden cases of `conformance.txt` (format described at its top): each case
//! configures a fresh aggregator, sends datagrams, and compares a real collection (the
//! SDK's native registry) with the series written by hand from statsd_exporter's
//! behaviour.

use sonde_plugin_sdk::Collection;
use sonde_plugin_sdk::bindings::sonde::plugin::types::Batch;
use sonde_plugin_statsd::Config;
use sonde_plugin_statsd::aggregator::Aggregator;
use sonde_plugin_statsd::mapping::parse_go_duration_ms;
use std::collections::{BTreeMap, HashMap};

const SELF_PREFIXES: [&str; 2] = ["statsd_exporter_", "sonde_statsd_"];

#[derive(Default)]
struct Case {
    title: String,
    line: usize,
    config: Option<String>,
    mapping: Option<String>,
    steps: Vec<Step>,
}

enum Step {
    Send(Vec<u8>),
    Advance(u64),
    Expect(usize, Vec<(String, String)>),
    ExpectError(String),
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"));
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let block = |i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < lines.len() && (lines[*i].starts_with("  ") || lines[*i].trim().is_empty()) {
            if !lines[*i].trim().is_empty() {
                out.push(lines[*i][2..].to_string());
            }
            *i += 1;
        }
        out
    };
    while i < lines.len() {
        let line = lines[i];
        let n = i + 1;
        i += 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
        if cmd == "case" {
            cases.push(Case {
                title: arg.to_string(),
                line: n,
                ..Default::default()
            });
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("line {n}: command before the first case"));
        match cmd {
            "config" => case.config = Some(arg.to_string()),
            "mapping" => case.mapping = Some(block(&mut i).join("\n") + "\n"),
            "mapping-doc" => case.mapping = Some(doc_yaml(arg)),
            "send" => case.steps.push(Step::Send(unescape(arg))),
            "advance" => case
                .steps
                .push(Step::Advance(parse_go_duration_ms(arg).expect("duration"))),
            "expect" => {
                let rows = block(&mut i)
                    .iter()
                    .map(|r| {
                        let (series, value) = r.rsplit_once(' ').unwrap_or_else(|| panic!("line {n}: `series value`"));
                        (normalize(series), value.to_string())
                    })
                    .collect();
                case.steps.push(Step::Expect(n, rows));
            }
            "expect-error" => case.steps.push(Step::ExpectError(arg.to_string())),
            other => panic!("line {n}: unknown command {other}"),
        }
    }
    cases
}

/// The first YAML block after the heading `## <heading>` in docs/statsd.md, so the
/// documented example is the tested one.
fn doc_yaml(heading: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/statsd.md");
    let doc = std::fs::read_to_string(path).expect("docs/statsd.md");
    let after = doc
        .split_once(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?} in docs/statsd.md"))
        .1;
    let block = after.split_once("```yaml\n").expect("a yaml block").1;
    block.split_once("```").expect("end of the yaml block").0.to_string()
}

/// `name{b="2",a="1"}` → `name{a="1",b="2"}`.
fn normalize(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let body = rest.strip_suffix('}').expect("closing brace");
    let mut labels = Vec::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let eq = body[i..].find('=').expect("label=") + i;
        let key = body[i..eq].trim_start_matches(',').to_string();
        assert_eq!(b[eq + 1], b'"', "quoted value in {series}");
        let mut j = eq + 2;
        let mut value = String::new();
        while b[j] != b'"' {
            if b[j] == b'\\' {
                j += 1;
            }
            value.push(b[j] as char);
            j += 1;
        }
        labels.push((key, value));
        i = j + 1;
        if i < b.len() && b[i] == b',' {
            i += 1;
        }
    }
    render(name, &labels)
}

fn render(name: &str, labels: &[(String, String)]) -> String {
    let mut l = labels.to_vec();
    l.sort();
    if l.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Follows the series definitions across batches of one registry.
#[derive(Default)]
struct Known(HashMap<u32, String>);

impl Known {
    fn read(&mut self, b: &Batch) -> BTreeMap<String, f64> {
        for id in &b.forget {
            self.0.remove(id);
        }
        for s in &b.series {
            let labels: Vec<(String, String)> = s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            self.0.insert(s.id, render(&s.name, &labels));
        }
        b.ids
            .iter()
            .zip(&b.values)
            .map(|(id, v)| (self.0.get(id).expect("defined series").clone(), *v))
            .collect()
    }
}

fn value_matches(want: &str, got: f64) -> bool {
    if let Some(approx) = want.strip_prefix('~') {
        let w: f64 = approx.parse().expect("number after ~");
        return (got - w).abs() <= w.abs() * 0.0101;
    }
    match want {
        "NaN" => got.is_nan(),
        "+Inf" => got == f64::INFINITY,
        "-Inf" => got == f64::NEG_INFINITY,
        _ => {
            got == want
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad expected value {want}"))
        }
    }
}

fn run(case: &Case) -> Result<(), String> {
    let mut json: serde_json::Value =
        serde_json::from_str(case.config.as_deref().unwrap_or("{}")).expect("config JSON");
    if let Some(m) = &case.mapping {
        json["mapping"] = serde_json::Value::String(m.clone());
    }
    let built: Result<Aggregator, String> = sonde_plugin_sdk::parse_config::<Config>(&json.to_string())
        .and_then(|c| c.aggregator())
        .map_err(|e| format!("{e:?}"));
    let mut agg = match (built, case.steps.first()) {
        (Err(e), Some(Step::ExpectError(want))) if e.contains(want.as_str()) => return Ok(()),
        (Err(e), _) => return Err(format!("configure failed: {e}")),
        (Ok(_), Some(Step::ExpectError(want))) => {
            return Err(format!("configure succeeded, expected an error with {want:?}"));
        }
        (Ok(a), _) => a,
    };
    let mut reg = Collection::native_registry();
    let mut known = Known::default();
    let mut now = 1_000_000;
    for step in &case.steps {
        match step {
            Step::Send(d) => agg.ingest(d, now),
            Step::Advance(ms) => now += ms,
            Step::ExpectError(_) => return Err("expect-error must be the only step".into()),
            Step::Expect(line, rows) => {
                let batch = reg
                    .collect(|out| {
                        agg.collect(out, now);
                        Ok(())
                    })
                    .map_err(|e| format!("collect failed: {e:?}"))?;
                let got = known.read(&batch);
                let mut problems = Vec::new();
                for (series, want) in rows {
                    match got.get(series) {
                        Some(v) if value_matches(want, *v) => {}
                        Some(v) => problems.push(format!("{series}: want {want}, got {v}")),
                        None => problems.push(format!("{series}: missing")),
                    }
                }
                for (series, v) in &got {
                    let own = SELF_PREFIXES.iter().any(|p| series.starts_with(p));
                    if !own && !rows.iter().any(|(s, _)| s == series) {
                        problems.push(format!("{series} {v}: not expected"));
                    }
                }
                if !problems.is_empty() {
                    return Err(format!("expect at line {line}:\n    {}", problems.join("\n    ")));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn conformance() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance.txt");
    let cases = parse_cases(&std::fs::read_to_string(path).expect("conformance.txt"));
    assert!(cases.len() > 20, "cases are read");
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run(case) {
            failures.push(format!("case {:?} (line {}): {e}", case.title, case.line));
        }
    }
    println!("{} passed, {} failed", cases.len() - failures.len(), failures.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
