//! Durability of the store (host/tsdb): what sonde acknowledged survives a crash
//! (SIGKILL during heavy ingest), and a damaged WAL tail is cut off without losing
//! anything before it, without keeping sonde from starting, and with the WAL appendable
//! again afterwards.
//!
//! "Acknowledged" is seen from outside: a sample `/federate` returned was appended to
//! the WAL. The daemon hands the WAL to the OS every second (docs/storage-format.md,
//! "Durability"), which is what survives a killed process, so a sample seen
//! [`ACK_MARGIN`] before the kill was written before the kill and must be in
//! `sonde tsdb dump` afterwards.
//!
//! The WAL's own files are read with the harness's independent reader
//! (`sonde_tests::wal`), which tells exactly which samples a damaged record held.

use sonde_tests::dump::{Dump, SeriesKey, same_value};
use sonde_tests::wal::{self, Frame, Record};
use sonde_tests::{Sonde, SondeOptions, copy_dir, test_plugin, toml_str, tsdb_dump, wait_for, wait_until};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a target may take to come up: generous, other tests run in parallel.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);

/// How long sonde may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The WAL sync interval (1 s) plus a margin: a sample acknowledged this long before a
/// crash is durable.
const ACK_MARGIN: Duration = Duration::from_secs(2);

/// The bundled node plugin, collecting every second.
const NODE: &str = "[node]\nplugin = \"node\"\ninterval = \"1s\"\n\
                    [node.grants]\nread = [\"/proc\", \"/sys\"]\nstatfs = true\n\n";

/// A synthetic-plugin instance: `series` gauges `synthetic_value{i, label0, label1}`
/// with value `i + round` (round = the instance's collection count), plus a `round`
/// label when `churn` (every collection then replaces every series).
fn synthetic(name: &str, interval: &str, series: usize, churn: bool) -> String {
    let wasm = toml_str(test_plugin("synthetic").display().to_string());
    format!(
        "[{name}]\nplugin = {wasm}\ninterval = \"{interval}\"\n\
         [{name}.config]\nseries = {series}\nlabels = 2\nchurn = {churn}\n\n"
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// A temp dir for a test's data dirs and copies, kept for a post-mortem when the test fails.
struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    fn new(prefix: &str) -> WorkDir {
        WorkDir(Some(
            tempfile::Builder::new().prefix(prefix).tempdir().expect("temp dir"),
        ))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("lives until drop").path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("--- data dirs of the failed test kept in {} ---", dir.keep().display());
        }
    }
}

/// The newest sample of every live `synthetic_value` series, from `/federate`.
#[track_caller]
fn federated_synthetic(sonde: &Sonde) -> Vec<(SeriesKey, i64, f64)> {
    let page = sonde.federate(&["{__name__=\"synthetic_value\"}"]);
    page.samples
        .into_iter()
        .map(|s| {
            let ts = s
                .timestamp
                .unwrap_or_else(|| panic!("/federate sample without a timestamp: {s:?}"));
            let key = SeriesKey {
                name: s.name,
                labels: s.labels,
            };
            (key, ts, s.value)
        })
        .collect()
}

/// Waits until `/federate` shows a `synthetic_value` newer than `after_ms` for every job.
#[track_caller]
fn wait_for_samples_after(sonde: &Sonde, jobs: &[&str], after_ms: i64, what: &str) {
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    let fresh = wait_until(HEALTH_TIMEOUT, || {
        for (k, t, _) in federated_synthetic(sonde) {
            let job = k.label("job").unwrap_or_default().to_string();
            let e = newest.entry(job).or_insert(t);
            *e = (*e).max(t);
        }
        jobs.iter().all(|j| newest.get(*j).is_some_and(|t| *t > after_ms))
    });
    assert!(
        fresh,
        "{what}: no synthetic_value newer than {after_ms} for every job of {jobs:?} within {HEALTH_TIMEOUT:?}; \
         newest per job: {newest:?}\n--- sonde stderr ---\n{}",
        sonde.stderr_tail(40)
    );
}

