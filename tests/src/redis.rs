//! A real `redis-server` on a random 127.0.0.1 port in a temp dir (no persistence),
//! driven with `redis-cli`, and Debian's `prometheus-redis-exporter` scraping it.

use crate::external::External;
use crate::sonde::terminate;
use crate::{free_port, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// How long redis-server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct RedisServer {
    child: Option<Child>,
    dir: TempDir,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server with `args` added (e.g. `--requirepass x`).
    #[track_caller]
    pub fn start(args: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sonde-e2e-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = RedisServer {
            child: None,
            dir,
            port: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        for _ in 0..3 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start:\n{}", server.log());
    }

    /// Starts the server again on the same port after [`RedisServer::stop`].
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.spawn(), "redis-server did not restart:\n{}", self.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(5));
        }
    }

    fn spawn(&mut self) -> bool {
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--port".into(), self.port.to_string()]);
        args.extend(["--dir".into(), self.dir.path().display().to_string()]);
        args.extend([
            "--logfile".into(),
            self.dir.path().join("redis.log").display().to_string(),
        ]);
        args.extend(self.args.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (scripts/test installs it): {e}"));
        self.child = Some(child);
        let ready = wait_until(READY_TIMEOUT, || {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            exited || self.cli(&["PING"]).contains("PONG") || self.cli(&["PING"]).contains("NOAUTH")
        });
        let alive = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        if !(ready && alive) {
            self.stop();
        }
        ready && alive
    }

    /// `redis-cli -p <port> args...` (with the server's `--requirepass`, if any); stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(i) = self.args.iter().position(|a| a == "--requirepass") {
            cmd.args(["--no-auth-warning", "-a", &self.args[i + 1]]);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's `prometheus-redis-exporter` (1.45) scraping `redis`, without Go metrics.
#[track_caller]
pub fn redis_exporter(redis: &RedisServer, extra: &[&str]) -> External {
    let addr = format!("redis://{}", redis.addr());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    External::start(
        "prometheus-redis-exporter",
        |port| {
            let mut a = vec![
                "-redis.addr".to_string(),
                addr.clone(),
                "-web.listen-address".into(),
                format!("127.0.0.1:{port}"),
                "-redis-only-metrics".into(),
            ];
            a.extend(extra.iter().cloned());
            a
        },
        "/metrics",
    )
}
