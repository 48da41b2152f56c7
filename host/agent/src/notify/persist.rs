//! Small JSON state files written atomically (temp file, fsync, rename), so a crash
//! leaves either the old or the new version.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

pub fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(file = %path.display(), "ignoring unreadable notifier state: {e}");
            None
        }
    }
}

pub fn write<T: Serialize + ?Sized>(path: &Path, v: &T) {
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(v).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        tracing::error!(file = %path.display(), "cannot write notifier state: {e}");
    }
}
