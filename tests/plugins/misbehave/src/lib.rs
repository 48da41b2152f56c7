//! Test plugin: misbehaves on purpose in `collect`, as chosen by its config
//! `{"mode": "...", "target": "host:port"}`, so the end-to-end tests can check that
//! the host contains each kind of failure and reports it clearly.
//!
//! It implements the generated `Guest` trait directly (not `export_plugin!`) so it can
//! hand the host batches the SDK would never build.
//!
//! Modes: `ok` (a gauge `misbehave_ok 1`), `loop` (never returns), `alloc` (touches
//! 1 GiB in 1 MiB steps), `panic`, `stack-overflow` (overflows the shadow stack in
//! linear memory: a trap, not a panic), `garbage` (a sample of a series id that was
//! never registered), `garbage-len` (more ids than values), `read-file` (reads
//! /etc/hostname, which no test grants), `http` (GET `http://<target>/` through
//! wasi:http), `tcp` (connects to `<target>`), `define-flood` (hands the host ever more
//! series definitions through `host.define`, 64 KiB each, without returning),
//! `define-ahead` (a healthy mode: defines its series through `host.define`, then
//! returns a batch holding only the sample). The access modes succeed, and emit a
//! sample, if the host lets them through, so a test only passes when the host really
//! refuses.
//!
//! As a push source (`push` export) it misbehaves on what it is sent: a datagram
//! `panic` panics in `ingest`, `loop` never returns; anything else is ignored.

use serde::Deserialize;
use sonde_plugin_sdk::bindings::exports::sonde::plugin::source::{Batch, Guest, PluginInfo};
use sonde_plugin_sdk::bindings::sonde::plugin::host;
use sonde_plugin_sdk::bindings::sonde::plugin::types::{Family, Label, MetricKind, Series};
use sonde_plugin_sdk::{Error, parse_config};
use std::cell::RefCell;

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Ok,
    Loop,
    Alloc,
    Panic,
    StackOverflow,
    Garbage,
    GarbageLen,
    ReadFile,
    Http,
    Tcp,
    DefineFlood,
    DefineAhead,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
    /// `host:port` for the `http` and `tcp` modes.
    #[serde(default)]
    target: String,
}

struct State {
    cfg: Config,
    /// Whether the one gauge family and series were sent to this instance already.
    registered: bool,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Id of the only family and series the plugin ever registers.
const ID: u32 = 0;
/// A series id that is never registered.
const UNKNOWN_ID: u32 = 4242;

struct Misbehave;

impl Guest for Misbehave {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on purpose (sonde's end-to-end tests)".into(),
            default_interval_ms: 0,
        }
    }

    fn configure(config: String) -> Result<(), Error> {
        let cfg: Config = parse_config(&config)?;
        if matches!(cfg.mode, Mode::Http | Mode::Tcp) && cfg.target.is_empty() {
            return Err(Error::config(format!("mode {:?} needs `target` (host:port)", cfg.mode)));
        }
        STATE.with(|s| *s.borrow_mut() = Some(State { cfg, registered: false }));
        Ok(())
    }

    fn collect() -> Result<Batch, Error> {
        STATE.with(|s| {
            let mut guard = s.borrow_mut();
            let state = guard
                .as_mut()
                .ok_or_else(|| Error::failed("collect called before configure"))?;
            collect(state)
        })
    }
}

