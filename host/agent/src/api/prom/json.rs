//! JSON exactly as Prometheus 2.42 writes it, by hand into a byte buffer: results can
//! hold millions of points, and the number formats are not serde's. Strings are
//! escaped like Go's `encoding/json` (HTML-safe `\u003c`, `\u2028`). Prometheus
//! writes numbers two ways, and so does this module (checked against 2.42 itself):
//!
//! - vector and matrix points (`jsonutil.MarshalTimestamp`/`MarshalValue`):
//!   `[1435781451.500,"1e-07"]` — the milliseconds always as three digits unless
//!   zero, the value like `strconv.FormatFloat(v, 'f', -1, 64)` but in exponent form
//!   below 1e-6 and from 1e21;
//! - scalar and string results (Go's `encoding/json` of `[t/1000, FormatFloat(v, 'f',
//!   -1, 64)]`): `[1435781451.5,"0.0000001"]` — the shortest decimals, never an
//!   exponent in the value.
//!
//! Either way `NaN`, `+Inf` and `-Inf` are the value strings.

use sonde_promql::{Labels, QueryValue};
use std::io::Write;

/// A JSON string literal, quotes included.
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '\u{2028}' => Some(b"\\u2028"),
            '\u{2029}' => Some(b"\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        start = i + c.len_utf8();
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest decimal that reads back as
/// `v`, never in exponent form; `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    let mut out = Vec::new();
    push_float(&mut out, v);
    String::from_utf8(out).expect("ASCII")
}

/// [`format_float`] into `out`. Ryu finds the same shortest digits as Go and Rust;
/// its output only needs `.0` dropped, and its exponent form (from 1e16, below 1e-5)
/// is left to Rust's `Display`, which writes such values out in full.
fn push_float(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(match v {
            v if v.is_nan() => b"NaN",
            v if v > 0.0 => b"+Inf",
            _ => b"-Inf",
        });
        return;
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    if s.contains('e') {
        let _ = write!(out, "{v}");
    } else {
        out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
    }
}

/// A point value as Prometheus's API formats it (without quotes).
pub fn format_value(v: f64) -> String {
    let abs = v.abs();
    if !abs.is_finite() || abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format_float(v);
    }
    // Go's 'e' format: shortest mantissa, exponent with a sign and two digits at least.
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').expect("{:e} has an exponent");
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// `"<value>"`.
pub fn value(out: &mut Vec<u8>, v: f64) {
    out.push(b'"');
    let abs = v.abs();
    if abs.is_finite() && (abs == 0.0 || (1e-6..1e21).contains(&abs)) {
        push_float(out, v);
    } else {
        out.extend_from_slice(format_value(v).as_bytes());
    }
    out.push(b'"');
}

