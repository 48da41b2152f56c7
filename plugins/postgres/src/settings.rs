//! `pg_settings_<name>`: numeric and boolean server settings, with units normalised
//! to seconds and bytes as postgres_exporter does (`-1`, "disabled", is kept as is).

use crate::Ctx;
use sonde_plugin_sdk::{Collection, Kind};

const QUERY: &str = "SELECT name, setting, COALESCE(unit, '') AS unit, short_desc, vartype \
     FROM pg_settings WHERE vartype IN ('bool', 'integer', 'real') AND name != 'sync_commit_cancel_wait'";

pub fn collect(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx.query(QUERY).map_err(|e| e.message().to_string())?;
    for row in &rows.rows {
        let [name, setting, unit, desc, vartype] = &row[..] else {
            return Err("unexpected columns from pg_settings".into());
        };
        let (name, setting, unit, desc) = (name.to_label(), setting.to_label(), unit.to_label(), desc.to_label());
        let Some((value, suffix)) = normalise(&setting, &unit, &vartype.to_label()) else {
            continue;
        };
        let (metric, help) = match suffix {
            Some(s) => (
                format!("pg_settings_{}_{s}", name.replace('.', "_")),
                format!("{desc} [Units converted to {s}.]"),
            ),
            None => (format!("pg_settings_{}", name.replace('.', "_")), desc),
        };
        let f = out.family(&metric, Kind::Gauge, &help);
        out.sample(f, &metric, &[("server", &ctx.server)], value);
    }
    Ok(())
}

/// The value in base units and the unit suffix; None when the setting is not a
/// number (or the unit unknown, which postgres_exporter also skips).
fn normalise(setting: &str, unit: &str, vartype: &str) -> Option<(f64, Option<&'static str>)> {
    if vartype == "bool" {
        return match setting {
            "on" => Some((1.0, None)),
            "off" => Some((0.0, None)),
            _ => None,
        };
    }
    let v: f64 = setting.parse().ok()?;
    let (suffix, factor) = match unit {
        "" => return Some((v, None)),
        "ms" => ("seconds", 1e-3),
        "s" => ("seconds", 1.0),
        "min" => ("seconds", 60.0),
        "h" => ("seconds", 3600.0),
        "d" => ("seconds", 86400.0),
        "B" => ("bytes", 1.0),
        "kB" => ("bytes", 1024.0),
        "MB" => ("bytes", 1048576.0),
        "GB" => ("bytes", 1073741824.0),
        "TB" => ("bytes", 1099511627776.0),
        _ => {
            // Block units: "8kB", "16MB", ...
            let (n, base) = if let Some(n) = unit.strip_suffix("kB") {
                (n, 1024.0)
            } else {
                (unit.strip_suffix("MB")?, 1048576.0)
            };
            ("bytes", n.parse::<f64>().ok()? * base)
        }
    };
    Some((if v == -1.0 { v } else { v * factor }, Some(suffix)))
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn units_become_seconds_and_bytes() {
        assert_eq!(normalise("16384", "8kB", "integer"), Some((134217728.0, Some("bytes"))));
        assert_eq!(normalise("300", "s", "integer"), Some((300.0, Some("seconds"))));
        assert_eq!(normalise("1440", "min", "integer"), Some((86400.0, Some("seconds"))));
        assert_eq!(normalise("-1", "ms", "integer"), Some((-1.0, Some("seconds"))));
        assert_eq!(normalise("100", "", "integer"), Some((100.0, None)));
        assert_eq!(normalise("on", "", "bool"), Some((1.0, None)));
        assert_eq!(normalise("4096", "kB", "integer"), Some((4194304.0, Some("bytes"))));
    }
}
