//! The test Django site (tests/django) served by Django's own `runserver` on a random
//! 127.0.0.1 port (one process, no reloader, so its counters are consistent), with
//! Django and django-prometheus from PyPI in a virtualenv at `target/django-venv`
//! (created on first use from tests/django/requirements.txt).

use crate::sonde::terminate;
use crate::{free_port, http, repo_root, wait_until};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// How long runserver may take to answer /metrics (it imports Django first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The virtualenv's python, creating the virtualenv when it is missing or lacks a
/// package. An flock on `target/django-venv.lock` keeps concurrent tests from
/// building it twice.
#[track_caller]
pub fn venv_python() -> PathBuf {
    let target = repo_root().join("target");
    let venv = target.join("django-venv");
    let python = venv.join("bin/python");
    if has_packages(&python) {
        return python;
    }
    std::fs::create_dir_all(&target).expect("create target/");
    let lock = File::create(target.join("django-venv.lock")).expect("create target/django-venv.lock");
    // SAFETY: flock(2) on a descriptor we own; released when `lock` is closed.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if !has_packages(&python) {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(repo_root().join("tests/django/requirements.txt")));
    }
    drop(lock);
    assert!(
        has_packages(&python),
        "{} cannot import django and django_prometheus",
        python.display()
    );
    python
}

fn has_packages(python: &Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-c", "import django, django_prometheus"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[track_caller]
fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (python3 with venv is needed): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running test site.
pub struct DjangoApp {
    child: Child,
    log: TempDir,
    pub port: u16,
}

impl DjangoApp {
    #[track_caller]
    pub fn start() -> DjangoApp {
        let python = venv_python();
        let site = repo_root().join("tests/django");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::Builder::new()
                .prefix("sonde-e2e-django-")
                .tempdir()
                .expect("temp dir");
            let err = File::create(log.path().join("stderr.log")).expect("create stderr.log");
            let child = Command::new(&python)
                .args(["manage.py", "runserver", &format!("127.0.0.1:{port}"), "--noreload"])
                .current_dir(&site)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start Django's runserver: {e}"));
            let mut app = DjangoApp { child, log, port };
            let mut exited = false;
            let ready = wait_until(READY_TIMEOUT, || {
                exited = app.child.try_wait().ok().flatten().is_some();
                exited || http::get(&app.url("/metrics")).is_ok_and(|r| r.status == 200)
            });
            if ready && !exited {
                return app;
            }
            last = app.stderr();
            if !last.contains("in use") {
                break;
            }
        }
        panic!("Django's runserver did not become ready:\n{last}");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path`; the status.
    #[track_caller]
    pub fn get(&self, path: &str) -> u16 {
        http::get(&self.url(path))
            .unwrap_or_else(|e| panic!("GET {path} from Django: {e}\n{}", self.stderr()))
            .status
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for DjangoApp {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("--- Django runserver stderr ---\n{}", self.stderr());
        }
    }
}
