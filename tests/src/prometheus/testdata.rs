//! The data set of the PromQL differential test: one deterministic OpenMetrics file
//! (with timestamps) that both `promtool tsdb create-blocks-from openmetrics` and
//! `sonde import openmetrics` load, built to exercise every corner of PromQL.
//!
//! Three hours of 15 s samples from [`START`] (2024-02-29 22:30 UTC, a leap day, so
//! the range crosses a day, a month and a `days_in_month` change at midnight) to
//! [`END`]. The families (tests/promql/README.md describes them for query authors):
//!
//! | family | labels | what it is for |
//! |---|---|---|
//! | `http_requests_total` counter | job api/web, instance a:80 b:80 c:80, method GET/POST, code 200/404/500 | rates, grouping, resets (api/b:80 once, web/c:80 twice), jittered scrape times (web) |
//! | `node_cpu_seconds_total` counter | job node, instance n1..n4:9100, cpu 0/1, mode idle/user/system/iowait | decimal increments, `without` grouping |
//! | `temperature_celsius` gauge | job sensors, instance s1..s3, room kitchen/hall | decimal random walk; never two equal values at once (topk) |
//! | `queue_length` gauge | job api/web, instance a/b/c:80 | integer random walk with negatives and repeats (changes, resets, deriv) |
//! | `request_duration_seconds` histogram | job api/web, instance a/b/c:80, le 0.005..10,+Inf | histogram_quantile, with a reset on api/b:80 |
//! | `odd_hist_bucket` (untyped) | case no_inf/non_monotonic/dup_le/single/nan_count | histogram_quantile edge cases |
//! | `gappy_gauge`, `gappy_counter_total` | pattern gap10m/gap4m/late_start/early_end/sparse/middle_only/single_sample | lookback, extrapolation at series edges |
//! | `special_values` gauge | kind nan_sometimes/inf_sometimes/neginf_sometimes/all_nan/zeros/negzero/huge/tiny/negative | NaN and ±Inf arithmetic, -0, overflow |
//! | `dup_a_total`, `dup_b_total` counters; `dup_gauge_a`, `dup_gauge_b` | job dup, instance x/y | duplicate label sets once `__name__` is dropped |
//! | `mm_left` (group, k), `mm_right` (group, x), `mm_one` (group) gauges | group g1/g2 | many-to-many and duplicate-match-group errors |
//! | `app_build_info` gauge (1) | job, instance, version, revision (b:80 upgrades mid-range) | `group_left` joins |
//! | `node_uname_info` gauge (1) | job node, instance, nodename, release | `group_left` joins on node metrics |
//! | `up` gauge | job, instance (b:80 down for 20 min) | the classic `up == 0` |
//! | `weird_labels` gauge | values with quotes, backslash, newline, spaces, UTF-8 | JSON encoding of labels |
//! | `build_version` gauge | instance | `count_values` |
//! | `bytes_total` counter | instance | large counters (~1e12) |

use std::fmt::Write;

/// First sample: 2024-02-29T22:30:00Z, in seconds.
pub const START: i64 = 1_709_245_800;
/// Sample interval, seconds.
pub const STEP: i64 = 15;
/// Number of sample slots per series (3 h inclusive).
pub const SLOTS: i64 = 721;
/// Last slot: 2024-03-01T01:30:00Z, in seconds.
pub const END: i64 = START + STEP * (SLOTS - 1);

/// splitmix64: tiny, deterministic across platforms and Rust versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Accumulates the file.
struct Out {
    text: String,
    samples: usize,
    series: usize,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} Test data for the PromQL differential test.");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One series: `points` are (milliseconds since the epoch, value).
    fn series(&mut self, name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) {
        let mut series = String::from(name);
        if !labels.is_empty() {
            series.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    series.push(',');
                }
                let _ = write!(series, "{k}=\"{}\"", escape(v));
            }
            series.push('}');
        }
        for &(t, v) in points {
            let _ = writeln!(self.text, "{series} {} {}", value(v), timestamp(t));
        }
        self.samples += points.len();
        self.series += 1;
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v == 0.0 && v.is_sign_negative() {
        "-0".into()
    } else if v != 0.0 && (v.abs() >= 1e15 || v.abs() < 1e-6) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Seconds with millisecond precision, written so that promtool's
