//! postgres_exporter's default metrics (0.11): the same statements, names, types and
//! labels, so its dashboards and alerts work unchanged.

use crate::{Ctx, cell, value};
use sonde_plugin_sdk::sql::Rows;
use sonde_plugin_sdk::{Collection, Kind};

type Collector = fn(&Ctx, &mut Collection) -> Result<(), String>;

/// Every builtin collector, by name (for error messages).
pub const COLLECTORS: &[(&str, Collector)] = &[
    ("pg_stat_database", stat_database),
    ("pg_stat_database_conflicts", stat_database_conflicts),
    ("pg_stat_activity", stat_activity),
    ("pg_locks", locks),
    ("pg_database", database_size),
    ("pg_stat_bgwriter", bgwriter),
    ("pg_stat_archiver", archiver),
    ("pg_settings", crate::settings::collect),
    ("pg_replication", replication),
];

/// Facts read first; its failure means the server is down (pg_up 0).
pub const FACTS: &str = "SELECT version() AS version, current_setting('server_version') AS server_version, \
     COALESCE(host(inet_server_addr()) || ':' || inet_server_port(), '') AS server, \
     extract(epoch from pg_postmaster_start_time())::float8 AS start_time";

pub fn statics(ctx: &Ctx, facts: &Rows, out: &mut Collection) {
    let version = cell(facts, "version").to_label();
    let short = short_version(&cell(facts, "server_version").to_label());
    let f = out.family("pg_static", Kind::Unknown, "Version string as reported by postgres");
    let labels = [
        ("server", ctx.server.as_str()),
        ("short_version", short.as_str()),
        ("version", version.as_str()),
    ];
    out.sample(f, "pg_static", &labels, 1.0);
    let name = "pg_postmaster_start_time_seconds";
    let f = out.family(name, Kind::Gauge, "Time at which postmaster started");
    out.sample(f, name, &[("server", &ctx.server)], value(cell(facts, "start_time")));
}

/// "15.18 (Debian 15.18-0+deb12u1)" -> "15.18.0", as postgres_exporter's semver.
fn short_version(v: &str) -> String {
    let num = v.split_whitespace().next().unwrap_or("");
    let mut parts: Vec<&str> = num.split('.').take(3).collect();
    while parts.len() < 3 {
        parts.push("0");
    }
    parts.join(".")
}

/// Kind and help of pg_stat_database's columns; others are exported untyped.
fn stat_database_column(col: &str) -> (Kind, &'static str) {
    match col {
        "numbackends" => (Kind::Gauge, "Number of backends currently connected to this database."),
        "xact_commit" | "xact_rollback" | "blks_read" | "blks_hit" | "tup_returned" | "tup_fetched"
        | "tup_inserted" | "tup_updated" | "tup_deleted" | "conflicts" | "temp_files" | "temp_bytes" | "deadlocks"
        | "blk_read_time" | "blk_write_time" | "stats_reset" => (Kind::Counter, "Counter from pg_stat_database"),
        _ => (Kind::Unknown, "Unknown metric from pg_stat_database"),
    }
}

