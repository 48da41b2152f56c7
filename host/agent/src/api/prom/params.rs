//! Request parameters as Prometheus reads them: form values from a POST body
//! (`application/x-www-form-urlencoded`, what Grafana sends) before the URL query,
//! times as Unix seconds or RFC 3339, durations as seconds or `5m`. Also used by
//! `sonde query` so the CLI accepts exactly what the API accepts.

use super::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};
use sonde_promql::parse_go_float;
use std::time::Duration;

/// The form values of a request, body first, in order (`match[]` repeats).
#[derive(Debug, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The first value of `name`, "" when absent (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let query = req.uri().query().unwrap_or("").to_string();
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut pairs = Vec::new();
        if is_form {
            let body = Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        Ok(Form(pairs))
    }
}

/// What `--query.timeout` is in Prometheus: the longest a query may run; a `timeout`
/// parameter can only shorten it.
pub const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The boundary times Prometheus's Go client sends for "no limit"
/// (`time.Unix(math.MinInt64/1000+62135596801, 0)` and its maximum counterpart).
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// A time parameter in milliseconds: Unix seconds (`1435781451.781`) or RFC 3339
/// (`2015-07-01T20:10:51.781Z`). The error is Prometheus's wording.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Some(secs) = parse_go_float(s) {
        let (int, frac) = (secs.trunc(), secs.fract());
        // Prometheus rounds the fraction to milliseconds.
        let ms = int * 1000.0 + (frac * 1000.0).round();
        return Ok(ms.clamp(i64::MIN as f64, i64::MAX as f64) as i64);
    }
    if let Some(ms) = parse_rfc3339(s) {
        return Ok(ms);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(i64::MIN),
        MAX_TIME_FORMATTED => Ok(i64::MAX),
        _ => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// An optional time parameter: `default` when empty.
pub fn parse_time_param(form: &Form, name: &str, default: i64) -> Result<i64, ApiError> {
    let v = form.get(name);
    if v.is_empty() {
        return Ok(default);
    }
    parse_time(v).map_err(|e| ApiError::invalid_param(name, format!("Invalid time value for '{name}': {e}")))
}

/// A duration parameter: float seconds (`30`, `0.5`) or a Prometheus duration (`5m`,
/// `1h30m`). Negative values are returned as such (the caller decides).
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    if let Some(secs) = parse_go_float(s) {
        let nanos = secs * 1e9;
        if !(i64::MIN as f64..=i64::MAX as f64).contains(&nanos) || nanos.is_nan() {
            return Err(format!("cannot parse {s:?} to a valid duration. It overflows int64"));
        }
        return Ok(SignedDuration(nanos as i64));
    }
    match crate::config::units::PromDuration::parse(s) {
        Ok(d) => Ok(SignedDuration(d.0.as_nanos().min(i64::MAX as u128) as i64)),
        Err(_) => Err(format!("cannot parse {s:?} to a valid duration")),
    }
}

/// Nanoseconds, possibly negative (Go's `time.Duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SignedDuration(pub i64);

impl SignedDuration {
    /// Whole milliseconds (truncated, as Prometheus converts a step).
    pub fn millis(self) -> i64 {
        self.0 / 1_000_000
    }

    pub fn to_std(self) -> Duration {
        Duration::from_nanos(self.0.max(0) as u64)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)` → milliseconds (fraction truncated).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo as u32) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        let digits = format!("{:0<3}", &frac[..n.min(3)]);
        ms = digits.parse::<i64>().ok()?;
        rest = &frac[n..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && matches!(r.as_bytes()[0], b'+' | b'-') && r.as_bytes()[3] == b':' => {
            let (oh, om) = (r[1..3].parse::<i64>().ok()?, r[4..6].parse::<i64>().ok()?);
            if oh > 23 || om > 59 || !r[1..3].bytes().chain(r[4..6].bytes()).all(|c| c.is_ascii_digit()) {
                return None;
            }
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1000 + ms)
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_prometheus() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("1e3"), Ok(1_000_000));
        assert_eq!(parse_time("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("2015-07-01T22:10:51.7819Z"), Ok(1_435_788_651_781));
        assert_eq!(parse_time("2015-07-01T22:10:51+02:00"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert_eq!(parse_time(MIN_TIME_FORMATTED), Ok(i64::MIN));
        assert_eq!(parse_time(MAX_TIME_FORMATTED), Ok(i64::MAX));
        for bad in [
            "",
            "abc",
            "2015-07-01",
            "2015-02-30T00:00:00Z",
            "2015-07-01T20:10:51",
            "1.2.3",
            "+",
            "0x10",
        ] {
            assert_eq!(
                parse_time(bad),
                Err(format!("cannot parse {bad:?} to a valid timestamp")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations_like_prometheus() {
        assert_eq!(parse_duration("15").unwrap().millis(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap().millis(), 500);
        assert_eq!(parse_duration("5m").unwrap().millis(), 300_000);
        assert_eq!(parse_duration("1h30m").unwrap().millis(), 5_400_000);
        assert_eq!(parse_duration("-10").unwrap().millis(), -10_000);
        assert_eq!(parse_duration("0").unwrap().millis(), 0);
        assert_eq!(
            parse_duration("abc"),
            Err("cannot parse \"abc\" to a valid duration".to_string())
        );
        assert_eq!(
            parse_duration("1e300"),
            Err("cannot parse \"1e300\" to a valid duration. It overflows int64".to_string())
        );
    }
}