/// `int64(seconds * 1000)` gives back exactly `ms`.
fn timestamp(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// Slot `i` in milliseconds.
fn slot(i: i64) -> i64 {
    (START + i * STEP) * 1000
}

/// What [`generate`] made.
pub struct DataSet {
    /// The OpenMetrics text, ending in `# EOF`.
    pub openmetrics: String,
    pub samples: usize,
    pub series: usize,
}

/// The whole data set; the same bytes every time.
pub fn generate() -> DataSet {
    let mut out = Out {
        text: String::new(),
        samples: 0,
        series: 0,
    };
    let mut rng = Rng(0x005e_ed0f_50de);
    http_requests(&mut out, &mut rng);
    node_cpu(&mut out, &mut rng);
    gauges(&mut out, &mut rng);
    histogram(&mut out, &mut rng);
    odd_histograms(&mut out);
    gappy(&mut out, &mut rng);
    special_values(&mut out, &mut rng);
    duplicates(&mut out, &mut rng);
    many_to_many(&mut out);
    info_and_up(&mut out);
    misc(&mut out, &mut rng);
    out.text.push_str("# EOF\n");
    DataSet {
        openmetrics: out.text,
        samples: out.samples,
        series: out.series,
    }
}

const APP_JOBS: [&str; 2] = ["api", "web"];
const APP_INSTANCES: [&str; 3] = ["a:80", "b:80", "c:80"];

/// Scrape times of an app target: `api` exactly on the grid, `web` 7.5 s later with a
/// few milliseconds of jitter per scrape (real scrapes are never aligned).
fn app_time(job: &str, i: i64, rng: &mut Rng) -> i64 {
    if job == "api" {
        slot(i)
    } else {
        slot(i) + 7_500 + rng.below(40) as i64 - 20
    }
}

/// Slots at which an app target's counters restart from zero.
fn app_resets(job: &str, instance: &str) -> &'static [i64] {
    match (job, instance) {
        ("api", "b:80") => &[300],
        ("web", "c:80") => &[150, 500],
        _ => &[],
    }
}

fn http_requests(out: &mut Out, rng: &mut Rng) {
    out.family("http_requests", "counter");
    for job in APP_JOBS {
        for instance in APP_INSTANCES {
            for method in ["GET", "POST"] {
                for (code, weight) in [("200", 20u64), ("404", 3), ("500", 1)] {
                    let weight = if method == "POST" { weight / 2 + 1 } else { weight };
                    let mut v = 0.0;
                    let mut points = Vec::new();
                    for i in 0..SLOTS {
                        if app_resets(job, instance).contains(&i) {
                            v = rng.below(weight) as f64;
                        } else {
                            v += rng.below(weight * 2 + 1) as f64;
                        }
                        points.push((app_time(job, i, rng), v));
                    }
                    let labels = [("job", job), ("instance", instance), ("method", method), ("code", code)];
                    out.series("http_requests_total", &labels, &points);
                }
            }
        }
    }
}

fn node_cpu(out: &mut Out, rng: &mut Rng) {
    out.family("node_cpu_seconds", "counter");
    for n in 1..=4 {
        let instance = format!("n{n}:9100");
        for cpu in ["0", "1"] {
            let mut share = [0.0; 4];
            for (m, mode) in ["idle", "user", "system", "iowait"].into_iter().enumerate() {
                let mut v = 1000.0 * n as f64 + rng.f() * 100.0;
                let mut points = Vec::new();
                for i in 0..SLOTS {
                    share[m] = match m {
                        0 => 15.0 - share[1] - share[2] - share[3],
                        _ => (rng.f() * 3.0 / m as f64 * 1000.0).round() / 1000.0,
                    };
                    v += share[m].max(0.0);
                    points.push((slot(i) + 250 * n, (v * 1000.0).round() / 1000.0));
                }
                let labels = [("job", "node"), ("instance", &instance), ("cpu", cpu), ("mode", mode)];
                out.series("node_cpu_seconds_total", &labels, &points);
            }
        }
    }
}

