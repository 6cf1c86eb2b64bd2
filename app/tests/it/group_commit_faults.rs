//! Group commit when things go wrong: a batch stuck on a stalled PostgreSQL answers every
//! member 503 and leaves nothing behind (no order, no claim), so retries with the same keys
//! run once; callers that go away mid-flight lose nothing and duplicate nothing.

use crate::common;
use crate::concerts_support;
use crate::faults;
use crate::faults::procs;
use crate::faults::proxy;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use common::TestApp;
use concerts_support::users;
use faults::{breaker, eventually, order_once, problem_kind, proxied_pool, set_breakers};
use floodgate_app::{
    goods::{GoodsId, soldout},
    idempotency::{self, IdempotencyKey},
    orders::batch,
    queue::PassCheck,
};
use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::PgPool;

use crate::MIGRATOR;

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// 50 keyed orders queued behind a stalled PostgreSQL: every one is answered 503 within the
/// deadline, nothing is written and no claim is left; after recovery the same keys each run
/// exactly once, fresh.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stalled_batch_answers_every_member_and_writes_nothing(pool: PgPool) {
    let proxy = proxy::Proxy::start(procs::database_addr()).await;
    let app = TestApp::spawn_with(
        proxied_pool(&pool, &proxy, 20, Duration::from_secs(1)),
        |s| {
            s.db_call_timeout_ms = 1_500;
            s.request_timeout_ms = 4_000;
        },
    )
    .await;
    let prefix = app.state.redis.prefix().to_owned();
    let small = || breaker(10, 5, "1s", 3, "3s", "auto");
    set_breakers(&faults::redis_url(), &prefix, 1, small(), small()).await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let seller = app.seller().await;
    let goods = seller.goods(10, 1_000).await;
    let buyers = users(&app, 50, 1_000).await;

    proxy.stall(true);
    let started = Instant::now();
    let answers =
        join_all(
            buyers.iter().enumerate().map(|(i, u)| {
                let app = &app;
                async move {
                    problem_kind(order_once(app, &u.token, goods, &format!("s-{i}")).await).await
                }
            }),
        )
        .await;
    for (status, _, kind) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{kind}");
        assert!(
            ["dependency-timeout", "circuit-open", "service-unavailable"].contains(&kind.as_str()),
            "{kind}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4 + 2),
        "answered within the deadline"
    );
    proxy.stall(false);
    // read through the direct pool: nothing of the failed batch is in the database
    assert_eq!(count(&pool, "select count(*) from orders").await, 0);
    assert_eq!(
        count(&pool, "select count(*) from idempotency_keys").await,
        0
    );

    let mut fresh = HashSet::new();
    let retried = Instant::now();
    for (i, u) in buyers.iter().enumerate() {
        loop {
            let res = order_once(&app, &u.token, goods, &format!("s-{i}")).await;
            if res.status() == StatusCode::CREATED {
                assert!(
                    res.headers().get("idempotent-replayed").is_none(),
                    "key s-{i} had been stored by the failed batch"
                );
                let body: serde_json::Value = res.json().await.unwrap();
                assert!(fresh.insert(body["id"].as_i64().unwrap()));
                break;
            }
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(retried.elapsed() < Duration::from_secs(20), "no recovery");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(count(&pool, "select count(*) from orders").await, 50);
    assert_eq!(
        count(
            &pool,
            "select count(*) from idempotency_keys where status = 201"
        )
        .await,
        50
    );
    faults::assert_stock_and_ledgers(&pool, goods, 1_000).await;
}

/// 200 keyed orders whose callers give up after 0-20 ms (some before their batch starts, some
/// while it runs), then the same keys again: every key ends with exactly one order, answered
/// either by a replay (the batch had committed it) or by running now.
#[sqlx::test(migrator = "MIGRATOR")]
async fn callers_that_go_away_lose_nothing_and_duplicate_nothing(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 20).await;
    let seller = app.seller().await;
    let goods = seller.goods(10, 10_000).await;
    let buyers = users(&app, 200, 1_000).await;
    let state = &app.state;
    let place = |i: usize| {
        let user = buyers[i].id;
        async move {
            let key = IdempotencyKey::parse(&format!("g-{i}")).unwrap();
            let seen = soldout::check(state, user, Some(&key), &[GoodsId(goods)]).await;
            let fp = idempotency::fingerprint("test", &i);
            let job = batch::OrderJob {
                user,
                quantity: 1,
                key: Some(key),
                fingerprint: fp,
                pass: PassCheck::Missing,
                seen,
            };
            batch::place_one(state, GoodsId(goods), job).await
        }
    };
    let first = join_all((0..200).map(|i| {
        let patience = Duration::from_micros((i as u64 * 97) % 20_000);
        tokio::time::timeout(patience, place(i))
    }))
    .await;
    let gave_up = first.iter().filter(|r| r.is_err()).count();
    assert!(gave_up > 0, "some callers went away");
    // at once: a retry queues behind its abandoned twin (same user: never the same batch)
    let again = join_all((0..200).map(place)).await;
    let mut ids = HashSet::new();
    let (mut replayed, mut ran_now) = (0, 0);
    for (i, (res, before)) in again.into_iter().zip(&first).enumerate() {
        let res = res.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let was_replayed = res.headers().get("idempotent-replayed").is_some();
        if before.is_err() {
            if was_replayed {
                replayed += 1;
            } else {
                ran_now += 1;
            }
        } else {
            assert!(was_replayed, "g-{i} answered before, so it replays");
        }
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            ids.insert(body["id"].as_i64().unwrap()),
            "two keys, one order"
        );
    }
    eprintln!("{gave_up} callers went away: {replayed} had been committed, {ran_now} had not");
    assert_eq!(count(&pool, "select count(*) from orders").await, 200);
    assert_eq!(
        count(
            &pool,
            "select count(*) from idempotency_keys where status = 201"
        )
        .await,
        200
    );
    faults::assert_stock_and_ledgers(&pool, goods, 10_000).await;
}

