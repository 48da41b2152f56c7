//! statsd_exporter's `EscapeMetricName`: how StatsD names and tag keys become
//! Prometheus names.

use std::borrow::Cow;

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`, drops the second and
/// later dashes of a run (`a--b` → `a_b`), and prefixes `_` to a leading digit.
pub fn escape_metric_name(name: &str) -> Cow<'_, str> {
    let b = name.as_bytes();
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|&c| valid(c)) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 1);
    if b.first().is_some_and(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    let mut prev = '\0';
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if c == '-' && prev == '-' {
            continue; // prev stays '-': a run of dashes is one '_'
        } else {
            out.push('_');
        }
        prev = c;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape_metric_name as e;

    #[test]
    fn like_statsd_exporter() {
        assert_eq!(e("a.b-c"), "a_b_c");
        assert_eq!(e("a--b"), "a_b");
        assert_eq!(e("a---b"), "a_b");
        assert_eq!(e("1abc"), "_1abc");
        assert_eq!(e("é"), "_");
        assert_eq!(e(""), "");
        assert_eq!(e("ok_Name9"), "ok_Name9");
    }
}
