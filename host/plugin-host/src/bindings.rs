//! The one `bindgen!` for the `sonde:plugin` WIT package (see wit/plugin.wit).

wasmtime::component::bindgen!({
    world: "collector",
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

pub use exports::sonde::plugin::source::PluginInfo;
pub use sonde::plugin::host::Level;
pub use sonde::plugin::types::{Batch, Error as PluginError, Family, Label, MetricKind, Series};