/// Milliseconds as seconds: `-`, whole seconds, then `.` and three digits unless they
/// are all zero (Prometheus's `MarshalTimestamp`).
pub fn timestamp(out: &mut Vec<u8>, t: i64) {
    let t = if t < 0 {
        out.push(b'-');
        t.unsigned_abs()
    } else {
        t as u64
    };
    out.extend_from_slice(itoa::Buffer::new().format(t / 1000).as_bytes());
    let frac = (t % 1000) as u32;
    if frac != 0 {
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

/// `[<t>,"<v>"]`.
pub fn point(out: &mut Vec<u8>, t: i64, v: f64) {
    out.push(b'[');
    timestamp(out, t);
    out.push(b',');
    value(out, v);
    out.push(b']');
}

/// `[<t/1000 as a float>,` (scalar and string results).
fn float_timestamp(out: &mut Vec<u8>, t: i64) {
    out.push(b'[');
    push_float(out, t as f64 / 1000.0);
    out.push(b',');
}

/// `{"name":"value",...}` in label order.
pub fn labels(out: &mut Vec<u8>, l: &Labels) {
    out.push(b'{');
    for (i, (n, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, n);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// `{"resultType":"...","result":...}` of a query.
pub fn query_data(out: &mut Vec<u8>, v: &QueryValue) {
    out.extend_from_slice(b"{\"resultType\":\"");
    out.extend_from_slice(v.type_name().as_bytes());
    out.extend_from_slice(b"\",\"result\":");
    match v {
        QueryValue::Scalar(t, x) => {
            float_timestamp(out, *t);
            out.push(b'"');
            push_float(out, *x);
            out.extend_from_slice(b"\"]");
        }
        QueryValue::String(t, s) => {
            float_timestamp(out, *t);
            string(out, s);
            out.push(b']');
        }
        QueryValue::Vector(samples) => {
            out.push(b'[');
            for (i, (l, t, x)) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                labels(out, l);
                out.extend_from_slice(b",\"value\":");
                point(out, *t, *x);
                out.push(b'}');
            }
            out.push(b']');
        }
        QueryValue::Matrix(series) => {
            out.push(b'[');
            let mut first = true;
            for (l, points) in series.iter().filter(|(_, p)| !p.is_empty()) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(b"{\"metric\":");
                labels(out, l);
                out.extend_from_slice(b",\"values\":[");
                for (i, (t, x)) in points.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    point(out, *t, *x);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

/// Points a result holds (to size the buffer).
pub fn points(v: &QueryValue) -> usize {
    match v {
        QueryValue::Scalar(..) | QueryValue::String(..) => 1,
        QueryValue::Vector(s) => s.len(),
        QueryValue::Matrix(s) => s.iter().map(|(_, p)| p.len() + 4).sum(),
    }
}

/// `{"status":"success","data":<data>}` where `data` writes the data.
pub fn success(capacity: usize, data: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity + 64);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":");
    data(&mut out);
    out.push(b'}');
    out
}

/// `{"status":"error","errorType":"...","error":"..."}`, the field order of Prometheus.
pub fn error(error_type: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    out.extend_from_slice(b"{\"status\":\"error\",\"errorType\":");
    string(&mut out, error_type);
    out.extend_from_slice(b",\"error\":");
    string(&mut out, message);
    out.push(b'}');
    out
}

/// A JSON array of strings.
pub fn strings<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s.as_ref());
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn labels_of(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().map(|(n, v)| (Arc::from(*n), Arc::from(*v))).collect())
    }

    #[test]
    fn values_format_like_go() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e15, "1000000000000000"),
            (123456789.125, "123456789.125"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-07"),
            (-2.5e-10, "-2.5e-10"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::from_bits(0x7ff0_0000_0000_0002), "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(text(|o| value(o, *v)), format!("\"{want}\""), "{v:e}");
        }
    }

    #[test]
    fn timestamps_like_marshal_timestamp() {
        for (t, want) in [
            (1_435_781_451_781, "1435781451.781"),
            (1_435_781_451_780, "1435781451.780"),
            (1_435_781_451_005, "1435781451.005"),
            (1_435_781_451_000, "1435781451"),
            (0, "0"),
            (-1500, "-1.500"),
            (-5, "-0.005"),
        ] {
            assert_eq!(text(|o| timestamp(o, t)), want);
        }
    }

    #[test]
    fn strings_escape_like_go() {
        assert_eq!(
            text(|o| string(o, "a\"b\\c\nd\te\u{1}<>&\u{2028}é")),
            r#""a\"b\\c\nd\te\u0001\u003c\u003e\u0026\u2028é""#
        );
    }

    #[test]
    fn result_shapes() {
        let l = labels_of(&[("__name__", "up"), ("job", "a")]);
        let v = QueryValue::Vector(vec![(l.clone(), 1_435_781_451_781, 1.0)]);
        assert_eq!(
            text(|o| query_data(o, &v)),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1435781451.781,"1"]}]}"#
        );
        let m = QueryValue::Matrix(vec![
            (l, vec![(1000, 1.0), (2000, 0.5)]),
            (labels_of(&[("job", "empty")]), vec![]),
        ]);
        assert_eq!(
            text(|o| query_data(o, &m)),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1,"1"],[2,"0.5"]]}]}"#
        );
        assert_eq!(
            text(|o| query_data(o, &QueryValue::Scalar(1_435_781_451_500, 1e-7))),
            r#"{"resultType":"scalar","result":[1435781451.5,"0.0000001"]}"#
        );
        assert_eq!(
            text(|o| query_data(o, &QueryValue::Scalar(-1500, 1e21))),
            r#"{"resultType":"scalar","result":[-1.5,"1000000000000000000000"]}"#
        );
        assert_eq!(
            text(|o| query_data(o, &QueryValue::Scalar(0, f64::INFINITY))),
            r#"{"resultType":"scalar","result":[0,"+Inf"]}"#
        );
        assert_eq!(
            text(|o| query_data(o, &QueryValue::String(1000, "x\"".into()))),
            r#"{"resultType":"string","result":[1,"x\""]}"#
        );
        assert_eq!(
            String::from_utf8(error("bad_data", "invalid parameter \"x\"")).unwrap(),
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"x\""}"#
        );
    }
}