fn gauges(out: &mut Out, rng: &mut Rng) {
    out.family("temperature_celsius", "gauge");
    for (s, instance) in ["s1", "s2", "s3"].into_iter().enumerate() {
        for (r, room) in ["kitchen", "hall"].into_iter().enumerate() {
            // The last digit differs per series: no two series ever tie, so topk and
            // bottomk have one right answer.
            let unique = (1 + 2 * s + r) as f64 / 1000.0;
            let mut v = 18.0 + rng.f() * 6.0;
            let points: Vec<_> = (0..SLOTS)
                .map(|i| {
                    v += (rng.f() - 0.5) * 0.4;
                    (
                        slot(i),
                        ((v * 100.0).round() / 100.0 * 1000.0 + unique * 1000.0).round() / 1000.0,
                    )
                })
                .collect();
            out.series(
                "temperature_celsius",
                &[("job", "sensors"), ("instance", instance), ("room", room)],
                &points,
            );
        }
    }
    out.family("queue_length", "gauge");
    for job in APP_JOBS {
        for instance in APP_INSTANCES {
            let mut v: i64 = rng.below(10) as i64;
            let points: Vec<_> = (0..SLOTS)
                .map(|i| {
                    // Mostly unchanged, so `changes` and `resets` count something real.
                    match rng.below(4) {
                        0 => v += 1 + rng.below(3) as i64,
                        1 => v -= 1 + rng.below(3) as i64,
                        _ => {}
                    }
                    (app_time(job, i, rng), v as f64)
                })
                .collect();
            out.series("queue_length", &[("job", job), ("instance", instance)], &points);
        }
    }
}

const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

fn histogram(out: &mut Out, rng: &mut Rng) {
    out.family("request_duration_seconds", "histogram");
    let bounds: Vec<f64> = BUCKETS
        .iter()
        .map(|b| b.parse::<f64>().unwrap_or(f64::INFINITY))
        .collect();
    for job in APP_JOBS {
        for instance in APP_INSTANCES {
            // Cumulative observations per bucket, the sum and the count, per slot.
            let mut counts = [0u64; 12];
            let mut sum = 0.0;
            let mut rows: Vec<(i64, [u64; 12], f64)> = Vec::new();
            let scale = if instance == "c:80" { 2.0 } else { 0.2 };
            for i in 0..SLOTS {
                if app_resets(job, instance).contains(&i) {
                    counts = [0; 12];
                    sum = 0.0;
                }
                for _ in 0..rng.below(12) {
                    let obs = -rng.f().max(1e-9).ln() * scale;
                    sum += obs;
                    for (b, c) in bounds.iter().zip(counts.iter_mut()) {
                        if obs <= *b {
                            *c += 1;
                        }
                    }
                }
                rows.push((app_time(job, i, rng), counts, (sum * 1e6).round() / 1e6));
            }
            for (b, le) in BUCKETS.iter().enumerate() {
                let points: Vec<_> = rows.iter().map(|(t, c, _)| (*t, c[b] as f64)).collect();
                out.series(
                    "request_duration_seconds_bucket",
                    &[("job", job), ("instance", instance), ("le", le)],
                    &points,
                );
            }
            let points: Vec<_> = rows.iter().map(|(t, _, s)| (*t, *s)).collect();
            out.series(
                "request_duration_seconds_sum",
                &[("job", job), ("instance", instance)],
                &points,
            );
            let points: Vec<_> = rows.iter().map(|(t, c, _)| (*t, c[11] as f64)).collect();
            out.series(
                "request_duration_seconds_count",
                &[("job", job), ("instance", instance)],
                &points,
            );
        }
    }
}

/// Untyped bucket series that break histogram_quantile's assumptions.
fn odd_histograms(out: &mut Out) {
    let cases: [(&str, &[(&str, f64)]); 6] = [
        ("no_inf", &[("0.1", 1.0), ("1", 5.0), ("10", 9.0)]),
        (
            "non_monotonic",
            &[("0.1", 5.0), ("1", 3.0), ("10", 8.0), ("+Inf", 10.0)],
        ),
        ("dup_le", &[("0.5", 2.0), ("1", 4.0), ("1.0", 4.0), ("+Inf", 6.0)]),
        ("single", &[("+Inf", 7.0)]),
        ("nan_count", &[("0.1", f64::NAN), ("1", 2.0), ("+Inf", 4.0)]),
        ("zero", &[("0.1", 0.0), ("1", 0.0), ("+Inf", 0.0)]),
    ];
    for (case, buckets) in cases {
        for (le, per_slot) in buckets {
            let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), per_slot * (i / 4) as f64)).collect();
            out.series("odd_hist_bucket", &[("case", case), ("le", le)], &points);
        }
    }
    // A bucket series with no `le` at all.
    let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), i as f64)).collect();
    out.series("odd_hist_bucket", &[("case", "no_le")], &points);
}

