//! On-disk cache of compiled components, keyed by the component's SHA-256 and the
//! engine's compatibility hash (wasmtime version + compiler settings), so a plugin is
//! compiled once per content and engine, and an upgrade never loads stale code.
//!
//! The cache directory holds native code: it must be writable only by sonde (it lives
//! under the data directory, like the TSDB).

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: PathBuf,
    engine_hash: u64,
}

impl CompileCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CompileCache {
            dir,
            engine_hash: h.finish(),
        }
    }

    pub fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{:016x}.cwasm", self.engine_hash))
    }

    /// A previously compiled component, if present and loadable. A corrupt or
    /// incompatible file is removed and reported as a miss.
    pub fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path_for(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `put` below from `Component::serialize` of the
        // same engine configuration (the name carries the compatibility hash), and
        // wasmtime re-checks the header. The directory must not be writable by others.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), "dropping unusable compiled plugin: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component (atomically: write to a temp file, then rename).
    pub fn put(&self, sha256: &str, component: &Component) {
        if let Err(e) = self.try_put(sha256, component) {
            tracing::warn!(dir = %self.dir.display(), "cannot cache compiled plugin: {e:#}");
        }
    }

    fn try_put(&self, sha256: &str, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let path = self.path_for(sha256);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