/// Stops sonde with SIGTERM and asserts it exits 0; its stderr.
#[track_caller]
fn stop_cleanly(mut sonde: Sonde, what: &str) -> String {
    let status = sonde.signal_and_wait(libc::SIGTERM, SHUTDOWN_TIMEOUT);
    let stderr = sonde.stderr();
    match status {
        Ok(s) if s.success() => stderr,
        other => panic!(
            "{what}: sonde did not exit 0 on SIGTERM: {other:?}\n--- sonde stderr ---\n{}",
            tail(&stderr, 60)
        ),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Differences between two dumps (at most `limit` described, then a count).
fn diff_dumps(expected: &Dump, got: &Dump, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (k, want) in &expected.series {
        match got.series.get(k) {
            None => out.push(format!("series {k} is missing ({} samples expected)", want.len())),
            Some(have) => {
                let first_diff = want
                    .iter()
                    .zip(have)
                    .position(|(a, b)| a.0 != b.0 || !same_value(a.1, b.1));
                if let Some(i) = first_diff {
                    out.push(format!(
                        "series {k}: sample {i} is {:?}, expected {:?}",
                        have[i], want[i]
                    ));
                } else if want.len() != have.len() {
                    let (more, which) = if want.len() > have.len() {
                        (&want[have.len()..], "missing")
                    } else {
                        (&have[want.len()..], "unexpected")
                    };
                    out.push(format!(
                        "series {k}: {} {which} samples at the end, first {:?}",
                        more.len(),
                        more[0]
                    ));
                }
            }
        }
    }
    for (k, have) in &got.series {
        if !expected.series.contains_key(k) {
            out.push(format!("unexpected series {k} ({} samples)", have.len()));
        }
    }
    if out.len() > limit {
        let n = out.len();
        out.truncate(limit);
        out.push(format!("... {} differences in all", n));
    }
    out
}

/// Series of `got` whose samples are not a prefix of the same series in `reference`.
fn not_prefixes(reference: &Dump, got: &Dump, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (k, have) in &got.series {
        let Some(want) = reference.series.get(k) else {
            out.push(format!("series {k} is not in the reference"));
            continue;
        };
        let prefix = have.len() <= want.len() && have.iter().zip(want).all(|(a, b)| a.0 == b.0 && same_value(a.1, b.1));
        if !prefix {
            out.push(format!(
                "series {k}: {} samples are not a prefix of the reference's {}",
                have.len(),
                want.len()
            ));
        }
    }
    out.truncate(limit);
    out
}

/// The samples of one collection are one WAL record (one append), so after a crash each
/// collection of a non-churning synthetic job is there for all `series` series or for
/// none, and its values are `i + round` with one round (or all NaN: staleness markers
/// after a failed collection). Describes every violation.
fn check_collections_whole(dump: &Dump, job: &str, series: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let of_job: Vec<(&SeriesKey, &Vec<(i64, f64)>)> = dump
        .series
        .iter()
        .filter(|(k, _)| k.name == "synthetic_value" && k.label("job") == Some(job))
        .collect();
    if of_job.len() != series {
        problems.push(format!(
            "job {job}: {} synthetic_value series, expected {series}",
            of_job.len()
        ));
    }
    // timestamp → (series seen, round of the first one, series with another round)
    let mut by_ts: BTreeMap<i64, (usize, f64, usize)> = BTreeMap::new();
    for (k, samples) in &of_job {
        let i: f64 = match k.label("i").and_then(|i| i.parse().ok()) {
            Some(i) => i,
            None => {
                problems.push(format!("job {job}: series without a numeric i label: {k}"));
                continue;
            }
        };
        for &(t, v) in samples.iter() {
            let round = if v.is_nan() { f64::NAN } else { v - i };
            let e = by_ts.entry(t).or_insert((0, round, 0));
            e.0 += 1;
            if !same_value(e.1, round) {
                e.2 += 1;
            }
        }
    }
    for (t, (seen, round, other)) in &by_ts {
        if *seen != series {
            problems.push(format!(
                "job {job}: the collection at {t} is partial: {seen} of {series} series have it"
            ));
        }
        if *other > 0 {
            problems.push(format!(
                "job {job}: the collection at {t} mixes rounds: {other} series disagree with round {round} \
                 (value - i)"
            ));
        }
    }
    if by_ts.is_empty() {
        problems.push(format!("job {job}: no samples at all"));
    }
    problems.truncate(20);
    problems
}

// ---------------------------------------------------------------------------------
// 1. Crash during heavy ingest
// ---------------------------------------------------------------------------------

/// Synthetic instances: (job, interval, series, churn).
const HEAVY: [(&str, &str, usize, bool); 4] = [
    ("steady100", "100ms", 2000, false),
    ("steady150", "150ms", 2000, false),
    ("steady200", "200ms", 2000, false),
    ("churn", "200ms", 2000, true),
];

/// What `/federate` showed at one moment.
struct Snapshot {
    /// When the answer had been read (the samples were appended before).
    taken: Instant,
    samples: Vec<(SeriesKey, i64, f64)>,
}

#[test]
fn acknowledged_samples_survive_sigkill_during_heavy_ingest() {
    let work = WorkDir::new("sonde-e2e-crash-");
    let data = work.path().join("data");
    let mut toml = NODE.to_string();
    for (job, interval, series, churn) in HEAVY {
        toml.push_str(&synthetic(job, interval, series, churn));
    }
    let opts = SondeOptions {
        plugins_toml: Some(toml),
        data_dir: Some(data.clone()),
        ..Default::default()
    };
    let jobs: Vec<&str> = HEAVY.iter().map(|h| h.0).collect();
    let mut sonde = Sonde::start_with(opts.clone());
    for job in jobs.iter().chain(&["node"]) {
        sonde.wait_health(job, "up", HEALTH_TIMEOUT);
    }

    // Snapshot what is acknowledged every ~200 ms until enough of it is old enough to be
    // durable, with ingest going on for several seconds.
    let ingest_started = Instant::now();
    let mut snapshots: Vec<Snapshot> = Vec::new();
    let enough = wait_until(Duration::from_secs(240), || {
        let samples = federated_synthetic(&sonde);
        snapshots.push(Snapshot {
            taken: Instant::now(),
            samples,
        });
        let old = snapshots
            .iter()
            .filter(|s| s.taken.elapsed() >= ACK_MARGIN + Duration::from_secs(1))
            .count();
        ingest_started.elapsed() >= Duration::from_secs(6) && old >= 10
    });
    assert!(enough, "only {} snapshots of /federate in 240 s", snapshots.len());
    let metrics = sonde.metrics();
    // What makes samples survive SIGKILL is the WAL being handed to the OS (every
    // second); fsyncs (every `wal_fsync_interval`) are for power loss.
    let written = metrics.value("sonde_wal_written_bytes_total", &[]).unwrap_or(-1.0);
    let fsyncs = metrics.value("sonde_wal_fsyncs_total", &[]).unwrap_or(-1.0);
    let appended = metrics.value("sonde_head_samples_appended_total", &[]).unwrap_or(-1.0);
    let write_errors = metrics.value("sonde_storage_write_errors_total", &[]);
    assert_eq!(
        write_errors,
        Some(0.0),
        "premise: no storage write errors during ingest (sonde_storage_write_errors_total)"
    );
    assert!(
        written > 0.0,
        "nothing written to the WAL in {:?} of ingest (sonde_wal_written_bytes_total {written})",
        ingest_started.elapsed()
    );

    let killed_at = Instant::now();
    let killed_ms = now_ms();
    let status = sonde
        .kill()
        .unwrap_or_else(|e| panic!("{e}\n--- sonde stderr ---\n{}", sonde.stderr_tail(60)));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "sonde's exit status: {status}");
    let first_stderr = sonde.stderr();
    drop(sonde);

    // What sonde acknowledged at least ACK_MARGIN before the kill, and when it was first seen.
    let mut acked: HashMap<(SeriesKey, i64), (f64, Instant)> = HashMap::new();
    let durable: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| killed_at.duration_since(s.taken) >= ACK_MARGIN)
        .collect();
    for s in &durable {
        for (k, t, v) in &s.samples {
            acked.entry((k.clone(), *t)).or_insert((*v, s.taken));
        }
    }
    let acked_jobs: BTreeSet<&str> = acked.keys().filter_map(|(k, _)| k.label("job")).collect();
    for job in &jobs {
        assert!(
            acked_jobs.contains(job),
            "premise: /federate showed no synthetic_value of {job} in the {} snapshots taken {ACK_MARGIN:?} \
             before the kill",
            durable.len()
        );
    }
    let acked_rounds: BTreeSet<&str> = acked
        .keys()
        .filter(|(k, _)| k.label("job") == Some("churn"))
        .filter_map(|(k, _)| k.label("round"))
        .collect();
    assert!(
        acked_rounds.len() >= 2,
        "premise: the durable snapshots should cover several rounds of the churning job, so some of its \
         series existed only long before the crash; rounds seen: {acked_rounds:?}"
    );

    // The dump of a copy (dumping repairs the WAL; the restart below must see it as the
    // crash left it).
    let crashed = work.path().join("crashed");
    copy_dir(&data, &crashed);
    let crash_dump = tsdb_dump(&crashed, &[]);

    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for ((k, t), (v, seen)) in &acked {
        match crash_dump.value_at(k, *t) {
            Some(got) if same_value(got, *v) => {}
            Some(got) => wrong.push(format!("{k} @{t}: dump has {got}, /federate showed {v}")),
            None => missing.push((killed_at.duration_since(*seen), format!("{k} {v} @{t}"))),
        }
    }
    missing.sort();
    let newest_per_job: BTreeMap<&str, i64> = jobs
        .iter()
        .map(|j| {
            let newest = crash_dump
                .series
                .iter()
                .filter(|(k, _)| k.label("job") == Some(j))
                .filter_map(|(_, s)| s.last().map(|(t, _)| *t))
                .max()
                .unwrap_or(0);
            (*j, newest)
        })
        .collect();
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "acknowledged samples lost or changed by the crash: {} of {} missing, {} with another value \
         (acknowledged in {} snapshots at least {ACK_MARGIN:?} before the kill; before the kill sonde had done \
         {fsyncs} WAL fsyncs and appended {appended} samples; newest sample per job in the dump, ms before the \
         kill: {:?})\nmissing, most recently acknowledged first (time from first seen to the kill):\n{}\n\
         other value:\n{}\n--- stderr of the killed sonde ---\n{}",
        missing.len(),
        acked.len(),
        wrong.len(),
        durable.len(),
        newest_per_job
            .iter()
            .map(|(j, t)| (*j, killed_ms - t))
            .collect::<BTreeMap<_, _>>(),
        missing
            .iter()
            .take(15)
            .map(|(age, s)| format!("  {age:?}: {s}"))
            .collect::<Vec<_>>()
            .join("\n"),
        wrong.iter().take(15).cloned().collect::<Vec<_>>().join("\n"),
        tail(&first_stderr, 40)
    );

    // No corruption: every collection whole, in the dump of the crash as in any dump.
    let mut problems = Vec::new();
    for (job, _, series, churn) in HEAVY {
        if !churn {
            problems.extend(check_collections_whole(&crash_dump, job, series));
        }
    }
    assert!(
        problems.is_empty(),
        "the dump after the crash holds partial or inconsistent collections:\n{}",
        problems.join("\n")
    );
    let has_node = crash_dump
        .series
        .keys()
        .any(|k| k.name == "up" && k.label("job") == Some("node"));
    assert!(has_node, "no up{{job=\"node\"}} in the dump after the crash");
    let churn_rounds: BTreeSet<&str> = crash_dump
        .series
        .keys()
        .filter(|k| k.label("job") == Some("churn"))
        .filter_map(|k| k.label("round"))
        .collect();

    // Restart on the data dir as the crash left it: it comes up, the targets go up and
    // collect again.
    let restarted = Sonde::start_with(opts);
    for job in jobs.iter().chain(&["node"]) {
        restarted.wait_health(job, "up", HEALTH_TIMEOUT);
    }
    wait_for_samples_after(&restarted, &jobs, killed_ms, "after the restart");
    let restart_stderr = stop_cleanly(restarted, "the restarted sonde");

    // Everything the dump of the crashed data showed is still there, nothing before the
    // crash was added or changed, and the new collections are there too.
    let final_dump = tsdb_dump(&data, &[]);
    let diff = diff_dumps(&crash_dump, &final_dump.until(killed_ms), 30);
    assert!(
        diff.is_empty(),
        "after a restart and a clean stop, the samples from before the crash differ from the dump of the \
         crashed data dir ({} series from {} rounds of the churning job among them):\n{}\n\
         --- stderr of the restarted sonde ---\n{}",
        crash_dump.series.len(),
        churn_rounds.len(),
        diff.join("\n"),
        tail(&restart_stderr, 40)
    );
    for job in &jobs {
        let new = final_dump
            .series
            .iter()
            .filter(|(k, _)| k.label("job") == Some(job))
            .any(|(_, s)| s.last().is_some_and(|(t, _)| *t > killed_ms));
        assert!(new, "no sample of {job} after the restart in the final dump");
    }
    let mut problems = Vec::new();
    for (job, _, series, churn) in HEAVY {
        if !churn {
            problems.extend(check_collections_whole(&final_dump, job, series));
        }
    }
    assert!(
        problems.is_empty(),
        "the dump after the restart holds partial or inconsistent collections:\n{}",
        problems.join("\n")
    );
    let repairs: Vec<&str> = restart_stderr
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("WAL"))
        .collect();
    eprintln!(
        "crash test: {} snapshots, {} acknowledged samples checked ({} durable snapshots), crash dump {} series / \
         {} samples, final dump {} samples, churn rounds before the crash {}, WAL warnings at the restart: {repairs:?}",
        snapshots.len(),
        acked.len(),
        durable.len(),
        crash_dump.series.len(),
        crash_dump.num_samples(),
        final_dump.num_samples(),
        churn_rounds.len()
    );
}

