//! A running `sonde run` in its own temp dir on a random 127.0.0.1 port, and
//! one-shot invocations (`sonde check`, `--version`). The process is stopped and the
//! directory removed when [`Sonde`] is dropped; when a test is failing, sonde's
//! stderr is printed and the directory kept for a post-mortem.

use crate::exposition::{self, Exposition};
use crate::http::{self, Response};
use crate::{free_port, plugin_dir, sonde_bin, wait_until};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long sonde may take to answer 200 on `/-/ready`: it compiles every plugin
/// (cranelift, ~seconds each on a busy 2-core machine) before it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a one-shot command (`sonde check`, `--help`) may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long sonde gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts with a fresh port when another process took ours before sonde bound it.
const PORT_ATTEMPTS: usize = 3;

/// What to start sonde with. Every file is written into the instance's temp dir.
#[derive(Debug, Clone, Default)]
pub struct SondeOptions {
    /// Content of `sonde.toml`; none = no `--config`.
    pub sonde_toml: Option<String>,
    /// Content of `plugins.toml`.
    pub plugins_toml: Option<String>,
    /// An existing `plugins.toml` to use instead of `plugins_toml`.
    pub plugins_file: Option<PathBuf>,
    /// `--plugin-dir`; default: the bundled plugins ([`plugin_dir`]).
    pub plugin_dir: Option<PathBuf>,
    /// `--data-dir`; default: `data` in the instance's temp dir. Set it to keep the
    /// data (e.g. the compile cache) across several starts.
    pub data_dir: Option<PathBuf>,
    /// Leave out the `run` subcommand (`sonde` alone runs the daemon).
    pub bare: bool,
}

pub struct Sonde {
    child: Child,
    dir: Option<TempDir>,
    pub port: u16,
}

impl Sonde {
    /// Starts sonde with this `plugins.toml` and waits until it is ready.
    #[track_caller]
    pub fn start(plugins_toml: &str) -> Sonde {
        Sonde::start_with(SondeOptions {
            plugins_toml: Some(plugins_toml.to_string()),
            ..Default::default()
        })
    }