fn collect(state: &mut State) -> Result<Batch, Error> {
    let target = state.cfg.target.as_str();
    match state.cfg.mode {
        Mode::Ok => Ok(gauge(state, "misbehave_ok", 1.0)),
        Mode::Loop => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Mode::Alloc => {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            for i in 0..1024 {
                chunks.push(vec![i as u8 | 1; 1 << 20]);
                std::hint::black_box(&chunks);
            }
            Ok(gauge(
                state,
                "misbehave_allocated_bytes",
                chunks.len() as f64 * (1 << 20) as f64,
            ))
        }
        Mode::Panic => panic!("misbehave: deliberate panic in collect"),
        Mode::StackOverflow => Ok(gauge(state, "misbehave_depth", recurse(0) as f64)),
        Mode::Garbage => Ok(Batch {
            ids: vec![UNKNOWN_ID],
            values: vec![1.0],
            ..empty()
        }),
        Mode::GarbageLen => {
            let mut b = gauge(state, "misbehave_garbage", 1.0);
            b.ids.push(ID + 1);
            Ok(b)
        }
        Mode::ReadFile => match std::fs::read_to_string("/etc/hostname") {
            Ok(text) => Ok(gauge(state, "misbehave_read_bytes", text.len() as f64)),
            Err(e) => Err(Error::denied(format!("read /etc/hostname: {e}"))),
        },
        Mode::Http => match http_get(target) {
            Ok(status) => Ok(gauge(state, "misbehave_http_status", status as f64)),
            Err(e) => Err(e),
        },
        Mode::DefineFlood => {
            let big = "x".repeat(64 * 1024);
            for id in 0.. {
                let series = Series {
                    id,
                    family: ID,
                    name: "misbehave_flood".into(),
                    labels: vec![Label {
                        name: "big".into(),
                        value: big.clone(),
                    }],
                };
                host::define(&[], &[series]);
            }
            unreachable!("the host traps the flood")
        }
        Mode::DefineAhead => {
            let mut b = gauge(state, "misbehave_defined_ahead", 1.0);
            host::define(&b.families, &b.series);
            b.families.clear();
            b.series.clear();
            Ok(b)
        }
        Mode::Tcp => match std::net::TcpStream::connect(target) {
            Ok(_) => Ok(gauge(state, "misbehave_tcp_connected", 1.0)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(Error::denied(format!("connect to {target}: {e}")))
            }
            Err(e) => Err(Error::unreachable(format!("connect to {target}: {e}"))),
        },
    }
}

/// Never returns: each call adds a frame until the wasm call stack is exhausted.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let mut pad = [0u8; 256];
    pad[depth as usize % 256] = 1;
    std::hint::black_box(&mut pad);
    recurse(std::hint::black_box(depth + 1)) + pad[0] as u64
}

fn empty() -> Batch {
    Batch {
        families: vec![],
        series: vec![],
        forget: vec![],
        ids: vec![],
        values: vec![],
        timestamps: vec![],
        target_errors: vec![],
    }
}

/// A batch with one gauge sample, registering the family and series on first use.
fn gauge(state: &mut State, name: &str, value: f64) -> Batch {
    let mut b = Batch {
        ids: vec![ID],
        values: vec![value],
        ..empty()
    };
    if !state.registered {
        state.registered = true;
        b.families.push(Family {
            id: ID,
            name: name.into(),
            kind: MetricKind::Gauge,
            help: "misbehave test plugin".into(),
            unit: String::new(),
        });
        b.series.push(Series {
            id: ID,
            family: ID,
            name: name.into(),
            labels: vec![],
        });
    }
    b
}

/// `GET http://<authority>/` through wasi:http; the response status, or the error
/// the host answered with (`Denied` when the host refused the request itself).
fn http_get(authority: &str) -> Result<u16, Error> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};
    let url = format!("http://{authority}/");
    let fail = |code: ErrorCode| match code {
        ErrorCode::HttpRequestDenied => Error::denied(format!("GET {url}: the host refused it (HttpRequestDenied)")),
        other => Error::unreachable(format!("GET {url}: {other:?}")),
    };
    let req = OutgoingRequest::new(Fields::new());
    let bad = |what: &str| Error::failed(format!("GET {url}: cannot set {what}"));
    req.set_method(&Method::Get).map_err(|()| bad("method"))?;
    req.set_scheme(Some(&Scheme::Http)).map_err(|()| bad("scheme"))?;
    req.set_authority(Some(authority)).map_err(|()| bad("authority"))?;
    req.set_path_with_query(Some("/")).map_err(|()| bad("path"))?;
    let response = outgoing_handler::handle(req, None).map_err(fail)?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(r))) => Ok(r.status()),
        Some(Ok(Err(code))) => Err(fail(code)),
        Some(Err(())) | None => Err(Error::failed(format!("GET {url}: response already taken or not ready"))),
    }
}

impl sonde_plugin_sdk::bindings::exports::sonde::plugin::push::Guest for Misbehave {
    fn ingest(payload: Vec<u8>, ends: Vec<u32>) -> Result<(), Error> {
        for d in sonde_plugin_sdk::Datagrams::new(&payload, &ends).iter() {
            match d {
                b"panic" => panic!("misbehave: deliberate panic in ingest"),
                b"loop" => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_state: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

sonde_plugin_sdk::bindings::__export_world!(Misbehave with_types_in sonde_plugin_sdk::bindings);
