//! Read-only SQL through the host (`sonde:plugin/sql`): the host owns the connection
//! and its credentials; a plugin names a connection granted to it in plugins.toml
//! (`grants.sql`) and gets typed rows back.

use crate::Error;
pub use crate::bindings::sonde::plugin::sql::{Cell, Rows, SqlError};

/// Runs one read-only statement on the granted `connection`.
pub fn query(connection: &str, statement: &str) -> Result<Rows, SqlError> {
    crate::bindings::sonde::plugin::sql::query(connection, statement)
}

impl Rows {
    /// Index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

impl Cell {
    /// The value as a number: integers, floats and booleans (1/0); text that parses
    /// as a number. `None` for NULL and other text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Null => None,
            Cell::Boolean(b) => Some(f64::from(u8::from(*b))),
            Cell::Integer(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            Cell::Text(t) => t.trim().parse().ok(),
        }
    }

    /// The value as label text: NULL is empty, numbers are printed.
    pub fn to_label(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Boolean(b) => b.to_string(),
            Cell::Integer(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Text(t) => t.clone(),
        }
    }
}

impl SqlError {
    pub fn message(&self) -> &str {
        match self {
            SqlError::Denied(m) | SqlError::Unreachable(m) | SqlError::Timeout(m) | SqlError::Query(m) => m,
        }
    }
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Denied(m) => Error::Denied(m),
            SqlError::Unreachable(m) => Error::Unreachable(m),
            SqlError::Timeout(m) => Error::Timeout(m),
            SqlError::Query(m) => Error::Failed(m),
        }
    }
}
