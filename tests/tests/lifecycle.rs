//! The daemon's life cycle and the edges of its API: the on-disk compile cache across
//! restarts (keyed by content, robust to corruption), graceful shutdown on SIGTERM and
//! SIGINT, missing grants named in `lastError`, staleness seen through `/federate`,
//! `/federate`'s errors and unions, and intervals and timeouts from the configuration
//! (formatted as Prometheus formats durations).

use serde_json::Value;
use sonde_tests::http::Response;
use sonde_tests::{Exposition, Sonde, SondeOptions, plugin, test_plugin, toml_str, wait_until};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a target may take to come up (or go down) after start: generous, the
/// machine runs other tests in parallel.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long sonde may take to exit after SIGTERM or SIGINT.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// A synthetic-plugin instance `[name]` with extra keys (`interval = "1s"`, ...) and
/// an optional `[name.config]` body.
fn synthetic(name: &str, keys: &str, config: &str) -> String {
    let wasm = toml_str(test_plugin("synthetic").display().to_string());
    let mut t = format!("[{name}]\nplugin = {wasm}\n{keys}\n");
    if !config.is_empty() {
        t.push_str(&format!("[{name}.config]\n{config}\n"));
    }
    t.push('\n');
    t
}

// ---------------------------------------------------------------------------------
// 1. Compile cache
// ---------------------------------------------------------------------------------

/// `sonde_plugin_loaded_from_cache{plugin=<instance>}`.
#[track_caller]
fn loaded_from_cache(sonde: &Sonde, instance: &str) -> f64 {
    sonde
        .metrics()
        .value("sonde_plugin_loaded_from_cache", &[("plugin", instance)])
        .unwrap_or_else(|| panic!("/metrics has no sonde_plugin_loaded_from_cache{{plugin=\"{instance}\"}}"))
}

/// Every entry of the cache directory; asserts they are all non-empty `.cwasm` files
/// (no temp file left behind by an interrupted write).
#[track_caller]
fn cache_files(dir: &Path) -> BTreeSet<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list the compile cache {}: {e}", dir.display()));
    let files: BTreeSet<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
    for f in &files {
        assert!(
            f.extension().is_some_and(|x| x == "cwasm"),
            "unexpected file in the compile cache: {} (all: {files:?})",
            f.display()
        );
        let len = std::fs::metadata(f).expect("stat cache file").len();
        assert!(len > 0, "empty compiled plugin in the cache: {}", f.display());
    }
    files
}

/// Starts sonde with `opts`, checks where the node instance's plugin came from and
/// that the target comes up, and stops it again; the cache directory's files.
#[track_caller]
fn start_and_check_cache(opts: &SondeOptions, cache: &Path, want_from_cache: bool, step: &str) -> BTreeSet<PathBuf> {
    let sonde = Sonde::start_with(opts.clone());
    let got = loaded_from_cache(&sonde, "node");
    assert_eq!(
        got,
        if want_from_cache { 1.0 } else { 0.0 },
        "{step}: sonde_plugin_loaded_from_cache{{plugin=\"node\"}} should be {}\n--- sonde stderr ---\n{}",
        want_from_cache as u8,
        sonde.stderr_tail(40)
    );
    sonde.wait_health("node", "up", HEALTH_TIMEOUT);
    let files = cache_files(cache);
    // SIGTERM; it has exited when drop returns, before the next start.
    drop(sonde);
    files
}

