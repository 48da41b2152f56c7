//! Writing the Prometheus text exposition format 0.0.4.

use std::fmt::Write;

/// Formats a sample value as Prometheus does: `NaN`, `+Inf`, `-Inf`, integers without
/// a fraction, exponent form for very large or small magnitudes.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e21) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Accumulates exposition text.
#[derive(Default)]
pub struct Writer {
    pub out: String,
}

impl Writer {
    /// `# HELP` and `# TYPE` lines of a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        if !help.is_empty() {
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(self.out, "# HELP {name} {help}");
        }
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line; labels other than `__name__` in the given order.
    pub fn sample<'a>(
        &mut self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
        ts: Option<i64>,
    ) {
        self.out.push_str(name);
        let mut first = true;
        for (n, v) in labels {
            if n == "__name__" {
                continue;
            }
            self.out.push(if first { '{' } else { ',' });
            first = false;
            self.out.push_str(n);
            self.out.push_str("=\"");
            escape_label_value(&mut self.out, v);
            self.out.push('"');
        }
        if !first {
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        if let Some(ts) = ts {
            let _ = write!(self.out, " {ts}");
        }
        self.out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_prometheus() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e-7), "1e-7");
        assert_eq!(format_value(1.5e300), "1.5e300");
    }

    #[test]
    fn labels_are_escaped() {
        let mut w = Writer::default();
        w.sample("m", [("__name__", "m"), ("a", "x\"y\\z\nw")], 1.0, Some(5));
        assert_eq!(w.out, "m{a=\"x\\\"y\\\\z\\nw\"} 1 5\n");
        let mut w = Writer::default();
        w.sample("up", [], 0.0, None);
        assert_eq!(w.out, "up 0\n");
    }
}
