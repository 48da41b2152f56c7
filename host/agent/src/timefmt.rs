//! RFC 3339 timestamps without a date-time dependency (UTC only, as Prometheus's API
//! writes them: `2024-05-01T10:00:00.123456789Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!(
            "{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{}Z",
            frac.trim_end_matches('0')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56.5 UTC = 951827696.5
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_827_696_500)),
            "2000-02-29T12:34:56.5Z"
        );
        // 2026-11-22 00:00:00 UTC = 1795305600
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_305_600)),
            "2026-11-22T00:00:00Z"
        );
    }
}