#[test]
fn compile_cache_survives_restarts_is_keyed_by_content_and_recovers_from_corruption() {
    let work = tempfile::Builder::new()
        .prefix("sonde-e2e-cache-")
        .tempdir()
        .expect("temp dir");
    let wasm = work.path().join("node.wasm");
    std::fs::copy(plugin("node"), &wasm).expect("copy node.wasm");
    let data = work.path().join("data");
    let cache = data.join("plugin-cache");
    // No [node.config]: the node plugin runs its default collectors, and the synthetic
    // plugin that later replaces the file accepts an empty config too.
    let plugins_toml = format!(
        "[node]\nplugin = {}\ninterval = \"2s\"\ntimeout = \"2s\"\n\
         [node.grants]\nread = [\"/proc\", \"/sys\"]\nstatfs = true\n",
        toml_str(wasm.display().to_string())
    );
    let opts = SondeOptions {
        plugins_toml: Some(plugins_toml),
        data_dir: Some(data.clone()),
        ..Default::default()
    };

    // A fresh data dir: compiled at start, and the result stored.
    let first = start_and_check_cache(&opts, &cache, false, "first start, empty data dir");
    assert_eq!(first.len(), 1, "one plugin, one compiled file in the cache: {first:?}");
    let cwasm = first.iter().next().expect("one file").clone();

    // Same data dir, same plugin: loaded from the cache, nothing new stored.
    let second = start_and_check_cache(&opts, &cache, true, "second start, same data dir");
    assert_eq!(second, first, "the cache should be reused as is");

    // A corrupt cache file must not stop sonde: it is dropped, the plugin recompiled
    // and the cache repaired.
    let garbage = b"this is not a compiled wasmtime component\n".repeat(64);
    std::fs::write(&cwasm, &garbage).expect("corrupt the cached file");
    let third = start_and_check_cache(&opts, &cache, false, "start with a corrupt cache file");
    assert_eq!(third, first, "the corrupt file should be replaced under the same name");
    let repaired = std::fs::read(&cwasm).expect("read the cache file");
    assert_ne!(repaired, garbage, "the corrupt cache file was not rewritten");
    let again = start_and_check_cache(&opts, &cache, true, "start after the cache was repaired");
    assert_eq!(again, first);

    // A truncated file (a valid header, the code cut short) is just as unusable.
    let truncated = &repaired[..repaired.len() / 3];
    std::fs::write(&cwasm, truncated).expect("truncate the cached file");
    let fifth = start_and_check_cache(&opts, &cache, false, "start with a truncated cache file");
    assert_eq!(fifth, first);
    assert_ne!(
        std::fs::read(&cwasm).expect("read the cache file"),
        truncated,
        "the truncated cache file was not rewritten"
    );

    // Different content at the same path: the content hash changed, so the old
    // compiled code must not be used.
    std::fs::copy(test_plugin("synthetic"), &wasm).expect("replace the plugin file");
    // History survives restarts, so node series from earlier runs may still be within
    // the lookback: what matters is that none was collected by this run.
    let restarted_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let sonde = Sonde::start_with(opts.clone());
    assert_eq!(
        loaded_from_cache(&sonde, "node"),
        0.0,
        "the plugin file changed: it must be compiled again, not loaded from the cache"
    );
    sonde.wait_health("node", "up", HEALTH_TIMEOUT);
    let page = sonde.federate(&["{job=\"node\"}"]);
    assert!(
        page.find("synthetic_value", &[]).next().is_some(),
        "the instance should now run the synthetic plugin's code: {:?}",
        page.samples.iter().map(|s| &s.name).collect::<BTreeSet<_>>()
    );
    assert!(
        !page
            .samples
            .iter()
            .any(|s| s.name.starts_with("node_") && s.timestamp.is_some_and(|t| t >= restarted_ms)),
        "node metrics collected after the plugin file was replaced: stale compiled code was run"
    );
    let last = cache_files(&cache);
    let added: Vec<_> = last.difference(&first).collect();
    assert_eq!(
        added.len(),
        1,
        "the new content should be cached under a new name: before {first:?}, after {last:?}"
    );
}

// ---------------------------------------------------------------------------------
// 2. Graceful shutdown
// ---------------------------------------------------------------------------------

