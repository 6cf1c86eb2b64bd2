//! The app through PgBouncer in transaction pooling mode (`scripts/services.sh pgbouncer`,
//! Debian 12's 1.18: no prepared statements across transactions): with
//! FLOODGATE_DB_POOLER=transaction a concurrent flash sale and hundreds of charges on one
//! wallet keep their invariants, checked in PostgreSQL afterwards; without it the app cannot
//! use the pooler at all. Test setup and the checks go to PostgreSQL directly.

use crate::common;
use crate::faults::procs;

use std::net::SocketAddr;

use common::TestApp;
use floodgate_app::{
    auth::{Role, UserId},
    config::{DbPooler, Settings},
    platform::db,
};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

/// The PgBouncer the tests go through: PGBOUNCER_URL's address (default 127.0.0.1:64329);
/// the test fails, not skips, when it does not answer.
async fn pgbouncer() -> SocketAddr {
    let url = std::env::var("PGBOUNCER_URL")
        .unwrap_or_else(|_| "postgres://floodgate:floodgate@127.0.0.1:64329/floodgate".into());
    let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let addr: SocketAddr = format!("{}:{}", opts.get_host(), opts.get_port())
        .parse()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_ok(),
        "PgBouncer at {addr} does not answer: start it with `bash scripts/services.sh pgbouncer`"
    );
    addr
}

/// Settings for the app on this test's database through PgBouncer.
async fn through_pgbouncer(direct: &PgPool, pooler: DbPooler) -> Settings {
    let mut s = Settings::defaults();
    s.database_url = SecretString::from(procs::database_url(direct, Some(pgbouncer().await)));
    s.db_migration_url = Some(SecretString::from(procs::database_url(direct, None)));
    s.db_pooler = pooler;
    s.db_pool_size = 30;
    s
}

/// Closes PgBouncer's connections to the test's database when the test ends (passed or
/// not), so that sqlx can drop the database: `KILL` on PgBouncer's admin console, then
/// `RESUME` (sqlx names a test's database the same in every run).
struct Release(String, SocketAddr);

impl Drop for Release {
    fn drop(&mut self) {
        let status = std::process::Command::new("psql")
            .args([
                "-h",
                &self.1.ip().to_string(),
                "-p",
                &self.1.port().to_string(),
            ])
            .args(["-U", "floodgate", "-d", "pgbouncer", "-q"])
            .args(["-c", &format!("KILL {}", self.0)])
            .args(["-c", &format!("RESUME {}", self.0)])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "could not release PgBouncer's connections to {}",
            self.0
        );
    }
}

async fn release_on_drop(direct: &PgPool) -> Release {
    let db = direct.connect_options().get_database().unwrap().to_owned();
    Release(db, pgbouncer().await)
}

async fn spawn(direct: &PgPool, pooler: DbPooler) -> TestApp {
    let settings = through_pgbouncer(direct, pooler).await;
    settings.validate().unwrap();
    let pool = db::pool(&settings).unwrap();
    TestApp::spawn_with(pool, |s| {
        s.database_url = settings.database_url.clone();
        s.db_migration_url = settings.db_migration_url.clone();
        s.db_pooler = settings.db_pooler;
        s.db_pool_size = settings.db_pool_size;
    })
    .await
}

