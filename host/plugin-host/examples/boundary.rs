//! Boundary benchmark: what it costs to load a plugin, instantiate it, and move
//! samples across the WebAssembly boundary with the `sonde:plugin` wire.
//!
//!     cargo run --release -p sonde-plugin-host --example boundary -- \
//!         target/wasm32-wasip2/plugin/sonde_test_plugin_synthetic.wasm
//!
//! Prints medians over many runs. Per-sample figures are for steady state (series
//! registered in earlier collections): the call time minus the guest's own time in
//! `collect` (which it reports as `synthetic_guest_seconds`) minus an empty call,
//! divided by the number of samples.

use sonde_plugin_host::{EngineOptions, Grants, InstanceSpec, PluginEngine};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn engine(cache: Option<PathBuf>) -> PluginEngine {
    PluginEngine::new(&EngineOptions {
        max_instances: 8,
        max_memory_bytes: 512 << 20,
        cache_dir: cache,
    })
    .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = PathBuf::from(std::env::args().nth(1).expect("usage: boundary <synthetic.wasm>"));
    let cache = std::env::temp_dir().join(format!("sonde-boundary-{}", std::process::id()));

    let cold = median(
        (0..5)
            .map(|_| engine(None).load(&path).unwrap().1.took.as_secs_f64() * 1e3)
            .collect(),
    );
    let e = engine(Some(cache.clone()));
    e.load(&path).unwrap();
    let cached = median(
        (0..20)
            .map(|_| e.load(&path).unwrap().1.took.as_secs_f64() * 1e3)
            .collect(),
    );
    println!(
        "load: cold compile {cold:.2} ms, from cache {cached:.3} ms ({:.0}x faster)",
        cold / cached
    );

    let (plugin, _) = e.load(&path).unwrap();
    let spec = InstanceSpec {
        name: "bench".into(),
        grants: Arc::new(Grants::default()),
        memory_limit: 512 << 20,
    };
    let inst_us = median(instantiate_times(&plugin, &spec, 200).await);
    println!("instantiate (pooled, InstancePre): {inst_us:.1} us");

    let mut inst = plugin.instantiate(&spec, TIMEOUT).await.unwrap();
    let empty_us = {
        let mut v = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            inst.describe(TIMEOUT).await.unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        median(v)
    };
    println!("empty call (describe): {empty_us:.2} us");

    for n in [1_000u32, 10_000] {
        let mut inst = plugin.instantiate(&spec, TIMEOUT).await.unwrap();
        inst.configure(&format!(r#"{{"series": {n}, "labels": 3}}"#), TIMEOUT)
            .await
            .unwrap();
        let first = inst.collect(TIMEOUT).await.unwrap();
        let guest_id = first
            .series
            .iter()
            .find(|s| s.name == "synthetic_guest_seconds")
            .unwrap()
            .id;
        let rounds = if n <= 1000 { 500 } else { 100 };
        let (mut call, mut guest, mut boundary) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            let b = inst.collect(TIMEOUT).await.unwrap();
            let call_ns = t.elapsed().as_secs_f64() * 1e9;
            assert!(
                b.series.is_empty() && b.ids.len() == n as usize + 1,
                "steady state expected"
            );
            // The guest reports the previous round's time; rounds are alike.
            let pos = b.ids.iter().position(|id| *id == guest_id).unwrap();
            let guest_ns = b.values[pos] * 1e9;
            call.push(call_ns / n as f64);
            guest.push(guest_ns / n as f64);
            boundary.push((call_ns - guest_ns - empty_us * 1e3) / n as f64);
        }
        println!(
            "{n:>6} samples: call {:.1} ns/sample = guest SDK {:.1} + boundary {:.1} (lift of ids+values, registry sweep, empty call removed)",
            median(call),
            median(guest),
            median(boundary)
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}

async fn instantiate_times(plugin: &sonde_plugin_host::Plugin, spec: &InstanceSpec, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let inst = plugin.instantiate(spec, TIMEOUT).await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e6);
        drop(inst);
    }
    v
}