/// Sends `signal` and asserts that sonde exits with status 0 within [`SHUTDOWN_TIMEOUT`].
#[track_caller]
fn assert_exits_cleanly(sonde: &mut Sonde, signal: libc::c_int, name: &str) {
    let status = sonde
        .signal_and_wait(signal, SHUTDOWN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: {e}\n--- sonde stderr ---\n{}", sonde.stderr_tail(40)));
    assert_eq!(
        status.code(),
        Some(0),
        "sonde should exit with status 0 on {name}, exited with {status}\n--- sonde stderr ---\n{}",
        sonde.stderr_tail(40)
    );
}

#[track_caller]
fn exits_cleanly_on(signal: libc::c_int, name: &str) {
    let toml = synthetic(
        "synthetic",
        "interval = \"1s\"\ntimeout = \"1s\"",
        "series = 10\nlabels = 1",
    );
    let mut sonde = Sonde::start(&toml);
    sonde.wait_health("synthetic", "up", HEALTH_TIMEOUT);
    assert_exits_cleanly(&mut sonde, signal, name);
}

#[test]
fn sigterm_stops_sonde_gracefully() {
    exits_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_stops_sonde_gracefully() {
    exits_cleanly_on(libc::SIGINT, "SIGINT");
}

/// A peer that accepts HTTP connections and never answers, so a plugin's request
/// hangs until the collection's timeout. The connections are held open.
struct SilentPeer {
    addr: String,
    accepted: Arc<AtomicUsize>,
}

impl SilentPeer {
    fn start() -> SilentPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        SilentPeer { addr, accepted }
    }
}

/// Shutdown must not wait for every collection in flight in turn: with several
/// targets stuck in long collections (timeout 1m, a peer that never answers),
/// SIGTERM still stops sonde within [`SHUTDOWN_TIMEOUT`].
#[test]
fn sigterm_stops_sonde_while_collections_hang() {
    const INSTANCES: usize = 6;
    let misbehave = toml_str(test_plugin("misbehave").display().to_string());
    let peers: Vec<SilentPeer> = (0..INSTANCES).map(|_| SilentPeer::start()).collect();
    let mut toml = String::new();
    for (i, peer) in peers.iter().enumerate() {
        toml.push_str(&format!(
            "[hang{i}]\nplugin = {misbehave}\ninterval = \"1m\"\ntimeout = \"1m\"\n\
             [hang{i}.grants]\nhttp = [\"{addr}\"]\n\
             [hang{i}.config]\nmode = \"http\"\ntarget = \"{addr}\"\n\n",
            addr = peer.addr
        ));
    }
    let mut sonde = Sonde::start(&toml);
    // Each target's first collection starts within one interval; once every peer has
    // a connection, every target is in the middle of a collection.
    let all_hanging = wait_until(Duration::from_secs(150), || {
        peers.iter().all(|p| p.accepted.load(Ordering::SeqCst) > 0)
    });
    let connected: Vec<usize> = peers.iter().map(|p| p.accepted.load(Ordering::SeqCst)).collect();
    assert!(
        all_hanging,
        "not every instance started its collection (connections per peer: {connected:?})\n{}",
        sonde.stderr_tail(40)
    );
    assert_exits_cleanly(&mut sonde, libc::SIGTERM, "SIGTERM with collections in flight");
}

// ---------------------------------------------------------------------------------
// 3. Missing grants
// ---------------------------------------------------------------------------------

#[test]
fn missing_grants_are_named_in_last_error() {
    let toml = "[nogrants]\nplugin = \"node\"\ninterval = \"1s\"\n\n\
                [nostatfs]\nplugin = \"node\"\ninterval = \"1s\"\n\
                [nostatfs.grants]\nread = [\"/proc\", \"/sys\"]\n\n\
                [granted]\nplugin = \"node\"\ninterval = \"1s\"\n\
                [granted.grants]\nread = [\"/proc\", \"/sys\"]\nstatfs = true\n\
                [granted.config]\ncollectors = [\"loadavg\", \"filesystem\"]\n";
    let sonde = Sonde::start(toml);

    let t = sonde.wait_health("nogrants", "down", HEALTH_TIMEOUT);
    let error = t["lastError"].as_str().unwrap_or_default();
    for want in ["grants.read", "/proc"] {
        assert!(
            error.contains(want),
            "without grants, lastError should name {want:?}: {error:?}"
        );
    }

    let t = sonde.wait_health("nostatfs", "down", HEALTH_TIMEOUT);
    let error = t["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("statfs"),
        "without statfs = true, lastError should name statfs: {error:?}"
    );
    assert!(
        !error.contains("grants.read"),
        "/proc and /sys are granted; lastError should name only the missing statfs grant: {error:?}"
    );

    // The same plugin with the grants it needs works, in the same daemon.
    sonde.wait_health("granted", "up", HEALTH_TIMEOUT);

    // The failing instances keep being retried (each failure counted as a denial); the
    // daemon stays healthy.
    let failures = |m: &Exposition, plugin: &str| {
        m.sum(
            "sonde_plugin_collection_failures_total",
            &[("plugin", plugin), ("reason", "denied")],
        )
    };
    let retried = wait_until(HEALTH_TIMEOUT, || {
        let m = sonde.metrics();
        failures(&m, "nogrants") >= 3.0 && failures(&m, "nostatfs") >= 3.0
    });
    assert!(
        retried,
        "the instances without grants were not retried: {}",
        sonde.get_ok("/metrics")
    );
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(sonde.get(path).status, 200, "{path} while plugins lack grants");
    }
    for job in ["nogrants", "nostatfs"] {
        let t = sonde.target(job).expect("target listed");
        assert_eq!(t["health"], "down", "{t}");
    }
}

