//! Three real replicas behind a real nginx (deploy/nginx/floodgate.conf.template, as
//! `make run REPLICAS=3` runs them), one database and one Redis prefix between them (issue
//! 14): a flash sale with a replica SIGKILLed mid-sale and clients retrying with the same
//! Idempotency-Key, and a rolling restart under steady load. Invariants are checked in
//! PostgreSQL afterwards. docs/deploy.md, "Several replicas behind nginx", explains the setup.

use crate::support::replicas;
use crate::support::shop;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use floodgate_app::auth::Role;
use futures::future::join_all;
use replicas::Replicas;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shop::{Load, assert_stock_ledgers_and_claims, goods_and_wallets, post, redis_url, users};
use sqlx::PgPool;

use crate::MIGRATOR;

/// What one buyer of the flash sale ended with.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// order ids answered 201 (a replay repeats the first one)
    created: Vec<i64>,
    sold_out: bool,
    /// answers that were not final (502/503/409 in flight/no answer), each retried
    retried: Vec<String>,
}

/// One buyer ordering one unit under one Idempotency-Key until a final answer: 201 or 409
/// out-of-stock. Anything else (no answer, 502, 503, 409 in flight) is retried with the same key.
async fn buy_once(
    http: reqwest::Client,
    url: String,
    token: String,
    goods: i64,
    key: String,
) -> Outcome {
    let mut out = Outcome::default();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{key}: no final answer: {out:?}"
        );
        let body = json!({"items": [{"goods_id": goods, "quantity": 1}]});
        match post(&http, &url, &token, body, Some(&key)).await {
            Ok((StatusCode::CREATED, body)) => {
                out.created.push(body["id"].as_i64().unwrap());
                return out;
            }
            Ok((StatusCode::CONFLICT, body))
                if body["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("/out-of-stock")) =>
            {
                out.sold_out = true;
                return out;
            }
            Ok((status, body))
                if [
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::CONFLICT,
                ]
                .contains(&status) =>
            {
                out.retried.push(format!("{status} {}", body["type"]));
            }
            Ok((status, body)) => panic!("{key}: unexpected {status} {body}"),
            Err(e) => out.retried.push(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A flash sale of 200 units to 600 buyers across three replicas behind nginx; when a third of
/// the stock is sold, one replica is SIGKILLed (its in-flight requests cut off), and later
/// restarted. Every buyer retries with its one Idempotency-Key until a final answer. Then, from
/// PostgreSQL: no oversell (stock + sold = initial, sold out), no lost 201 (the orders of the
/// goods are exactly the ids clients were answered 201), no duplicate order per key (one
/// order per buyer, and it is the one its key's stored response names).
#[sqlx::test(migrator = "MIGRATOR")]
async fn flash_sale_across_replicas_with_one_sigkilled(pool: PgPool) {
    const STOCK: i64 = 200;
    const BUYERS: usize = 600;
    let mut set = Replicas::start(&pool, 3, &redis_url(), &[]).await;
    let staff = users(
        &pool,
        &set.prefix,
        1,
        "staff",
        &[Role::Customer, Role::Seller],
    )
    .await;
    let buyers = users(&pool, &set.prefix, BUYERS, "buyer", &[Role::Customer]).await;
    let goods = goods_and_wallets(&set.base(), &staff[0].1, &buyers, 1_000, STOCK, 5_000).await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(BUYERS)
        .build()
        .unwrap();
    let sold = Arc::new(AtomicUsize::new(0));
    let url = set.url("/api/v1/orders");
    let workers: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(i, (_, token))| {
            let (http, url, token, sold) = (http.clone(), url.clone(), token.clone(), sold.clone());
            tokio::spawn(async move {
                // a ramp of 0.6 s, so the kill lands while orders are in flight
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                let out = buy_once(http, url, token, goods, format!("sale-{i}")).await;
                if !out.created.is_empty() {
                    sold.fetch_add(1, Ordering::Relaxed);
                }
                out
            })
        })
        .collect();
    let started = Instant::now();
    while sold.load(Ordering::Relaxed) < (STOCK / 3) as usize {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sale did not start"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    set.replica(1).kill9();
    let sold_at_kill = sold.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    set.replica(1).restart().await;
    let outcomes: Vec<Outcome> = join_all(workers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let retried: usize = outcomes.iter().map(|o| o.retried.len()).sum();
    let log = set.nginx.error_log();
    let cut = log
        .lines()
        .filter(|l| l.contains("while reading response header from upstream"))
        .count();
    let refused = log
        .lines()
        .filter(|l| l.contains("Connection refused"))
        .count();
    eprintln!(
        "sold {sold_at_kill} before the kill; nginx saw {cut} requests cut off and {refused} \
         connections refused (and sent them on); clients retried {retried} answers"
    );
    assert!(
        sold_at_kill < STOCK as usize,
        "the kill came after the sale ({sold_at_kill} sold)"
    );
    assert!(cut > 0, "the kill cut off no request in flight: {log}");
    assert_eq!(
        assert_stock_ledgers_and_claims(&pool, goods, STOCK).await,
        STOCK,
        "sold out"
    );

    // the orders of the goods, per buyer, and the order each key's stored response names
    let orders: Vec<(i64, i64)> = sqlx::query_as(
        "select o.order_id, o.user_id from orders o join order_lines l using (order_id)
          where l.goods_id = $1 and o.status = 'paid'",
    )
    .bind(goods)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut per_user: HashMap<i64, Vec<i64>> = HashMap::new();
    for (order, user) in &orders {
        per_user.entry(*user).or_default().push(*order);
    }
    let stored: HashMap<i64, i64> = sqlx::query_as::<_, (i64, Value)>(
        "select user_id, response from idempotency_keys where key like 'sale-%' and status = 201",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(u, r)| (u, r["id"].as_i64().unwrap()))
    .collect();
    let mut acked = BTreeSet::new();
    for ((user, _), out) in buyers.iter().zip(&outcomes) {
        assert!(
            out.sold_out || !out.created.is_empty(),
            "buyer {user} has no final answer"
        );
        let db = per_user.get(user).cloned().unwrap_or_default();
        assert!(db.len() <= 1, "buyer {user} (one key) has orders {db:?}");
        if let Some(id) = out.created.first() {
            assert_eq!(
                db,
                vec![*id],
                "buyer {user} was answered 201 for order {id}"
            );
            assert_eq!(
                stored.get(user),
                Some(id),
                "buyer {user}: the key stores another order"
            );
            acked.insert(*id);
        } else {
            assert!(
                db.is_empty(),
                "buyer {user} was told sold out but has order {db:?}"
            );
        }
    }
    let in_db: BTreeSet<i64> = orders.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        acked, in_db,
        "the orders in PostgreSQL are exactly the ones answered 201"
    );
    // the restarted replica serves again, through nginx and directly
    let r = http
        .get(set.replica(1).url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A rolling restart under steady load through nginx: each replica in turn gets SIGTERM
/// (readiness false, a 3 s drain delay, then it stops accepting and finishes what it holds),
/// exits cleanly, starts again on its port and is ready before the next one goes. Clients
/// see no failed request at all: reads, writes with an Idempotency-Key (which nginx may send
/// to another replica again) and charges without one (which it never sends twice, so only the
/// drain protects them). Afterwards every order answered 201 is in PostgreSQL exactly once
/// and the ledgers balance.
#[sqlx::test(migrator = "MIGRATOR")]
async fn rolling_restart_under_load_fails_no_request(pool: PgPool) {
    const STOCK: i64 = 1_000_000;
    let mut set = Replicas::start(
        &pool,
        3,
        &redis_url(),
        &[("FLOODGATE_SHUTDOWN_DELAY_SECS", "3")],
    )
    .await;
    let staff = users(
        &pool,
        &set.prefix,
        1,
        "staff",
        &[Role::Customer, Role::Seller],
    )
    .await;
    let buyers = users(&pool, &set.prefix, 120, "steady", &[Role::Customer]).await;
    let goods = goods_and_wallets(&set.base(), &staff[0].1, &buyers, 10, STOCK, 1_000_000).await;

    let load = Load::start(&set.base(), &buyers, goods);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut served_while_draining = Vec::new();
    for i in 0..set.replicas.len() {
        let before = load.answers.load(Ordering::Relaxed);
        set.replica(i).sigterm();
        let status = set.replica(i).wait_exit(Duration::from_secs(20)).await;
        assert!(
            status.success(),
            "replica {i} exited with {status} after SIGTERM: {}",
            set.replica(i).log_tail()
        );
        served_while_draining.push(load.answers.load(Ordering::Relaxed) - before);
        set.replica(i).restart().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (failures, orders, answers) = load.stop().await;

    eprintln!("{answers} answers; during each drain: {served_while_draining:?}");
    assert!(
        failures.is_empty(),
        "{} of {answers} requests failed during the rolling restart, e.g. {:?}\nnginx: {}",
        failures.len(),
        &failures[..failures.len().min(5)],
        set.nginx.error_log()
    );
    assert!(
        served_while_draining.iter().all(|n| *n > 100),
        "load kept flowing during each drain"
    );
    let sold = assert_stock_ledgers_and_claims(&pool, goods, STOCK).await;
    let unique: BTreeSet<i64> = orders.iter().copied().collect();
    assert_eq!(
        unique.len(),
        orders.len(),
        "an order was answered 201 twice"
    );
    assert_eq!(
        sold,
        orders.len() as i64,
        "every order answered 201, and only those, is in PostgreSQL"
    );
}

/// The routes nginx may send a keyed POST to again (the template's `$floodgate_keyed_route`)
/// are exactly the POST operations of the API document that take an Idempotency-Key.
#[test]
fn nginx_resends_only_the_posts_that_honour_idempotency_keys() {
    let doc: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/openapi.json"
    )))
    .unwrap();
    let mut keyed: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| {
            ops["post"]["parameters"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("idempotency-key"))
                })
            })
        })
        .map(|(path, _)| {
            let rest = path.strip_prefix("/api/v1/").unwrap();
            rest.split('/')
                .map(|seg| if seg.starts_with('{') { "[^/]+" } else { seg })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    keyed.sort();
    let line = replicas::NGINX_TEMPLATE
        .lines()
        .find(|l| l.contains("~^/api/v1/("))
        .expect("the keyed-route map entry");
    let inner = line
        .split("~^/api/v1/(")
        .nth(1)
        .unwrap()
        .split(")$")
        .next()
        .unwrap();
    let mut in_nginx: Vec<String> = inner.split('|').map(str::to_owned).collect();
    in_nginx.sort();
    assert!(keyed.len() >= 3, "{keyed:?}");
    assert_eq!(
        in_nginx, keyed,
        "deploy/nginx/floodgate.conf.template and docs/openapi.json disagree"
    );
}
