//! The operator's dependencies over TLS, against local servers with certificates made for the
//! test by scripts/tls-certs.sh: a real Prometheus (Debian's, `--web.config.file`) over
//! `https://` with `--prometheus-ca-file`'s client, and a redis-server over `rediss://` with
//! the Redis CA/client-certificate files. The right CA works; a certificate another CA signed,
//! or one for another host name, is refused with the reason.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use floodgate_operator::{
    observe::{
        ObserveError,
        prometheus::{self, PromClient, PromLabels, Scope},
    },
    store::{RedisTarget, RedisTls},
};

use crate::support;

use support::{Server, free_port};

fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tls-certs.sh");
    let ok = Command::new("bash").arg(script).arg(dir.path()).status();
    assert!(ok.is_ok_and(|s| s.success()), "scripts/tls-certs.sh failed");
    dir
}

/// Points Prometheus's web config at `name`.crt/.key (re-read on every new connection, so
/// each check uses a new client: a pooled connection keeps the certificate it was opened with).
fn serve_prometheus_cert(dir: &Path, name: &str) {
    let web = format!(
        "tls_server_config:\n  cert_file: {0}/{name}.crt\n  key_file: {0}/{name}.key\n",
        dir.display()
    );
    std::fs::write(dir.join("web.yml"), web).unwrap();
}

async fn start_prometheus(dir: &Path) -> (Server, u16) {
    serve_prometheus_cert(dir, "server");
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1h\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}/prometheus.yml", dir.display()))
        .arg(format!("--web.config.file={}/web.yml", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}/data", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package; scripts/tls-tests.sh installs it)");
    let server = Server(child);
    let client = PromClient::new(Some(&dir.join("ca.crt"))).unwrap();
    let url = format!("https://localhost:{port}/-/ready");
    let started = Instant::now();
    while client.get(&url).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, port)
}

/// The operator's p95 query through `client`: Ok when Prometheus answered (it has no app
/// series, so the answer is "no series"), else the error text.
async fn p95_through(client: &PromClient, base: &str) -> Result<(), String> {
    let labels = PromLabels::default();
    let scope = Scope {
        namespace: "shop",
        deployment: "floodgate-app",
        labels: &labels,
    };
    match prometheus::p95(client, base, &scope, floodgate_crds::Dur::from_secs(30)).await {
        Err(ObserveError::NoSeries(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(l) => Err(format!("unexpected answer {l:?}")),
    }
}

fn refused(outcome: Result<(), String>, why: &str) {
    let err = outcome.expect_err("a server the client must not trust was accepted");
    assert!(err.contains(why), "expected {why:?} in: {err}");
}

#[tokio::test]
async fn prometheus_over_https_trusts_only_the_ca_and_the_host_name() {
    let certs = certs();
    let dir = certs.path();
    let (_prometheus, port) = start_prometheus(dir).await;
    let with_ca = || PromClient::new(Some(&dir.join("ca.crt"))).unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let base = format!("https://{host}:{port}");
        assert_eq!(p95_through(&with_ca(), &base).await, Ok(()), "{host}");
        let info = with_ca()
            .get(&format!("{base}/api/v1/status/buildinfo"))
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&info).contains("\"version\""));
    }
    let base = format!("https://localhost:{port}");
    refused(
        p95_through(&PromClient::default(), &base).await,
        "UnknownIssuer",
    );
    serve_prometheus_cert(dir, "rogue");
    refused(p95_through(&with_ca(), &base).await, "UnknownIssuer");
    serve_prometheus_cert(dir, "wrong-host");
    refused(p95_through(&with_ca(), &base).await, "not valid for name");
    assert!(PromClient::new(Some(&dir.join("missing.crt"))).is_err());
}

fn start_tls_redis(dir: &Path, cert: &str, auth_clients: &str) -> (Server, u16) {
    let port = free_port();
    let file = |name: &str| dir.join(name).display().to_string();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
            "0",
        ])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &file(&format!("{cert}.crt"))])
        .args(["--tls-key-file", &file(&format!("{cert}.key"))])
        .args(["--tls-ca-cert-file", &file("ca.crt")])
        .args(["--tls-auth-clients", auth_clients])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    (Server(child), port)
}

