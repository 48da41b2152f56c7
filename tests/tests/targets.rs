//! Target labels from plugins.toml (`job`, `instance`, `labels`) and the shape of
//! `/api/v1/targets`, with the synthetic test plugin.

use serde_json::Value;
use sonde_tests::{Sonde, test_plugin, toml_str};
use std::time::Duration;

fn plugins_toml() -> String {
    let synthetic = toml_str(test_plugin("synthetic").display().to_string());
    format!(
        "[labelled]\nplugin = {synthetic}\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         job = \"synth\"\ninstance = \"box-1\"\nlabels = {{ env = \"test\" }}\n\
         [labelled.config]\nseries = 3\nlabels = 1\n\n\
         [plain]\nplugin = {synthetic}\ninterval = \"2s\"\ntimeout = \"1s\"\n\
         [plain.config]\nseries = 2\nlabels = 0\n"
    )
}

#[test]
fn target_labels_and_targets_api() {
    let sonde = Sonde::start(&plugins_toml());
    let labelled = sonde.wait_health("synth", "up", Duration::from_secs(30));
    let plain = sonde.wait_health("plain", "up", Duration::from_secs(30));

    assert_eq!(labelled["labels"]["instance"], "box-1", "{labelled}");
    assert_eq!(labelled["labels"]["env"], "test", "{labelled}");
    assert_eq!(labelled["scrapeInterval"], "1s", "{labelled}");
    assert_eq!(labelled["scrapeTimeout"], "500ms", "{labelled}");
    assert_eq!(plain["scrapeInterval"], "2s", "{plain}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        plain["labels"]["instance"],
        hostname.trim(),
        "instance defaults to the hostname: {plain}"
    );
    for t in [&labelled, &plain] {
        assert_target_shape(t);
    }
    let all = sonde.targets();
    assert!(all["data"]["droppedTargets"].is_array(), "{all}");

    let page = sonde.federate(&["{job=\"synth\"}"]);
    let series: Vec<_> = page
        .find("synthetic_value", &[("env", "test"), ("instance", "box-1")])
        .collect();
    assert_eq!(series.len(), 3, "3 synthetic series with the target labels: {series:?}");
    assert!(series.iter().all(|s| s.label("label0").is_some()), "{series:?}");
    assert_eq!(page.value("up", &[("job", "synth"), ("env", "test")]), Some(1.0));
}

/// The fields Prometheus's targets API has, with the types it gives them.
#[track_caller]
fn assert_target_shape(t: &Value) {
    for key in [
        "scrapePool",
        "scrapeUrl",
        "lastError",
        "lastScrape",
        "health",
        "scrapeInterval",
        "scrapeTimeout",
    ] {
        assert!(t[key].is_string(), "{key} should be a string: {t}");
    }
    assert!(
        t["lastScrapeDuration"].as_f64().is_some_and(|d| d >= 0.0),
        "lastScrapeDuration: {t}"
    );
    assert!(
        t["labels"]["job"].is_string() && t["labels"]["instance"].is_string(),
        "{t}"
    );
    let last = t["lastScrape"].as_str().unwrap();
    assert!(is_rfc3339(last), "lastScrape is not RFC 3339: {last:?}");
}

/// `2026-01-02T03:04:05[.123…](Z|±hh:mm)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let head = b.len() > 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":")
}
