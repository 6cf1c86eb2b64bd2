//! Test harness: a real app on a free port, its own PostgreSQL database (from
//! `#[sqlx::test]`) and its own Redis key prefix, plus helpers to sign up and log in.

mod builders;

use std::net::SocketAddr;

use floodgate_app::{config::Settings, server, state::AppState};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub state: AppState,
    stop: watch::Sender<bool>,
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, |_| {}).await
    }

    pub async fn spawn_with(pool: PgPool, tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::defaults();
        settings.redis_prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
        settings.auth_limit_per_ip = 1_000_000;
        settings.auth_limit_per_email = 1_000_000;
        // tests sign many users up at once: they queue for the bounded argon2 slots instead
        // of being refused (the `abuse` module covers the refusal)
        settings.password_hash_wait_ms = settings.request_timeout_ms;
        settings.replica_id = Some("test-replica".into());
        // one shared folder for the tests that upload no image (goods_images.rs gives each
        // test its own), never the checkout's .data/images
        settings.images.image_dir = std::env::temp_dir().join("floodgate-test-images");
        tweak(&mut settings);
        let state = server::build_state(settings, pool).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        server::spawn_background(&state, rx.clone());
        tokio::spawn(server::serve_on(state.clone(), listener, rx));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap();
        Self {
            addr,
            http,
            state,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn key(&self, rest: &str) -> String {
        self.state.redis.key(rest)
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn signup(&self, email: &str) -> Response {
        self.post_json(
            "/api/v1/auth/signup",
            &json!({"email": email, "password": PASSWORD, "name": "Test User"}),
            None,
        )
        .await
    }

    /// Logs in; returns the access token and the refresh token from the cookie.
    pub async fn login(&self, email: &str) -> (String, String) {
        let res = self
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "login of {email} failed");
        let refresh = refresh_cookie(&res).expect("login sets the refresh cookie");
        let body: Value = res.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), refresh)
    }

    /// A new customer; returns the access token.
    pub async fn customer(&self, email: &str) -> String {
        assert_eq!(self.signup(email).await.status(), StatusCode::CREATED);
        self.login(email).await.0
    }

    /// A user with the given roles added directly in the database; returns the access token.
    pub async fn user_with_roles(&self, email: &str, roles: &[&str]) -> String {
        assert_eq!(self.signup(email).await.status(), StatusCode::CREATED);
        sqlx::query("update users set roles = $2 where email = $1")
            .bind(email)
            .bind(roles)
            .execute(self.state.db.pool())
            .await
            .unwrap();
        self.login(email).await.0
    }
}

impl TestApp {
    /// `n` customers inserted straight into the database (signing up thousands through
    /// argon2 would dominate a concurrency test); returns their access tokens.
    pub async fn bulk_customers(&self, n: usize, tag: &str) -> Vec<String> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "insert into users (email, password_hash, name)
             select $2 || g || '@example.com', 'not-a-hash', 'bulk' from generate_series(1, $1) g returning user_id",
        )
        .bind(n as i32)
        .bind(tag)
        .fetch_all(self.state.db.pool())
        .await
        .unwrap();
        ids.into_iter()
            .map(|id| {
                self.state
                    .jwt
                    .issue(
                        floodgate_app::auth::UserId(id),
                        &[floodgate_app::auth::Role::Customer],
                    )
                    .unwrap()
            })
            .collect()
    }
}

impl TestApp {
    /// Stops this replica as SIGTERM would: its server drains and exits, its background
    /// loops stop (leases given up). Its state stays usable for assertions.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The value of the `refresh_token` cookie a response sets (empty string when cleared).
pub fn refresh_cookie(res: &Response) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("refresh_token="))
        .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
}

/// Asserts a problem+json body with the given status; returns the body.
pub async fn expect_problem(res: Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status, "unexpected status for {}", res.url());
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/problem+json"),
        "not problem+json"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://floodgate.dev/problems/"),
        "{body}"
    );
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    body
}

/// Every wallet's balance equals the sum of its ledger.
pub async fn assert_wallets_match_ledgers(pool: &PgPool) {
    let bad: i64 = sqlx::query_scalar(
        "select count(*) from wallets w
          where w.balance <> coalesce((select sum(amount) from wallet_ledger l where l.user_id = w.user_id), 0)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(bad, 0, "a wallet balance differs from its ledger");
}
