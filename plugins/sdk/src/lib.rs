//! Guest-side SDK for sonde plugins: a typed metrics API over the `sonde:plugin` wire.
//!
//! A plugin implements [`Plugin`] and calls [`export_plugin!`]:
//!
//! ```
//! use sonde_plugin_sdk::{export_plugin, Collection, Error, Info, Plugin};
//!
//! struct Uptime;
//! impl Plugin for Uptime {
//!     fn info() -> Info { Info::new("uptime", env!("CARGO_PKG_VERSION"), "host uptime") }
//!     fn configure(_config: &str) -> Result<Self, Error> { Ok(Uptime) }
//!     fn collect(&mut self, out: &mut Collection) -> Result<(), Error> {
//!         out.gauge("uptime_seconds", "Seconds since boot.", &[], 42.0);
//!         Ok(())
//!     }
//! }
//! export_plugin!(Uptime);
//! ```
//!
//! The SDK registers each series with the host the first time it is emitted and then
//! sends only `(series id, value)` pairs, which keeps the boundary cost per sample in
//! the tens of nanoseconds (docs/BENCHMARKS.md). Series not emitted in a collection
//! are released, and the host marks them stale.

pub mod fs;
pub mod log;
mod registry;
pub mod sql;

pub use registry::{Collection, Family};

/// Bindings generated from `wit/` (the `collector` world). Plugin authors rarely need
/// these directly; the test plugins use them to send hand-made (even invalid) batches.
pub mod bindings {
    wit_bindgen::generate!({
        world: "collector",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_collector",
        default_bindings_module: "sonde_plugin_sdk::bindings",
    });
}

pub use bindings::sonde::plugin::types::{Error, MetricKind as Kind};

/// Static facts about a plugin (see `plugin-info` in the WIT).
#[derive(Debug, Clone)]
pub struct Info {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    /// Interval used when plugins.toml sets none; 0 means the host default.
    pub default_interval_ms: u32,
}

impl Info {
    pub const fn new(name: &'static str, version: &'static str, description: &'static str) -> Self {
        Info {
            name,
            version,
            description,
            default_interval_ms: 0,
        }
    }
}

/// A pull source of metrics. One value lives per plugin instance, created by
/// [`Plugin::configure`] and kept across collections.
pub trait Plugin: Sized + 'static {
    fn info() -> Info;
    /// `config` is the instance's `config` table from plugins.toml as JSON.
    /// Use [`parse_config`] to read it into a `#[serde(deny_unknown_fields)]` struct.
    fn configure(config: &str) -> Result<Self, Error>;
    fn collect(&mut self, out: &mut Collection) -> Result<(), Error>;
}

/// Parses the JSON config handed to [`Plugin::configure`], turning serde's message
/// (unknown field, wrong type, ...) into `Error::Config`.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| Error::Config(format!("plugin config: {e}")))
}

impl Error {
    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn denied(msg: impl Into<String>) -> Self {
        Error::Denied(msg.into())
    }
    pub fn unreachable(msg: impl Into<String>) -> Self {
        Error::Unreachable(msg.into())
    }
}

#[doc(hidden)]
pub mod runtime {
    //! Glue between the generated `source` exports and a [`Plugin`] value.
    use super::bindings::exports::sonde::plugin::source::{Batch, PluginInfo};
    use super::{Collection, Error, Plugin, registry::Registry};
    use std::any::Any;
    use std::cell::RefCell;

    struct State {
        plugin: Box<dyn Any>,
        registry: Registry,
    }

    thread_local! {
        static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    }

    pub fn describe<P: Plugin>() -> PluginInfo {
        let i = P::info();
        PluginInfo {
            name: i.name.into(),
            version: i.version.into(),
            description: i.description.into(),
            default_interval_ms: i.default_interval_ms,
        }
    }

    pub fn configure<P: Plugin>(config: &str) -> Result<(), Error> {
        let plugin = P::configure(config)?;
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                plugin: Box::new(plugin),
                registry: Registry::default(),
            })
        });
        Ok(())
    }

    pub fn collect<P: Plugin>() -> Result<Batch, Error> {
        STATE.with(|s| {
            let mut guard = s.borrow_mut();
            let state = guard
                .as_mut()
                .ok_or_else(|| Error::Failed("collect called before configure".into()))?;
            let plugin = state
                .plugin
                .downcast_mut::<P>()
                .ok_or_else(|| Error::Failed("plugin state has the wrong type".into()))?;
            let mut out = Collection::new(&mut state.registry);
            let result = plugin.collect(&mut out);
            out.finish(result)
        })
    }
}

/// Exports a [`Plugin`] implementation as the component's `source` interface.
///
/// Expands to nothing on native targets, so a plugin crate's unit tests build with
/// a plain `cargo test` (the export symbols only make sense in a component).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_plugin_impl!($plugin);
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_impl {
    ($plugin:ty) => {
        struct __SondeExport;
        impl $crate::bindings::exports::sonde::plugin::source::Guest for __SondeExport {
            fn describe() -> $crate::bindings::exports::sonde::plugin::source::PluginInfo {
                $crate::runtime::describe::<$plugin>()
            }
            fn configure(config: String) -> Result<(), $crate::Error> {
                $crate::runtime::configure::<$plugin>(&config)
            }
            fn collect() -> Result<$crate::bindings::exports::sonde::plugin::source::Batch, $crate::Error> {
                $crate::runtime::collect::<$plugin>()
            }
        }
        $crate::bindings::__export_collector!(__SondeExport with_types_in $crate::bindings);
    };
}