/// Which slots a gappy series has.
fn gap_pattern(pattern: &str, i: i64) -> bool {
    match pattern {
        "gap10m" => !(200..240).contains(&i),
        "gap4m" => !(200..216).contains(&i),
        "late_start" => i >= 300,
        "early_end" => i <= 400,
        "sparse" => i % 24 == 0,
        "middle_only" => (350..=370).contains(&i),
        "single_sample" => i == 360,
        _ => unreachable!("unknown pattern {pattern}"),
    }
}

const GAP_PATTERNS: [&str; 7] = [
    "gap10m",
    "gap4m",
    "late_start",
    "early_end",
    "sparse",
    "middle_only",
    "single_sample",
];

fn gappy(out: &mut Out, rng: &mut Rng) {
    out.family("gappy_gauge", "gauge");
    for pattern in GAP_PATTERNS {
        let mut v = 50.0;
        let points: Vec<_> = (0..SLOTS)
            .filter(|i| gap_pattern(pattern, *i))
            .map(|i| {
                v += (rng.below(11) as f64 - 5.0) / 2.0;
                (slot(i), v)
            })
            .collect();
        out.series("gappy_gauge", &[("pattern", pattern)], &points);
    }
    out.family("gappy_counter", "counter");
    for pattern in GAP_PATTERNS {
        let mut v = 100.0;
        let points: Vec<_> = (0..SLOTS)
            .filter(|i| gap_pattern(pattern, *i))
            .map(|i| {
                v += rng.below(10) as f64;
                (slot(i), v)
            })
            .collect();
        out.series("gappy_counter_total", &[("pattern", pattern)], &points);
    }
}

fn special_values(out: &mut Out, rng: &mut Rng) {
    out.family("special_values", "gauge");
    let kinds = [
        "nan_sometimes",
        "inf_sometimes",
        "neginf_sometimes",
        "all_nan",
        "zeros",
        "negzero",
        "huge",
        "tiny",
        "negative",
    ];
    for kind in kinds {
        let mut walk = 10.0;
        let points: Vec<_> = (0..SLOTS)
            .map(|i| {
                walk += rng.below(5) as f64 - 2.0;
                let v = match kind {
                    "nan_sometimes" if i % 10 == 3 => f64::NAN,
                    "inf_sometimes" if i % 17 == 5 => f64::INFINITY,
                    "neginf_sometimes" if i % 13 == 7 => f64::NEG_INFINITY,
                    "nan_sometimes" | "inf_sometimes" | "neginf_sometimes" => walk,
                    "all_nan" => f64::NAN,
                    "zeros" => 0.0,
                    "negzero" => -0.0,
                    "huge" => 1e300 * (1.0 + (i % 7) as f64),
                    "tiny" => 1e-300 * (1.0 + (i % 5) as f64),
                    "negative" => -walk.abs() - 0.5,
                    _ => unreachable!(),
                };
                (slot(i), v)
            })
            .collect();
        out.series("special_values", &[("kind", kind)], &points);
    }
}

/// Same labels under two names: dropping `__name__` makes them collide.
fn duplicates(out: &mut Out, rng: &mut Rng) {
    for name in ["dup_a", "dup_b"] {
        out.family(name, "counter");
        for instance in ["x", "y"] {
            let mut v = 0.0;
            let points: Vec<_> = (0..SLOTS)
                .map(|i| {
                    v += rng.below(5) as f64;
                    (slot(i), v)
                })
                .collect();
            out.series(
                &format!("{name}_total"),
                &[("job", "dup"), ("instance", instance)],
                &points,
            );
        }
    }
    for name in ["dup_gauge_a", "dup_gauge_b"] {
        out.family(name, "gauge");
        for instance in ["x", "y"] {
            let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), (i % 9) as f64)).collect();
            out.series(name, &[("job", "dup"), ("instance", instance)], &points);
        }
    }
}

