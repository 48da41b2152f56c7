//! The one `bindgen!` for the `sonde:plugin` WIT package (see wit/plugin.wit).
//!
//! It is generated for the `receiver` world, which includes `collector`: every plugin
//! exports `source`, push sources also export `push`. The host looks the two exports
//! up separately ([`SourceIndices`], [`PushIndices`]), so a pull-only component that
//! exports `source` alone links as well.

wasmtime::component::bindgen!({
    world: "receiver",
    path: "../../wit",
    imports: {
        // statfs can hang on a dead network mount: run it off the executor with a deadline.
        "sonde:plugin/host.statfs": async,
        // A statement waits on the network: async, bounded by the call's deadline.
        "sonde:plugin/sql.query": async,
        default: trappable,
    },
    exports: { default: async },
});

pub use exports::sonde::plugin::push::{Guest as PushGuest, GuestIndices as PushIndices};
pub use exports::sonde::plugin::source::{Guest as SourceGuest, GuestIndices as SourceIndices, PluginInfo};
pub use sonde::plugin::host::Level;
pub use sonde::plugin::types::{Batch, Error as PluginError, Family, Label, MetricKind, Series};