    #[track_caller]
    pub fn start_with(opts: SondeOptions) -> Sonde {
        let dir = tempfile::Builder::new()
            .prefix("sonde-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let mut args: Vec<String> = if opts.bare { vec![] } else { vec!["run".into()] };
        if let Some(text) = &opts.sonde_toml {
            args.extend(["--config".into(), write(dir.path(), "sonde.toml", text)]);
        }
        let plugins = match (&opts.plugins_file, &opts.plugins_toml) {
            (Some(file), _) => Some(file.display().to_string()),
            (None, Some(text)) => Some(write(dir.path(), "plugins.toml", text)),
            (None, None) => None,
        };
        if let Some(p) = plugins {
            args.extend(["--plugins".into(), p]);
        }
        let plugin_dir = opts.plugin_dir.clone().unwrap_or_else(plugin_dir);
        args.extend(["--plugin-dir".into(), plugin_dir.display().to_string()]);
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
        args.extend(["--data-dir".into(), data_dir.display().to_string()]);
        let mut dir = Some(dir);
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let mut listen_args = args.clone();
            listen_args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
            let child = spawn(dir.as_ref().expect("dir").path(), &listen_args);
            let mut sonde = Sonde {
                child,
                dir: dir.take(),
                port,
            };
            match sonde.wait_ready() {
                Ok(()) => return sonde,
                Err(why) => {
                    let stderr = sonde.stderr();
                    let port_taken = stderr.contains("in use") && attempt < PORT_ATTEMPTS;
                    if !port_taken {
                        // Dropping `sonde` while panicking prints its stderr.
                        panic!("sonde {} did not become ready: {why}", listen_args.join(" "));
                    }
                    sonde.stop();
                    dir = sonde.dir.take();
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < READY_TIMEOUT {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("it exited with {status}"));
            }
            match http::get(&self.url("/-/ready")) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("/-/ready answered {}: {}", r.status, r.body.trim()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("still not ready after {READY_TIMEOUT:?} ({last})"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir lives as long as the process").path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path`; panics when sonde does not answer at all.
    #[track_caller]
    pub fn get(&self, path: &str) -> Response {
        http::get(&self.url(path)).unwrap_or_else(|e| panic!("{e}\n--- sonde stderr ---\n{}", self.stderr()))
    }

    /// `GET path?k=v&...` (the pairs percent-encoded); panics when sonde does not answer.
    #[track_caller]
    pub fn get_with_query(&self, path: &str, query: &[(&str, &str)]) -> Response {
        http::get_with_query(&self.url(path), query)
            .unwrap_or_else(|e| panic!("{e}\n--- sonde stderr ---\n{}", self.stderr()))
    }

    /// `GET path`, asserting 200; the body.
    #[track_caller]
    pub fn get_ok(&self, path: &str) -> String {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path} answered {}: {}", r.status, r.body);
        r.body
    }

    /// `/api/v1/targets` as JSON, after checking the envelope.
    #[track_caller]
    pub fn targets(&self) -> Value {
        let body = self.get_ok("/api/v1/targets");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/v1/targets is not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "/api/v1/targets: {v}");
        assert!(
            v["data"]["activeTargets"].is_array(),
            "/api/v1/targets has no data.activeTargets: {v}"
        );
        v
    }

    /// The active target whose `job` label is `job`.
    #[track_caller]
    pub fn target(&self, job: &str) -> Option<Value> {
        let v = self.targets();
        let targets = v["data"]["activeTargets"].as_array().expect("checked in targets()");
        targets.iter().find(|t| t["labels"]["job"] == job).cloned()
    }

    /// Waits until the target of `job` reports `health`; returns the target.
    #[track_caller]
    pub fn wait_health(&self, job: &str, health: &str, timeout: Duration) -> Value {
        let mut last = None;
        let found = wait_until(timeout, || {
            last = self.target(job);
            last.as_ref().is_some_and(|t| t["health"] == health)
        });
        if !found {
            panic!(
                "target {job} is not {health} after {timeout:?}; last seen: {}\n--- sonde stderr ---\n{}",
                last.map_or("absent".into(), |t| t.to_string()),
                self.stderr_tail(60)
            );
        }
        last.expect("found")
    }

    /// sonde's own `/metrics`, parsed.
    #[track_caller]
    pub fn metrics(&self) -> Exposition {
        let body = self.get_ok("/metrics");
        exposition::parse(&body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}"))
    }

    /// `/federate?match[]=<selector>&...`, parsed.
    #[track_caller]
    pub fn federate(&self, selectors: &[&str]) -> Exposition {
        let query: Vec<(&str, &str)> = selectors.iter().map(|s| ("match[]", *s)).collect();
        let r = http::get_with_query(&self.url("/federate"), &query).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.status, 200,
            "/federate {selectors:?} answered {}: {}",
            r.status, r.body
        );
        exposition::parse(&r.body).unwrap_or_else(|e| panic!("/federate {selectors:?} does not parse: {e}"))
    }

    /// Resident memory of the sonde process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/<pid>/status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("VmRSS value");
        kb * 1024
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Everything sonde wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default()
    }

    /// The last `lines` lines of stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = self.stderr();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) and waits up to `timeout` for sonde to exit.
    /// The exit status; an error if it had exited before the signal, or if it was still
    /// running after `timeout` (it is then killed).
    pub fn signal_and_wait(&mut self, signal: libc::c_int, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            return Err(format!("sonde had already exited ({status}) before the signal"));
        }
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Ok(status);
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "sonde was still running {timeout:?} after signal {signal}; killed it"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no grace period, no shutdown path, nothing flushed — as far as sonde can
    /// tell, a crash. Waits only for the kernel to reap it; the exit status (a signal),
    /// or an error if it had already exited.
    pub fn kill(&mut self) -> Result<ExitStatus, String> {
        self.signal_and_wait(libc::SIGKILL, STOP_TIMEOUT)
    }

    /// SIGTERM, then SIGKILL if it does not exit within [`STOP_TIMEOUT`].
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.child.try_wait().ok().flatten() {
            return Some(status);
        }
        terminate(&mut self.child, STOP_TIMEOUT)
    }
}

impl Drop for Sonde {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let path = dir.keep();
            eprintln!(
                "--- sonde on port {} (files kept in {}) stderr, last 200 lines ---\n{}",
                self.port,
                path.display(),
                tail(
                    &std::fs::read_to_string(path.join("stderr.log")).unwrap_or_default(),
                    200
                )
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path.display().to_string()
}

fn spawn(dir: &Path, args: &[String]) -> Child {
    let out = File::create(dir.join("stdout.log")).expect("create stdout.log");
    let err = File::create(dir.join("stderr.log")).expect("create stderr.log");
    Command::new(sonde_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", sonde_bin().display()))
}

/// Sends SIGTERM and waits; SIGKILL after `grace`. The exit status if it was reaped.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// The result of a one-shot sonde command.
#[derive(Debug)]
pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// stdout and stderr together (where a message went is not part of the contract).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `sonde <args>` to completion in `cwd` (killed and failed after
/// [`COMMAND_TIMEOUT`]).
#[track_caller]
pub fn run_sonde(cwd: &Path, args: &[&str]) -> CommandOutput {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = File::create(out_dir.path().join("out")).expect("create");
    let err = File::create(out_dir.path().join("err")).expect("create");
    let mut child = Command::new(sonde_bin())
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start sonde");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sonde {args:?} did not exit within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |name: &str| std::fs::read_to_string(out_dir.path().join(name)).unwrap_or_default();
    CommandOutput {
        status,
        stdout: read("out"),
        stderr: read("err"),
    }
}