/// `n` customers inserted directly; their access tokens.
async fn customers(app: &TestApp, direct: &PgPool, n: i32, tag: &str) -> Vec<String> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "insert into users (email, password_hash, name)
         select $2 || g || '@example.com', 'not-a-hash', 'bulk' from generate_series(1, $1) g returning user_id",
    )
    .bind(n)
    .bind(tag)
    .fetch_all(direct)
    .await
    .unwrap();
    ids.into_iter()
        .map(|id| app.state.jwt.issue(UserId(id), &[Role::Customer]).unwrap())
        .collect()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> StatusCode {
    app.post_json(path, &body, Some(token)).await.status()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn flash_sale_and_wallet_charges_through_pgbouncer(direct: PgPool) {
    let _release = release_on_drop(&direct).await;
    let app = spawn(&direct, DbPooler::Transaction).await;
    let started = std::time::Instant::now();
    loop {
        let res = app.get("/readyz", None).await;
        if res.status() == StatusCode::OK {
            break;
        }
        let body = res.text().await.unwrap();
        assert!(
            started.elapsed().as_secs() < 10,
            "not ready through PgBouncer: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seller_id: i64 = sqlx::query_scalar(
        "insert into users (email, password_hash, name, roles)
         values ('seller@example.com', 'not-a-hash', 'seller', '{customer,seller}') returning user_id",
    )
    .fetch_one(&direct)
    .await
    .unwrap();
    let seller = app
        .state
        .jwt
        .issue(UserId(seller_id), &[Role::Customer, Role::Seller])
        .unwrap();
    let res = app
        .post_json(
            "/api/v1/goods",
            &json!({"name": "hot", "price": 1_000, "stock": 100}),
            Some(&seller),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let goods = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    let buyers = customers(&app, &direct, 300, "buyer").await;
    let charges = futures::future::join_all(
        buyers
            .iter()
            .map(|t| post(&app, t, "/api/v1/wallet/charges", json!({"amount": 5_000}))),
    )
    .await;
    assert!(
        charges.iter().all(|s| *s == StatusCode::CREATED),
        "{charges:?}"
    );
    let orders = futures::future::join_all(buyers.iter().map(|t| {
        let items = json!({"items": [{"goods_id": goods, "quantity": 1}]});
        post(&app, t, "/api/v1/orders", items)
    }))
    .await;
    let created = orders.iter().filter(|s| **s == StatusCode::CREATED).count();
    let sold_out = orders
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, sold_out), (100, 200), "{orders:?}");

    // hundreds of concurrent charges on one wallet
    let hot = &buyers[0];
    let burst = futures::future::join_all(
        (1..=400).map(|i| post(&app, hot, "/api/v1/wallet/charges", json!({"amount": i}))),
    )
    .await;
    assert!(burst.iter().all(|s| *s == StatusCode::CREATED), "{burst:?}");

    // the invariants, from PostgreSQL itself
    let (stock, paid): (i32, i64) = sqlx::query_as(
        "select g.stock, (select coalesce(sum(l.quantity), 0) from order_lines l join orders o using (order_id)
                           where l.goods_id = g.goods_id and o.status = 'paid')::bigint
           from goods g where g.goods_id = $1",
    )
    .bind(goods)
    .fetch_one(&direct)
    .await
    .unwrap();
    assert_eq!((stock, paid), (0, 100), "no oversell: stock + sold = 100");
    let drifted: i64 = sqlx::query_scalar(
        "select count(*) from wallets w
          where w.balance <> coalesce((select sum(amount) from wallet_ledger l where l.user_id = w.user_id), 0)",
    )
    .fetch_one(&direct)
    .await
    .unwrap();
    assert_eq!(drifted, 0, "a wallet's balance differs from its ledger");
    let charged: i64 =
        sqlx::query_scalar("select sum(amount)::bigint from wallet_ledger where amount > 0")
            .fetch_one(&direct)
            .await
            .unwrap();
    assert_eq!(
        charged,
        300 * 5_000 + 400 * 401 / 2,
        "every 201 charge is in the ledger"
    );
    app.state.db.pool().close().await;
}

/// Without the setting the app sends `statement_timeout` as a startup option, which
/// PgBouncer refuses, and would keep prepared statements the pooler cannot: not ready, and
/// requests are answered 503, never half-done.
#[sqlx::test(migrator = "MIGRATOR")]
async fn without_the_pooler_setting_the_app_cannot_use_pgbouncer(direct: PgPool) {
    let _release = release_on_drop(&direct).await;
    let app = spawn(&direct, DbPooler::None).await;
    assert_eq!(
        app.get("/readyz", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let token = customers(&app, &direct, 1, "plain").await.remove(0);
    let status = post(&app, &token, "/api/v1/wallet/charges", json!({"amount": 5})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let rows: i64 = sqlx::query_scalar("select count(*) from wallet_ledger")
        .fetch_one(&direct)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}
