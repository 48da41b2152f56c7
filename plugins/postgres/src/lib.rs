//! PostgreSQL metrics with postgres_exporter's names, types and labels (0.11, the
//! Debian package), read through the host's `sql` interface: the plugin never sees
//! the connection's credentials, and every statement runs read-only under the
//! collection's deadline. Plus user-defined read-only queries (`config.queries`).
//!
//! Like postgres_exporter, a server that cannot be reached (down, credentials or
//! database refused, no answer in time) still gives `pg_up 0`; unlike it, the
//! collection is also reported *degraded* (`Collection::target_error`), so the target
//! shows `up 0` and the reason as its `lastError`. A statement that runs out of time
//! does the same (`pg_up 0`, the metrics read before it kept). A statement the
//! server refuses (a missing privilege, a mistake in a custom query) is logged and
//! flagged in `pg_exporter_last_scrape_error`; the other metrics are kept.

mod builtin;
mod config;
mod custom;
mod settings;

use config::Config;
use sonde_plugin_sdk::sql::{self, Cell, Rows, SqlError};
use sonde_plugin_sdk::{Collection, Error, Info, Kind, Plugin, export_plugin, log, parse_config};
use std::cell::RefCell;

pub struct Postgres {
    config: Config,
    /// The last connection error logged, so a server that stays down is logged once.
    last_error: Option<String>,
    /// Why the grant check in `configure` could not reach the server. That check may
    /// use up the collection's time (a server that never answers), leaving the first
    /// `collect` only "no time left": report this reason instead.
    configure_error: Option<String>,
}

/// What every statement of one collection needs.
pub(crate) struct Ctx<'a> {
    pub connection: &'a str,
    /// Value of the `server` label (postgres_exporter's host:port).
    pub server: String,
    /// Messages of the statements that failed because of the server rather than the
    /// statement (timeout, connection lost): they make the collection degraded.
    pub server_trouble: RefCell<Vec<String>>,
}

impl Ctx<'_> {
    pub fn query(&self, statement: &str) -> Result<Rows, SqlError> {
        let result = sql::query(self.connection, statement);
        if let Err(e @ (SqlError::Timeout(_) | SqlError::Unreachable(_))) = &result {
            self.server_trouble.borrow_mut().push(e.message().to_string());
        }
        result
    }
}

impl Plugin for Postgres {
    fn info() -> Info {
        Info::new(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL server statistics (postgres_exporter-compatible) and custom read-only SQL metrics",
        )
    }

    fn configure(json: &str) -> Result<Self, Error> {
        let config: Config = parse_config(json)?;
        config.validate()?;
        // A connection that is not granted is a configuration mistake: say so now
        // rather than report pg_up 0 forever. An unreachable server is not.
        let configure_error = match sql::query(&config.connection, "SELECT 1") {
            Err(SqlError::Denied(m)) => return Err(Error::Denied(m)),
            Err(e @ (SqlError::Timeout(_) | SqlError::Unreachable(_))) => Some(e.message().to_string()),
            _ => None,
        };
        Ok(Postgres {
            config,
            last_error: None,
            configure_error,
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let up = out.family("pg_up", Kind::Gauge, UP_HELP);
        let configure_error = self.configure_error.take();
        let facts = match sql::query(&self.config.connection, builtin::FACTS) {
            Ok(rows) => rows,
            Err(e) => {
                let reason = match (&e, configure_error) {
                    (SqlError::Timeout(_), Some(earlier)) => earlier,
                    _ => e.message().to_string(),
                };
                // As postgres_exporter: pg_up 0 (for rules like `pg_up == 0`) and the
                // error flag; and the target is down with the reason as lastError. The
                // log gets each distinct error once.
                let msg = format!(
                    "PostgreSQL on connection {:?} is down: {reason}",
                    self.config.connection
                );
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    log::warn(&msg);
                    self.last_error = Some(msg.clone());
                }
                out.sample(up, "pg_up", &[], 0.0);
                last_scrape_error(out, true);
                out.target_error(msg);
                return Ok(());
            }
        };
        if self.last_error.take().is_some() {
            log::info(&format!(
                "PostgreSQL on connection {:?} is up again",
                self.config.connection
            ));
        }
        let server = self
            .config
            .server
            .clone()
            .unwrap_or_else(|| cell(&facts, "server").to_label());
        let ctx = Ctx {
            connection: &self.config.connection,
            server,
            server_trouble: RefCell::default(),
        };
        builtin::statics(&ctx, &facts, out);
        let mut failures = Vec::new();
        for (name, collector) in builtin::COLLECTORS {
            if let Err(e) = collector(&ctx, out) {
                failures.push(format!("{name}: {e}"));
            }
        }
        for q in &self.config.queries {
            if let Err(e) = custom::collect(&ctx, q, out) {
                failures.push(format!("query {}: {e}", q.metric));
            }
        }
        last_scrape_error(out, !failures.is_empty());
        let trouble = ctx.server_trouble.borrow();
        // A statement the server did not answer in time counts as the server being
        // unavailable (pg_up 0), as the fault list has it; the metrics that
        // were read are kept.
        out.sample(up, "pg_up", &[], if trouble.is_empty() { 1.0 } else { 0.0 });
        if !trouble.is_empty() {
            let failed: Vec<&String> = failures
                .iter()
                .filter(|f| trouble.iter().any(|t| f.ends_with(t.as_str())))
                .collect();
            out.target_error(format!(
                "PostgreSQL on connection {:?}: {}",
                self.config.connection,
                failed.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("; ")
            ));
        }
        if !failures.is_empty() {
            // One failing view (a missing privilege, a custom query's mistake) must not
            // hide the others: report it in the log, keep the rest.
            log::warn(&format!("some statements failed: {}", failures.join("; ")));
        }
        Ok(())
    }
}

const UP_HELP: &str =
    "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).";

/// postgres_exporter's flag for a scrape with an error (server down, or a statement
/// failed); the reason is in sonde's log.
fn last_scrape_error(out: &mut Collection, failed: bool) {
    let name = "pg_exporter_last_scrape_error";
    let f = out.family(
        name,
        Kind::Gauge,
        "Whether the last scrape of metrics from PostgreSQL resulted in an error (1 for error, 0 for success).",
    );
    out.sample(f, name, &[], if failed { 1.0 } else { 0.0 });
}

/// The cell of `column` in the first row (NULL when absent).
pub(crate) fn cell<'r>(rows: &'r Rows, column: &str) -> &'r Cell {
    static NULL: Cell = Cell::Null;
    match (rows.column(column), rows.rows.first()) {
        (Some(i), Some(r)) => &r[i],
        _ => &NULL,
    }
}

/// A metric value: NULL (and non-numeric text) is NaN, as postgres_exporter reports it.
pub(crate) fn value(c: &Cell) -> f64 {
    c.as_f64().unwrap_or(f64::NAN)
}

export_plugin!(Postgres);