// ---------------------------------------------------------------------------------
// 4. Staleness through federation
// ---------------------------------------------------------------------------------

#[test]
fn federation_shows_only_the_latest_round_of_churning_series() {
    const SERIES: usize = 3;
    const ROUNDS_TO_SEE: usize = 5;
    let toml = synthetic(
        "churn",
        "interval = \"1s\"\ntimeout = \"1s\"",
        &format!("series = {SERIES}\nlabels = 0\nchurn = true"),
    );
    let sonde = Sonde::start(&toml);
    sonde.wait_health("churn", "up", HEALTH_TIMEOUT);

    let mut rounds_seen: BTreeSet<u64> = BTreeSet::new();
    let mut last_round = 0;
    // Polls that saw no round, or an older round than before: correct only after a
    // failed collection (all series stale, instance re-created).
    let mut anomalies = Vec::new();
    let enough = wait_until(Duration::from_secs(120), || {
        let page = sonde.federate(&["{job=\"churn\"}"]);
        let series: Vec<_> = page.find("synthetic_value", &[]).collect();
        let rounds: BTreeSet<u64> = series
            .iter()
            .map(|s| {
                s.label("round")
                    .unwrap_or_else(|| panic!("churning series without a round label: {s:?}"))
                    .parse()
                    .expect("numeric round")
            })
            .collect();
        assert!(
            rounds.len() <= 1,
            "/federate shows series of several collections at once (rounds {rounds:?}): the older ones \
             should be stale and skipped\n{series:#?}"
        );
        match rounds.first() {
            None => anomalies.push("no synthetic_value series".to_string()),
            Some(&round) => {
                let ids: BTreeSet<_> = series.iter().filter_map(|s| s.label("i")).collect();
                assert_eq!(
                    (series.len(), ids.len()),
                    (SERIES, SERIES),
                    "round {round} should show {SERIES} series: {series:#?}"
                );
                if round < last_round {
                    anomalies.push(format!("round {round} after round {last_round}"));
                }
                last_round = round;
                rounds_seen.insert(round);
            }
        }
        rounds_seen.len() >= ROUNDS_TO_SEE
    });
    assert!(
        enough,
        "the visible round should change with every collection; saw only {rounds_seen:?}"
    );
    if !anomalies.is_empty() {
        let failures = sonde
            .metrics()
            .sum("sonde_plugin_collection_failures_total", &[("plugin", "churn")]);
        assert!(
            failures > 0.0,
            "no collection failed, yet /federate showed: {anomalies:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// 5. /federate errors and unions
// ---------------------------------------------------------------------------------

#[track_caller]
fn assert_bad_data(r: &Response, what: &str) {
    assert_eq!(r.status, 400, "{what}: expected 400, got {}: {}", r.status, r.body);
    let v: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {}", r.body));
    assert_eq!(v["status"], "error", "{what}: {v}");
    assert_eq!(v["errorType"], "bad_data", "{what}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error message: {v}"
    );
}

/// `name{labels}` of every sample, in page order.
fn series_keys(page: &Exposition) -> Vec<String> {
    page.samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
            format!("{}{{{}}}", s.name, labels.join(","))
        })
        .collect()
}

#[test]
fn federate_rejects_bad_selectors_and_unions_several() {
    let toml = synthetic("a", "interval = \"1s\"", "series = 2\nlabels = 0")
        + &synthetic("b", "interval = \"1s\"", "series = 2\nlabels = 0");
    let sonde = Sonde::start(&toml);
    sonde.wait_health("a", "up", HEALTH_TIMEOUT);
    sonde.wait_health("b", "up", HEALTH_TIMEOUT);

    for bad in ["rate(x[5m])", "sum(up)", "{job=", "up{job=\"a\"", "up{job=~\"(\"}", ""] {
        let r = sonde.get_with_query("/federate", &[("match[]", bad)]);
        assert_bad_data(&r, &format!("match[]={bad:?}"));
    }
    // One bad selector among good ones fails the request.
    let r = sonde.get_with_query("/federate", &[("match[]", "up"), ("match[]", "rate(x[5m])")]);
    assert_bad_data(&r, "match[]=up&match[]=rate(x[5m])");

    let r = sonde.get("/federate");
    assert_eq!(r.status, 200, "/federate without match[]: {}", r.body);
    assert!(
        r.body.is_empty(),
        "/federate without match[] should be empty: {:?}",
        r.body
    );

    // Overlapping selectors: each series once, each family in one group.
    let job_a = sonde.federate(&["{job=\"a\"}"]);
    let ups = sonde.federate(&["up"]);
    let union = sonde.federate(&[
        "{job=\"a\"}",
        "up",
        "up{job=\"a\"}",
        "{__name__=~\"up|synthetic_value\",job=\"a\"}",
    ]);
    let keys = series_keys(&union);
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "a series appears twice in the union: {keys:#?}"
    );
    let want: BTreeSet<String> = series_keys(&job_a).into_iter().chain(series_keys(&ups)).collect();
    let got: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(got, want, "the union of the selectors' results");
    assert!(union.value("up", &[("job", "b")]).is_some(), "up of b is in the union");
    assert_eq!(union.find("synthetic_value", &[("job", "a")]).count(), 2);
    assert_eq!(union.find("synthetic_value", &[("job", "b")]).count(), 0);
    let families: Vec<&str> = union.samples.iter().map(|s| union.family_of(&s.name)).collect();
    let mut groups: Vec<&str> = families.clone();
    groups.dedup();
    let distinct: BTreeSet<&str> = families.iter().copied().collect();
    assert_eq!(
        groups.len(),
        distinct.len(),
        "the samples of each family should be grouped together: {families:?}"
    );
}

