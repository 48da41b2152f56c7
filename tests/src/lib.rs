//! End-to-end test harness: finds the release `sonde` binary and the plugin
//! components, starts real processes (sonde, node_exporter, Prometheus) on 127.0.0.1
//! with random ports and temp dirs, and stops them when the guard is dropped.
//!
//! Everything is built once in the release profile (`scripts/build`); the tests never
//! build anything themselves. Paths can be overridden with `SONDE_BIN`,
//! `SONDE_PLUGIN_DIR` and `SONDE_TEST_PLUGIN_DIR`.

pub mod alertmanager;
pub mod django;
pub mod dump;
pub mod exposition;
pub mod external;
pub mod http;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod sinks;
pub mod sonde;
pub mod wal;

pub use dump::{Dump, SeriesKey, tsdb_dump};
pub use exposition::{Exposition, Sample};
pub use external::External;
pub use sonde::{CommandOutput, Sonde, SondeOptions, run_sonde};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The sonde binary under test: `$SONDE_BIN`, else `<repo>/target/release/sonde`.
pub fn sonde_bin() -> PathBuf {
    let path = env_path("SONDE_BIN").unwrap_or_else(|| repo_root().join("target/release/sonde"));
    require_file(
        &path,
        "the sonde binary",
        "scripts/build (or cargo build --release -p sonde)",
    )
}

/// Directory of the bundled plugins (`node.wasm`, ...): `$SONDE_PLUGIN_DIR`, else
/// `<repo>/plugins`.
pub fn plugin_dir() -> PathBuf {
    env_path("SONDE_PLUGIN_DIR").unwrap_or_else(|| repo_root().join("plugins"))
}

/// A bundled plugin component, e.g. `plugin("node")` = `<plugin_dir>/node.wasm`.
pub fn plugin(name: &str) -> PathBuf {
    require_file(
        &plugin_dir().join(format!("{name}.wasm")),
        "a bundled plugin",
        "scripts/build",
    )
}

/// A test plugin component, e.g. `test_plugin("misbehave")` =
/// `<repo>/target/wasm32-wasip2/plugin/sonde_test_plugin_misbehave.wasm`
/// (or under `$SONDE_TEST_PLUGIN_DIR`).
pub fn test_plugin(name: &str) -> PathBuf {
    let dir = env_path("SONDE_TEST_PLUGIN_DIR").unwrap_or_else(|| repo_root().join("target/wasm32-wasip2/plugin"));
    let file = format!("sonde_test_plugin_{}.wasm", name.replace('-', "_"));
    require_file(&dir.join(file), "a test plugin", "scripts/build")
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn require_file(path: &Path, what: &str, how: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{what} is missing at {}: run {how} first",
        path.display()
    );
    path.to_path_buf()
}

/// A TOML basic string holding `s` (for paths and values spliced into test configs).
pub fn toml_str(s: impl AsRef<str>) -> String {
    let mut out = String::from("\"");
    for c in s.as_ref().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it
/// before ours binds it, so starters retry with a new port when the bind fails.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Polls `cond` every 100 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    if wait_until(timeout, || {
        found = f();
        found.is_some()
    }) {
        return found.expect("checked by wait_until");
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Copies the directory tree `from` to `to` (created), files and subdirectories only:
/// e.g. a data directory, to inspect or damage a copy and keep the original.
#[track_caller]
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for e in entries {
        let e = e.expect("dir entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&src, &dst);
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
        }
    }
}
