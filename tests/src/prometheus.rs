//! Prometheus 2.42 itself (Debian's `prometheus` and `promtool`) as the reference the
//! PromQL tests compare sonde with: backfilling an OpenMetrics file into a TSDB with
//! `promtool`, starting a server on it, and the query API answers of either server.
//!
//! - [`testdata`]: the deterministic data set both servers load;
//! - [`api`]: `/api/v1/query` and `/api/v1/query_range` answers, parsed, and how two
//!   answers are compared;
//! - [`remote_write`]: loading series with staleness markers into Prometheus (remote
//!   write) and into a sonde data directory (its store directly).

pub mod api;
pub mod remote_write;
pub mod testdata;

use crate::sonde::{Sonde, SondeOptions};
use crate::{External, run_sonde};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// A Prometheus server on a random 127.0.0.1 port, with its own TSDB and no scrape
/// targets; stopped and its directory removed on drop.
pub struct Prometheus {
    pub server: External,
    dir: TempDir,
}

impl Prometheus {
    /// Backfills `openmetrics` (a file) with promtool into a fresh TSDB and starts
    /// Prometheus on it, with retention long enough to keep any past data.
    #[track_caller]
    pub fn start_with_openmetrics(openmetrics: &Path) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("sonde-e2e-prom-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        promtool_create_blocks(openmetrics, &data);
        Prometheus::start_on(dir, &data, &[])
    }

    /// Starts Prometheus on an empty TSDB with `flags` added (e.g.
    /// `--web.enable-remote-write-receiver`).
    #[track_caller]
    pub fn start_empty(flags: &[&str]) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("sonde-e2e-prom-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        Prometheus::start_on(dir, &data, flags)
    }

    #[track_caller]
    fn start_on(dir: TempDir, data: &Path, flags: &[&str]) -> Prometheus {
        let config = dir.path().join("prometheus.yml");
        // No scrape configs: the server holds only what was loaded into it. The default
        // evaluation interval (1m) is also the default subquery step.
        std::fs::write(&config, "global: {}\n").expect("write prometheus.yml");
        let mut args: Vec<String> = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=100y".into(),
            "--log.level=warn".into(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let server = External::start(
            "prometheus",
            |port| {
                let mut a = args.clone();
                a.push(format!("--web.listen-address=127.0.0.1:{port}"));
                a
            },
            "/-/ready",
        );
        Prometheus { server, dir }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `promtool tsdb create-blocks-from openmetrics FILE DIR`; panics with promtool's
/// output when it fails.
#[track_caller]
pub fn promtool_create_blocks(openmetrics: &Path, data: &Path) {
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(openmetrics)
        .arg(data)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool (is `prometheus` installed? scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "promtool create-blocks-from openmetrics {} failed:\n{}{}",
        openmetrics.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sonde import openmetrics FILE --data-dir DIR`; panics with sonde's output when it
/// fails.
#[track_caller]
pub fn sonde_import(openmetrics: &Path, data: &Path) {
    let cwd = data.parent().unwrap_or(Path::new("/"));
    let file = openmetrics.display().to_string();
    let dir = data.display().to_string();
    let out = run_sonde(cwd, &["import", "openmetrics", &file, "--data-dir", &dir]);
    assert!(
        out.status.success(),
        "sonde import openmetrics {file} failed:\n{}",
        out.all()
    );
}

/// A sonde with no plugins on a data directory `sonde import` filled, with retention
/// long enough to keep any past data.
#[track_caller]
pub fn start_sonde_on(data: PathBuf) -> Sonde {
    Sonde::start_with(SondeOptions {
        sonde_toml: Some("[storage]\nretention = \"100y\"\n".into()),
        plugins_toml: Some(String::new()),
        data_dir: Some(data),
        ..Default::default()
    })
}
