use super::*;

/// Every line of `body` as a compact string, or the error.
fn lines(body: &str, format: Format) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut lines = Lines::new(body.as_bytes(), format);
    while let Some(l) = lines.next() {
        let l = l.map_err(|e| e.to_string())?;
        out.push(match l {
            Line::Sample {
                line,
                series,
                value,
                timestamp_ms,
            } => {
                let (name, labels) =
                    parse_series(line, series, format).map_err(|e| format!("line {}: {e}", lines.line()))?;
                let labels: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                let ts = timestamp_ms.map_or(String::new(), |t| format!(" @{t}"));
                format!("{name}{{{}}} {value}{ts}", labels.join(","))
            }
            Line::Help { name, text } => format!(
                "HELP {} {:?}",
                String::from_utf8_lossy(name),
                unescape_help(text, format)
            ),
            Line::Type { name, kind } => format!("TYPE {} {kind:?}", String::from_utf8_lossy(name)),
            Line::Unit { name, unit } => format!(
                "UNIT {} {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(unit)
            ),
        });
    }
    Ok(out)
}

fn text(body: &str) -> Result<Vec<String>, String> {
    lines(body, Format::Text)
}

fn om(body: &str) -> Result<Vec<String>, String> {
    lines(body, Format::OpenMetrics)
}

#[test]
fn text_format_samples_metadata_and_escapes() {
    let body = r#"# HELP http_requests_total The total number of HTTP requests. \\ and\nnext
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# A plain comment
  msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
nan_value NaN
neg{a="b",} -Inf
odd_escape{a="x\ty"} 1
"#;
    assert_eq!(
        text(body).unwrap(),
        [
            r#"HELP http_requests_total "The total number of HTTP requests. \\ and\nnext""#,
            "TYPE http_requests_total Counter",
            r#"http_requests_total{method="post",code="200"} 1027 @1395066363000"#,
            r#"http_requests_total{method="post",code="400"} 3 @1395066363000"#,
            r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1458255915"#,
            "metric_without_timestamp_and_labels{} 12.47",
            r#"something_weird{problem="division by zero"} inf @-3982045"#,
            "nan_value{} NaN",
            r#"neg{a="b"} -inf"#,
            r#"odd_escape{a="x\\ty"} 1"#,
        ]
    );
}

#[test]
fn text_format_types() {
    let body = "# TYPE a gauge\n# TYPE b histogram\n# TYPE c summary\n# TYPE d untyped\n";
    assert_eq!(
        text(body).unwrap(),
        ["TYPE a Gauge", "TYPE b Histogram", "TYPE c Summary", "TYPE d Unknown"]
    );
    assert_eq!(
        text("# TYPE a stateset\n").unwrap_err(),
        "line 1: invalid metric type \"stateset\" for a"
    );
}

#[test]
fn openmetrics_samples_units_exemplars_and_eof() {
    let body = r#"# TYPE foo counter
# UNIT foo seconds
# HELP foo A \"quoted\" help.
foo_total{a="1"} 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created{a="1"} 1520430000.123
# TYPE bar histogram
bar_bucket{le="0.1"} 8 # {id="x"} 0.05 123.5
bar_bucket{le="+Inf"} 10
# TYPE s stateset
s{s="a"} 1
# TYPE i info
i_info{version="1"} 1
# EOF
"#;
    assert_eq!(
        om(body).unwrap(),
        [
            "TYPE foo Counter",
            "UNIT foo seconds",
            r#"HELP foo "A \"quoted\" help.""#,
            r#"foo_total{a="1"} 17 @1520879607789"#,
            r#"foo_created{a="1"} 1520430000.123"#,
            "TYPE bar Histogram",
            r#"bar_bucket{le="0.1"} 8"#,
            r#"bar_bucket{le="+Inf"} 10"#,
            "TYPE s StateSet",
            r#"s{s="a"} 1"#,
            "TYPE i Info",
            r#"i_info{version="1"} 1"#,
        ]
    );
}

#[test]
fn openmetrics_strictness() {
    assert_eq!(
        om("a 1\n").unwrap_err(),
        "line 2: the exposition does not end with \"# EOF\" (OpenMetrics requires it)"
    );
    assert_eq!(
        om("a 1\n# EOF\nb 2\n").unwrap_err(),
        "line 3: unexpected content after \"# EOF\""
    );
    assert_eq!(
        om("a 1\n\n# EOF\n").unwrap_err(),
        "line 2: empty line (OpenMetrics allows none)"
    );
    assert_eq!(
        om("# random comment\n# EOF\n").unwrap_err(),
        "line 1: unexpected comment \"# random comment\": OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF"
    );
    assert_eq!(
        om("a 1 # {x=\"1\"}\n# EOF\n").unwrap_err(),
        "line 1: invalid exemplar \"# {x=\\\"1\\\"}\""
    );
    assert_eq!(
        om("# TYPE a untyped\n# EOF\n").unwrap_err(),
        "line 1: invalid metric type \"untyped\" for a"
    );
    assert_eq!(om("a 1 NaN\n# EOF\n").unwrap_err(), "line 1: invalid timestamp \"NaN\"");
    // A text-format exemplar is just trailing garbage.
    assert_eq!(
        text("a 1 # {x=\"1\"} 1\n").unwrap_err(),
        "line 1: unexpected text after the sample: \"# {x=\\\"1\\\"} 1\""
    );
}

