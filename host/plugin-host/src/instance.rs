//! A loaded plugin (compiled and linked once) and its live instances. Every call runs
//! under the instance's memory limit and a deadline enforced twice: by epoch
//! interruption inside wasm (CPU loops) and by a wall-clock timeout around the call
//! (a guest blocked in a host call).

use crate::bindings::{Batch, PluginInfo, PushGuest, PushIndices, SourceGuest, SourceIndices};
use crate::error::CallError;
use crate::grants::Grants;
use crate::host_api::LOG_LINES_PER_CALL;
use crate::state::State;
use crate::ticker::{EPOCH_TICK, Ticker};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// A compiled, linked component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    ticker: Arc<Ticker>,
    pre: InstancePre<State>,
    source: Arc<SourceIndices>,
    /// Present when the component exports `push` (a push source).
    push: Option<Arc<PushIndices>>,
    /// SHA-256 of the component bytes.
    pub sha256: String,
    /// Interfaces the component imports (what it could ask for; grants decide what
    /// it gets).
    pub imports: Vec<String>,
}

/// Who an instance is and what it may do.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Instance name (the plugins.toml key), for logs and error messages.
    pub name: Arc<str>,
    pub grants: Arc<Grants>,
    /// Linear memory limit in bytes.
    pub memory_limit: usize,
}

pub struct PluginInstance {
    store: Store<State>,
    source: SourceGuest,
    push: Option<PushGuest>,
    ticker: Arc<Ticker>,
}

impl Plugin {
    pub(crate) fn new(
        engine: Engine,
        ticker: Arc<Ticker>,
        pre: InstancePre<State>,
        source: SourceIndices,
        push: Option<PushIndices>,
        sha256: String,
        imports: Vec<String>,
    ) -> Self {
        Plugin {
            engine,
            ticker,
            pre,
            source: Arc::new(source),
            push: push.map(Arc::new),
            sha256,
            imports,
        }
    }

    /// Whether the component exports `push` (can take datagrams in `ingest`).
    pub fn is_receiver(&self) -> bool {
        self.push.is_some()
    }

    /// Creates a fresh instance (new store, new WASI context from the grants).
    pub async fn instantiate(&self, spec: &InstanceSpec, timeout: Duration) -> Result<PluginInstance, CallError> {
        let state = State::new(spec.name.clone(), spec.grants.clone(), spec.memory_limit)
            .map_err(|e| CallError::Instantiate(e.to_string()))?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| match ctx.data().deadline {
            Some(d) if Instant::now() >= d => Ok(UpdateDeadline::Interrupt),
            // Yield every tick so a CPU-bound plugin never holds an executor thread.
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        store.data_mut().deadline = Some(Instant::now() + timeout);
        let _busy = self.ticker.busy();
        let fut = self.pre.instantiate_async(&mut store);
        let instance = match tokio::time::timeout(timeout + EPOCH_TICK * 2, fut).await {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => return Err(CallError::Instantiate(format!("{e:#}"))),
            Err(_) => return Err(CallError::Timeout(timeout)),
        };
        let load_err = |e: wasmtime::Error| CallError::Instantiate(format!("{e:#}"));
        let source = self.source.load(&mut store, &instance).map_err(load_err)?;
        let push = match &self.push {
            Some(p) => Some(p.load(&mut store, &instance).map_err(load_err)?),
            None => None,
        };
        store.data_mut().deadline = None;
        Ok(PluginInstance {
            store,
            source,
            push,
            ticker: self.ticker.clone(),
        })
    }
}

impl PluginInstance {
    pub async fn describe(&mut self, timeout: Duration) -> Result<PluginInfo, CallError> {
        let PluginInstance {
            store, source, ticker, ..
        } = self;
        guarded(store, ticker, timeout, |s| source.call_describe(s)).await
    }

    pub async fn configure(&mut self, config_json: &str, timeout: Duration) -> Result<(), CallError> {
        let PluginInstance {
            store, source, ticker, ..
        } = self;
        guarded(store, ticker, timeout, |s| source.call_configure(s, config_json))
            .await?
            .map_err(CallError::Plugin)
    }

    /// One collection. Definitions the guest handed over with `host.define` during it
    /// are put in front of the batch's own, as if it had returned them.
    pub async fn collect(&mut self, timeout: Duration) -> Result<Batch, CallError> {
        let PluginInstance {
            store, source, ticker, ..
        } = self;
        store.data_mut().pending.clear();
        let result = guarded(store, ticker, timeout, |s| source.call_collect(s)).await;
        let pending = std::mem::take(&mut store.data_mut().pending);
        let mut batch = result?.map_err(CallError::Plugin)?;
        if !pending.series.is_empty() || !pending.families.is_empty() {
            batch.families.splice(0..0, pending.families);
            batch.series.splice(0..0, pending.series);
        }
        Ok(batch)
    }

