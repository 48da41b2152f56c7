//! Real third-party servers the tests compare sonde with (node_exporter), started
//! on a random 127.0.0.1 port and stopped on drop.

use crate::sonde::terminate;
use crate::{free_port, http, wait_until};
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// How long a server may take to answer its readiness URL.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running external server.
pub struct External {
    child: Child,
    dir: TempDir,
    pub name: String,
    pub port: u16,
}

impl External {
    /// Starts `program` with `args(port)` and waits until `http://127.0.0.1:<port><ready_path>`
    /// answers 200. Retries with a new port when the first one was taken meanwhile.
    #[track_caller]
    pub fn start(program: &str, args: impl Fn(u16) -> Vec<String>, ready_path: &str) -> External {
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::Builder::new()
                .prefix("sonde-e2e-ext-")
                .tempdir()
                .expect("temp dir");
            let err = File::create(dir.path().join("stderr.log")).expect("create stderr.log");
            let child = Command::new(program)
                .args(args(port))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program} (is it installed? scripts/test installs it): {e}"));
            let mut ext = External {
                child,
                dir,
                name: program.to_string(),
                port,
            };
            let url = ext.url(ready_path);
            let mut exited = false;
            let ready = wait_until(READY_TIMEOUT, || {
                exited = ext.child.try_wait().ok().flatten().is_some();
                exited || http::get(&url).is_ok_and(|r| r.status == 200)
            });
            if ready && !exited {
                return ext;
            }
            last_err = ext.stderr();
            if !last_err.contains("in use") {
                break;
            }
        }
        panic!("{program} did not become ready on 127.0.0.1:\n{last_err}");
    }

    /// Debian's `prometheus-node-exporter` with only `collectors` enabled, plus `flags`.
    #[track_caller]
    pub fn node_exporter(collectors: &[&str], flags: &[&str]) -> External {
        let mut args: Vec<String> = vec!["--collector.disable-defaults".into()];
        args.extend(collectors.iter().map(|c| format!("--collector.{c}")));
        args.extend(flags.iter().map(|f| f.to_string()));
        External::start(
            "prometheus-node-exporter",
            |port| {
                let mut a = vec![format!("--web.listen-address=127.0.0.1:{port}")];
                a.extend(args.iter().cloned());
                a
            },
            "/metrics",
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for External {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}
