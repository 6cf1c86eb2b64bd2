//! A private PostgreSQL server a fault test owns and can pause with SIGSTOP: `initdb` into a
//! temporary directory, then the postmaster and every backend are stopped (each backend is
//! its own process group, so they are signalled one by one, the postmaster first so it forks
//! nothing new). Sockets stay open and nothing answers — what a frozen database host looks
//! like. The shared server the other tests use is never touched.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::faults::procs::free_port;

pub struct PostgresServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The server binaries of the machine's PostgreSQL (Debian keeps them off PATH).
fn bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|d| d.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().expect(
        "PostgreSQL server binaries in /usr/lib/postgresql/*/bin (scripts/services.sh installs them)",
    )
}

/// PostgreSQL refuses to run as root: then every server command runs as `postgres`.
fn as_server_user(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With extra server settings (`-c name=value`), e.g. `ssl=on` and its files.
    pub async fn start_with(settings: &[(&str, &str)]) -> Self {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // the server user must own its directory
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let status = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "floodgate",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(dir.path())
            .args(
                settings
                    .iter()
                    .flat_map(|(k, v)| ["-c".to_owned(), format!("{k}={v}")]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let server = Self {
            port,
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        let plain = format!("{}?sslmode=disable", server.url());
        while sqlx::PgPool::connect(&plain).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "private PostgreSQL did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://floodgate@127.0.0.1:{}/postgres", self.port)
    }

    /// A pool on this server for the app under test.
    pub fn pool(&self, size: u32, acquire: Duration) -> PgPool {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(acquire)
            .connect_lazy(&self.url())
            .unwrap()
    }

    /// The postmaster (from its pid file) and its children, postmaster first.
    fn processes(&self) -> Vec<String> {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
        else {
            return Vec::new();
        };
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        std::iter::once(postmaster)
            .chain(children.split_whitespace().map(str::to_owned))
            .collect()
    }

    fn signal(&self, signal: &str) {
        let pids = self.processes();
        assert!(!pids.is_empty(), "private PostgreSQL is not running");
        let status = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pids:?}");
    }

    /// SIGSTOP (`on`) or SIGCONT to the postmaster and every backend.
    pub fn pause(&self, on: bool) {
        self.signal(if on { "-STOP" } else { "-CONT" });
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let pids = self.processes();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-CONT").args(&pids).status();
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
