//! The real servers the trigger tests run against, and Secret data for them.

use super::*;

pub fn secret(pairs: &[(&str, &str)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

pub fn basic_ref() -> PrometheusAuthRef {
    PrometheusAuthRef {
        secret_name: "prom-auth".into(),
        bearer_token_key: None,
        username_key: Some("username".into()),
        password_key: Some("password".into()),
        ca_key: None,
    }
}

/// The client a Campaign's authRef yields for `data`.
pub fn client_for(
    auth: &PrometheusAuthRef,
    data: Option<&SecretData>,
) -> Result<PromClient, String> {
    let found = Found {
        namespace: "shop",
        name: &auth.secret_name,
        data,
    };
    let creds = credentials::prometheus(auth, &found)?;
    Clients::default().prometheus(&PromClient::default(), &creds)
}

/// Debian's Prometheus on a free port, with `web` as its `--web.config.file` when given.
pub async fn start_prometheus(
    dir: &Path,
    web: Option<String>,
    ready: &PromClient,
) -> (Server, String) {
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1h\n",
    )
    .unwrap();
    let port = free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}/prometheus.yml", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}/data", dir.display()));
    if let Some(web) = web {
        std::fs::write(dir.join("web.yml"), web).unwrap();
        cmd.arg(format!("--web.config.file={}/web.yml", dir.display()));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package; scripts/test.sh installs it)");
    let server = Server(child);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while trigger::value(ready, &url, "vector(1)").await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, url)
}

/// Prometheus with basic auth for `ops`/`s3cret` (bcrypt, as its web config wants).
pub async fn prometheus_with_basic_auth(dir: &Path) -> (Server, String) {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let good = secret(&[("username", "ops"), ("password", "s3cret")]);
    let client = client_for(&basic_ref(), Some(&good)).unwrap();
    let web = format!("basic_auth_users:\n  ops: {hash}\n");
    start_prometheus(dir, Some(web), &client).await
}

/// nginx in front of an open Prometheus, passing only `Authorization: Bearer <token>`.
pub fn nginx_bearer(dir: &Path, upstream: &str, token: &str) -> (Server, String) {
    let port = free_port();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      \
         if ($http_authorization != \"Bearer {token}\") {{ return 401; }}\n      \
         proxy_pass {upstream};\n    }}\n  }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect(
            "nginx is not installed (Debian: apt-get install nginx; scripts/test.sh installs it)",
        );
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg("daemon off;")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Server(child), format!("http://127.0.0.1:{port}"))
}

/// A private redis-server with `requirepass` and an ACL user `fg` that may read streams
/// `orders*` only; the stream `orders` holds 5 entries, its group `workers` has been handed 3.
pub async fn redis_with_a_stream(dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--requirepass", "admin-pw", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server package)");
    let server = Server(child);
    let admin = redis::Client::open(format!("redis://:admin-pw@127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let mut conn = loop {
        match admin.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run = async |conn: &mut redis::aio::MultiplexedConnection, args: &[&str]| {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query_async::<redis::Value>(conn)
            .await
            .unwrap();
    };
    run(
        &mut conn,
        &[
            "ACL",
            "SETUSER",
            "fg",
            "on",
            ">fg-pw",
            "~orders*",
            "+@connection",
            "+xpending",
            "+xinfo|groups",
        ],
    )
    .await;
    for i in 0..5 {
        run(&mut conn, &["XADD", "orders", "*", "n", &i.to_string()]).await;
    }
    run(&mut conn, &["XGROUP", "CREATE", "orders", "workers", "0"]).await;
    run(
        &mut conn,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "c1",
            "COUNT",
            "3",
            "STREAMS",
            "orders",
            ">",
        ],
    )
    .await;
    (server, format!("redis://127.0.0.1:{port}"))
}
