//! The plugin's `[<name>.config]` table.

use serde::Deserialize;
use sonde_plugin_sdk::Error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The connection to query: a name listed in this instance's `grants.sql`, defined
    /// in sonde.toml as `[connections.<name>]`. Required.
    pub connection: String,
    /// Value of the `server` label (default: the server's own address and port,
    /// `host:port`, as postgres_exporter labels it).
    #[serde(default)]
    pub server: Option<String>,
    /// Extra metrics from read-only statements.
    #[serde(default)]
    pub queries: Vec<CustomQuery>,
}

/// One user-defined query: each value column `c` becomes the family `<metric>_<c>`,
/// labelled by the label columns (postgres_exporter's queries.yaml naming).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomQuery {
    /// Prefix of the families, e.g. `app_orders`.
    pub metric: String,
    /// One SELECT; it runs in a read-only transaction (a write is refused).
    pub query: String,
    /// `gauge` (default) or `counter`.
    #[serde(default)]
    pub kind: CustomKind,
    /// Help text of the families (default: the query's metric name).
    #[serde(default)]
    pub help: Option<String>,
    /// Columns whose values become labels (the label is named after the column).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Columns holding the numbers. Required.
    pub values: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomKind {
    #[default]
    Gauge,
    Counter,
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        if self.connection.is_empty() {
            return Err(Error::config("connection must name a connection granted in grants.sql"));
        }
        for (i, q) in self.queries.iter().enumerate() {
            let at = format!("queries[{i}] ({})", q.metric);
            if !is_name(&q.metric) {
                return Err(Error::config(format!("{at}: metric must match [a-zA-Z_][a-zA-Z0-9_]*")));
            }
            if q.values.is_empty() {
                return Err(Error::config(format!("{at}: values must list at least one column")));
            }
            for c in q.labels.iter().chain(&q.values) {
                if !is_name(c) || c.starts_with("__") {
                    return Err(Error::config(format!(
                        "{at}: column {c:?} is not a valid label or metric name"
                    )));
                }
            }
            if let Some(c) = q.labels.iter().find(|c| q.values.contains(c)) {
                return Err(Error::config(format!("{at}: column {c:?} is both a label and a value")));
            }
        }
        Ok(())
    }
}