/// Orders `goods` for the first `n` of `buyers` (keys `fill-{i}`), each expecting 201.
async fn buy_all(app: &TestApp, buyers: &[concerts_support::User], goods: i64) {
    for (i, u) in buyers.iter().enumerate() {
        let res = order_once(app, &u.token, goods, &format!("fill-{i}")).await;
        assert_eq!(res.status(), StatusCode::CREATED, "filler order {i}");
    }
}

/// The retry of `key` by `buyer` replays order `id`: 201, `Idempotent-Replayed`, same id.
async fn assert_replays(app: &TestApp, token: &str, goods: i64, key: &str, id: i64) {
    let res = order_once(app, token, goods, key).await;
    let status = res.status();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the keyed retry of committed order {id} was answered {status} {body}"
    );
    assert!(replayed, "the retry ran again instead of replaying: {body}");
    assert_eq!(body["id"].as_i64(), Some(id), "replayed another order");
}

/// The gate, as a user without an order sees it, answers from Redis that `goods` is sold out.
async fn assert_gate_closed(app: &TestApp, outsider: &concerts_support::User, goods: i64) {
    let seen = soldout::check(&app.state, outsider.id, None, &[GoodsId(goods)]).await;
    assert_eq!(
        seen.sold_out,
        Some(GoodsId(goods)),
        "the sold-out gate is set"
    );
    let (status, _, kind) =
        problem_kind(order_once(app, &outsider.token, goods, "late-comer").await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "out-of-stock")
    );
}

/// Item 2 of #13. A batch whose COMMIT outlives the caller's deadline: the caller hears 503,
/// yet the order (and its idempotency record) committed, and `committed()` never ran for it.
/// The goods then sell out; the buyer's retry with the same key must replay its order, not
/// meet the sold-out gate. The slow COMMIT is a deferred constraint trigger (it runs inside
/// COMMIT) sleeping 2.5 s for this buyer's rows, past the 1 s database deadline.
#[sqlx::test(migrator = "MIGRATOR")]
async fn keyed_retry_replays_order_committed_past_its_deadline_after_sellout(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| {
        s.db_call_timeout_ms = 1_000;
        s.request_timeout_ms = 5_000;
    })
    .await;
    let seller = app.seller().await;
    let goods = seller.goods(10, 3).await;
    let people = users(&app, 4, 1_000).await;
    let (late, rest) = people.split_first().unwrap();
    let (outsider, fillers) = rest.split_last().unwrap();
    // an integer id: nothing to inject
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create function slow_commit() returns trigger language plpgsql as
           $$ begin perform pg_sleep(2.5); return null; end $$;
         create constraint trigger slow_commit after insert on orders
           deferrable initially deferred for each row
           when (new.user_id = {}) execute function slow_commit();",
        late.id.0
    )))
    .execute(&pool)
    .await
    .unwrap();

    let (status, _, kind) = problem_kind(order_once(&app, &late.token, goods, "late").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{kind}");
    let order_of_late = || async {
        sqlx::query_scalar::<_, i64>("select order_id from orders where user_id = $1")
            .bind(late.id)
            .fetch_optional(&pool)
            .await
            .unwrap()
    };
    eventually(
        Duration::from_secs(10),
        "the late order committed",
        || async { order_of_late().await.is_some() },
    )
    .await;
    let id = order_of_late().await.unwrap();
    sqlx::raw_sql("drop trigger slow_commit on orders")
        .execute(&pool)
        .await
        .unwrap();

    buy_all(&app, fillers, goods).await;
    assert_gate_closed(&app, outsider, goods).await;
    assert_replays(&app, &late.token, goods, "late", id).await;

    assert_eq!(
        count(&pool, "select count(*) from orders").await,
        3,
        "one order per key"
    );
    faults::assert_stock_and_ledgers(&pool, goods, 3).await;
}

/// Item 2 of #13. The sold-out gate's keys lost (a Redis flush, eviction, failover): an order
/// reaching PostgreSQL sets the gate again, and a buyer's keyed retry must still replay its
/// order. Only this test's own prefixed keys are deleted.
#[sqlx::test(migrator = "MIGRATOR")]
async fn keyed_retry_replays_committed_order_after_gate_keys_are_lost(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let seller = app.seller().await;
    let goods = seller.goods(10, 3).await;
    let people = users(&app, 4, 1_000).await;
    let (outsider, buyers) = people.split_last().unwrap();
    buy_all(&app, buyers, goods).await;
    let id: i64 = sqlx::query_scalar("select order_id from orders where user_id = $1")
        .bind(buyers[0].id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_gate_closed(&app, outsider, goods).await;

    let pattern = app.state.redis.key(&format!("{{so:{goods}}}:*"));
    let mut redis = app.state.redis.raw_conn();
    let lost: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!lost.is_empty(), "no gate keys under {pattern}");
    let _: () = redis::cmd("DEL")
        .arg(&lost)
        .query_async(&mut redis)
        .await
        .unwrap();

    // the next refused order reaches PostgreSQL and closes the gate again
    let (status, _, kind) =
        problem_kind(order_once(&app, &outsider.token, goods, "after-loss").await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "out-of-stock")
    );
    assert_gate_closed(&app, outsider, goods).await;
    assert_replays(&app, &buyers[0].token, goods, "fill-0", id).await;

    assert_eq!(
        count(&pool, "select count(*) from orders").await,
        3,
        "one order per key"
    );
    faults::assert_stock_and_ledgers(&pool, goods, 3).await;
}
