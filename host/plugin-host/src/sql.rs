//! The `sonde:plugin/sql` interface: read-only SQL on database connections that the
//! host owns. A plugin names a connection granted to it (`grants.sql`); the host
//! connects with the credentials from sonde.toml (the password never enters the
//! guest), reuses the connection across collections and instances, and runs every
//! statement in a `READ ONLY` transaction with `SET LOCAL statement_timeout`.
//!
//! PostgreSQL only, without TLS for now (`sslmode` disable or prefer).

use crate::bindings::sonde::plugin::sql::{Cell, Host, Rows, SqlError};
use crate::state::State;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls};

/// Deadline of a statement when the call has none (a host-side test).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Kept from the call's deadline for the host's own work (lifting the rows, the
/// commit): the statement timeout is the remaining time minus this.
const MARGIN: Duration = Duration::from_millis(200);

/// Rows returned by one statement; more fail the call (a metrics query returning a
/// million rows is a mistake, and the rows are copied into guest memory).
const MAX_ROWS: usize = 100_000;

/// How the host obtains a connection's password. Never inline in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PasswordSource {
    None,
    /// A file holding the password (trailing newline ignored), read at each connect.
    File(PathBuf),
    /// An environment variable of the sonde process.
    Env(String),
}

/// `sslmode` of a connection. Only the modes that work without TLS exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    Disable,
    Prefer,
}

/// A database connection defined in sonde.toml (`[connections.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SqlConnection {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub sslmode: SslMode,
    pub password: PasswordSource,
}

impl SqlConnection {
    fn password(&self) -> Result<Option<String>, String> {
        match &self.password {
            PasswordSource::None => Ok(None),
            PasswordSource::File(p) => std::fs::read_to_string(p)
                .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| format!("cannot read password_file {}: {e}", p.display())),
            PasswordSource::Env(v) => std::env::var(v)
                .map(Some)
                .map_err(|_| format!("password_env {v} is not set in sonde's environment")),
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<Client, SqlError> {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.user)
            .application_name("sonde")
            .connect_timeout(timeout)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            });
        if let Some(p) = self.password().map_err(SqlError::Unreachable)? {
            c.password(p);
        }
        let (client, conn) = match tokio::time::timeout(timeout, c.connect(NoTls)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(SqlError::Unreachable(format!("{}: {}", self.address(), message(&e)))),
            Err(_) => {
                return Err(SqlError::Timeout(format!(
                    "{}: no connection within {timeout:?}",
                    self.address()
                )));
            }
        };
        let addr = self.address();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "sonde::sql", "connection to {addr} ended: {e}");
            }
        });
        Ok(client)
    }

    fn address(&self) -> String {
        format!("postgres://{}@{}:{}/{}", self.user, self.host, self.port, self.database)
    }
}

/// One open connection per distinct [`SqlConnection`], shared by every instance
/// granted it; a statement holds it for its transaction.
type Slot = Arc<tokio::sync::Mutex<Option<Client>>>;
static POOL: LazyLock<Mutex<HashMap<SqlConnection, Slot>>> = LazyLock::new(Default::default);

fn slot(c: &SqlConnection) -> Slot {
    POOL.lock().unwrap().entry(c.clone()).or_default().clone()
}

impl Host for State {
    async fn query(&mut self, connection: String, statement: String) -> Result<Rows, SqlError> {
        let Some(conn) = self.grants.sql.get(&connection).cloned() else {
            let msg = format!(
                "connection {connection:?} is not granted: add it to `sql` in [{}.grants] in plugins.toml \
                 (and define [connections.{connection}] in sonde.toml)",
                self.name
            );
            self.incidents.lock().unwrap().deny(msg.clone());
            return Err(SqlError::Denied(msg));
        };
        let remaining = self
            .deadline
            .map_or(DEFAULT_TIMEOUT, |d| d.saturating_duration_since(Instant::now()))
            .saturating_sub(MARGIN);
        if remaining.is_zero() {
            return Err(SqlError::Timeout("no time left in this collection".into()));
        }
        run(&conn, &statement, remaining).await
    }
}

/// Runs `statement` on `conn` within `timeout`, connecting first when needed.
pub async fn run(conn: &SqlConnection, statement: &str, timeout: Duration) -> Result<Rows, SqlError> {
    let start = Instant::now();
    let slot = slot(conn);
    let Ok(mut guard) = tokio::time::timeout(timeout, slot.lock()).await else {
        return Err(SqlError::Timeout(format!(
            "{}: the connection stayed busy for {timeout:?} (another statement holds it)",
            conn.address()
        )));
    };
    if guard.as_ref().is_none_or(Client::is_closed) {
        *guard = None;
        *guard = Some(conn.connect(timeout).await?);
    }
    let left = timeout.saturating_sub(start.elapsed());
    let client = guard.as_mut().expect("connected above");
    match tokio::time::timeout(left, read_only(client, statement, left)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => {
            if client.is_closed() {
                *guard = None;
            }
            Err(e)
        }
        Err(_) => {
            // The server did not answer within the deadline (a network hang, or a
            // lock wait outside the statement timeout): the session is in an unknown
            // state, so drop it and connect afresh next time.
            *guard = None;
            Err(SqlError::Timeout(format!(
                "{}: no answer within {timeout:?}",
                conn.address()
            )))
        }
    }
}

