//! Errors of the plugin host: loading a component, and one call into an instance.

use crate::bindings::PluginError;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Compile { path: PathBuf, message: String },
    #[error(
        "{path} cannot run in sonde: {message} (a plugin must target the `collector` or `receiver` world of \
         sonde:plugin@0.1.0 and import only WASI 0.2 and sonde:plugin interfaces)"
    )]
    Link { path: PathBuf, message: String },
    #[error("plugin engine: {0}")]
    Engine(String),
}

/// Why one call into a plugin instance failed. Every variant but `Plugin` leaves the
/// instance unusable: the caller drops it and instantiates a fresh one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error value (an expected failure it reported itself).
    #[error("{}", plugin_error_text(.0))]
    Plugin(PluginError),
    /// The call exceeded its deadline (infinite loop, slow peer).
    #[error("timeout: the call did not finish within {0:?}")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past its limit.
    #[error("{0}")]
    OutOfMemory(String),
    /// A panic in the guest (`unreachable` trap), with its message when the guest printed one.
    #[error("plugin panicked: {0}")]
    Panic(String),
    /// Any other trap (out-of-bounds access, stack overflow, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The instance could not be created (e.g. a granted directory is missing).
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    /// `ingest`/`snapshot`/`restore` on a component that does not export `push`.
    #[error("the plugin does not export sonde:plugin/push, so it cannot take pushed data")]
    NotAReceiver,
}

impl CallError {
    /// Short, stable reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::Plugin(PluginError::Config(_)) => "config",
            CallError::Plugin(PluginError::Unreachable(_)) => "unreachable",
            CallError::Plugin(PluginError::Denied(_)) => "denied",
            CallError::Plugin(PluginError::Timeout(_)) => "plugin_timeout",
            CallError::Plugin(PluginError::Failed(_)) => "failed",
            CallError::Timeout(_) => "timeout",
            CallError::OutOfMemory(_) => "out_of_memory",
            CallError::Panic(_) => "panic",
            CallError::Trap(_) => "trap",
            CallError::Instantiate(_) => "instantiate",
            CallError::NotAReceiver => "not_a_receiver",
        }
    }

    /// Whether the instance must be re-created before the next call.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, CallError::Plugin(_) | CallError::NotAReceiver)
    }
}

fn plugin_error_text(e: &PluginError) -> String {
    match e {
        PluginError::Config(m) => format!("config error: {m}"),
        PluginError::Unreachable(m) => format!("unreachable: {m}"),
        PluginError::Denied(m) => format!("denied: {m}"),
        PluginError::Timeout(m) => format!("timeout: {m}"),
        PluginError::Failed(m) => format!("failed: {m}"),
    }
}
