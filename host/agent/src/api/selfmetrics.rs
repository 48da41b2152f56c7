//! `GET /metrics`: sonde's own metrics (plugins, head, process), in text format.

use super::Shared;
use super::exposition::Writer;
use crate::scrape::DURATION_BUCKETS;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::atomic::Ordering;

pub async fn handler(State(s): State<Shared>) -> impl IntoResponse {
    let mut w = Writer::default();
    plugins(&s, &mut w);
    discovery(&s, &mut w);
    head(&s, &mut w);
    process(&s, &mut w);
    rules(&s, &mut w);
    if let Some(n) = &s.notifier {
        notifier(n, &mut w);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        w.out,
    )
}

fn plugins(s: &Shared, w: &mut Writer) {
    let targets = s.targets.snapshot();
    type Get = fn(&crate::scrape::Target) -> f64;
    let simple: [(&str, &str, &str, Get); 8] = [
        (
            "sonde_plugin_collections_total",
            "counter",
            "Collections attempted.",
            |t| t.stats.collections.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_plugin_restarts_total",
            "counter",
            "Instances dropped and re-created after a trap, timeout or invalid output.",
            |t| t.stats.restarts.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_plugin_reloads_total",
            "counter",
            "New versions of the plugin file swapped in without a restart (hot reload).",
            |t| t.stats.reloads.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_plugin_memory_bytes",
            "gauge",
            "Largest linear memory of the current instance.",
            |t| t.stats.memory_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_plugin_series",
            "gauge",
            "Series the instance has registered.",
            |t| t.stats.series.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_plugin_samples",
            "gauge",
            "Samples returned by the last collection.",
            |t| t.stats.samples.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_plugin_load_seconds",
            "gauge",
            "Time to compile or load the plugin from the cache.",
            |t| *t.stats.load_seconds.lock().unwrap(),
        ),
        (
            "sonde_plugin_loaded_from_cache",
            "gauge",
            "1 if the compiled plugin came from the on-disk compile cache, 0 if it was compiled at start.",
            |t| t.stats.loaded_from_cache.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, get) in simple {
        w.family(name, kind, help);
        for t in &targets {
            w.sample(name, [("plugin", t.spec.name.as_str())], get(t), None);
        }
    }
    w.family(
        "sonde_plugin_collection_failures_total",
        "counter",
        "Failed collections by reason (config, denied, unreachable, failed, timeout, out_of_memory, panic, trap, invalid_output, instantiate, load).",
    );
    for t in &targets {
        for (reason, n) in t.stats.failures.lock().unwrap().iter() {
            w.sample(
                "sonde_plugin_collection_failures_total",
                [("plugin", t.spec.name.as_str()), ("reason", reason)],
                *n as f64,
                None,
            );
        }
    }
    w.family(
        "sonde_plugin_collect_duration_seconds",
        "histogram",
        "Duration of collections, including instantiation after a restart.",
    );
    for t in &targets {
        let p = t.spec.name.as_str();
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            let le = super::format_value(*le);
            let n = t.stats.duration_buckets[i].load(Ordering::Relaxed) as f64;
            w.sample(
                "sonde_plugin_collect_duration_seconds_bucket",
                [("plugin", p), ("le", le.as_str())],
                n,
                None,
            );
        }
        let count = t.stats.collections.load(Ordering::Relaxed) as f64;
        w.sample(
            "sonde_plugin_collect_duration_seconds_bucket",
            [("plugin", p), ("le", "+Inf")],
            count,
            None,
        );
        let sum = t.stats.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        w.sample("sonde_plugin_collect_duration_seconds_sum", [("plugin", p)], sum, None);
        w.sample(
            "sonde_plugin_collect_duration_seconds_count",
            [("plugin", p)],
            count,
            None,
        );
    }
    receivers(&targets, w);
}

