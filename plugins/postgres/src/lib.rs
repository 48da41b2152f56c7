//! PostgreSQL metrics with postgres_exporter's names, types and labels (0.11, the
//! Debian package), read through the host's `sql` interface: the plugin never sees
//! the connection's credentials, and every statement runs read-only under the
//! collection's deadline. Plus user-defined read-only queries (`config.queries`).

mod builtin;
mod config;
mod custom;
mod settings;

use config::Config;
use sonde_plugin_sdk::sql::{self, Cell, Rows, SqlError};
use sonde_plugin_sdk::{Collection, Error, Info, Kind, Plugin, export_plugin, log, parse_config};

pub struct Postgres {
    config: Config,
    /// The last connection error logged, so a server that stays down is logged once.
    last_error: Option<String>,
}

/// What every statement of one collection needs.
pub(crate) struct Ctx<'a> {
    pub connection: &'a str,
    /// Value of the `server` label (postgres_exporter's host:port).
    pub server: String,
}

impl Ctx<'_> {
    pub fn query(&self, statement: &str) -> Result<Rows, SqlError> {
        sql::query(self.connection, statement)
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
        if let Err(SqlError::Denied(m)) = sql::query(&config.connection, "SELECT 1") {
            return Err(Error::Denied(m));
        }
        Ok(Postgres {
            config,
            last_error: None,
        })
    }

    fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
        let up = out.family("pg_up", Kind::Gauge, UP_HELP);
        let facts = match sql::query(&self.config.connection, builtin::FACTS) {
            Ok(rows) => rows,
            Err(e) => {
                // As postgres_exporter: the scrape succeeds and says pg_up 0; the reason
                // goes to the log (once per distinct error) and to the custom metric.
                let msg = format!(
                    "PostgreSQL on connection {:?} is down: {}",
                    self.config.connection,
                    e.message()
                );
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    log::warn(&msg);
                    self.last_error = Some(msg);
                }
                out.sample(up, "pg_up", &[], 0.0);
                last_scrape_error(out, true);
                return Ok(());
            }
        };
        if self.last_error.take().is_some() {
            log::info(&format!(
                "PostgreSQL on connection {:?} is up again",
                self.config.connection
            ));
        }
        out.sample(up, "pg_up", &[], 1.0);
        let server = self
            .config
            .server
            .clone()
            .unwrap_or_else(|| cell(&facts, "server").to_label());
        let ctx = Ctx {
            connection: &self.config.connection,
            server,
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