fn many_to_many(out: &mut Out) {
    const GROUPS: [&str; 2] = ["g1", "g2"];
    out.family("mm_left", "gauge");
    for (g, group) in GROUPS.into_iter().enumerate() {
        for (k, key) in ["1", "2"].into_iter().enumerate() {
            let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), (10 * g + k) as f64 + 1.0)).collect();
            out.series("mm_left", &[("group", group), ("k", key)], &points);
        }
    }
    out.family("mm_right", "gauge");
    for (g, group) in GROUPS.into_iter().enumerate() {
        for (x, key) in ["a", "b"].into_iter().enumerate() {
            let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), (100 * (g + 1) + x) as f64)).collect();
            out.series("mm_right", &[("group", group), ("x", key)], &points);
        }
    }
    out.family("mm_one", "gauge");
    for (g, group) in GROUPS.into_iter().enumerate() {
        let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), (g + 2) as f64)).collect();
        out.series("mm_one", &[("group", group)], &points);
    }
}

fn info_and_up(out: &mut Out) {
    out.family("app_build_info", "gauge");
    for job in APP_JOBS {
        for instance in APP_INSTANCES {
            // b:80 is upgraded: one series ends at slot 380, another begins 6 min later
            // (longer than the lookback, so a join never sees both at once).
            let versions: &[(&str, &str, std::ops::Range<i64>)] = if instance == "b:80" {
                &[("1.0.0", "abc123", 0..380), ("1.1.0", "def456", 404..SLOTS)]
            } else {
                &[("1.0.0", "abc123", 0..SLOTS)]
            };
            for (version, revision, slots) in versions {
                let points: Vec<_> = slots.clone().map(|i| (slot(i), 1.0)).collect();
                let labels = [
                    ("job", job),
                    ("instance", instance),
                    ("version", *version),
                    ("revision", *revision),
                ];
                out.series("app_build_info", &labels, &points);
            }
        }
    }
    out.family("node_uname_info", "gauge");
    for n in 1..=4 {
        let instance = format!("n{n}:9100");
        let nodename = format!("node-{n}");
        let release = if n % 2 == 0 {
            "6.1.0-18-amd64"
        } else {
            "5.10.0-28-amd64"
        };
        let points: Vec<_> = (0..SLOTS).map(|i| (slot(i) + 250 * n, 1.0)).collect();
        let labels = [
            ("job", "node"),
            ("instance", instance.as_str()),
            ("nodename", nodename.as_str()),
            ("release", release),
        ];
        out.series("node_uname_info", &labels, &points);
    }
    out.family("up", "gauge");
    let mut targets: Vec<(String, String)> = Vec::new();
    for job in APP_JOBS {
        for instance in APP_INSTANCES {
            targets.push((job.into(), instance.into()));
        }
    }
    for n in 1..=4 {
        targets.push(("node".into(), format!("n{n}:9100")));
    }
    for s in ["s1", "s2", "s3"] {
        targets.push(("sensors".into(), s.into()));
    }
    for (job, instance) in &targets {
        let points: Vec<_> = (0..SLOTS)
            .map(|i| {
                let down = instance == "b:80" && (420..500).contains(&i);
                (slot(i), if down { 0.0 } else { 1.0 })
            })
            .collect();
        out.series("up", &[("job", job), ("instance", instance)], &points);
    }
}

