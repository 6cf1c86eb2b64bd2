//! Group commit of the hot write paths under hundreds of concurrent requests, with the
//! invariants checked in the database afterwards: a flash sale with idempotent retries, key
//! reuse and buyers who cannot pay; batched and single-path orders and cancellations on the
//! same goods at once; charges of one wallet with repeated keys and the balance limit; the
//! waiting-room pass on batched orders.

use crate::common;
use crate::concerts_support;

use std::collections::{HashMap, HashSet};

use common::TestApp;
use concerts_support::{User, set_config, users};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

/// One answer: status, whether it was a replay, problem kind (if any), body.
struct Answer {
    status: StatusCode,
    replayed: bool,
    kind: String,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    answer(req.send().await.unwrap()).await
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let kind = body["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("")
        .to_owned();
    Answer {
        status,
        replayed,
        kind,
        body,
    }
}

async fn order(app: &TestApp, token: &str, items: Value, key: Option<&str>) -> Answer {
    answer(app.order_keyed(token, items, key).await).await
}

async fn charge(app: &TestApp, token: &str, amount: i64, key: Option<&str>) -> Answer {
    answer(app.charge_keyed(token, amount, key).await).await
}

/// Every wallet equals its ledger, and no claim was left behind unfinished.
async fn assert_wallets_and_keys_settled(pool: &PgPool) {
    crate::common::assert_wallets_match_ledgers(pool).await;
    let open: i64 =
        sqlx::query_scalar("select count(*) from idempotency_keys where status is null")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(open, 0, "a claim was left without a stored response");
}

/// (count, sum) of the batch-size histogram: batching happened when sum > count.
async fn batch_sizes(app: &TestApp, batch: &str) -> (f64, f64) {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let read = |suffix: &str| {
        let name = format!("floodgate_group_commit_batch_size_{suffix}{{batch=\"{batch}\"}}");
        text.lines()
            .find_map(|l| l.strip_prefix(&name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    (read("count"), read("sum"))
}

struct Sent {
    user: usize,
    key: Option<String>,
    quantity: i64,
}

/// 1,100 concurrent single-item orders from 400 buyers for 300 units: 40 buyers cannot pay,
/// 150 orders repeat an earlier key, 60 reuse a key with another quantity, 90 carry no key.
#[sqlx::test(migrator = "MIGRATOR")]
async fn flash_sale_of_300_units_to_1100_orders(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 20).await;
    let seller = app.seller().await;
    let price = 1_000;
    let goods = seller
        .goods_from(&json!({"name": "flash", "price": price, "stock": 300}))
        .await;
    let mut buyers: Vec<User> = users(&app, 360, 3 * price).await;
    buyers.extend(users(&app, 40, price - 100).await);
    let funded: HashMap<i64, i64> = buyers
        .iter()
        .enumerate()
        .map(|(i, u)| (u.id.0, if i < 360 { 3 * price } else { price - 100 }))
        .collect();

    let mut plan = Vec::new();
    for u in 0..400 {
        for n in 0..2 {
            plan.push(Sent {
                user: u,
                key: Some(format!("k-{u}-{n}")),
                quantity: 1,
            });
        }
    }
    plan.extend((0..150).map(|u| Sent {
        user: u,
        key: Some(format!("k-{u}-0")),
        quantity: 1,
    }));
    plan.extend((150..210).map(|u| Sent {
        user: u,
        key: Some(format!("k-{u}-1")),
        quantity: 2,
    }));
    plan.extend((210..300).map(|u| Sent {
        user: u,
        key: None,
        quantity: 1,
    }));
    let answers = join_all(plan.iter().map(|s| {
        let items = json!([{"goods_id": goods, "quantity": s.quantity}]);
        order(&app, &buyers[s.user].token, items, s.key.as_deref())
    }))
    .await;

    // every answer is a success or a clean business refusal
    for (s, a) in plan.iter().zip(&answers) {
        let ok = match a.status {
            StatusCode::CREATED => true,
            StatusCode::CONFLICT => {
                ["out-of-stock", "insufficient-balance"].contains(&a.kind.as_str())
            }
            StatusCode::UNPROCESSABLE_ENTITY => a.kind == "idempotency-key-reused",
            _ => false,
        };
        assert!(
            ok,
            "user {} key {:?}: {} {}",
            s.user, s.key, a.status, a.body
        );
    }
    let (stock, sold): (i32, i64) = sqlx::query_as(
        "select g.stock, (select coalesce(sum(l.quantity), 0)::bigint from order_lines l join orders o using (order_id)
                           where l.goods_id = g.goods_id and o.status = 'paid')
           from goods g where g.goods_id = $1",
    )
    .bind(goods)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((stock, sold), (0, 300), "exactly the stock was sold");

    // each 201 names a paid order of its buyer with what was asked; replays repeat the body
    let orders: HashMap<i64, (i64, i64, i32)> = sqlx::query_as::<_, (i64, i64, i64, i32)>(
        "select o.order_id, o.user_id, o.total, l.quantity from orders o join order_lines l using (order_id)
          where o.status = 'paid'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, u, t, q)| (id, (u, t, q)))
    .collect();
    let mut by_key: HashMap<(usize, &str), Vec<(&Sent, &Answer)>> = HashMap::new();
    let mut fresh = HashSet::new();
    for (s, a) in plan.iter().zip(&answers) {
        if a.status == StatusCode::CREATED {
            let id = a.body["id"].as_i64().unwrap();
            let (user, total, qty) = orders[&id];
            assert_eq!(user, buyers[s.user].id.0, "order {id} belongs to its buyer");
            assert_eq!(i64::from(qty), s.quantity);
            assert_eq!(total, s.quantity * price);
            assert_eq!(a.body["lines"][0]["goods_id"], goods);
            if !a.replayed {
                assert!(fresh.insert(id), "order {id} answered fresh twice");
            }
        }
        if let Some(k) = &s.key {
            by_key.entry((s.user, k)).or_default().push((s, a));
        }
    }
    assert_eq!(
        fresh.len(),
        orders.len(),
        "every order created was acknowledged once"
    );
    for ((user, key), sent) in &by_key {
        let created: Vec<&Answer> = sent
            .iter()
            .filter(|(_, a)| a.status == StatusCode::CREATED)
            .map(|(_, a)| *a)
            .collect();
        assert!(
            created.iter().filter(|a| !a.replayed).count() <= 1,
            "{user}/{key} ran twice"
        );
        if let Some(first) = created.first() {
            assert!(
                created.iter().all(|a| a.body == first.body),
                "{user}/{key}: replay differs"
            );
        }
        let bodies: HashSet<i64> = sent.iter().map(|(s, _)| s.quantity).collect();
        let reused = sent
            .iter()
            .filter(|(_, a)| a.status == StatusCode::UNPROCESSABLE_ENTITY)
            .count();
        assert!(
            reused == 0 || bodies.len() > 1,
            "{user}/{key}: 422 without a second body"
        );
        if let Some(first) = created.first() {
            // the other body of a reused key never ran
            let q = first.body["lines"][0]["quantity"].as_i64().unwrap();
            assert!(
                sent.iter()
                    .all(|(s, a)| s.quantity == q || a.status != StatusCode::CREATED),
                "{user}/{key}: both bodies ran"
            );
        }
    }
    let stored: i64 =
        sqlx::query_scalar("select count(*) from idempotency_keys where status = 201")
            .fetch_one(&pool)
            .await
            .unwrap();
    let keyed_fresh = plan
        .iter()
        .zip(&answers)
        .filter(|(s, a)| s.key.is_some() && a.status == StatusCode::CREATED && !a.replayed)
        .count();
    assert_eq!(
        stored as usize, keyed_fresh,
        "one stored response per keyed order"
    );

    // money: each buyer paid exactly for their orders, the ledger says so, nobody else paid
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "select w.user_id, w.balance,
                coalesce((select sum(total) from orders o where o.user_id = w.user_id and o.status = 'paid'), 0)::bigint,
                (select count(*) from wallet_ledger l where l.user_id = w.user_id and l.kind = 'order_payment'
                    and exists (select 1 from orders o where o.order_id = l.reference_id and o.user_id = l.user_id
                                  and o.total = -l.amount))
           from wallets w",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let payments: i64 =
        sqlx::query_scalar("select count(*) from wallet_ledger where kind = 'order_payment'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(payments as usize, orders.len(), "one debit per order");
    for (user, balance, spent, debits) in rows {
        assert_eq!(
            funded[&user] - balance,
            spent,
            "user {user} charged for what they got"
        );
        let n = orders.values().filter(|o| o.0 == user).count() as i64;
        assert_eq!(debits, n, "user {user}: a debit per order, referencing it");
    }
    assert!(
        buyers[360..]
            .iter()
            .all(|u| orders.values().all(|o| o.0 != u.id.0)),
        "a buyer who could not pay got an order"
    );
    assert_wallets_and_keys_settled(&pool).await;

    // (once sold out, the gate answers without queueing)
    let (batches, jobs) = batch_sizes(&app, "orders").await;
    assert!(
        batches < jobs / 2.0,
        "orders were batched: {batches} batches for {jobs} orders"
    );
    // sold out: the gate answers from Redis now, to those who hold no order of the goods
    let outsider = buyers.last().unwrap();
    let seen = floodgate_app::goods::soldout::check(
        &app.state,
        outsider.id,
        None,
        &[floodgate_app::goods::GoodsId(goods)],
    )
    .await;
    assert!(seen.sold_out.is_some(), "the sold-out gate is set");
    let late = order(
        &app,
        &outsider.token,
        json!([{"goods_id": goods, "quantity": 1}]),
        None,
    )
    .await;
    assert_eq!(
        (late.status, late.kind.as_str()),
        (StatusCode::CONFLICT, "out-of-stock")
    );
}

/// Batched single-item orders, single-path multi-item orders in both goods orders and
/// cancellations, all at once on the same goods: no deadlock, no 5xx, stock and money add up.
#[sqlx::test(migrator = "MIGRATOR")]
async fn batched_and_single_orders_and_cancellations_mix(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 30).await;
    let seller = app.seller().await;
    let a = seller
        .goods_from(&json!({"name": "a", "price": 100, "stock": 400}))
        .await;
    let b = seller
        .goods_from(&json!({"name": "b", "price": 70, "stock": 10_000}))
        .await;
    let buyers = users(&app, 200, 100_000).await;
    let mut cancellable = Vec::new();
    for u in &buyers[..40] {
        let placed = order(
            &app,
            &u.token,
            json!([{"goods_id": a, "quantity": 1}, {"goods_id": b, "quantity": 1}]),
            None,
        )
        .await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        cancellable.push(placed.body["id"].as_i64().unwrap());
    }

    let cancels = buyers[..40].iter().zip(&cancellable).map(|(u, id)| {
        let req = app
            .http
            .post(app.url(&format!("/api/v1/orders/{id}/cancel")))
            .bearer_auth(&u.token)
            .json(&json!({}));
        send(req)
    });
    let single = buyers.iter().flat_map(|u| {
        (0..2).map(|_| {
            order(
                &app,
                &u.token,
                json!([{"goods_id": a, "quantity": 1}]),
                None,
            )
        })
    });
    let multi = buyers.iter().enumerate().map(|(i, u)| {
        let items = if i % 2 == 0 {
            json!([{"goods_id": a, "quantity": 1}, {"goods_id": b, "quantity": 1}])
        } else {
            json!([{"goods_id": b, "quantity": 2}, {"goods_id": a, "quantity": 1}])
        };
        order(&app, &u.token, items, None)
    });
    let (multi, cancelled, single) =
        tokio::join!(join_all(multi), join_all(cancels), join_all(single));
    for c in &cancelled {
        assert_eq!(c.status, StatusCode::OK, "cancel: {}", c.body);
    }
    for o in single.iter().chain(&multi) {
        assert!(
            o.status == StatusCode::CREATED
                || (o.status == StatusCode::CONFLICT && o.kind == "out-of-stock"),
            "{} {}",
            o.status,
            o.body
        );
    }
    assert!(single.iter().any(|o| o.status == StatusCode::CREATED));
    assert!(multi.iter().any(|o| o.status == StatusCode::CREATED));
    for (goods, initial) in [(a, 400), (b, 10_000)] {
        let (stock, sold): (i32, i64) = sqlx::query_as(
            "select g.stock, (select coalesce(sum(l.quantity), 0)::bigint from order_lines l join orders o using (order_id)
                               where l.goods_id = g.goods_id and o.status = 'paid')
               from goods g where g.goods_id = $1",
        )
        .bind(goods)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(stock >= 0);
        assert_eq!(
            i64::from(stock) + sold,
            initial,
            "goods {goods}: stock + sold"
        );
    }
    let (paid, debited, refunded, cancelled_total): (i64, i64, i64, i64) = sqlx::query_as(
        "select (select coalesce(sum(total), 0)::bigint from orders),
                (select coalesce(-sum(amount), 0)::bigint from wallet_ledger where kind = 'order_payment'),
                (select coalesce(sum(amount), 0)::bigint from wallet_ledger where kind = 'order_refund'),
                (select coalesce(sum(total), 0)::bigint from orders where status = 'cancelled')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(paid, debited, "every order was paid once");
    assert_eq!(
        refunded, cancelled_total,
        "every cancellation was refunded once"
    );
    assert_wallets_and_keys_settled(&pool).await;
}

/// 740 concurrent charges of one wallet: 300 keys sent twice, 40 keys reused with another
/// amount, 100 without a key. Balance = ledger sum = accepted sum; replays repeat the body.
#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_charges_of_one_wallet_with_repeated_keys(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 20).await;
    let user = &users(&app, 1, 0).await[0];
    let mut plan: Vec<(Option<String>, i64)> = Vec::new();
    for i in 0..300 {
        plan.push((Some(format!("c-{i}")), 100 + i));
        plan.push((Some(format!("c-{i}")), 100 + i));
    }
    plan.extend((0..40).map(|i| (Some(format!("c-{i}")), 5_000 + i)));
    plan.extend((0..100).map(|i| (None, 10_000 + i)));
    let answers = join_all(
        plan.iter()
            .map(|(k, amount)| charge(&app, &user.token, *amount, k.as_deref())),
    )
    .await;