    /// Hands a batch of datagrams to a push source (see `push.ingest` in the WIT).
    pub async fn ingest(&mut self, payload: &[u8], ends: &[u32], timeout: Duration) -> Result<(), CallError> {
        let PluginInstance {
            store, push, ticker, ..
        } = self;
        let push = push.as_ref().ok_or(CallError::NotAReceiver)?;
        guarded(store, ticker, timeout, |s| push.call_ingest(s, payload, ends))
            .await?
            .map_err(CallError::Plugin)
    }

    /// The push source's state, to hand to its successor after a hot reload.
    pub async fn snapshot(&mut self, timeout: Duration) -> Result<Vec<u8>, CallError> {
        let PluginInstance {
            store, push, ticker, ..
        } = self;
        let push = push.as_ref().ok_or(CallError::NotAReceiver)?;
        guarded(store, ticker, timeout, |s| push.call_snapshot(s)).await
    }

    /// Gives a freshly configured push source the state of its predecessor.
    pub async fn restore(&mut self, state: &[u8], timeout: Duration) -> Result<(), CallError> {
        let PluginInstance {
            store, push, ticker, ..
        } = self;
        let push = push.as_ref().ok_or(CallError::NotAReceiver)?;
        guarded(store, ticker, timeout, |s| push.call_restore(s, state))
            .await?
            .map_err(CallError::Plugin)
    }

    /// Largest linear memory this instance has grown to, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.peak
    }

    /// Access denials recorded during the last call (HTTP / TCP outside the grants).
    pub fn take_denials(&mut self) -> Vec<String> {
        let inc = self.store.data().incidents.clone();
        let mut inc = inc.lock().unwrap();
        inc.denials.drain(..).collect()
    }
}

/// Runs one export call under the deadline and turns traps into [`CallError`]s.
async fn guarded<'s, T, F, Fut>(
    store: &'s mut Store<State>,
    ticker: &Arc<Ticker>,
    timeout: Duration,
    call: F,
) -> Result<T, CallError>
where
    F: FnOnce(&'s mut Store<State>) -> Fut,
    Fut: Future<Output = wasmtime::Result<T>> + 's,
{
    let _busy = ticker.busy();
    // The deadline callback runs when the epoch passes the store's deadline: re-arm it
    // relative to now (the ticker was idle between calls).
    store.set_epoch_deadline(1);
    let data = store.data_mut();
    data.deadline = Some(Instant::now() + timeout);
    data.log_budget = LOG_LINES_PER_CALL;
    data.stderr.clear();
    // Handles to what explains a failure, taken before the call borrows the store.
    let stderr = data.stderr.clone();
    let refused = data.limits.refused.clone();
    refused.store(0, Ordering::Relaxed);
    let outcome = tokio::time::timeout(timeout + EPOCH_TICK * 2, call(store)).await;
    let refused = match refused.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    };
    match outcome {
        Err(_) => Err(CallError::Timeout(timeout)),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify_trap(e, timeout, refused, &stderr)),
    }
}

fn classify_trap(
    e: wasmtime::Error,
    timeout: Duration,
    refused: Option<usize>,
    stderr: &crate::state::StderrTail,
) -> CallError {
    // lastError is one line: the cause. The wasm backtrace goes to the debug log.
    tracing::debug!(target: "sonde::plugin", "call failed: {e:?}");
    if refused.is_some() {
        return CallError::OutOfMemory(e.root_cause().to_string());
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout(timeout),
        Some(Trap::UnreachableCodeReached) => {
            let text = stderr.text();
            let msg =
                panic_message(&text).unwrap_or_else(|| "unreachable executed (no panic message on stderr)".into());
            CallError::Panic(msg)
        }
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(e.root_cause().to_string()),
    }
}

/// Extracts the message of a Rust panic ("panicked at src/lib.rs:3:5:\nboom").
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at")?;
    let text = &stderr[start..];
    let mut lines = text.lines();
    let location = lines.next()?.trim_end_matches(':').to_string();
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note:")).collect();
    Some(format!("{} ({location})", message.join(" ").trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted_from_stderr() {
        let err =
            "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom: bad input\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(err).unwrap(),
            "boom: bad input (panicked at src/lib.rs:12:9)"
        );
        assert_eq!(panic_message("no panic here"), None);
    }
}