fn misc(out: &mut Out, rng: &mut Rng) {
    out.family("weird_labels", "gauge");
    let weird: [&[(&str, &str)]; 3] = [
        &[("path", "/a b"), ("quote", "q\"x")],
        &[("path", "c:\\dir\\file"), ("quote", "new\nline")],
        &[("path", "ünïcödé ✓"), ("quote", "{}=,")],
    ];
    for (n, labels) in weird.into_iter().enumerate() {
        let points: Vec<_> = (0..SLOTS).map(|i| (slot(i), (n + 1) as f64)).collect();
        out.series("weird_labels", labels, &points);
    }
    out.family("build_version", "gauge");
    for (instance, v) in [("a", 1.5), ("b", 2.0), ("c", 2.0), ("d", 1e-7), ("e", 3.0)] {
        let points: Vec<_> = (0..SLOTS)
            .map(|i| (slot(i), if instance == "e" && i > 360 { 2.0 } else { v }))
            .collect();
        out.series("build_version", &[("instance", instance)], &points);
    }
    out.family("bytes", "counter");
    for instance in ["a", "b"] {
        let mut v = 1.234_567_890_123e12;
        let points: Vec<_> = (0..SLOTS)
            .map(|i| {
                v += (rng.below(1 << 20) as f64) * 1024.0 + 0.5;
                (slot(i), v)
            })
            .collect();
        out.series("bytes_total", &[("instance", instance)], &points);
    }
}

/// The bits of Prometheus's staleness marker (`value.StaleNaN`), distinct from the NaN
/// a text `NaN` parses to.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// One series of the staleness data set: its labels (with `__name__`) and samples
/// (milliseconds, value; staleness markers as [`STALE_NAN`]).
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub points: Vec<(i64, f64)>,
}

/// Which slots of a staleness case hold a value, a marker or nothing.
fn stale_case(case: &str, i: i64) -> Option<bool> {
    // Some(true): a value; Some(false): a staleness marker; None: no sample.
    let value = |on: bool| Some(on);
    match case {
        "ends_stale" => (i <= 300).then_some(i < 300),
        "restarts" => match i {
            0..200 | 260..500 | 520.. => value(true),
            200 | 500 => value(false),
            _ => None,
        },
        "flapping" => value(i % 7 != 3),
        "no_marker" => (i < 300).then_some(true),
        "stale_first" => value(i != 0),
        "stale_then_back" => value(i != 400),
        "marker_after_gap" => match i {
            0..200 => value(true),
            230 => value(false),
            300.. => value(true),
            _ => None,
        },
        "double_marker" => match i {
            0..200 | 203.. => value(true),
            _ => value(false),
        },
        _ => unreachable!("unknown staleness case {case}"),
    }
}

/// Staleness cases, one gauge and one counter series each.
pub const STALE_CASES: [&str; 8] = [
    "ends_stale",
    "restarts",
    "flapping",
    "no_marker",
    "stale_first",
    "stale_then_back",
    "marker_after_gap",
    "double_marker",
];

/// The staleness data set (same time range as [`generate`]): series that end with a
/// staleness marker, come back after one, flap, and (for contrast) one that just stops.
/// It cannot be written as OpenMetrics, so it is loaded by remote write and directly
/// into sonde's store.
pub fn staleness() -> Vec<Series> {
    let mut rng = Rng(0x57a1e);
    let mut out = Vec::new();
    for case in STALE_CASES {
        for (name, counter) in [("stale_gauge", false), ("stale_requests_total", true)] {
            let mut v: f64 = 10.0;
            let mut points = Vec::new();
            for i in 0..SLOTS {
                let Some(on) = stale_case(case, i) else { continue };
                let t = slot(i) + if case == "flapping" { 3_300 } else { 0 };
                if on {
                    v += if counter {
                        rng.below(10) as f64
                    } else {
                        rng.below(9) as f64 - 4.0
                    };
                    points.push((t, v));
                } else {
                    points.push((t, f64::from_bits(STALE_NAN)));
                }
            }
            out.push(Series {
                labels: vec![
                    ("__name__".into(), name.into()),
                    ("case".into(), case.into()),
                    ("job".into(), "stale".into()),
                ],
                points,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_eq!(a.openmetrics, b.openmetrics);
        assert!(a.openmetrics.ends_with("# EOF\n"));
        assert!(a.series > 200, "{} series", a.series);
        assert_eq!(value(-0.0), "-0");
        assert_eq!(value(1e300), "1e300");
        assert_eq!(timestamp(1_709_245_807_512), "1709245807.512");
        let stale = staleness();
        assert!(
            stale
                .iter()
                .any(|s| s.points.iter().any(|(_, v)| v.to_bits() == STALE_NAN))
        );
    }
}
