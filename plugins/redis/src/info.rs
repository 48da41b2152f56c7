//! `INFO ALL` → redis_exporter 1.45's metric names, types and units.

use sonde_plugin_sdk::{Collection, Kind};

/// How an INFO field is exported: (field, metric name without `redis_`, kind, scale).
/// From redis_exporter 1.45's `metricMapGauges` / `metricMapCounters`; a field not
/// listed is not exported, as there.
const FIELDS: &[(&str, &str, Kind, f64)] = &[
    // Server, clients
    ("uptime_in_seconds", "uptime_in_seconds", Kind::Gauge, 1.0),
    ("process_id", "process_id", Kind::Gauge, 1.0),
    ("io_threads_active", "io_threads_active", Kind::Gauge, 1.0),
    ("connected_clients", "connected_clients", Kind::Gauge, 1.0),
    ("blocked_clients", "blocked_clients", Kind::Gauge, 1.0),
    ("tracking_clients", "tracking_clients", Kind::Gauge, 1.0),
    ("clients_in_timeout_table", "clients_in_timeout_table", Kind::Gauge, 1.0),
    ("cluster_connections", "cluster_connections", Kind::Gauge, 1.0),
    (
        "client_longest_output_list",
        "client_longest_output_list",
        Kind::Gauge,
        1.0,
    ),
    ("client_biggest_input_buf", "client_biggest_input_buf", Kind::Gauge, 1.0),
    (
        "client_recent_max_output_buffer",
        "client_recent_max_output_buffer_bytes",
        Kind::Gauge,
        1.0,
    ),
    (
        "client_recent_max_input_buffer",
        "client_recent_max_input_buffer_bytes",
        Kind::Gauge,
        1.0,
    ),
    // Memory
    ("allocator_active", "allocator_active_bytes", Kind::Gauge, 1.0),
    ("allocator_allocated", "allocator_allocated_bytes", Kind::Gauge, 1.0),
    ("allocator_resident", "allocator_resident_bytes", Kind::Gauge, 1.0),
    ("allocator_frag_ratio", "allocator_frag_ratio", Kind::Gauge, 1.0),
    ("allocator_frag_bytes", "allocator_frag_bytes", Kind::Gauge, 1.0),
    ("allocator_rss_ratio", "allocator_rss_ratio", Kind::Gauge, 1.0),
    ("allocator_rss_bytes", "allocator_rss_bytes", Kind::Gauge, 1.0),
    ("used_memory", "memory_used_bytes", Kind::Gauge, 1.0),
    ("used_memory_rss", "memory_used_rss_bytes", Kind::Gauge, 1.0),
    ("used_memory_peak", "memory_used_peak_bytes", Kind::Gauge, 1.0),
    ("used_memory_lua", "memory_used_lua_bytes", Kind::Gauge, 1.0),
    ("used_memory_overhead", "memory_used_overhead_bytes", Kind::Gauge, 1.0),
    ("used_memory_startup", "memory_used_startup_bytes", Kind::Gauge, 1.0),
    ("used_memory_dataset", "memory_used_dataset_bytes", Kind::Gauge, 1.0),
    ("used_memory_scripts", "memory_used_scripts_bytes", Kind::Gauge, 1.0),
    ("maxmemory", "memory_max_bytes", Kind::Gauge, 1.0),
    ("mem_fragmentation_ratio", "mem_fragmentation_ratio", Kind::Gauge, 1.0),
    ("mem_fragmentation_bytes", "mem_fragmentation_bytes", Kind::Gauge, 1.0),
    ("mem_clients_slaves", "mem_clients_slaves", Kind::Gauge, 1.0),
    ("mem_clients_normal", "mem_clients_normal", Kind::Gauge, 1.0),
    (
        "mem_not_counted_for_evict",
        "mem_not_counted_for_eviction_bytes",
        Kind::Gauge,
        1.0,
    ),
    ("lazyfree_pending_objects", "lazyfree_pending_objects", Kind::Gauge, 1.0),
    ("active_defrag_running", "active_defrag_running", Kind::Gauge, 1.0),
    (
        "migrate_cached_sockets",
        "migrate_cached_sockets_total",
        Kind::Gauge,
        1.0,
    ),
    ("active_defrag_hits", "defrag_hits", Kind::Gauge, 1.0),
    ("active_defrag_misses", "defrag_misses", Kind::Gauge, 1.0),
    ("active_defrag_key_hits", "defrag_key_hits", Kind::Gauge, 1.0),
    ("active_defrag_key_misses", "defrag_key_misses", Kind::Gauge, 1.0),
    (
        "expired_time_cap_reached_count",
        "expired_time_cap_reached_total",
        Kind::Gauge,
        1.0,
    ),
    ("expired_stale_perc", "expired_stale_percentage", Kind::Gauge, 1.0),
    ("number_of_cached_scripts", "number_of_cached_scripts", Kind::Gauge, 1.0),
    // Persistence
    ("loading", "loading_dump_file", Kind::Gauge, 1.0),
    (
        "rdb_changes_since_last_save",
        "rdb_changes_since_last_save",
        Kind::Gauge,
        1.0,
    ),
    ("rdb_bgsave_in_progress", "rdb_bgsave_in_progress", Kind::Gauge, 1.0),
    (
        "rdb_last_save_time",
        "rdb_last_save_timestamp_seconds",
        Kind::Gauge,
        1.0,
    ),
    ("rdb_last_bgsave_status", "rdb_last_bgsave_status", Kind::Gauge, 1.0),
    (
        "rdb_last_bgsave_time_sec",
        "rdb_last_bgsave_duration_sec",
        Kind::Gauge,
        1.0,
    ),
    (
        "rdb_current_bgsave_time_sec",
        "rdb_current_bgsave_duration_sec",
        Kind::Gauge,
        1.0,
    ),
    ("rdb_last_cow_size", "rdb_last_cow_size_bytes", Kind::Gauge, 1.0),
    ("aof_enabled", "aof_enabled", Kind::Gauge, 1.0),
    ("aof_rewrite_in_progress", "aof_rewrite_in_progress", Kind::Gauge, 1.0),
    ("aof_rewrite_scheduled", "aof_rewrite_scheduled", Kind::Gauge, 1.0),
    (
        "aof_last_rewrite_time_sec",
        "aof_last_rewrite_duration_sec",
        Kind::Gauge,
        1.0,
    ),
    (
        "aof_current_rewrite_time_sec",
        "aof_current_rewrite_duration_sec",
        Kind::Gauge,
        1.0,
    ),
    ("aof_last_cow_size", "aof_last_cow_size_bytes", Kind::Gauge, 1.0),
    ("aof_current_size", "aof_current_size_bytes", Kind::Gauge, 1.0),
    ("aof_base_size", "aof_base_size_bytes", Kind::Gauge, 1.0),
    ("aof_pending_rewrite", "aof_pending_rewrite", Kind::Gauge, 1.0),
    ("aof_buffer_length", "aof_buffer_length", Kind::Gauge, 1.0),
    (
        "aof_rewrite_buffer_length",
        "aof_rewrite_buffer_length",
        Kind::Gauge,
        1.0,
    ),
    ("aof_pending_bio_fsync", "aof_pending_bio_fsync", Kind::Gauge, 1.0),
    ("aof_delayed_fsync", "aof_delayed_fsync", Kind::Gauge, 1.0),
    (
        "aof_last_bgrewrite_status",
        "aof_last_bgrewrite_status",
        Kind::Gauge,
        1.0,
    ),
    ("aof_last_write_status", "aof_last_write_status", Kind::Gauge, 1.0),
    ("module_fork_in_progress", "module_fork_in_progress", Kind::Gauge, 1.0),
    (
        "module_fork_last_cow_size",
        "module_fork_last_cow_size",
        Kind::Gauge,
        1.0,
    ),
    // Stats
    ("pubsub_channels", "pubsub_channels", Kind::Gauge, 1.0),
    ("pubsub_patterns", "pubsub_patterns", Kind::Gauge, 1.0),
    ("latest_fork_usec", "latest_fork_seconds", Kind::Gauge, 1e-6),
    ("tracking_total_keys", "tracking_total_keys", Kind::Gauge, 1.0),
    ("tracking_total_items", "tracking_total_items", Kind::Gauge, 1.0),
    ("tracking_total_prefixes", "tracking_total_prefixes", Kind::Gauge, 1.0),
    ("sync_full", "replica_resyncs_full", Kind::Gauge, 1.0),
    ("sync_partial_ok", "replica_partial_resync_accepted", Kind::Gauge, 1.0),
    ("sync_partial_err", "replica_partial_resync_denied", Kind::Gauge, 1.0),
    (
        "slave_expires_tracked_keys",
        "slave_expires_tracked_keys",
        Kind::Gauge,
        1.0,
    ),
    // Replication
    ("connected_slaves", "connected_slaves", Kind::Gauge, 1.0),
    ("repl_backlog_size", "replication_backlog_bytes", Kind::Gauge, 1.0),
    ("repl_backlog_active", "repl_backlog_is_active", Kind::Gauge, 1.0),
    (
        "repl_backlog_first_byte_offset",
        "repl_backlog_first_byte_offset",
        Kind::Gauge,
        1.0,
    ),
    ("repl_backlog_histlen", "repl_backlog_history_bytes", Kind::Gauge, 1.0),
    ("master_repl_offset", "master_repl_offset", Kind::Gauge, 1.0),
    ("second_repl_offset", "second_repl_offset", Kind::Gauge, 1.0),
    ("slave_repl_offset", "slave_repl_offset", Kind::Gauge, 1.0),
    ("slave_priority", "slave_priority", Kind::Gauge, 1.0),
    (
        "master_last_io_seconds_ago",
        "master_last_io_seconds_ago",
        Kind::Gauge,
        1.0,
    ),
    (
        "master_link_down_since_seconds",
        "master_link_down_since_seconds",
        Kind::Gauge,
        1.0,
    ),
    ("master_sync_in_progress", "master_sync_in_progress", Kind::Gauge, 1.0),
    ("cluster_enabled", "cluster_enabled", Kind::Gauge, 1.0),
    // Counters
    (
        "total_connections_received",
        "connections_received_total",
        Kind::Counter,
        1.0,
    ),
    (
        "total_commands_processed",
        "commands_processed_total",
        Kind::Counter,
        1.0,
    ),
    ("rejected_connections", "rejected_connections_total", Kind::Counter, 1.0),
    ("total_net_input_bytes", "net_input_bytes_total", Kind::Counter, 1.0),
    ("total_net_output_bytes", "net_output_bytes_total", Kind::Counter, 1.0),
    ("expired_keys", "expired_keys_total", Kind::Counter, 1.0),
    ("evicted_keys", "evicted_keys_total", Kind::Counter, 1.0),
    ("keyspace_hits", "keyspace_hits_total", Kind::Counter, 1.0),
    ("keyspace_misses", "keyspace_misses_total", Kind::Counter, 1.0),
    ("used_cpu_sys", "cpu_sys_seconds_total", Kind::Counter, 1.0),
    ("used_cpu_user", "cpu_user_seconds_total", Kind::Counter, 1.0),
    (
        "used_cpu_sys_children",
        "cpu_sys_children_seconds_total",
        Kind::Counter,
        1.0,
    ),
    (
        "used_cpu_user_children",
        "cpu_user_children_seconds_total",
        Kind::Counter,
        1.0,
    ),
    (
        "used_cpu_sys_main_thread",
        "cpu_sys_main_thread_seconds_total",
        Kind::Counter,
        1.0,
    ),
    (
        "used_cpu_user_main_thread",
        "cpu_user_main_thread_seconds_total",
        Kind::Counter,
        1.0,
    ),
    (
        "unexpected_error_replies",
        "unexpected_error_replies",
        Kind::Counter,
        1.0,
    ),
    ("total_error_replies", "total_error_replies", Kind::Counter, 1.0),
    (
        "dump_payload_sanitizations",
        "dump_payload_sanitizations",
        Kind::Counter,
        1.0,
    ),
    ("total_reads_processed", "total_reads_processed", Kind::Counter, 1.0),
    ("total_writes_processed", "total_writes_processed", Kind::Counter, 1.0),
    (
        "io_threaded_reads_processed",
        "io_threaded_reads_processed",
        Kind::Counter,
        1.0,
    ),
    (
        "io_threaded_writes_processed",
        "io_threaded_writes_processed",
        Kind::Counter,
        1.0,
    ),
];