    let mut accepted = 0;
    let mut fresh = 0;
    let mut by_key: HashMap<&str, Vec<(i64, &Answer)>> = HashMap::new();
    let ledger: HashMap<i64, (i64, i64)> = sqlx::query_as::<_, (i64, i64, i64)>(
        "select ledger_id, amount, balance_after from wallet_ledger where user_id = $1",
    )
    .bind(user.id)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, a, b)| (id, (a, b)))
    .collect();
    for ((key, amount), a) in plan.iter().zip(&answers) {
        match a.status {
            StatusCode::CREATED => {
                let t = &a.body["transaction"];
                assert_eq!(t["amount"], *amount);
                assert_eq!(a.body["balance"], t["balance_after"]);
                let id = t["id"].as_i64().unwrap();
                assert_eq!(
                    ledger.get(&id),
                    Some(&(*amount, t["balance_after"].as_i64().unwrap())),
                    "the answered ledger row is stored"
                );
                if !a.replayed {
                    fresh += 1;
                    accepted += amount;
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY => assert_eq!(a.kind, "idempotency-key-reused"),
            s => panic!("charge of {amount}: {s} {}", a.body),
        }
        if let Some(k) = key {
            by_key.entry(k).or_default().push((*amount, a));
        }
    }
    for (key, sent) in &by_key {
        let created: Vec<&(i64, &Answer)> = sent
            .iter()
            .filter(|(_, a)| a.status == StatusCode::CREATED)
            .collect();
        assert_eq!(
            created.iter().filter(|(_, a)| !a.replayed).count(),
            1,
            "{key} applied once"
        );
        assert!(
            created
                .iter()
                .all(|(amount, a)| a.body == created[0].1.body && *amount == created[0].0),
            "{key}: one body, replayed as it was"
        );
    }
    let (balance, sum, rows, last): (i64, i64, i64, i64) = sqlx::query_as(
        "select w.balance, (select sum(amount) from wallet_ledger l where l.user_id = w.user_id)::bigint,
                (select count(*) from wallet_ledger l where l.user_id = w.user_id),
                (select balance_after from wallet_ledger l where l.user_id = w.user_id order by ledger_id desc limit 1)
           from wallets w where w.user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((balance, sum, last), (accepted, accepted, accepted));
    assert_eq!(rows, fresh, "one ledger row per applied charge");
    let distinct: HashSet<i64> = ledger.values().map(|v| v.1).collect();
    assert_eq!(
        distinct.len(),
        ledger.len(),
        "running balances are distinct"
    );
    assert_wallets_and_keys_settled(&pool).await;
    let (batches, jobs) = batch_sizes(&app, "charges").await;
    assert!(
        batches < jobs / 2.0,
        "charges were batched: {batches} for {jobs}"
    );
}

/// Eight clients charging one wallet in a loop: after the first batch (which waits the window,
/// the key being idle), each round starts as soon as all eight are back, so the three later
/// rounds together take less than one window, and every batch carries all eight.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_crowd_that_comes_back_at_once_does_not_wait_out_the_window(pool: PgPool) {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(3);
    let app = TestApp::spawn_with(pool.clone(), |s| {
        s.group_commit_window_us = WINDOW.as_micros() as u64;
    })
    .await;
    let user = &users(&app, 1, 0).await[0];
    let started = std::sync::Mutex::new(None::<std::time::Instant>);
    let clients = (0..8).map(|c| {
        let (app, user, started) = (&app, user, &started);
        async move {
            for round in 0..4 {
                let a = charge(app, &user.token, 100, Some(&format!("loop-{c}-{round}"))).await;
                assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
                if round == 0 {
                    started
                        .lock()
                        .unwrap()
                        .get_or_insert_with(std::time::Instant::now);
                }
            }
        }
    });
    join_all(clients).await;
    let later_rounds = started.lock().unwrap().unwrap().elapsed();
    assert!(
        later_rounds < WINDOW,
        "three rounds after the first took {later_rounds:?}: each waited out the {WINDOW:?} window"
    );
    assert_eq!(batch_sizes(&app, "charges").await, (4.0, 32.0));
    assert_wallets_and_keys_settled(&pool).await;
}

/// A batch that would cross the balance limit refuses exactly the charges that do not fit.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_balance_limit_refuses_only_what_does_not_fit(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let user = &users(&app, 1, 0).await[0];
    let max = floodgate_app::wallet::rules::BALANCE_MAX.minor();
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    floodgate_app::wallet::store::credit(
        &mut conn,
        user.id,
        floodgate_app::platform::money::Money::new(max - 10_500),
        floodgate_app::wallet::LedgerKind::Charge,
        None,
    )
    .await
    .unwrap();
    let answers = join_all((0..20).map(|_| charge(&app, &user.token, 1_000, None))).await;
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let limited = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT && a.kind == "balance-limit")
        .count();
    assert_eq!((ok, limited), (10, 10));
    let balance: i64 = sqlx::query_scalar("select balance from wallets where user_id = $1")
        .bind(user.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(balance, max - 500);
    assert_wallets_and_keys_settled(&pool).await;
}

