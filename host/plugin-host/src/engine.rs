//! The wasmtime engine shared by all plugins: configuration (pooling allocator,
//! epoch interruption), the linker with WASI + sonde:plugin, the epoch ticker and the
//! compile cache. Loading a plugin yields an `InstancePre`, so re-creating an instance
//! after a trap costs microseconds.

use crate::bindings::{PushIndices, SourceIndices};
use crate::cache::{CompileCache, sha256_hex};
use crate::error::LoadError;
use crate::instance::Plugin;
use crate::state::State;
use crate::ticker::Ticker;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Core instances per component: a Rust wasip2 component has a handful (the module
/// plus adapter shims); componentize-py components have more.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 50;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Plugin instances that can exist at once (each collection slot, plus one spare
    /// per instance while it is being re-created).
    pub max_instances: u32,
    /// Largest memory limit of any plugin; sizes the pool's memory slots.
    pub max_memory_bytes: usize,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

pub struct PluginEngine {
    engine: Engine,
    config: Config,
    linker: Linker<State>,
    cache: Option<CompileCache>,
    ticker: Arc<Ticker>,
}

/// How a plugin was loaded (for logs, /metrics and the benchmark).
#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    pub from_cache: bool,
    pub took: Duration,
}

impl PluginEngine {
    pub fn new(opts: &EngineOptions) -> Result<Self, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let instances = opts.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances * MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances * 2)
            .max_memories_per_component(2)
            .total_tables(instances * 4)
            .max_tables_per_component(4)
            .total_stacks(instances)
            .max_memory_size(opts.max_memory_bytes);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
        crate::bindings::Receiver::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |s| s)
            .map_err(engine_err)?;
        let e = engine.clone();
        let ticker = Ticker::start(move || e.increment_epoch());
        let cache = opts.cache_dir.clone().map(|d| CompileCache::new(d, &engine));
        Ok(PluginEngine {
            engine,
            config,
            linker,
            cache,
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from the cache) the component at `path` and links it.
    /// Whether loading `path` would compile it (no usable entry in the compile cache).
    /// Lets the daemon compile in a child process, keeping Cranelift's code and heap
    /// out of its own resident memory.
    pub fn needs_compile(&self, path: &Path) -> bool {
        let Some(cache) = &self.cache else { return true };
        match std::fs::read(path) {
            Ok(bytes) => !cache.path_for(&sha256_hex(&bytes)).exists(),
            Err(_) => true,
        }
    }

    pub fn load(&self, path: &Path) -> Result<(Plugin, LoadStats), LoadError> {
        let start = Instant::now();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        let sha = sha256_hex(&bytes);
        let cached = self.cache.as_ref().and_then(|c| c.get(&self.engine, &sha));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = self.compile(&bytes).map_err(|e| LoadError::Compile {
                    path: path.into(),
                    message: format!("{e:#}"),
                })?;
                if let Some(cache) = &self.cache {
                    cache.put(&sha, &c);
                }
                c
            }
        };
        let plugin = self.link(path, component, sha)?;
        Ok((
            plugin,
            LoadStats {
                from_cache,
                took: start.elapsed(),
            },
        ))
    }

    /// Compiles with a short-lived engine of the same configuration: wasmtime keeps
    /// Cranelift's per-thread compiler contexts (tens of MB) for the engine's lifetime,
    /// which an idle daemon should not carry. The artifact is then loaded into the
    /// long-lived engine (same config, so the same compatibility hash).
    fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        let compiled = {
            let mut config = self.config.clone();
            // Rayon's worker threads would outlive the compile with their heaps.
            config.parallel_compilation(false);
            let compiler = Engine::new(&config)?;
            compiler.precompile_component(wasm)?
        };
        // SAFETY: the bytes were produced just above by `precompile_component` of an
        // engine with an identical configuration.
        unsafe { Component::deserialize(&self.engine, &compiled) }
    }

    fn link(&self, path: &Path, component: Component, sha256: String) -> Result<Plugin, LoadError> {
        let link_err = |e: wasmtime::Error| LoadError::Link {
            path: path.into(),
            message: format!("{e:#}"),
        };
        let imports = component_imports(&self.engine, &component);
        let pre = self.linker.instantiate_pre(&component).map_err(link_err)?;
        let source = SourceIndices::new(&pre).map_err(link_err)?;
        // Only push sources export `push`; its absence is not an error here (the agent
        // refuses a listen grant for a plugin that cannot ingest).
        let push = PushIndices::new(&pre).ok();
        Ok(Plugin::new(
            self.engine.clone(),
            self.ticker.clone(),
            pre,
            source,
            push,
            sha256,
            imports,
        ))
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// The interfaces a component imports, for `sonde plugin inspect`.
fn component_imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}
