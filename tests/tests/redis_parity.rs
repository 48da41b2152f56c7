//! The redis plugin against Debian's `prometheus-redis-exporter` (1.45) scraping the
//! same real `redis-server`: every family both emit has the same name, type and label
//! names, static values agree exactly and counters within the skew of two scrapes.
//! Then the faults: Redis down and back, a server that never answers, a wrong
//! password: `redis_up 0` for that Redis, and sonde's target `up 0` with the reason as
//! `lastError` (a degraded collection: the samples are still stored), no stall past the
//! timeout, another plugin instance keeps its schedule, and `up 1` again on recovery.

use sonde_tests::redis::{RedisServer, redis_exporter};
use sonde_tests::{Exposition, Sonde, exposition, http, toml_str, wait_for};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Share of redis_exporter's families (for this Redis) the plugin must emit.
const MIN_COVERAGE: f64 = 0.95;

/// Families that describe redis_exporter itself (or its `/scrape` endpoint and key
/// scanning, which the plugin has no equivalent of), not Redis.
fn is_exporter_own(family: &str) -> bool {
    family.starts_with("redis_exporter_")
        || !family.starts_with("redis_")
        || family == "redis_target_scrape_request_errors_total"
        || family == "redis_last_key_groups_scrape_duration_milliseconds"
}

fn is_sonde_own(family: &str) -> bool {
    family == "up" || family.starts_with("scrape_") || family.starts_with("redis_exporter_")
}

/// A plugins.toml entry `name` for `targets`, collecting every second.
fn entry(name: &str, targets: &[String], extra_config: &str, extra_grants: &str) -> String {
    let list: Vec<String> = targets.iter().map(toml_str).collect();
    format!(
        "[{name}]\nplugin = \"redis\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         [{name}.grants]\ntcp = [{list}]\n{extra_grants}\n\
         [{name}.config]\ntargets = [{list}]\nconnect_timeout = \"300ms\"\nread_timeout = \"300ms\"\n{extra_config}\n",
        list = list.join(", ")
    )
}

/// Some traffic, so command stats, keyspace hits and TTLs exist.
fn load(redis: &RedisServer) {
    for i in 0..20 {
        redis.cli(&["SET", &format!("key:{i}"), "value"]);
        redis.cli(&["GET", &format!("key:{i}")]);
    }
    redis.cli(&["GET", "missing"]);
    redis.cli(&["INCR", "counter"]);
    redis.cli(&["EXPIRE", "key:1", "1000"]);
    redis.cli(&["-n", "3", "SET", "other", "1"]);
    redis.cli(&["NOSUCHCOMMAND"]);
}

/// The plugin's latest values for `job`, after one more collection.
fn next_collection(sonde: &Sonde, job: &str) -> Exposition {
    let before = sonde.target(job).expect("target")["lastScrape"].clone();
    wait_for(Duration::from_secs(20), "the next collection", || {
        (sonde.target(job).expect("target")["lastScrape"] != before).then_some(())
    });
    sonde.federate(&[&format!("{{job=\"{job}\"}}")])
}

#[test]
fn redis_plugin_matches_redis_exporter() {
    let redis = RedisServer::start(&["--maxmemory", "100mb", "--maxclients", "500"]);
    load(&redis);
    let exporter = redis_exporter(&redis, &[]);
    let sonde = Sonde::start(&entry("redis", &[redis.addr()], "", ""));
    sonde.wait_health("redis", "up", Duration::from_secs(60));

    let page = http::get(&exporter.url("/metrics")).expect("redis_exporter /metrics");
    let theirs = exposition::parse(&page.body).expect("redis_exporter's page parses");
    let ours = next_collection(&sonde, "redis");

    let their_families: BTreeSet<&String> = theirs.types.keys().filter(|f| !is_exporter_own(f)).collect();
    let our_families: BTreeSet<&String> = ours.types.keys().filter(|f| !is_sonde_own(f)).collect();
    let both: Vec<&String> = their_families.intersection(&our_families).copied().collect();
    let mut problems = Vec::new();
    let their_labels = theirs.label_names_by_family(&[]);
    let our_labels = ours.label_names_by_family(&["job", "instance"]);
    for family in &both {
        let (a, b) = (&theirs.types[*family], &ours.types[*family]);
        if a != b {
            problems.push(format!("{family}: type {b}, redis_exporter says {a}"));
        }
        let (a, b) = (their_labels.get(*family), our_labels.get(*family));
        if a != b {
            problems.push(format!("{family}: labels {b:?}, redis_exporter has {a:?}"));
        }
    }
    problems.extend(value_mismatches(&theirs, &ours));
    let coverage = both.len() as f64 / their_families.len().max(1) as f64;
    let missing: Vec<&&String> = their_families.difference(&our_families).collect();
    println!(
        "redis plugin coverage: {}/{} redis_exporter families ({:.1}%)",
        both.len(),
        their_families.len(),
        coverage * 100.0
    );
    println!("missing: {missing:?}");
    println!(
        "only in the plugin: {:?}",
        our_families.difference(&their_families).collect::<Vec<_>>()
    );
    assert!(
        problems.is_empty(),
        "the redis plugin differs from redis_exporter:\n{}",
        problems.join("\n")
    );
    assert!(
        coverage >= MIN_COVERAGE,
        "coverage {:.1}%; missing {missing:?}",
        coverage * 100.0
    );
}

