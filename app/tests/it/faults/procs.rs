//! Real processes a fault test owns: a private redis-server (AOF, fsync on every write) it
//! can SIGKILL and restart, and the `floodgate-app serve` binary it can SIGKILL and restart.
//! The shared PostgreSQL and Redis are never stopped or reconfigured.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::{PgPool, postgres::PgConnectOptions};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared database server's address and this test's database URL, optionally through
/// `via` (a proxy) instead of the server itself.
pub fn database_url(pool: &PgPool, via: Option<SocketAddr>) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| floodgate_app::config::DEFAULT_DATABASE_URL.into());
    let opts: PgConnectOptions = base.parse().unwrap();
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let (host, port) = (opts.get_host().to_owned(), opts.get_port());
    let server = format!("{host}:{port}");
    let target = via.map_or(server.clone(), |a| a.to_string());
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{}/{db}", prefix.replace(&server, &target))
}

pub fn database_addr() -> SocketAddr {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| floodgate_app::config::DEFAULT_DATABASE_URL.into());
    let opts: PgConnectOptions = base.parse().unwrap();
    let host = if opts.get_host() == "localhost" {
        "127.0.0.1"
    } else {
        opts.get_host()
    };
    format!("{host}:{}", opts.get_port()).parse().unwrap()
}

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    appendfsync: &'static str,
}

impl RedisServer {
    /// AOF with `appendfsync always`: a SIGKILL loses nothing acknowledged.
    pub async fn start() -> Self {
        Self::start_with_fsync("always").await
    }

    /// AOF with the given `appendfsync` (`everysec`: a SIGKILL may lose the last second).
    pub async fn start_with_fsync(appendfsync: &'static str) -> Self {
        let mut s = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            appendfsync,
        };
        s.restart().await;
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and data directory; returns once it answers PING.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
            ])
            .args(["--appendfsync", self.appendfsync, "--save", "", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let started = Instant::now();
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGSTOP (`on`) or SIGCONT: the process stays, its sockets stay open, nothing answers.
    pub fn pause(&self, on: bool) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let status = Command::new("kill")
            .args([if on { "-STOP" } else { "-CONT" }, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: no shutdown save, only what the AOF already holds survives.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // a stopped process dies on SIGKILL too, but resume it so nothing lingers
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The real binary, serving on its own port with its own Redis prefix; its log (stdout and
/// stderr) goes to `app.log` in the given directory.
pub struct AppProcess {
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl AppProcess {
    pub async fn start(
        database_url: &str,
        redis_url: &str,
        prefix: &str,
        log_dir: &std::path::Path,
    ) -> Self {
        Self::start_with(database_url, redis_url, prefix, log_dir, &[]).await
    }

    /// As [`Self::start`], with more environment variables (later ones win).
    pub async fn start_with(
        database_url: &str,
        redis_url: &str,
        prefix: &str,
        log_dir: &std::path::Path,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.into()),
            ("REDIS_URL".into(), redis_url.into()),
            ("FLOODGATE_REDIS_PREFIX".into(), prefix.into()),
            ("FLOODGATE_DB_POOL_SIZE".into(), "10".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let mut p = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            env,
            child: None,
            log: log_dir.join("app.log"),
        };
        p.restart().await;
        p
    }

    /// (Re)starts the binary on a fresh port; returns once `/readyz` answers 200.
    pub async fn restart(&mut self) {
        self.addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_floodgate-app"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FLOODGATE_LISTEN_ADDR", self.addr.to_string())
            .env(
                "FLOODGATE_REPLICA_ID",
                format!("fault-{}", uuid::Uuid::new_v4().simple()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "floodgate-app did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("floodgate-app running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