/// The sockets sonde owns for push plugins (`grants.listen_udp` / `listen_tcp`).
fn receivers(targets: &[std::sync::Arc<crate::scrape::Target>], w: &mut Writer) {
    type Get = fn(&crate::scrape::ReceiverStats) -> u64;
    let counters: [(&str, &str, Get); 7] = [
        (
            "sonde_receiver_datagrams_total",
            "UDP datagrams (or TCP line chunks) received.",
            |r| r.datagrams.load(Ordering::Relaxed),
        ),
        ("sonde_receiver_bytes_total", "Bytes received.", |r| {
            r.bytes.load(Ordering::Relaxed)
        }),
        (
            "sonde_receiver_batches_total",
            "Batches handed to the plugin's ingest.",
            |r| r.batches.load(Ordering::Relaxed),
        ),
        (
            "sonde_receiver_udp_drops_total",
            "Datagrams the kernel dropped because the socket buffer was full (the plugin fell behind).",
            |r| r.udp_drops.load(Ordering::Relaxed),
        ),
        (
            "sonde_receiver_tcp_connections_total",
            "TCP connections accepted.",
            |r| r.tcp_connections.load(Ordering::Relaxed),
        ),
        (
            "sonde_receiver_tcp_oversize_lines_total",
            "TCP lines over 64 KiB, dropped.",
            |r| r.tcp_oversize.load(Ordering::Relaxed),
        ),
        (
            "sonde_receiver_ingest_failures_total",
            "Batches the plugin failed to ingest (trap, timeout or error); their data is lost.",
            |r| r.ingest_failures.load(Ordering::Relaxed),
        ),
    ];
    let push: Vec<_> = targets.iter().filter(|t| t.spec.grants.listens()).collect();
    if push.is_empty() {
        return;
    }
    for (name, help, get) in counters {
        w.family(name, "counter", help);
        for t in &push {
            w.sample(name, [("plugin", t.spec.name.as_str())], get(&t.receiver) as f64, None);
        }
    }
}

/// `sonde_sd_*`: file_sd per plugins.toml entry (Prometheus's `prometheus_sd_file_*`).
fn discovery(s: &Shared, w: &mut Writer) {
    let entries = s.targets.sd_stats().snapshot();
    if entries.is_empty() {
        return;
    }
    type Get = fn(&crate::scrape::EntryStats) -> f64;
    let families: [(&str, &str, &str, Get); 4] = [
        (
            "sonde_sd_files",
            "gauge",
            "file_sd files the entry's patterns match.",
            |e| e.files as f64,
        ),
        (
            "sonde_sd_discovered_targets",
            "gauge",
            "Targets of the entry, its static ones included.",
            |e| e.targets as f64,
        ),
        (
            "sonde_sd_file_read_errors_total",
            "counter",
            "Reads of a file_sd file that failed (unreadable or not parsing; its previous targets were kept).",
            |e| e.read_errors as f64,
        ),
        (
            "sonde_sd_updates_total",
            "counter",
            "Changes of the entry's target set after start.",
            |e| e.updates as f64,
        ),
    ];
    for (name, kind, help, get) in families {
        w.family(name, kind, help);
        for (entry, e) in &entries {
            w.sample(name, [("entry", entry.as_str())], get(e), None);
        }
    }
}

