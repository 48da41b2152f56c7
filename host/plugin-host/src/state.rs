//! Per-instance store data: WASI contexts built from the grants, resource limits,
//! the HTTP gate, the guest's captured stderr and the denials seen during a call.

use crate::grants::Grants;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Bytes of guest stderr kept for error messages: enough for a panic message and a
/// few log lines, small enough that a chatty plugin costs nothing.
const STDERR_TAIL_BYTES: usize = 4096;

/// At most this many denial messages are kept per call (a plugin retrying a denied
/// connect in a loop must not grow host memory).
const MAX_DENIALS: usize = 8;

/// Things noticed during a call that explain a failure better than the guest can.
#[derive(Default)]
pub struct Incidents {
    pub denials: VecDeque<String>,
}

impl Incidents {
    pub(crate) fn deny(&mut self, what: String) {
        // Reported with the failed collection; logged here for plugins that swallow it.
        tracing::debug!(target: "sonde::plugin", "{what}");
        if self.denials.len() == MAX_DENIALS {
            self.denials.pop_front();
        }
        self.denials.push_back(what);
    }
}

pub type SharedIncidents = Arc<Mutex<Incidents>>;

pub struct State {
    pub(crate) name: Arc<str>,
    pub(crate) grants: Arc<Grants>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    gate: HttpGate,
    pub(crate) limits: MemoryLimiter,
    pub(crate) stderr: StderrTail,
    pub(crate) incidents: SharedIncidents,
    /// When the current call must end; checked on every epoch tick.
    pub(crate) deadline: Option<Instant>,
    pub(crate) log_budget: u32,
    /// Definitions handed over by `host.define` during the collection under way.
    pub(crate) pending: Pending,
}

/// What `host.define` received during one collection, merged into its batch when
/// `collect` returns (see `define` in wit/plugin.wit).
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) families: Vec<crate::bindings::Family>,
    pub(crate) series: Vec<crate::bindings::Series>,
    /// Host bytes they take (strings plus records), checked against the memory limit.
    pub(crate) bytes: usize,
}

impl Pending {
    pub(crate) fn clear(&mut self) {
        *self = Pending::default();
    }
}

impl State {
    pub fn new(name: Arc<str>, grants: Arc<Grants>, memory_limit: usize) -> Result<Self, std::io::Error> {
        let incidents = SharedIncidents::default();
        let stderr = StderrTail::default();
        let mut b = WasiCtxBuilder::new();
        b.stderr(stderr.clone()).stdout(stderr.clone());
        // Plugins read /proc and /sys, which answer from memory: doing file I/O inline is
        // ~10x cheaper than a hop to the blocking thread pool per call. A grant on a slow
        // (network) file system would block one executor thread for the read.
        b.allow_blocking_current_thread(true);
        for dir in &grants.read {
            let guest = dir.to_string_lossy();
            b.preopened_dir(dir, &*guest, FsPerms::ReadOnly).map_err(|e| {
                std::io::Error::other(format!("cannot open granted directory {}: {e:#}", dir.display()))
            })?;
        }
        if !grants.tcp.is_empty() {
            b.allow_tcp(true);
            let g = grants.clone();
            let inc = incidents.clone();
            let plugin = name.clone();
            b.socket_addr_check(move |addr: SocketAddr, use_: SocketAddrUse| {
                let ok = check_socket(&g, addr, use_);
                if !ok {
                    inc.lock().unwrap().deny(format!(
                        "plugin {plugin}: {use_:?} to {addr} denied: add \"{addr}\" to grants.tcp in plugins.toml"
                    ));
                }
                Box::pin(async move { ok })
            });
        }
        let limits = MemoryLimiter {
            limit: memory_limit,
            ..Default::default()
        };
        Ok(State {
            gate: HttpGate {
                grants: grants.clone(),
                incidents: incidents.clone(),
                plugin: name.clone(),
                pool: Arc::default(),
            },
            name,
            grants,
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            stderr,
            incidents,
            deadline: None,
            log_budget: 0,
            pending: Pending::default(),
        })
    }
}

