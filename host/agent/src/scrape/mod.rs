//! Scraping plugins: targets, the scheduler that calls `collect` on each instance at
//! its interval, and the series table that turns batches into stored samples with
//! Prometheus's target semantics (job/instance labels, `up`, `scrape_*`, staleness).

mod discovery;
mod manager;
mod receiver;
mod reload;
mod scheduler;
mod table;
mod target;

pub use discovery::EntryStats;
pub use manager::{TargetManager, TargetSet};
pub use receiver::ReceiverStats;
pub use reload::Reloader;
pub use scheduler::{CompileJob, load_targets, now_ms};
pub use target::{DURATION_BUCKETS, Target};
