//! Sample storage. For now an in-memory head with a bounded time window; the storage
//! issue replaces it with WAL + compressed blocks behind the same interface
//! (append by series reference, select by matchers and time range).

mod head;
mod labels;

pub use head::{Head, Metadata, STALE_NAN, SeriesRef, is_stale_nan};
pub use labels::{Labels, METRIC_NAME};