/// PING over the client the operator builds from `tls` (one connection, no reconnect loop,
/// so a refusal is reported at once); the connection through [`RedisTarget`] when `managed`.
async fn ping(port: u16, tls: &RedisTls, managed: bool) -> Result<(), String> {
    let url = format!("rediss://localhost:{port}");
    let started = Instant::now();
    loop {
        let outcome = async {
            if managed {
                let target = RedisTarget::connect_tls(
                    floodgate_crds::redis_conn::RedisMode::Single,
                    &url,
                    tls,
                    "fgtls:",
                )
                .await?;
                let mut conn = target.conn.clone();
                return redis::cmd("PING").query_async::<String>(&mut conn).await;
            }
            let mut conn = tls.client(&url)?.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        }
        .await;
        match outcome {
            Ok(_) => return Ok(()),
            // the server may still be starting
            Err(e) if e.is_connection_refusal() && started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[tokio::test]
async fn redis_over_tls_for_the_operator() {
    let certs = certs();
    let dir = certs.path();
    let ca = RedisTls {
        ca_file: Some(dir.join("ca.crt")),
        ..RedisTls::default()
    };
    let (_good, port) = start_tls_redis(dir, "server", "no");
    assert_eq!(ping(port, &ca, true).await, Ok(()));
    refused(
        ping(port, &RedisTls::default(), false).await,
        "UnknownIssuer",
    );
    let (_rogue, port) = start_tls_redis(dir, "rogue", "no");
    refused(ping(port, &ca, false).await, "UnknownIssuer");
    let (_wrong, port) = start_tls_redis(dir, "wrong-host", "no");
    refused(ping(port, &ca, false).await, "not valid for name");
    // a Redis that asks for a client certificate
    let (_mtls, port) = start_tls_redis(dir, "server", "yes");
    assert!(
        ping(port, &ca, false).await.is_err(),
        "no client certificate"
    );
    let with_cert = RedisTls {
        client_cert_file: Some(dir.join("client.crt")),
        client_key_file: Some(dir.join("client.key")),
        ..ca
    };
    assert_eq!(ping(port, &with_cert, true).await, Ok(()));
}

/// A Campaign's CA from a Secret (`caKey`), kept in memory: it verifies an `https://`
/// Prometheus and a `rediss://` Redis the operator's own flags do not trust.
#[tokio::test]
async fn a_ca_from_a_campaigns_secret_verifies_prometheus_and_redis() {
    use floodgate_crds::v1alpha1::{PrometheusAuthRef, RedisAuthRef};
    use floodgate_operator::{
        observe::{
            credentials::{self, Clients, Found},
            prometheus::trigger,
        },
        store::RedisAddress,
    };
    let certs = certs();
    let dir = certs.path();
    let data: credentials::SecretData = [(
        "ca.crt".to_owned(),
        std::fs::read(dir.join("ca.crt")).unwrap(),
    )]
    .into();
    let found = Found {
        namespace: "shop",
        name: "tls",
        data: Some(&data),
    };
    let clients = Clients::default();

    let (_prometheus, port) = start_prometheus(dir).await;
    let prom_ref = PrometheusAuthRef {
        secret_name: "tls".into(),
        bearer_token_key: None,
        username_key: None,
        password_key: None,
        ca_key: Some("ca.crt".into()),
    };
    let creds = credentials::prometheus(&prom_ref, &found).unwrap();
    let client = clients.prometheus(&PromClient::default(), &creds).unwrap();
    let base = format!("https://localhost:{port}");
    assert_eq!(trigger::value(&client, &base, "vector(3)").await, Ok(3.0));
    let without = trigger::value(&PromClient::default(), &base, "vector(3)").await;
    refused(without.map(drop), "UnknownIssuer");

    let (_redis, port) = start_tls_redis(dir, "server", "no");
    let address = RedisAddress {
        mode: floodgate_crds::redis_conn::RedisMode::Single,
        urls: format!("rediss://localhost:{port}"),
        tls: RedisTls::default(),
    };
    let redis_ref = RedisAuthRef {
        secret_name: "tls".into(),
        username_key: None,
        password_key: None,
        ca_key: Some("ca.crt".into()),
    };
    let ping = async |creds: &credentials::RedisCreds| {
        let Ok(mut conn) = clients.redis(&address, creds) else {
            return Err("no connection".to_owned());
        };
        let started = Instant::now();
        loop {
            match redis::cmd("PING").query_async::<String>(&mut conn).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if started.elapsed() < Duration::from_secs(5) && e.is_connection_refusal() =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let with_ca = credentials::redis(&redis_ref, &found).unwrap();
    assert_eq!(ping(&with_ca).await, Ok(()));
    refused(ping(&Default::default()).await, "UnknownIssuer");
}