async fn read_only(client: &mut Client, statement: &str, timeout: Duration) -> Result<Rows, SqlError> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(sql_err)?;
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {}", timeout.as_millis().max(1)))
        .await
        .map_err(sql_err)?;
    // The extended protocol takes one statement only, so a `COMMIT; INSERT ...` cannot
    // leave the read-only transaction.
    let rows = tx.query(statement, &[]).await;
    tx.rollback().await.map_err(sql_err)?;
    // The connection is shared by every instance granted it: undo whatever session
    // state a statement left (`set_config(.., false)`, `SET ROLE`, advisory locks),
    // as DISCARD ALL would, but keep tokio-postgres's prepared type lookups.
    client.batch_execute(SESSION_RESET).await.map_err(sql_err)?;
    lift(&rows.map_err(sql_err)?)
}

/// DISCARD ALL without its DEALLOCATE ALL (see `read_only`).
const SESSION_RESET: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD SEQUENCES";

fn lift(rows: &[tokio_postgres::Row]) -> Result<Rows, SqlError> {
    if rows.len() > MAX_ROWS {
        return Err(SqlError::Query(format!(
            "the statement returned {} rows, more than the limit of {MAX_ROWS}",
            rows.len()
        )));
    }
    let columns = rows
        .first()
        .map_or_else(Vec::new, |r| r.columns().iter().map(|c| c.name().to_string()).collect());
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cells = Vec::with_capacity(row.len());
        for (i, col) in row.columns().iter().enumerate() {
            let raw: Option<Raw> = row
                .try_get(i)
                .map_err(|e| SqlError::Query(format!("column {}: {e}", col.name())))?;
            cells.push(match raw {
                None => Cell::Null,
                Some(r) => {
                    decode(col.type_(), r.0).map_err(|e| SqlError::Query(format!("column {}: {e}", col.name())))?
                }
            });
        }
        out.push(cells);
    }
    Ok(Rows { columns, rows: out })
}

/// Any column value, undecoded (binary format).
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Decodes the binary format of the types a metrics query returns. Timestamps become
/// seconds since the Unix epoch, intervals seconds; others must be cast in the query.
fn decode(ty: &Type, raw: &[u8]) -> Result<Cell, String> {
    let e = |e: Box<dyn std::error::Error + Sync + Send>| e.to_string();
    Ok(match *ty {
        Type::BOOL => Cell::Boolean(bool::from_sql(ty, raw).map_err(e)?),
        Type::INT2 => Cell::Integer(i16::from_sql(ty, raw).map_err(e)?.into()),
        Type::INT4 => Cell::Integer(i32::from_sql(ty, raw).map_err(e)?.into()),
        Type::INT8 => Cell::Integer(i64::from_sql(ty, raw).map_err(e)?),
        Type::OID | Type::XID => Cell::Integer(u32::from_sql(&Type::OID, raw).map_err(e)?.into()),
        Type::FLOAT4 => Cell::Float(f32::from_sql(ty, raw).map_err(e)?.into()),
        Type::FLOAT8 => Cell::Float(f64::from_sql(ty, raw).map_err(e)?),
        Type::NUMERIC => Cell::Float(numeric(raw)?),
        Type::PG_LSN => Cell::Integer(be_i64(raw)?),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => Cell::Float((be_i64(raw)? + PG_EPOCH_US) as f64 / 1e6),
        Type::INTERVAL if raw.len() == 16 => {
            let us = be_i64(&raw[..8])?;
            let days = i32::from_be_bytes(raw[8..12].try_into().unwrap());
            let months = i32::from_be_bytes(raw[12..16].try_into().unwrap());
            Cell::Float(us as f64 / 1e6 + days as f64 * 86400.0 + months as f64 * 30.0 * 86400.0)
        }
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN | Type::CHAR => {
            Cell::Text(String::from_utf8_lossy(raw).into_owned())
        }
        _ => {
            return Err(format!(
                "type {ty} is not supported: cast it to text or a number in the query"
            ));
        }
    })
}

fn be_i64(raw: &[u8]) -> Result<i64, String> {
    raw.try_into()
        .map(i64::from_be_bytes)
        .map_err(|_| "bad 8-byte value".to_string())
}

/// NUMERIC's binary form: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(raw: &[u8]) -> Result<f64, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let (ndigits, weight, sign) = (word(0)? as usize, word(1)? as i16, word(2)?);
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let mut v = 0.0;
    for i in 0..ndigits {
        let d = word(4 + i)? as f64;
        v += d * 10000f64.powi(weight as i32 - i as i32);
    }
    Ok(if sign == 0x4000 { -v } else { v })
}

fn sql_err(e: tokio_postgres::Error) -> SqlError {
    match e.as_db_error() {
        // 57014 query_canceled: the statement_timeout fired.
        Some(db) if db.code().code() == "57014" => SqlError::Timeout(message(&e)),
        Some(_) => SqlError::Query(message(&e)),
        None if e.is_closed() => SqlError::Unreachable(message(&e)),
        None => SqlError::Query(message(&e)),
    }
}

/// The server's own message (with its SQLSTATE) when there is one.
fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_decodes() {
        // 12345.678 = digits [1, 2345, 6780], weight 1, dscale 3.
        let raw: Vec<u8> = [3u16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert!((numeric(&raw).unwrap() - 12345.678).abs() < 1e-9);
        let neg: Vec<u8> = [1u16, 0, 0x4000, 0, 7].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&neg).unwrap(), -7.0);
        let zero: Vec<u8> = [0u16, 0, 0, 0].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&zero).unwrap(), 0.0);
    }

    #[test]
    fn timestamps_are_unix_seconds() {
        let raw = 0i64.to_be_bytes();
        assert!(matches!(decode(&Type::TIMESTAMPTZ, &raw).unwrap(), Cell::Float(v) if v == 946_684_800.0));
    }
}
