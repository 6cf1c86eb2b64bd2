//! TLS to Redis (`rediss://`, FLOODGATE_REDIS_CA_FILE, a client certificate) and PostgreSQL
//! (`sslmode=verify-full&sslrootcert=`), against local servers with certificates made for
//! the test by scripts/tls-certs.sh: the right CA connects and works; a server whose
//! certificate another CA signed, or that names another host, is refused with a clear error.

use crate::common;
use crate::faults::postgres_server;
use crate::faults::procs;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use floodgate_app::{
    config::Settings,
    platform::{db, redis::Redis},
};
use postgres_server::PostgresServer;
use procs::free_port;
use reqwest::StatusCode;
use secrecy::SecretString;

/// A fresh set of certificates (scripts/tls-certs.sh), readable by the `postgres` user.
fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tls-certs.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/tls-certs.sh failed");
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir.path())
        .status();
    dir
}

/// A private redis-server with a plain port (to reconfigure it) and a TLS port.
struct TlsRedis {
    child: Child,
    plain: u16,
    tls: u16,
}

impl TlsRedis {
    async fn start(certs: &Path) -> Self {
        let (plain, tls) = (free_port(), free_port());
        let file = |name: &str| certs.join(name).display().to_string();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &plain.to_string(), "--tls-port", &tls.to_string()])
            .args(["--tls-cert-file", &file("server.crt")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.crt")])
            .args(["--tls-auth-clients", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server has TLS built in)");
        let server = Self { child, plain, tls };
        let started = Instant::now();
        while server.admin(&["PING"]).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    async fn admin(&self, args: &[&str]) -> redis::RedisResult<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.plain))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd(args[0])
            .arg(&args[1..])
            .query_async(&mut conn)
            .await
    }

    /// Serves `name`.crt/.key to new TLS connections from now on.
    async fn serve_cert(&self, certs: &Path, name: &str) {
        let crt = certs.join(format!("{name}.crt")).display().to_string();
        let key = certs.join(format!("{name}.key")).display().to_string();
        self.admin(&["CONFIG", "SET", "tls-cert-file", &crt, "tls-key-file", &key])
            .await
            .unwrap();
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_settings(url: String, ca: Option<PathBuf>) -> Settings {
    let mut s = Settings::defaults();
    s.redis_url = SecretString::from(url);
    s.redis_ca_file = ca;
    s.redis_prefix = format!("fgtls:{}:", uuid::Uuid::new_v4().simple());
    s
}

/// SET and GET through the app's Redis handle; the error text when it cannot.
async fn round_trip(settings: &Settings) -> Result<String, String> {
    settings.validate().map_err(|e| e.to_string())?;
    let redis = Redis::connect_unguarded(settings).map_err(|e| e.to_string())?;
    let mut conn = redis.raw_conn();
    let key = redis.key("tls-probe");
    redis::cmd("SET")
        .arg(&key)
        .arg("over tls")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

fn assert_refused(outcome: Result<String, String>, why: &str) {
    let err = outcome.expect_err("a server the client must not trust was accepted");
    assert!(err.contains(why), "expected {why:?} in: {err}");
}

#[tokio::test]
async fn redis_over_tls_trusts_only_the_ca_and_the_host_name() {
    let certs = certs();
    let dir = certs.path();
    let server = TlsRedis::start(dir).await;
    let ca = Some(dir.join("ca.crt"));
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("rediss://{host}:{}", server.tls);
        assert_eq!(
            round_trip(&redis_settings(url, ca.clone())).await,
            Ok("over tls".into()),
            "{host}"
        );
    }
    let url = format!("rediss://localhost:{}", server.tls);
    // the system's roots do not include the test CA
    assert_refused(
        round_trip(&redis_settings(url.clone(), None)).await,
        "UnknownIssuer",
    );
    // plain redis:// to a TLS port with TLS settings is a configuration error, said at once
    let plain = format!("redis://localhost:{}", server.tls);
    assert_refused(
        round_trip(&redis_settings(plain, ca.clone())).await,
        "REDIS_URL is not rediss://",
    );
    server.serve_cert(dir, "rogue").await;
    assert_refused(
        round_trip(&redis_settings(url.clone(), ca.clone())).await,
        "UnknownIssuer",
    );
    server.serve_cert(dir, "wrong-host").await;
    assert_refused(
        round_trip(&redis_settings(url.clone(), ca.clone())).await,
        "not valid for name",
    );
    server.serve_cert(dir, "server").await;
    assert_eq!(
        round_trip(&redis_settings(url, ca)).await,
        Ok("over tls".into())
    );
}

#[tokio::test]
async fn redis_client_certificate_when_the_server_asks_for_one() {
    let certs = certs();
    let dir = certs.path();
    let server = TlsRedis::start(dir).await;
    server
        .admin(&["CONFIG", "SET", "tls-auth-clients", "yes"])
        .await
        .unwrap();
    let url = format!("rediss://localhost:{}", server.tls);
    let mut settings = redis_settings(url, Some(dir.join("ca.crt")));
    assert!(
        round_trip(&settings).await.is_err(),
        "no client certificate"
    );
    settings.redis_client_cert_file = Some(dir.join("client.crt"));
    settings.redis_client_key_file = Some(dir.join("client.key"));
    assert_eq!(round_trip(&settings).await, Ok("over tls".into()));
    // a certificate the server's CA did not sign is refused by the server
    settings.redis_client_cert_file = Some(dir.join("rogue.crt"));
    settings.redis_client_key_file = Some(dir.join("rogue.key"));
    assert!(
        round_trip(&settings).await.is_err(),
        "rogue client certificate"
    );
}

/// A private PostgreSQL with ssl=on, serving the certificate in `tls.crt`/`tls.key` of the
/// certificate folder (swapped and reloaded by [`serve_pg_cert`]).
async fn tls_postgres(dir: &Path) -> PostgresServer {
    serve_pg_files(dir, "server");
    let crt = dir.join("tls.crt").display().to_string();
    let key = dir.join("tls.key").display().to_string();
    PostgresServer::start_with(&[
        ("ssl", "on"),
        ("ssl_cert_file", &crt),
        ("ssl_key_file", &key),
    ])
    .await
}

fn serve_pg_files(dir: &Path, name: &str) {
    for ext in ["crt", "key"] {
        std::fs::copy(
            dir.join(format!("{name}.{ext}")),
            dir.join(format!("tls.{ext}")),
        )
        .unwrap();
    }
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir)
        .status();
}