// ---------------------------------------------------------------------------------
// 2. Damaged WAL tail
// ---------------------------------------------------------------------------------

/// One way to damage the newest segment.
struct Damage {
    what: &'static str,
    bytes: Vec<u8>,
    /// Frames ending after this offset are damaged (lost with everything after them).
    from: u64,
}

/// Pseudo-random bytes (a fixed LCG: the same garbage every run).
fn garbage(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn damages(seg: &[u8], last: &Frame) -> Vec<Damage> {
    let len = seg.len() as u64;
    let cut = |at: u64| seg[..at as usize].to_vec();
    let mut overwritten = seg.to_vec();
    for b in &mut overwritten[seg.len() - 8..] {
        *b ^= 0xA5;
    }
    let appended = |extra: &[u8]| [seg, extra].concat();
    // A whole frame whose CRC is wrong: type 2 (samples), 20 bytes of payload.
    let mut bad_frame = vec![2u8];
    bad_frame.extend_from_slice(&20u32.to_le_bytes());
    let payload = garbage(20, 7);
    let mut covered = bad_frame.clone();
    covered.extend_from_slice(&payload);
    bad_frame.extend_from_slice(&(wal::crc32(&covered) ^ 1).to_le_bytes());
    bad_frame.extend_from_slice(&payload);
    let mid_payload = last.offset + wal::FRAME_HEADER_LEN + last.payload.len() as u64 / 2;
    vec![
        Damage {
            what: "last byte truncated",
            bytes: cut(len - 1),
            from: len - 1,
        },
        Damage {
            what: "truncated in the middle of the last record's payload",
            bytes: cut(mid_payload),
            from: mid_payload,
        },
        Damage {
            what: "truncated inside the last record's frame header",
            bytes: cut(last.offset + 4),
            from: last.offset + 4,
        },
        Damage {
            what: "last 8 bytes overwritten with garbage",
            bytes: overwritten,
            from: len - 8,
        },
        Damage {
            what: "128 garbage bytes appended",
            bytes: appended(&garbage(128, 42)),
            from: len,
        },
        Damage {
            what: "4 KiB of zeros appended",
            bytes: appended(&[0; 4096]),
            from: len,
        },
        Damage {
            what: "a whole frame with a wrong CRC appended",
            bytes: appended(&bad_frame),
            from: len,
        },
    ]
}

/// Copies `pristine` to `to` and replaces the newest segment with `bytes`.
fn damaged_copy(pristine: &Path, to: &Path, segment_name: &std::ffi::OsStr, bytes: &[u8]) {
    copy_dir(pristine, to);
    std::fs::write(to.join("wal").join(segment_name), bytes).expect("write the damaged segment");
}

#[test]
fn a_damaged_wal_tail_is_cut_off_and_sonde_starts_and_appends_again() {
    let work = WorkDir::new("sonde-e2e-waltail-");
    let data = work.path().join("data");
    let jobs = ["steady", "churn"];
    let toml = NODE.to_string() + &synthetic("steady", "100ms", 300, false) + &synthetic("churn", "200ms", 50, true);
    let opts = |dir: &Path| SondeOptions {
        plugins_toml: Some(toml.clone()),
        data_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };

    // A reference: a short run, stopped cleanly.
    let sonde = Sonde::start_with(opts(&data));
    for job in jobs.iter().chain(&["node"]) {
        sonde.wait_health(job, "up", HEALTH_TIMEOUT);
    }
    let appended = wait_for(HEALTH_TIMEOUT, "10,000 samples appended", || {
        let n = sonde.metrics().value("sonde_head_samples_appended_total", &[])?;
        (n >= 10_000.0).then_some(n)
    });
    stop_cleanly(sonde, "the reference run");
    let pristine = work.path().join("pristine");
    copy_dir(&data, &pristine);
    let reference = tsdb_dump(&data, &[]);
    let ref_max = reference.max_timestamp().expect("the reference has samples");

    // A clean stop leaves an intact WAL; where its last records are, and what they hold.
    let wal_dir = pristine.join("wal");
    for f in wal::all_segment_files(&wal_dir) {
        wal::read_segment(&f).unwrap_or_else(|e| panic!("after a clean stop the WAL should be intact: {e}"));
    }
    let seg_path = wal::newest_segment(&wal_dir);
    let seg_name = seg_path.file_name().expect("file name").to_owned();
    let seg = std::fs::read(&seg_path).expect("read the newest segment");
    let frames = wal::parse_segment(&seg).expect("checked above");
    let last = frames
        .last()
        .unwrap_or_else(|| panic!("the newest segment {} holds no record", seg_path.display()));
    let refs = wal::series_by_ref(&wal_dir).expect("intact");

    let mut failures = Vec::new();
    for (n, d) in damages(&seg, last).into_iter().enumerate() {
        // The samples of the damaged records: exactly these may go missing.
        let mut lost: HashSet<(SeriesKey, i64)> = HashSet::new();
        let mut lost_records = 0;
        for f in frames.iter().filter(|f| f.end() > d.from) {
            lost_records += 1;
            if let Record::Samples(samples) = wal::decode(f).expect("intact record") {
                for (r, t, _) in samples {
                    let k = refs
                        .get(&r)
                        .unwrap_or_else(|| panic!("sample of series ref {r} without a Series record"));
                    assert!(
                        reference.value_at(k, t).is_some(),
                        "oracle: the WAL's sample {k} @{t} is not in the reference dump"
                    );
                    lost.insert((k.clone(), t));
                }
            }
        }
        let mut expected = reference.clone();
        for (k, t) in &lost {
            let s = expected.series.get_mut(k).expect("checked above");
            s.retain(|(st, _)| st != t);
        }
        expected.series.retain(|_, s| !s.is_empty());
        let case = format!(
            "[{}] newest segment {}, {} bytes -> {} bytes ({lost_records} damaged records, {} samples in them)",
            d.what,
            seg_name.to_string_lossy(),
            seg.len(),
            d.bytes.len(),
            lost.len()
        );

        // `sonde tsdb dump` on one copy.
        let dump_dir = work.path().join(format!("case{n}-dump"));
        damaged_copy(&pristine, &dump_dir, &seg_name, &d.bytes);
        let dumped = tsdb_dump(&dump_dir, &[]);
        let bad = not_prefixes(&reference, &dumped, 10);
        if !bad.is_empty() {
            failures.push(format!(
                "{case}: dump is not a prefix of the reference:\n{}",
                bad.join("\n")
            ));
        }
        let diff = diff_dumps(&expected, &dumped, 10);
        if !diff.is_empty() {
            failures.push(format!(
                "{case}: dump should be the reference less the damaged records' samples:\n{}",
                diff.join("\n")
            ));
        }

        // A full `sonde run` on another copy: starts, says it repaired the WAL, collects,
        // appends, stops cleanly.
        let run_dir = work.path().join(format!("case{n}-run"));
        damaged_copy(&pristine, &run_dir, &seg_name, &d.bytes);
        let sonde = Sonde::start_with(opts(&run_dir));
        let warned = sonde
            .stderr()
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("WAL"));
        if !warned {
            failures.push(format!(
                "{case}: no WARN line about the WAL in sonde's stderr:\n{}",
                sonde.stderr_tail(20)
            ));
        }
        for job in jobs.iter().chain(&["node"]) {
            sonde.wait_health(job, "up", HEALTH_TIMEOUT);
        }
        wait_for_samples_after(&sonde, &jobs, ref_max, &case);
        stop_cleanly(sonde, &case);

        // The repaired WAL took the new records: intact, and its dump has the old
        // samples (as the repaired dump) and the new ones.
        for f in wal::all_segment_files(&run_dir.join("wal")) {
            if let Err(e) = wal::read_segment(&f) {
                failures.push(format!("{case}: after the repaired run the WAL is not intact: {e}"));
            }
        }
        let after = tsdb_dump(&run_dir, &[]);
        let diff = diff_dumps(&expected, &after.until(ref_max), 10);
        if !diff.is_empty() {
            failures.push(format!(
                "{case}: after the repaired run, the old samples differ from the reference less the damaged \
                 records:\n{}",
                diff.join("\n")
            ));
        }
        for job in jobs {
            let new = after
                .series
                .iter()
                .filter(|(k, _)| k.name == "synthetic_value" && k.label("job") == Some(job))
                .any(|(_, s)| s.last().is_some_and(|(t, _)| *t > ref_max));
            if !new {
                failures.push(format!(
                    "{case}: the dump after the repaired run has no new synthetic_value of {job}"
                ));
            }
        }
        eprintln!(
            "{case}: dump {} samples, after the run {} samples",
            dumped.num_samples(),
            after.num_samples()
        );
    }
    assert!(
        failures.is_empty(),
        "reference: {} series, {} samples ({appended} appended); newest segment {} has {} records:\n\n{}",
        reference.series.len(),
        reference.num_samples(),
        seg_name.to_string_lossy(),
        frames.len(),
        failures.join("\n\n")
    );
}
