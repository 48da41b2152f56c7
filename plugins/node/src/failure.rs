//! Why a collector produced no (or incomplete) data, mirroring node_exporter's two outcomes.

use std::fmt;

/// A collector's failure. Both kinds set `node_scrape_collector_success` to 0, as
/// node_exporter does; they differ in whether the user is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The data does not exist on this host (no PSI, no os-release): node_exporter's
    /// `ErrNoData`, logged at debug level only.
    NoData(String),
    /// Anything else: unreadable or malformed input. Logged as a warning.
    Failed(String),
}

impl Failure {
    pub fn failed(msg: impl Into<String>) -> Self {
        Failure::Failed(msg.into())
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::NoData(m) | Failure::Failed(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A malformed line or field: `what` names the file, `text` the offending input.
pub fn malformed(what: &str, text: &str) -> Failure {
    // Bound the echoed input: a /proc line can be kilobytes long (the `intr` line).
    let shown: String = text.chars().take(120).collect();
    Failure::Failed(format!("malformed {what}: {shown:?}"))
}