fn head(s: &Shared, w: &mut Writer) {
    let db = s.head.db();
    let head = db.head();
    let st = &head.stats;
    let wal = db.wal_stats();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let (blocks, block_bytes) = db.blocks_summary();
    let dbst = &db.stats;
    let rows: [(&str, &str, &str, f64); 21] = [
        (
            "sonde_wal_size_bytes",
            "gauge",
            "Bytes of the write-ahead log on disk.",
            db.wal_size() as f64,
        ),
        (
            "sonde_head_future_samples_rejected_total",
            "counter",
            "Samples rejected for a timestamp more than 10 min ahead of the clock.",
            n(&st.rejected_future),
        ),
        ("sonde_storage_blocks", "gauge", "Blocks on disk.", blocks as f64),
        (
            "sonde_storage_blocks_bytes",
            "gauge",
            "Bytes of blocks on disk.",
            block_bytes as f64,
        ),
        (
            "sonde_storage_blocks_written_total",
            "counter",
            "Blocks cut from the head.",
            n(&dbst.blocks_written),
        ),
        (
            "sonde_storage_compactions_total",
            "counter",
            "Block compactions.",
            n(&dbst.compactions),
        ),
        (
            "sonde_storage_blocks_deleted_total",
            "counter",
            "Blocks deleted by retention.",
            n(&dbst.blocks_deleted),
        ),
        (
            "sonde_head_series",
            "gauge",
            "Series in the head.",
            head.num_series() as f64,
        ),
        (
            "sonde_head_chunks",
            "gauge",
            "Compressed chunks in the head.",
            head.num_chunks() as f64,
        ),
        (
            "sonde_head_memory_bytes",
            "gauge",
            "Bytes of sample data and series state in the head.",
            head.memory_bytes() as f64,
        ),
        (
            "sonde_head_samples_appended_total",
            "counter",
            "Samples appended to the head.",
            n(&st.samples_appended),
        ),
        (
            "sonde_head_out_of_order_samples_accepted_total",
            "counter",
            "Out-of-order samples accepted within the window.",
            n(&st.out_of_order_accepted),
        ),
        (
            "sonde_head_out_of_order_samples_rejected_total",
            "counter",
            "Samples rejected for being too old.",
            n(&st.rejected_out_of_order),
        ),
        (
            "sonde_head_duplicate_samples_rejected_total",
            "counter",
            "Samples rejected for a timestamp already stored with another value.",
            n(&st.rejected_duplicate),
        ),
        (
            "sonde_head_series_created_total",
            "counter",
            "Series created in the head.",
            n(&st.series_created),
        ),
        (
            "sonde_head_series_removed_total",
            "counter",
            "Series removed from the head by retention.",
            n(&st.series_removed),
        ),
        (
            "sonde_wal_fsyncs_total",
            "counter",
            "fsyncs of the write-ahead log.",
            wal.fsyncs as f64,
        ),
        (
            "sonde_wal_written_bytes_total",
            "counter",
            "Bytes written to the write-ahead log.",
            wal.bytes_written as f64,
        ),
        (
            "sonde_wal_segment_current",
            "gauge",
            "Index of the WAL segment being written.",
            wal.active_segment as f64,
        ),
        (
            "sonde_storage_write_errors_total",
            "counter",
            "Storage operations that failed (WAL I/O).",
            n(&s.head.write_errors),
        ),
        (
            "sonde_storage_replay_seconds",
            "gauge",
            "Time the last start spent replaying the WAL.",
            db.open_stats.took.as_secs_f64(),
        ),
    ];
    for (name, kind, help, v) in rows {
        w.family(name, kind, help);
        w.sample(name, [], v, None);
    }
    w.family("sonde_build_info", "gauge", "Build information.");
    w.sample("sonde_build_info", [("version", env!("CARGO_PKG_VERSION"))], 1.0, None);
}

