//! The plugin host: loads sonde plugins (WebAssembly components), sandboxes them with
//! grants and limits, and calls their `sonde:plugin` exports.
//!
//! - [`engine`]: wasmtime engine, linker, pooling allocator, compile cache; `ticker`:
//!   the epoch clock that runs only during calls;
//! - [`instance`]: a loaded plugin and its instances, calls under deadline and limits;
//! - [`grants`]: what an instance may reach, enforced in the WASI hooks ([`state`]);
//! - [`host_api`]: the `sonde:plugin/host` imports (log, statfs, uname);
//! - [`sql`]: the `sonde:plugin/sql` import (read-only SQL on host-owned connections).

pub mod bindings;
mod cache;
pub mod engine;
pub mod error;
pub mod grants;
mod host_api;
mod http_client;
pub mod instance;
pub mod sql;
mod state;
mod ticker;

pub use bindings::{Batch, Family, Label, MetricKind, PluginError, PluginInfo, Series};
pub use cache::sha256_hex;
pub use engine::{EngineOptions, LoadStats, PluginEngine};
pub use error::{CallError, LoadError};
pub use grants::Grants;
pub use instance::{InstanceSpec, Plugin, PluginInstance};
pub use sql::{PasswordSource, SqlConnection, SslMode};