/// Goods behind a waiting room: batched orders answer each caller by its own pass.
#[sqlx::test(migrator = "MIGRATOR")]
async fn batched_orders_check_each_waiting_room_pass(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    set_config(
        &app,
        json!({"queues": {"gq": {"maxActiveUsers": 100, "admitPerMinute": 60000}, "other": {"paused": true}}}),
    )
    .await;
    let seller = app.seller().await;
    let goods = seller
        .goods_from(&json!({"name": "queued", "price": 10, "stock": 100, "queue_id": "gq"}))
        .await;
    let people = users(&app, 4, 1_000).await;
    let join = |u: &User, q: &'static str| {
        let req = app
            .http
            .post(app.url(&format!("/api/v1/queues/{q}/tokens")))
            .bearer_auth(&u.token);
        async move {
            req.send().await.unwrap().json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let admitted = join(&people[0], "gq").await;
    let elsewhere = join(&people[1], "other").await;
    let started = std::time::Instant::now();
    loop {
        let me: Value = app
            .http
            .get(app.url("/api/v1/queues/gq/tokens/me"))
            .header("X-Queue-Token", &admitted)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if me["status"] == "ADMITTED" {
            break;
        }
        assert!(started.elapsed().as_secs() < 10, "not admitted: {me}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let with_pass = |u: &User, pass: Option<String>| {
        let mut req = app
            .http
            .post(app.url("/api/v1/orders"))
            .bearer_auth(&u.token)
            .json(&json!({"items": [{"goods_id": goods, "quantity": 1}]}));
        if let Some(p) = pass {
            req = req.header("X-Queue-Token", p);
        }
        send(req)
    };
    let (ok, missing, wrong, stolen) = tokio::join!(
        with_pass(&people[0], Some(admitted.clone())),
        with_pass(&people[2], None),
        with_pass(&people[1], Some(elsewhere)),
        with_pass(&people[3], Some(admitted)),
    );
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(missing.kind, "queue-pass-missing");
    assert_eq!(wrong.kind, "queue-pass-wrong-queue");
    assert_eq!(stolen.kind, "queue-pass-wrong-user");
    let orders: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 1);
    assert_wallets_and_keys_settled(&pool).await;
}

/// The smaller item of #13: a goods waiting-room pass (one admitted session) pays for one
/// order. A second order with it — batched or single-path, one after the other or at once —
/// gets 403 `queue-pass-used` naming the order it paid for; a keyed retry of the paid order
/// still replays it.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_waiting_room_pass_pays_for_one_order(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    set_config(
        &app,
        json!({"queues": {"gq": {"maxActiveUsers": 100, "admitPerMinute": 60000}}}),
    )
    .await;
    let seller = app.seller().await;
    let queued =
        |name: &'static str| json!({"name": name, "price": 10, "stock": 100, "queue_id": "gq"});
    let a = seller.goods_from(&queued("a")).await;
    let b = seller.goods_from(&queued("b")).await;
    let people = users(&app, 2, 1_000).await;
    let admitted_pass = |u: &User| {
        let app = &app;
        let token = u.token.clone();
        async move {
            let res: Value = app
                .http
                .post(app.url("/api/v1/queues/gq/tokens"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let pass = res["token"].as_str().unwrap().to_owned();
            let started = std::time::Instant::now();
            loop {
                let me: Value = app
                    .http
                    .get(app.url("/api/v1/queues/gq/tokens/me"))
                    .header("X-Queue-Token", &pass)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if me["status"] == "ADMITTED" {
                    return pass;
                }
                assert!(started.elapsed().as_secs() < 10, "not admitted: {me}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let place = |u: &User, pass: &str, items: Value, key: &str| {
        let req = app
            .http
            .post(app.url("/api/v1/orders"))
            .bearer_auth(&u.token)
            .header("X-Queue-Token", pass)
            .header("Idempotency-Key", key)
            .json(&json!({ "items": items }));
        send(req)
    };
    let one = |g: i64| json!([{"goods_id": g, "quantity": 1}]);
    let both = json!([{"goods_id": a, "quantity": 1}, {"goods_id": b, "quantity": 1}]);

    // one after the other: the batched path, then both paths again
    let pass = admitted_pass(&people[0]).await;
    let first = place(&people[0], &pass, one(a), "k1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let id = first.body["id"].as_i64().unwrap();
    let again = place(&people[0], &pass, one(b), "k2").await;
    assert_eq!(
        (again.status, again.kind.as_str()),
        (StatusCode::FORBIDDEN, "queue-pass-used"),
        "a second batched order with a used pass: {}",
        again.body
    );
    assert_eq!(again.body["order_id"].as_i64(), Some(id), "{}", again.body);
    let single = place(&people[0], &pass, both.clone(), "k3").await;
    assert_eq!(
        (single.status, single.kind.as_str()),
        (StatusCode::FORBIDDEN, "queue-pass-used"),
        "a second single-path order with a used pass: {}",
        single.body
    );
    let replay = place(&people[0], &pass, one(a), "k1").await;
    assert_eq!(replay.status, StatusCode::CREATED, "{}", replay.body);
    assert!(replay.replayed);
    assert_eq!(replay.body["id"].as_i64(), Some(id));

    // at once, through both paths: exactly one order
    let pass = admitted_pass(&people[1]).await;
    let racing = join_all((0..6).map(|i| {
        let items = if i % 2 == 0 { one(a) } else { both.clone() };
        place(&people[1], &pass, items, &format!("race-{i}"))
    }))
    .await;
    let created = racing
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(
        created,
        1,
        "one pass, one order: {:?}",
        racing
            .iter()
            .map(|r| (r.status, r.kind.clone()))
            .collect::<Vec<_>>()
    );
    for r in racing.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(
            (r.status, r.kind.as_str()),
            (StatusCode::FORBIDDEN, "queue-pass-used"),
            "{}",
            r.body
        );
    }
    let orders: Vec<(i64, i64)> =
        sqlx::query_as("select user_id, count(*) from orders group by user_id order by user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(orders, vec![(people[0].id.0, 1), (people[1].id.0, 1)]);
    assert_wallets_and_keys_settled(&pool).await;
}