/// Rule groups (Prometheus's `prometheus_rule_*`, per `rule_group` = `file;name`)
/// and Alertmanager delivery.
fn rules(s: &Shared, w: &mut Writer) {
    type Get = fn(&crate::rules::group::Group) -> f64;
    let families: [(&str, &str, &str, Get); 8] = [
        ("sonde_rule_evaluations_total", "counter", "Rule evaluations.", |g| {
            g.stats.evaluations.load(Ordering::Relaxed) as f64
        }),
        (
            "sonde_rule_evaluation_failures_total",
            "counter",
            "Rule evaluations that failed (query error, duplicate labelsets, limit).",
            |g| g.stats.failures.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_rule_group_iterations_missed_total",
            "counter",
            "Group evaluations that took longer than the interval.",
            |g| g.stats.missed.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_rule_group_last_duration_seconds",
            "gauge",
            "Duration of the group's last evaluation.",
            |g| g.stats.last_duration_ns.load(Ordering::Relaxed) as f64 / 1e9,
        ),
        (
            "sonde_rule_group_last_evaluation_timestamp_seconds",
            "gauge",
            "When the group was last evaluated.",
            |g| g.stats.last_eval_ms.load(Ordering::Relaxed) as f64 / 1e3,
        ),
        (
            "sonde_rule_group_interval_seconds",
            "gauge",
            "The group's evaluation interval.",
            |g| g.interval.as_secs_f64(),
        ),
        ("sonde_rule_group_rules", "gauge", "Rules in the group.", |g| {
            g.spec.rules.len() as f64
        }),
        (
            "sonde_rule_group_duration_seconds_sum",
            "counter",
            "Time spent evaluating the group, in total.",
            |g| g.stats.duration_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        ),
    ];
    for (name, kind, help, get) in families {
        w.family(name, kind, help);
        for g in &s.rules.groups() {
            let key = g.key();
            w.sample(name, [("rule_group", key.as_str())], get(g), None);
        }
    }
    type AmGet = fn(&crate::rules::alertmanager::Client) -> f64;
    let ams: [(&str, &str, &str, AmGet); 4] = [
        (
            "sonde_alertmanager_alerts_sent_total",
            "counter",
            "Alerts delivered to the Alertmanager.",
            |c| c.sent.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_alertmanager_alerts_errors_total",
            "counter",
            "Alerts given up on after every retry failed.",
            |c| c.errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_alertmanager_alerts_dropped_total",
            "counter",
            "Alerts dropped because the queue was full.",
            |c| c.dropped.load(Ordering::Relaxed) as f64,
        ),
        (
            "sonde_alertmanager_queue_length",
            "gauge",
            "Alerts waiting to be sent.",
            |c| c.queue_len() as f64,
        ),
    ];
    for (name, kind, help, get) in ams {
        w.family(name, kind, help);
        for c in &s.rules.alertmanagers {
            w.sample(name, [("alertmanager", c.url.as_str())], get(c), None);
        }
    }
}

fn process(s: &Shared, w: &mut Writer) {
    let p = crate::process::ProcessStats::read();
    let start = s
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let rows: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            Some(start),
        ),
    ];
    for (name, kind, help, v) in rows {
        if let Some(v) = v {
            w.family(name, kind, help);
            w.sample(name, [], v, None);
        }
    }
}

/// The notifier's deliveries per receiver and integration, alerts and silences.
fn notifier(n: &crate::notify::Notifier, w: &mut Writer) {
    let stats = n.metrics.by_integration.lock().unwrap().clone();
    type Get = fn(&crate::notify::metrics::IntegrationStats) -> f64;
    let families: [(&str, &str, &str, Get); 6] = [
        (
            "sonde_notifications_total",
            "counter",
            "Notifications attempted (each retried until delivered or given up).",
            |m| m.notifications as f64,
        ),
        (
            "sonde_notifications_failed_total",
            "counter",
            "Notifications given up on after retries.",
            |m| m.failed as f64,
        ),
        (
            "sonde_notification_requests_total",
            "counter",
            "Delivery requests, retries included.",
            |m| m.requests as f64,
        ),
        (
            "sonde_notification_requests_failed_total",
            "counter",
            "Delivery requests that failed.",
            |m| m.requests_failed as f64,
        ),
        ("sonde_notification_latency_seconds_sum", "", "", |m| m.latency_sum),
        ("sonde_notification_latency_seconds_count", "", "", |m| {
            m.latency_count as f64
        }),
    ];
    for (name, kind, help, get) in families {
        if name == "sonde_notification_latency_seconds_sum" {
            w.family(
                "sonde_notification_latency_seconds",
                "summary",
                "Latency of delivery requests.",
            );
        } else if !kind.is_empty() {
            w.family(name, kind, help);
        }
        for ((receiver, integration), m) in &stats {
            w.sample(
                name,
                [("receiver", receiver.as_str()), ("integration", *integration)],
                get(m),
                None,
            );
        }
    }
    let (alerts, silences) = crate::notify::api::gauges(n);
    w.family(
        "sonde_alerts",
        "gauge",
        "Alerts the notifier holds, by state (active or suppressed).",
    );
    for (state, v) in alerts {
        w.sample("sonde_alerts", [("state", state)], v as f64, None);
    }
    w.family("sonde_silences", "gauge", "Silences by state.");
    for (state, v) in silences {
        w.sample("sonde_silences", [("state", state)], v as f64, None);
    }
}