#[test]
fn malformed_lines_name_the_line_and_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("a{b=\"c\"}\n", "line 1: expected a value after the labels"),
        ("ok 1\na\n", "line 2: expected a value after the metric name"),
        (
            "a{b=\"c\"}x\n",
            "line 1: expected a space between the labels and the value, found \"x\"",
        ),
        ("a abc\n", "line 1: invalid value \"abc\""),
        ("a 1 2.5\n", "line 1: invalid timestamp \"2.5\""),
        ("a 1 2 3\n", "line 1: unexpected text after the sample: \"3\""),
        ("a{b=\"c} 1\n", "line 1: unterminated label value (no closing '\"')"),
        ("a{b=\"c\" 1\n", "line 1: expected '}' after the labels"),
        (
            "{b=\"c\"} 1\n",
            "line 1: expected a metric name, found \"{b=\\\"c\\\"} 1\"",
        ),
        ("1a 1\n", "line 1: expected a metric name, found \"1a 1\""),
        ("a{b} 1\n", "line 1: expected '=' after label name b"),
        ("a{b=c} 1\n", "line 1: expected '\"' to open the value of label b"),
        (
            "a{b=\"1\" c=\"2\"} 1\n",
            "line 1: expected ',' or '}' after the value of label b",
        ),
        ("a{b=\"1\",b=\"2\"} 1\n", "line 1: label b appears twice"),
        ("a{,} 1\n", "line 1: expected a label name, found \",\""),
        ("a{1b=\"x\"} 1\n", "line 1: expected a label name, found \"1\""),
        ("# TYPE\n", "line 1: expected a metric name after # TYPE, found \"\""),
        (
            "# TYPE a counter extra\n",
            "line 1: unexpected text after the type: \"extra\"",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(text(body).unwrap_err(), *want, "body {body:?}");
    }
}

#[test]
fn content_type_picks_the_format() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"),
        Format::Text
    );
    assert_eq!(Format::from_content_type(""), Format::Text);
}

#[test]
fn floats_as_go_reads_them() {
    let f = |s: &str| parse_float(s.as_bytes());
    assert_eq!(f("12"), Some(12.0));
    assert_eq!(f("1e3"), Some(1000.0));
    assert_eq!(f("-0.5"), Some(-0.5));
    assert_eq!(f("+Inf"), Some(f64::INFINITY));
    assert_eq!(f("-Inf"), Some(f64::NEG_INFINITY));
    assert!(f("NaN").unwrap().is_nan());
    assert_eq!(f("1_000"), None);
    assert_eq!(f(""), None);
    assert_eq!(f("123456789012345678901"), Some(123456789012345678901.0));
    assert_eq!(f("-0").map(f64::is_sign_negative), Some(true));
    assert_eq!(f("1."), Some(1.0));
    assert_eq!(f(".5"), Some(0.5));
    assert_eq!(f("."), None);
    assert_eq!(f("1e"), None);
    assert_eq!(f("1.2.3"), None);
}

/// The fast path agrees with the general parser bit for bit.
#[test]
fn exact_decimals_round_like_the_general_parser() {
    let mut cases: Vec<String> = [
        "0.1",
        "0.3",
        "1.7976931348623157",
        "9007199254740993",
        "123456789012345",
        "1234567890123456",
        "0.000001",
        "1e-22",
        "1e22",
        "1e23",
        "4.35e-23",
        "2.5e+06",
        "1.7953549915464115e+09",
        "0.30069355900195664",
        "1E5",
        "-7.0",
        "+3.25",
        "0e400",
        "00001.5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mant = x % 1_000_000_000_000_000;
        let e = (x >> 50) as i32 % 30 - 15;
        cases.push(format!("{mant}e{e}"));
        cases.push(format!("{}.{}", mant % 100_000, mant / 100_000));
    }
    for c in &cases {
        let want: f64 = c.parse().unwrap();
        let got = parse_float(c.as_bytes()).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{c}");
    }
}

#[test]
fn a_value_after_one_space_reads_as_any_other_spacing_does() {
    // `a 1` takes the one-step path; the others the general one: same results.
    assert_eq!(
        text("a 1\nb  2\nc\t3\nd 4 \ne 5 1000\nf{x=\"1 2\"} -6.5e3\ng NaN\n").unwrap(),
        vec![
            "a{} 1",
            "b{} 2",
            "c{} 3",
            "d{} 4",
            "e{} 5 @1000",
            "f{x=\"1 2\"} -6500",
            "g{} NaN"
        ]
    );
    assert_eq!(om("a 1\nb 2 1.5\n# EOF\n").unwrap(), vec!["a{} 1", "b{} 2 @1500"]);
    assert_eq!(text("a 1\r\n").unwrap_err(), "line 1: invalid value \"1\\r\"");
    assert_eq!(text("a 1x\n").unwrap_err(), "line 1: invalid value \"1x\"");
}