// ---------------------------------------------------------------------------------
// 6. Interval and timeout from the configuration
// ---------------------------------------------------------------------------------

#[track_caller]
fn assert_schedule(sonde: &Sonde, job: &str, interval: &str, timeout: &str) {
    let t = sonde
        .target(job)
        .unwrap_or_else(|| panic!("no target {job}: {}", sonde.targets()));
    assert_eq!(
        (t["scrapeInterval"].as_str(), t["scrapeTimeout"].as_str()),
        (Some(interval), Some(timeout)),
        "scrapeInterval / scrapeTimeout of {job}: {t}"
    );
}

#[test]
fn interval_and_timeout_come_from_the_configuration() {
    let sonde_toml = "[defaults]\ninterval = \"3s\"\ntimeout = \"2500ms\"\n";
    let toml = synthetic("explicit", "interval = \"2s\"\ntimeout = \"1500ms\"", "series = 1")
        + &synthetic("inherited", "", "series = 1")
        + &synthetic("capped", "interval = \"1s\"", "series = 1")
        + &synthetic("minutes", "interval = \"90s\"\ntimeout = \"1m\"", "series = 1");
    let sonde = Sonde::start_with(SondeOptions {
        sonde_toml: Some(sonde_toml.into()),
        plugins_toml: Some(toml),
        ..Default::default()
    });
    // Prometheus's model.Duration formatting: 1500ms is "1s500ms", 90s is "1m30s".
    assert_schedule(&sonde, "explicit", "2s", "1s500ms");
    // No interval or timeout of its own: [defaults] of sonde.toml.
    assert_schedule(&sonde, "inherited", "3s", "2s500ms");
    // The default timeout is never longer than the instance's interval.
    assert_schedule(&sonde, "capped", "1s", "1s");
    assert_schedule(&sonde, "minutes", "1m30s", "1m");
    sonde.wait_health("explicit", "up", HEALTH_TIMEOUT);
    sonde.wait_health("inherited", "up", HEALTH_TIMEOUT);
    drop(sonde);

    // Without sonde.toml: the built-in defaults, 15s and 10s.
    let sonde = Sonde::start(&synthetic("builtin", "", "series = 1"));
    assert_schedule(&sonde, "builtin", "15s", "10s");
}

/// Days, weeks and years as Prometheus's model.Duration prints them: weeks and years
/// only when they divide the duration exactly ("10d", not "1w3d").
#[test]
fn long_intervals_are_formatted_like_prometheus() {
    let cases = [
        ("tendays", "10d", "10d"),
        ("twoweeks", "14d", "2w"),
        ("year", "365d", "1y"),
        ("mixed", "1d1h1m1s", "1d1h1m1s"),
    ];
    let toml: String = cases
        .iter()
        .map(|(name, interval, _)| synthetic(name, &format!("interval = \"{interval}\""), "series = 1"))
        .collect();
    let sonde = Sonde::start(&toml);
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(name, interval, want)| {
            let t = sonde.target(name).unwrap_or_else(|| panic!("no target {name}"));
            let got = t["scrapeInterval"].as_str().unwrap_or_default().to_string();
            (got != *want)
                .then(|| format!("interval = {interval:?}: scrapeInterval {got:?}, Prometheus prints {want:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