/// Caps linear memory per instance. Growth beyond the limit traps (rather than
/// returning -1 from memory.grow, which Rust's allocator turns into an abort with a
/// less useful message) and is remembered so the failure is reported as a memory
/// limit, not a generic trap.
#[derive(Default)]
pub struct MemoryLimiter {
    pub limit: usize,
    /// Largest linear memory size granted so far.
    pub peak: usize,
    /// Bytes requested by the last refused growth (0 = none); shared so the caller
    /// can read it after the call future has consumed its borrow of the store.
    pub refused: Arc<std::sync::atomic::AtomicUsize>,
}

/// Tables hold function references; this is far above what a Rust or Python guest
/// needs and bounds the host memory a malicious table.grow can take.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused.store(desired, std::sync::atomic::Ordering::Relaxed);
            return Err(wasmtime::format_err!(
                "memory limit exceeded: the plugin asked for {desired} bytes of linear memory, the limit is {} \
                 (raise memory_limit in plugins.toml if this is legitimate)",
                self.limit
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

fn check_socket(g: &Grants, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    match use_ {
        SocketAddrUse::TcpConnect => g.allows_tcp_connect(&addr),
        // wasi-sockets binds an ephemeral local address before every connect.
        SocketAddrUse::TcpBind => addr.port() == 0 && addr.ip().is_unspecified(),
        _ => false,
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// Outbound HTTP: allowed only to the authorities in `grants.http`, checked on the
/// request URI before any DNS lookup.
struct HttpGate {
    grants: Arc<Grants>,
    incidents: SharedIncidents,
    plugin: Arc<str>,
    /// Connections kept for the instance's next requests.
    pool: Arc<crate::http_client::Pool>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let default_port = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        if !self.grants.allows_http(&authority, default_port) {
            self.incidents.lock().unwrap().deny(format!(
                "plugin {}: HTTP request to {authority} denied: add \"{authority}\" to grants.http in plugins.toml",
                self.plugin
            ));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        Box::new(crate::http_client::send(self.pool.clone(), request, options))
    }
}

/// The last [`STDERR_TAIL_BYTES`] the guest wrote to stdout/stderr. Writes never
/// fail (a full pipe would make Rust's `eprintln!` panic in the guest).
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    /// All captured text (for a trap message: a Rust panic spans several lines).
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap();
        let bytes: Vec<u8> = buf.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    fn push(&self, data: &[u8]) {
        let mut buf = self.0.lock().unwrap();
        let data = &data[data.len().saturating_sub(STDERR_TAIL_BYTES)..];
        let overflow = (buf.len() + data.len()).saturating_sub(STDERR_TAIL_BYTES);
        buf.drain(..overflow);
        buf.extend(data);
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_only_the_end() {
        let t = StderrTail::default();
        t.push(&vec![b'a'; STDERR_TAIL_BYTES]);
        t.push(b"\npanicked at src/lib.rs:1:1:\nboom\n");
        assert!(t.text().ends_with("panicked at src/lib.rs:1:1:\nboom"));
        assert_eq!(t.0.lock().unwrap().len(), STDERR_TAIL_BYTES);
    }

    #[test]
    fn only_granted_tcp_connects_pass() {
        let g = Grants {
            tcp: vec!["127.0.0.1:6379".parse().unwrap()],
            ..Default::default()
        };
        assert!(check_socket(
            &g,
            "127.0.0.1:6379".parse().unwrap(),
            SocketAddrUse::TcpConnect
        ));
        assert!(!check_socket(
            &g,
            "127.0.0.1:22".parse().unwrap(),
            SocketAddrUse::TcpConnect
        ));
        assert!(check_socket(&g, "0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!check_socket(
            &g,
            "0.0.0.0:8080".parse().unwrap(),
            SocketAddrUse::TcpBind
        ));
        assert!(!check_socket(
            &g,
            "127.0.0.1:6379".parse().unwrap(),
            SocketAddrUse::TcpListen
        ));
    }
}