async fn serve_pg_cert(server: &PostgresServer, dir: &Path, name: &str) {
    serve_pg_files(dir, name);
    let admin = sqlx::PgPool::connect(&format!("{}?sslmode=disable", server.url()))
        .await
        .unwrap();
    sqlx::query("select pg_reload_conf()")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn pg_settings(server: &PostgresServer, dir: &Path, mode: &str) -> Settings {
    let mut s = Settings::defaults();
    s.database_url = SecretString::from(format!(
        "postgres://floodgate@localhost:{}/postgres?sslmode={mode}&sslrootcert={}",
        server.port,
        dir.join("ca.crt").display()
    ));
    s.db_acquire_timeout_ms = 3_000;
    s
}

/// `select ssl` of this very connection, through the app's pool; the error text otherwise.
async fn pg_over_tls(settings: &Settings) -> Result<bool, String> {
    let pool = db::pool(settings).map_err(|e| e.to_string())?;
    let out = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string());
    pool.close().await;
    out
}

#[tokio::test]
async fn postgres_verify_full_trusts_only_the_ca_and_the_host_name() {
    let certs = certs();
    let dir = certs.path();
    let server = tls_postgres(dir).await;
    assert_eq!(
        pg_over_tls(&pg_settings(&server, dir, "verify-full")).await,
        Ok(true)
    );
    serve_pg_cert(&server, dir, "rogue").await;
    let refused = pg_over_tls(&pg_settings(&server, dir, "verify-full")).await;
    assert_refused(refused.map(|b| b.to_string()), "UnknownIssuer");
    serve_pg_cert(&server, dir, "wrong-host").await;
    let refused = pg_over_tls(&pg_settings(&server, dir, "verify-full")).await;
    assert_refused(refused.map(|b| b.to_string()), "not valid for name");
    // verify-ca checks the chain only: the wrong host name passes, so verify-full is what
    // catches it
    assert_eq!(
        pg_over_tls(&pg_settings(&server, dir, "verify-ca")).await,
        Ok(true)
    );
}

/// The whole app with both dependencies over verified TLS: ready, and a signup (PostgreSQL
/// writes, Redis rate limits) works.
#[tokio::test]
async fn the_app_serves_with_redis_and_postgres_over_tls() {
    let certs = certs();
    let dir = certs.path().to_owned();
    let pg = tls_postgres(&dir).await;
    let redis = TlsRedis::start(&dir).await;
    let mut settings = pg_settings(&pg, &dir, "verify-full");
    let pool = db::pool(&settings).unwrap();
    db::migrate(&pool).await.unwrap();
    settings.redis_url = SecretString::from(format!("rediss://localhost:{}", redis.tls));
    settings.redis_ca_file = Some(dir.join("ca.crt"));
    let tweak = |s: &mut Settings| {
        s.redis_url = settings.redis_url.clone();
        s.redis_ca_file = settings.redis_ca_file.clone();
    };
    let app = common::TestApp::spawn_with(pool, tweak).await;
    let started = Instant::now();
    loop {
        let res = app.http.get(app.url("/readyz")).send().await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready over TLS: {}",
            res.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = app.signup("tls@example.com").await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
}
