//! Values flowing through the evaluator and the results handed to the API.

use crate::{Labels, SeriesSamples};
use std::fmt;

/// A query result, as the HTTP API and the CLI print it. Timestamps are milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar(i64, f64),
    String(i64, String),
    /// Instant vector: one sample per series, all at the evaluation time.
    Vector(Vec<(Labels, i64, f64)>),
    /// Range vector or range-query result: series sorted by labels for range queries.
    Matrix(Vec<SeriesSamples>),
}

impl QueryValue {
    /// `"scalar" | "string" | "vector" | "matrix"`, the API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryValue::Scalar(..) => "scalar",
            QueryValue::String(..) => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }
}

/// Why a query failed, with Prometheus's error classes.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The query text or a parameter is invalid: API `bad_data`, HTTP 400.
    BadData(String),
    /// Evaluation failed (many-to-many matching, duplicate label sets, ...): API
    /// `execution`, HTTP 422.
    Execution(String),
    /// The query ran longer than the timeout: API `timeout`, HTTP 503.
    Timeout(String),
    /// The client went away: API `canceled`, HTTP 503.
    Canceled(String),
}

impl Error {
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Canceled(_) => "canceled",
        }
    }

    /// The HTTP status Prometheus answers with for this class.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadData(_) => 400,
            Error::Execution(_) => 422,
            Error::Timeout(_) | Error::Canceled(_) => 503,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::BadData(m) | Error::Execution(m) | Error::Timeout(m) | Error::Canceled(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}
