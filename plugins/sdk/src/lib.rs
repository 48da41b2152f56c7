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
pub mod text;

pub use registry::{Collection, Family, NativeRegistry};

/// Bindings generated from `wit/` (the `receiver` world, which includes `collector`).
/// Plugin authors rarely need these directly; the test plugins use them to send
/// hand-made (even invalid) batches.
///
/// Every SDK plugin is built against `receiver`: a pull-only [`Plugin`] gets a `push`
/// export that refuses data (the host only feeds instances granted a listen socket),
/// which keeps one set of bindings, and one `Batch` type, for both kinds.
pub mod bindings {
    wit_bindgen::generate!({
        world: "receiver",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_world",
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

/// A push source (StatsD and the like). The host owns the socket named in the
/// instance's `grants.listen_udp` / `grants.listen_tcp`, reads what arrives in batches
/// and calls [`Receiver::ingest`]; [`Plugin::collect`] then exposes the aggregated
/// state at the instance's interval. Export with [`export_receiver!`].
pub trait Receiver: Plugin {
    /// What arrived since the last call, in arrival order: one UDP datagram per item,
    /// or, for TCP, a chunk of whole lines (it ends at a `\n`). Malformed input is the
    /// sender's fault: count it and go on; an `Err` is reported as a failed call.
    fn ingest(&mut self, data: Datagrams<'_>) -> Result<(), Error>;

    /// State to carry across a hot reload of the plugin; empty for none. Called on the
    /// old instance just before it is replaced.
    fn snapshot(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes over a [`Receiver::snapshot`] of an earlier version of the plugin, right
    /// after `configure` of the new instance. State it cannot read: return
    /// `Error::Config` (the instance then starts empty, and the host logs why).
    fn restore(&mut self, _state: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// A batch of datagrams as the host hands it over: one flat buffer and the end offset
/// of each datagram in it.
#[derive(Debug, Clone, Copy)]
pub struct Datagrams<'a> {
    payload: &'a [u8],
    ends: &'a [u32],
}

impl<'a> Datagrams<'a> {
    /// `ends[i]` is where datagram `i` ends in `payload`. Offsets past the end or
    /// going backwards (a host bug) yield empty datagrams rather than a panic.
    pub fn new(payload: &'a [u8], ends: &'a [u32]) -> Self {
        Datagrams { payload, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes in the batch.
    pub fn bytes(&self) -> usize {
        self.payload.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let payload = self.payload;
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let end = (end as usize).min(payload.len());
            let d = payload.get(start..end).unwrap_or(&[]);
            start = end.max(start);
            d
        })
    }
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
    use super::{Collection, Datagrams, Error, Plugin, Receiver, registry::Registry};
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

    /// Runs `f` on the configured plugin value and the series registry.
    fn with_plugin<P: Plugin, T>(
        what: &str,
        f: impl FnOnce(&mut P, &mut Registry) -> Result<T, Error>,
    ) -> Result<T, Error> {
        STATE.with(|s| {
            let mut guard = s.borrow_mut();
            let state = guard
                .as_mut()
                .ok_or_else(|| Error::Failed(format!("{what} called before configure")))?;
            let plugin = state
                .plugin
                .downcast_mut::<P>()
                .ok_or_else(|| Error::Failed("plugin state has the wrong type".into()))?;
            f(plugin, &mut state.registry)
        })
    }

    pub fn collect<P: Plugin>() -> Result<Batch, Error> {
        with_plugin::<P, _>("collect", |plugin, registry| {
            let mut out = Collection::new(registry);
            let result = plugin.collect(&mut out);
            out.finish(result)
        })
    }

    pub fn ingest<P: Receiver>(payload: &[u8], ends: &[u32]) -> Result<(), Error> {
        with_plugin::<P, _>("ingest", |plugin, _| plugin.ingest(Datagrams::new(payload, ends)))
    }

    pub fn snapshot<P: Receiver>() -> Vec<u8> {
        with_plugin::<P, _>("snapshot", |plugin, _| Ok(plugin.snapshot())).unwrap_or_default()
    }

    pub fn restore<P: Receiver>(state: &[u8]) -> Result<(), Error> {
        with_plugin::<P, _>("restore", |plugin, _| plugin.restore(state))
    }

    /// `ingest` of a pull-only plugin: the host feeds only instances granted a listen
    /// socket, so this is a configuration mistake.
    pub fn not_a_receiver<P: Plugin>() -> Error {
        Error::Config(format!(
            "plugin {} is a pull source and does not take pushed data: remove grants.listen_udp / listen_tcp",
            P::info().name
        ))
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

/// Exports a [`Receiver`] implementation: the `source` interface plus `push`.
#[macro_export]
macro_rules! export_receiver {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_plugin_impl!($plugin, receiver);
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_impl {
    ($plugin:ty) => {
        $crate::__export_plugin_impl!($plugin, pull);
    };
    ($plugin:ty, $kind:ident) => {
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
        $crate::__export_push_impl!($plugin, $kind);
        $crate::bindings::__export_world!(__SondeExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_push_impl {
    ($plugin:ty, receiver) => {
        impl $crate::bindings::exports::sonde::plugin::push::Guest for __SondeExport {
            fn ingest(payload: Vec<u8>, ends: Vec<u32>) -> Result<(), $crate::Error> {
                $crate::runtime::ingest::<$plugin>(&payload, &ends)
            }
            fn snapshot() -> Vec<u8> {
                $crate::runtime::snapshot::<$plugin>()
            }
            fn restore(state: Vec<u8>) -> Result<(), $crate::Error> {
                $crate::runtime::restore::<$plugin>(&state)
            }
        }
    };
    ($plugin:ty, pull) => {
        impl $crate::bindings::exports::sonde::plugin::push::Guest for __SondeExport {
            fn ingest(_payload: Vec<u8>, _ends: Vec<u32>) -> Result<(), $crate::Error> {
                Err($crate::runtime::not_a_receiver::<$plugin>())
            }
            fn snapshot() -> Vec<u8> {
                Vec::new()
            }
            fn restore(_state: Vec<u8>) -> Result<(), $crate::Error> {
                Ok(())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Datagrams;

    #[test]
    fn datagrams_split_at_their_end_offsets() {
        let payload = b"a:1|cbb:2|g\nc:3|ms";
        let ends = [4, 18, 18];
        let d: Vec<&[u8]> = Datagrams::new(payload, &ends).iter().collect();
        assert_eq!(d, vec![&b"a:1|"[..], &b"cbb:2|g\nc:3|ms"[..], &b""[..]]);
    }

    #[test]
    fn bad_offsets_give_empty_datagrams_not_a_panic() {
        let d: Vec<&[u8]> = Datagrams::new(b"abcdef", &[4, 2, 99]).iter().collect();
        assert_eq!(d, vec![&b"abcd"[..], &b""[..], &b"ef"[..]]);
    }
}