/// Emits every column of `rows` except the label columns as `<prefix>_<column>`,
/// labelled by `datid`/`datname` and `server`.
fn per_database(ctx: &Ctx, rows: &Rows, prefix: &str, kind_of: fn(&str) -> (Kind, &'static str), out: &mut Collection) {
    let (datid, datname) = (rows.column("datid"), rows.column("datname"));
    for (i, col) in rows.columns.iter().enumerate() {
        if col == "datid" || col == "datname" {
            continue;
        }
        let (kind, help) = kind_of(col);
        let name = format!("{prefix}_{col}");
        let f = out.family(&name, kind, help);
        for row in &rows.rows {
            let id = datid.map(|c| row[c].to_label()).unwrap_or_default();
            let id = if id.is_empty() { "0".to_string() } else { id };
            let dn = datname.map(|c| row[c].to_label()).unwrap_or_default();
            let labels = [
                ("datid", id.as_str()),
                ("datname", dn.as_str()),
                ("server", ctx.server.as_str()),
            ];
            let v = value(&row[i]);
            // postgres_exporter reports timestamps in whole seconds.
            out.sample(f, &name, &labels, if col == "stats_reset" { v.floor() } else { v });
        }
    }
}

fn stat_database(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx
        .query("SELECT * FROM pg_stat_database")
        .map_err(|e| e.message().to_string())?;
    per_database(ctx, &rows, "pg_stat_database", stat_database_column, out);
    Ok(())
}

fn stat_database_conflicts(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx
        .query("SELECT * FROM pg_stat_database_conflicts")
        .map_err(|e| e.message().to_string())?;
    let kind = |_: &str| {
        (
            Kind::Counter,
            "Queries canceled in this database because of conflicts with recovery",
        )
    };
    per_database(ctx, &rows, "pg_stat_database_conflicts", kind, out);
    Ok(())
}

/// Emits `columns` of every row as gauges `<prefix>_<column>` labelled by `labels`.
fn gauges(
    ctx: &Ctx,
    rows: &Rows,
    prefix: &str,
    labels: &[&str],
    columns: &[(&str, Kind, &str)],
    out: &mut Collection,
) -> Result<(), String> {
    let idx = |c: &str| rows.column(c).ok_or_else(|| format!("no column {c}"));
    let label_idx: Vec<usize> = labels.iter().map(|l| idx(l)).collect::<Result<_, _>>()?;
    for (col, kind, help) in columns {
        let i = idx(col)?;
        let name = format!("{prefix}_{col}");
        let f = out.family(&name, *kind, help);
        for row in &rows.rows {
            let texts: Vec<String> = label_idx.iter().map(|&j| row[j].to_label()).collect();
            let mut l: Vec<(&str, &str)> = labels.iter().copied().zip(texts.iter().map(String::as_str)).collect();
            l.push(("server", &ctx.server));
            out.sample(f, &name, &l, value(&row[i]));
        }
    }
    Ok(())
}

const STAT_ACTIVITY: &str = "SELECT pg_database.datname, tmp.state, COALESCE(count, 0) AS count, \
     COALESCE(max_tx_duration, 0) AS max_tx_duration \
     FROM (VALUES ('active'), ('idle'), ('idle in transaction'), ('idle in transaction (aborted)'), \
     ('fastpath function call'), ('disabled')) AS tmp(state) CROSS JOIN pg_database \
     LEFT JOIN (SELECT datname, state, count(*) AS count, \
     MAX(EXTRACT(EPOCH FROM now() - xact_start))::float8 AS max_tx_duration \
     FROM pg_stat_activity GROUP BY datname, state) AS tmp2 \
     ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname";

fn stat_activity(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx.query(STAT_ACTIVITY).map_err(|e| e.message().to_string())?;
    let cols = [
        ("count", Kind::Gauge, "number of connections in this state"),
        (
            "max_tx_duration",
            Kind::Gauge,
            "max duration in seconds any active transaction has been running",
        ),
    ];
    gauges(ctx, &rows, "pg_stat_activity", &["datname", "state"], &cols, out)
}

const LOCKS: &str = "SELECT pg_database.datname, tmp.mode, COALESCE(count, 0) AS count \
     FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'), ('shareupdateexclusivelock'), \
     ('sharelock'), ('sharerowexclusivelock'), ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) \
     AS tmp(mode) CROSS JOIN pg_database \
     LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks \
     WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2 \
     ON tmp.mode = tmp2.mode AND pg_database.oid = tmp2.database ORDER BY 1";

fn locks(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx.query(LOCKS).map_err(|e| e.message().to_string())?;
    let cols = [("count", Kind::Gauge, "Number of locks")];
    gauges(ctx, &rows, "pg_locks", &["datname", "mode"], &cols, out)
}

fn database_size(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx
        .query("SELECT datname, pg_database_size(datname) AS size_bytes FROM pg_database")
        .map_err(|e| e.message().to_string())?;
    let cols = [("size_bytes", Kind::Gauge, "Disk space used by the database")];
    gauges(ctx, &rows, "pg_database", &["datname"], &cols, out)
}

/// pg_stat_bgwriter's columns, emitted under the `_total` names of exporters since
/// 0.11 and the unsuffixed names older dashboards query.
const BGWRITER: &[(&str, &str)] = &[
    (
        "checkpoints_timed",
        "Number of scheduled checkpoints that have been performed",
    ),
    (
        "checkpoints_req",
        "Number of requested checkpoints that have been performed",
    ),
    (
        "checkpoint_write_time",
        "Total amount of time that has been spent in the portion of checkpoint processing where files are written to disk, in milliseconds",
    ),
    (
        "checkpoint_sync_time",
        "Total amount of time that has been spent in the portion of checkpoint processing where files are synchronized to disk, in milliseconds",
    ),
    ("buffers_checkpoint", "Number of buffers written during checkpoints"),
    ("buffers_clean", "Number of buffers written by the background writer"),
    (
        "maxwritten_clean",
        "Number of times the background writer stopped a cleaning scan because it had written too many buffers",
    ),
    ("buffers_backend", "Number of buffers written directly by a backend"),
    (
        "buffers_backend_fsync",
        "Number of times a backend had to execute its own fsync call",
    ),
    ("buffers_alloc", "Number of buffers allocated"),
    ("stats_reset", "Time at which these statistics were last reset"),
];

/// PostgreSQL 17 moved the checkpoint columns of pg_stat_bgwriter to the new
/// pg_stat_checkpointer view (under new names); read them there so the same series
/// keep coming. `buffers_backend` and `buffers_backend_fsync` were dropped from the
/// statistics views in 17 (the counts moved to pg_stat_io by backend type): on 17 and
/// later those two series are not emitted.
const CHECKPOINTER_17: &str = "SELECT num_timed AS checkpoints_timed, num_requested AS checkpoints_req, \
     write_time AS checkpoint_write_time, sync_time AS checkpoint_sync_time, \
     buffers_written AS buffers_checkpoint FROM pg_stat_checkpointer";

fn bgwriter(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx
        .query("SELECT * FROM pg_stat_bgwriter")
        .map_err(|e| e.message().to_string())?;
    let checkpointer = match rows.column("checkpoints_timed") {
        Some(_) => None,
        None => Some(ctx.query(CHECKPOINTER_17).map_err(|e| e.message().to_string())?),
    };
    for (col, help) in BGWRITER {
        let source = match &checkpointer {
            Some(c) if c.column(col).is_some() => c,
            _ => &rows,
        };
        if source.column(col).is_none() {
            continue;
        }
        let v = value(cell(source, col));
        // postgres_exporter reports timestamps in whole seconds.
        let v = if *col == "stats_reset" { v.floor() } else { v };
        for name in [
            format!("pg_stat_bgwriter_{col}_total"),
            format!("pg_stat_bgwriter_{col}"),
        ] {
            let f = out.family(&name, Kind::Counter, help);
            out.sample(f, &name, &[("server", &ctx.server)], v);
        }
    }
    Ok(())
}

fn archiver(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx
        .query(
            "SELECT archived_count, failed_count, \
             extract(epoch from now() - last_archived_time)::float8 AS last_archive_age FROM pg_stat_archiver",
        )
        .map_err(|e| e.message().to_string())?;
    let cols = [
        (
            "archived_count",
            Kind::Counter,
            "Number of WAL files that have been successfully archived",
        ),
        (
            "failed_count",
            Kind::Counter,
            "Number of failed attempts for archiving WAL files",
        ),
        (
            "last_archive_age",
            Kind::Gauge,
            "Time in seconds since last WAL segment was successfully archived",
        ),
    ];
    gauges(ctx, &rows, "pg_stat_archiver", &[], &cols, out)
}

fn replication(ctx: &Ctx, out: &mut Collection) -> Result<(), String> {
    let rows = ctx
        .query(
            "SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END AS is_replica, \
             CASE WHEN NOT pg_is_in_recovery() THEN 0 \
             ELSE GREATEST(0, extract(epoch from now() - pg_last_xact_replay_timestamp())) END::float8 AS lag_seconds",
        )
        .map_err(|e| e.message().to_string())?;
    let cols = [
        ("lag_seconds", Kind::Gauge, "Replication lag behind master in seconds"),
        ("is_replica", Kind::Gauge, "Indicates if the server is a replica"),
    ];
    gauges(ctx, &rows, "pg_replication", &[], &cols, out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_version_is_semver() {
        assert_eq!(super::short_version("15.18 (Debian 15.18-0+deb12u1)"), "15.18.0");
        assert_eq!(super::short_version("9.6.24"), "9.6.24");
    }
}