fn value_mismatches(theirs: &Exposition, ours: &Exposition) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |name: &str, labels: &[(&str, &str)], tolerance: f64| {
        let (a, b) = (theirs.value(name, labels), ours.value(name, labels));
        match (a, b) {
            (Some(a), Some(b)) if (a - b).abs() <= tolerance => {}
            _ => problems.push(format!("{name}{labels:?}: plugin {b:?}, redis_exporter {a:?}")),
        }
    };
    // Static values: exactly.
    for name in [
        "redis_config_maxmemory",
        "redis_config_maxclients",
        "redis_config_io_threads",
        "redis_memory_max_bytes",
        "redis_process_id",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_up",
        "redis_slowlog_length",
    ] {
        check(name, &[], 0.0);
    }
    for db in ["db0", "db1", "db3", "db15"] {
        check("redis_db_keys", &[("db", db)], 0.0);
        check("redis_db_keys_expiring", &[("db", db)], 0.0);
    }
    check("redis_errors_total", &[("err", "ERR")], 0.0);
    for cmd in ["set", "incr", "expire"] {
        check("redis_commands_total", &[("cmd", cmd)], 0.0);
        check("redis_latency_percentiles_usec_count", &[("cmd", cmd)], 0.0);
    }
    // Derived from the clock: a second apart at most.
    check("redis_start_time_seconds", &[], 1.0);
    check("redis_db_avg_ttl_seconds", &[("db", "db0")], 5.0);
    // Counters that both scrapes move (CONFIG, INFO, SLOWLOG from two clients).
    check("redis_commands_processed_total", &[], 100.0);
    check("redis_keyspace_hits_total", &[], 0.0);
    check("redis_keyspace_misses_total", &[], 0.0);
    let info = |e: &Exposition| {
        e.find("redis_instance_info", &[]).next().map(|s| {
            s.labels
                .iter()
                .filter(|(n, _)| n != "job" && n != "instance")
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    if info(theirs) != info(ours) {
        problems.push(format!(
            "redis_instance_info: plugin {:?}, redis_exporter {:?}",
            info(ours),
            info(theirs)
        ));
    }
    problems
}

/// `redis_up` of the series with these labels, or None while absent.
fn redis_up(e: &Exposition, labels: &[(&str, &str)]) -> Option<f64> {
    e.value("redis_up", labels)
}

#[test]
fn redis_down_gives_redis_up_0_and_recovers() {
    let mut redis = RedisServer::start(&[]);
    let node = "[node]\nplugin = \"node\"\ninterval = \"1s\"\n[node.grants]\nread = [\"/proc\", \"/sys\"]\n\
                [node.config]\ncollectors = [\"cpu\", \"meminfo\", \"loadavg\"]\n";
    let sonde = Sonde::start(&(entry("redis", &[redis.addr()], "", "") + node));
    sonde.wait_health("redis", "up", Duration::from_secs(60));
    assert_eq!(redis_up(&next_collection(&sonde, "redis"), &[]), Some(1.0));

    redis.stop();
    let e = next_collection(&sonde, "redis");
    let e = if redis_up(&e, &[]) == Some(1.0) {
        next_collection(&sonde, "redis")
    } else {
        e
    };
    assert_eq!(redis_up(&e, &[]), Some(0.0), "redis_up after Redis stopped");
    let err = e.find("redis_exporter_last_scrape_error", &[]).find(|s| s.value == 1.0);
    let err = err.and_then(|s| s.label("err")).unwrap_or_default().to_string();
    assert!(err.contains("connect to"), "error: {err:?}");
    let t = sonde.target("redis").expect("target");
    assert_eq!(t["health"], "down", "{t}");
    let last_error = t["lastError"].as_str().unwrap_or_default();
    assert!(
        last_error.starts_with(&format!("redis {}: connect to", redis.addr())),
        "{t}"
    );
    assert_eq!(up(&sonde, "redis"), Some(0.0));
    // The other instance keeps its schedule while this one's Redis is down.
    let node_before = sonde.target("node").expect("node target")["lastScrape"].clone();
    next_collection(&sonde, "redis");
    let node = sonde.wait_health("node", "up", Duration::from_secs(5));
    assert_ne!(
        node["lastScrape"], node_before,
        "node was not collected meanwhile: {node}"
    );
    assert!(
        sonde.stderr().contains("connect to"),
        "the error is logged:\n{}",
        sonde.stderr_tail(20)
    );

    redis.restart();
    wait_for(Duration::from_secs(20), "redis_up 1 after restart", || {
        (redis_up(&next_collection(&sonde, "redis"), &[]) == Some(1.0)).then_some(())
    });
    let t = sonde.wait_health("redis", "up", Duration::from_secs(5));
    assert_eq!(t["lastError"], "", "{t}");
    wait_for(Duration::from_secs(5), "up 1", || {
        (up(&sonde, "redis") == Some(1.0)).then_some(())
    });
}

/// The host's `up` of `job`.
fn up(sonde: &Sonde, job: &str) -> Option<f64> {
    sonde.federate(&[&format!("up{{job=\"{job}\"}}")]).value("up", &[])
}

#[test]
fn silent_server_and_wrong_password_give_redis_up_0() {
    let good = RedisServer::start(&["--requirepass", "s3cret"]);
    // Accepts connections (the kernel completes the handshake) and never replies.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let secrets = tempfile::tempdir().expect("temp dir");
    std::fs::write(secrets.path().join("right"), "s3cret\n").unwrap();
    std::fs::write(secrets.path().join("wrong"), "nope\n").unwrap();
    let grant = format!("read = [{}]", toml_str(secrets.path().display().to_string()));
    let file = |f: &str| {
        format!(
            "password_file = {}",
            toml_str(secrets.path().join(f).display().to_string())
        )
    };
    let plugins = entry("multi", &[good.addr(), silent_addr.clone()], &file("right"), &grant)
        + &entry("badpass", &[good.addr()], &file("wrong"), &grant);
    let sonde = Sonde::start(&plugins);
    sonde.wait_health("multi", "down", Duration::from_secs(60));

    let start = Instant::now();
    let e = next_collection(&sonde, "multi");
    let e = if redis_up(&e, &[("addr", &silent_addr)]).is_none() {
        next_collection(&sonde, "multi")
    } else {
        e
    };
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a silent server stalls collections"
    );
    assert_eq!(
        redis_up(&e, &[("addr", &good.addr())]),
        Some(1.0),
        "good target, with AUTH"
    );
    assert_eq!(redis_up(&e, &[("addr", &silent_addr)]), Some(0.0), "silent target");
    assert!(
        e.value("redis_db_keys", &[("addr", &good.addr()), ("db", "db0")])
            .is_some()
    );
    let err = e
        .find("redis_exporter_last_scrape_error", &[("addr", &silent_addr)])
        .find(|s| s.value == 1.0)
        .and_then(|s| s.label("err").map(str::to_string))
        .unwrap_or_default();
    assert!(err.contains("no reply within"), "error: {err:?}");
    let t = sonde.target("multi").expect("target");
    assert_eq!(t["health"], "down", "one of its Redis servers is silent: {t}");
    let last_error = t["lastError"].as_str().unwrap_or_default();
    assert!(
        last_error.starts_with(&format!("redis {silent_addr}: ")) && last_error.contains("no reply within"),
        "{t}"
    );
    assert!(!last_error.contains(&good.addr()), "{t}");
    let took = t["lastScrapeDuration"].as_f64().unwrap_or(0.0);
    assert!(took < 1.0, "collection took {took}s with a silent target");

    let t = sonde.wait_health("badpass", "down", Duration::from_secs(30));
    assert!(
        t["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("AUTH") && e.contains("WRONGPASS")),
        "{t}"
    );
    assert!(!t.to_string().contains("nope"), "the password is not shown: {t}");
    let e = next_collection(&sonde, "badpass");
    assert_eq!(redis_up(&e, &[]), Some(0.0), "wrong password");
    let err = e
        .find("redis_exporter_last_scrape_error", &[])
        .find(|s| s.value == 1.0)
        .and_then(|s| s.label("err").map(str::to_string))
        .unwrap_or_default();
    assert!(err.contains("AUTH") && err.contains("WRONGPASS"), "error: {err:?}");
    drop(silent);
}