/// The labels of `redis_instance_info`, as redis_exporter 1.45 sets them.
const INSTANCE_INFO: &[&str] = &[
    "role",
    "redis_version",
    "redis_build_id",
    "redis_mode",
    "os",
    "maxmemory_policy",
    "tcp_port",
    "run_id",
    "process_id",
];

/// A parsed `INFO ALL` reply: `field:value` lines in order, sections dropped.
pub struct Info<'a> {
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Info<'a> {
    pub fn parse(text: &'a str) -> Info<'a> {
        let fields = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .collect();
        Info { fields }
    }

    pub fn get(&self, field: &str) -> Option<&'a str> {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, v)| *v)
    }

    /// Emits every mapped field, instance info, command and error stats, keyspace.
    /// `labels` are the per-target labels (empty with a single target).
    pub fn emit(&self, out: &mut Collection, labels: &[(&str, &str)], databases: u32, now_secs: f64) {
        for (field, value) in &self.fields {
            if let Some((_, name, kind, scale)) = FIELDS.iter().find(|(f, ..)| f == field) {
                if let Some(v) = number(value) {
                    let name = format!("redis_{name}");
                    let fam = out.family(&name, *kind, &format!("Redis INFO field {field}."));
                    out.sample(fam, &name, labels, v * scale);
                }
            } else if let Some(cmd) = field.strip_prefix("cmdstat_") {
                self.cmdstat(out, labels, cmd, value);
            } else if let Some(cmd) = field.strip_prefix("latency_percentiles_usec_") {
                self.latency(out, labels, cmd, value);
            } else if let Some(err) = field.strip_prefix("errorstat_")
                && let Some(n) = kv(value, "count").and_then(number)
            {
                out.counter(
                    "redis_errors_total",
                    "Total number of errors per error type.",
                    &with(labels, &[("err", err)]),
                    n,
                );
            }
        }
        if let Some(up) = self.get("uptime_in_seconds").and_then(number) {
            let start = now_secs.floor() - up;
            out.gauge(
                "redis_start_time_seconds",
                "Start time of the Redis instance since unix epoch in seconds.",
                labels,
                start,
            );
        }
        let info: Vec<(&str, &str)> = INSTANCE_INFO.iter().map(|k| (*k, self.get(k).unwrap_or(""))).collect();
        out.gauge(
            "redis_instance_info",
            "Information about the Redis instance.",
            &with(labels, &info),
            1.0,
        );
        self.keyspace(out, labels, databases);
    }

    fn cmdstat(&self, out: &mut Collection, labels: &[(&str, &str)], cmd: &str, value: &str) {
        let l = with(labels, &[("cmd", cmd)]);
        let calls = kv(value, "calls").and_then(number);
        if let Some(calls) = calls {
            out.counter("redis_commands_total", "Total number of calls per command.", &l, calls);
        }
        if let Some(usec) = kv(value, "usec").and_then(number) {
            out.counter(
                "redis_commands_duration_seconds_total",
                "Total amount of time in seconds spent per command.",
                &l,
                usec / 1e6,
            );
        }
        if let Some(n) = kv(value, "rejected_calls").and_then(number) {
            out.counter(
                "redis_commands_rejected_calls_total",
                "Total number of errors prior command execution per command.",
                &l,
                n,
            );
        }
        if let Some(n) = kv(value, "failed_calls").and_then(number) {
            out.counter(
                "redis_commands_failed_calls_total",
                "Total number of errors within command execution per command.",
                &l,
                n,
            );
        }
    }

    /// `latency_percentiles_usec_<cmd>:p50=..,p99=..,p99.9=..` as a summary whose
    /// sum and count are the command's usec and calls (as redis_exporter does).
    fn latency(&self, out: &mut Collection, labels: &[(&str, &str)], cmd: &str, value: &str) {
        let quantiles: Vec<(f64, f64)> = value
            .split(',')
            .filter_map(|p| p.strip_prefix('p')?.split_once('='))
            .filter_map(|(q, v)| Some((q.parse().ok()?, v.parse().ok()?)))
            .collect();
        let stat = self.get(&format!("cmdstat_{cmd}")).unwrap_or("");
        let sum = kv(stat, "usec").and_then(number).unwrap_or(0.0);
        let count = kv(stat, "calls").and_then(number).unwrap_or(0.0);
        out.summary(
            "redis_latency_percentiles_usec",
            "A summary of latency percentile distribution per command.",
            &with(labels, &[("cmd", cmd)]),
            &quantiles,
            sum,
            count,
        );
    }

    /// `redis_db_keys` and `redis_db_keys_expiring` for every database (0 when
    /// absent from the keyspace section), `redis_db_avg_ttl_seconds` for those present.
    fn keyspace(&self, out: &mut Collection, labels: &[(&str, &str)], databases: u32) {
        let mut dbs: Vec<(String, f64, f64, Option<f64>)> =
            (0..databases).map(|i| (format!("db{i}"), 0.0, 0.0, None)).collect();
        for (field, value) in &self.fields {
            let Some(n) = field.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let keys = kv(value, "keys").and_then(number).unwrap_or(0.0);
            let expires = kv(value, "expires").and_then(number).unwrap_or(0.0);
            let ttl = kv(value, "avg_ttl").and_then(number).map(|ms| ms / 1000.0);
            let entry = (format!("db{n}"), keys, expires, ttl);
            match dbs.get_mut(n as usize) {
                Some(slot) => *slot = entry,
                None => dbs.push(entry),
            }
        }
        for (db, keys, expires, ttl) in &dbs {
            let l = with(labels, &[("db", db)]);
            out.gauge("redis_db_keys", "Total number of keys by DB.", &l, *keys);
            out.gauge(
                "redis_db_keys_expiring",
                "Total number of expiring keys by DB.",
                &l,
                *expires,
            );
            if let Some(ttl) = ttl {
                out.gauge("redis_db_avg_ttl_seconds", "Avg TTL in seconds.", &l, *ttl);
            }
        }
    }
}

/// An INFO value as a number; `ok`/`err` status words as 1/0, as redis_exporter.
pub fn number(v: &str) -> Option<f64> {
    match v {
        "ok" => Some(1.0),
        "err" | "fail" => Some(0.0),
        _ => v.trim_end_matches('%').parse().ok(),
    }
}

/// The value of `key` in `a=1,b=2`.
fn kv<'a>(list: &'a str, key: &str) -> Option<&'a str> {
    list.split(',')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_lists() {
        let text =
            "# Server\r\nredis_version:7.0.15\r\nrdb_last_bgsave_status:ok\r\ndb0:keys=2,expires=1,avg_ttl=89848\r\n";
        let info = Info::parse(text);
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("rdb_last_bgsave_status").and_then(number), Some(1.0));
        assert_eq!(kv(info.get("db0").unwrap(), "avg_ttl"), Some("89848"));
    }
}
