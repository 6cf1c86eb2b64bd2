//! Several real `floodgate-app serve` processes behind a real nginx, for tests across
//! replicas: one `#[sqlx::test]` database and one Redis key prefix shared by every replica,
//! each replica on its own fixed port (a restart comes back on the same one, as a pod behind a
//! Service would), nginx rendered from the one template `make run REPLICAS=N` uses
//! (deploy/nginx/floodgate.conf.template). A replica can be SIGKILLed, SIGTERMed (it drains
//! as in a pod) and restarted.
//!
//! ```ignore
//! use crate::support::replicas;
//! let mut set = replicas::Replicas::start(&pool, 3, &redis_url, &[]).await;
//! set.url("/api/v1/goods"); set.replica(1).kill9(); set.replica(1).restart().await;
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use sqlx::PgPool;

use crate::faults::procs;

/// The nginx template shared with `make run REPLICAS=N` (scripts/replicas.sh).
pub const NGINX_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/nginx/floodgate.conf.template"
));

/// A free port below the kernel's ephemeral range (32768 and up on Linux), so no outgoing
/// connection can hold it while its replica is down between a stop and a restart.
pub fn replica_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The address nginx connects to the replicas from, which they trust for X-Forwarded-For.
pub const PROXY_ADDR: &str = "127.0.0.1/32";

/// The template filled in: `dir` for nginx's files, `listen` for its address, one upstream
/// server line per replica address (the template's `@ADDR@` line repeated).
pub fn render_nginx_conf(
    template: &str,
    dir: &Path,
    listen: &str,
    upstreams: &[SocketAddr],
) -> String {
    let mut out = String::new();
    for line in template.lines() {
        let line = line
            .replace("@DIR@", &dir.display().to_string())
            .replace("@LISTEN@", listen);
        if line.contains("@ADDR@") {
            for addr in upstreams {
                out.push_str(&line.replace("@ADDR@", &addr.to_string()));
                out.push('\n');
            }
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// One `floodgate-app serve` process on a fixed port; stdout and stderr go to
/// `replica-<index>.log` in the set's folder.
pub struct Replica {
    pub index: usize,
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    /// Exit statuses of the processes this replica ran before the current one.
    pub exits: Vec<ExitStatus>,
}

impl Replica {
    /// Starts the binary (again) on the replica's port; returns once `/readyz` answers 200.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "replica {} is still running",
            self.index
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_floodgate-app"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FLOODGATE_LISTEN_ADDR", self.addr.to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await;
    }

    async fn wait_ready(&mut self, limit: Duration) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "replica {} exited with {status}: {}",
                    self.index,
                    self.log_tail()
                );
            }
            assert!(
                started.elapsed() < limit,
                "replica {} not ready within {limit:?}: {}",
                self.index,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no drain, in-flight requests are cut off.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.exits.push(c.wait().unwrap());
        }
    }

    /// SIGTERM: the replica drains (readiness false, `FLOODGATE_SHUTDOWN_DELAY_SECS`, then
    /// stops accepting and finishes what it holds). Returns at once; see [`Self::wait_exit`].
    pub fn sigterm(&self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to exit by itself; returns its status (panics after `limit`).
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                self.exits.push(status);
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "replica {} did not exit within {limit:?} of SIGTERM",
                self.index
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("replica running").id()
    }

    /// A URL on this replica directly (not through nginx).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// nginx from the shared template in a temp folder, on a free port, never the system service.
pub struct Nginx {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// Debian's nginx; a missing one fails the test with the way to install it.
    pub fn binary() -> PathBuf {
        let found = Command::new("sh")
            .args(["-c", "command -v nginx"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        found
            .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.exists()))
            .expect(
                "nginx is not installed: this test needs a real reverse proxy \
                 (Debian: `sudo apt-get install -y nginx`; scripts/test.sh installs it)",
            )
    }

    pub async fn start(upstreams: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = procs::free_port();
        let conf = render_nginx_conf(
            NGINX_TEMPLATE,
            dir.path(),
            &format!("127.0.0.1:{port}"),
            upstreams,
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(Self::binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut n = Self { port, child, dir };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = n.child.try_wait().unwrap() {
                panic!("nginx exited with {status}: {}", n.error_log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` replicas sharing this test's database and one Redis prefix, nginx in front.
pub struct Replicas {
    pub replicas: Vec<Replica>,
    pub nginx: Nginx,
    pub prefix: String,
    /// The replicas' logs; removed when the set is dropped.
    _dir: tempfile::TempDir,
}

impl Replicas {
    /// Starts `n` replicas (each ready) and nginx. `extra_env` adds or overrides environment
    /// variables of every replica (later ones win).
    pub async fn start(
        pool: &PgPool,
        n: usize,
        redis_url: &str,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), procs::database_url(pool, None)),
            ("REDIS_URL".into(), redis_url.into()),
            ("FLOODGATE_REDIS_PREFIX".into(), prefix.clone()),
            ("FLOODGATE_DB_POOL_SIZE".into(), "8".into()),
            ("FLOODGATE_TRUSTED_PROXIES".into(), PROXY_ADDR.into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let mut replicas = Vec::new();
        for index in 0..n {
            let mut env = env.clone();
            env.push(("FLOODGATE_REPLICA_ID".into(), format!("replica-{index}")));
            replicas.push(Replica {
                index,
                addr: format!("127.0.0.1:{}", replica_port()).parse().unwrap(),
                env,
                child: None,
                log: dir.path().join(format!("replica-{index}.log")),
                exits: Vec::new(),
            });
        }
        // one at a time: the first applies the migrations, the others find them applied
        for r in &mut replicas {
            r.restart().await;
        }
        let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        let nginx = Nginx::start(&addrs).await;
        Self {
            replicas,
            nginx,
            prefix,
            _dir: dir,
        }
    }

    /// A URL through nginx.
    pub fn url(&self, path: &str) -> String {
        self.nginx.url(path)
    }

    /// nginx's `http://host:port`, to put paths after.
    pub fn base(&self) -> String {
        self.nginx.url("")
    }

    pub fn replica(&mut self, index: usize) -> &mut Replica {
        &mut self.replicas[index]
    }
}
