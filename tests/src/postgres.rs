//! A throwaway PostgreSQL 15 server (Debian's binaries) in a temp dir, listening on
//! 127.0.0.1 only on a random port, run as the `postgres` system user (initdb and
//! postgres refuse root), and stopped on drop. Also Debian's postgres_exporter.

use crate::{External, free_port, wait_until};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// Debian's PostgreSQL 15 server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Password of the `postgres` superuser of every test server.
pub const SUPERUSER_PASSWORD: &str = "super-secret-9f1c";

pub struct Postgres {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

/// uid and gid of the system user the server runs as.
fn server_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("run id");
        assert!(
            out.status.success(),
            "no `postgres` system user: install postgresql (scripts/test does)"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

impl Postgres {
    /// initdb + start; password (scram) authentication on 127.0.0.1.
    #[track_caller]
    pub fn start() -> Postgres {
        let (uid, gid) = server_user();
        let dir = tempfile::Builder::new()
            .prefix("sonde-e2e-pg-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        let pwfile = dir.path().join("superuser.pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).expect("write pwfile");
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown pwfile");
        let data = dir.path().join("data");
        let out = Command::new(format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path())
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A port taken between free_port() and the bind makes the start fail: rare
        // enough on a test machine that one attempt is enough.
        let port = free_port();
        let child = spawn(dir.path(), port);
        let pg = Postgres { child, dir, port };
        pg.wait_ready();
        pg
    }

    #[track_caller]
    fn wait_ready(&self) {
        let ready = wait_until(Duration::from_secs(30), || self.psql("SELECT 1").is_ok());
        assert!(
            ready,
            "postgres did not start on 127.0.0.1:{}:\n{}",
            self.port,
            self.log()
        );
    }

    /// Stops the server (fast shutdown); [`Postgres::restart`] starts it again.
    pub fn stop(&mut self) {
        stop(&mut self.child);
    }

    /// Starts the stopped server again on the same port and data directory.
    #[track_caller]
    pub fn restart(&mut self) {
        self.child = spawn(self.dir.path(), self.port);
        self.wait_ready();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL as the superuser over TCP; stdout (unaligned, tuples only) or stderr.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out: Output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    #[track_caller]
    pub fn exec(&self, sql: &str) -> String {
        self.psql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Creates a login role with `pg_monitor` only (what the docs recommend for sonde)
    /// and writes its password to a file readable by the test; returns the file.
    pub fn monitor_role(&self, user: &str, password: &str) -> PathBuf {
        self.exec(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}'; GRANT pg_monitor TO {user}"
        ));
        let file = self.dir().join(format!("{user}.password"));
        std::fs::write(&file, format!("{password}\n")).expect("write password file");
        file
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
    }

    /// Debian's postgres_exporter (0.11) against this server as `user`.
    pub fn exporter(&self, user: &str, password: &str) -> External {
        let dsn = format!(
            "DATA_SOURCE_NAME=postgresql://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        );
        External::start(
            "env",
            |port| {
                vec![
                    dsn.clone(),
                    "prometheus-postgres-exporter".into(),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                ]
            },
            "/metrics",
        )
    }
}

/// Runs `postgres` on `dir/data`, listening on 127.0.0.1:`port`, logging to
/// `dir/server.log` (appended, so a restart keeps the earlier log).
fn spawn(dir: &Path, port: u16) -> Child {
    let (uid, gid) = server_user();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log");
    Command::new(format!("{PG_BIN}/postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .current_dir(dir)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start postgres")
}

fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SIGINT: PostgreSQL's "fast" shutdown (SIGTERM waits for clients to leave).
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    if !wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some()) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- postgres log ---\n{}", self.log());
        }
    }
}
