//! The app on a Redis Cluster (three primaries, three replicas: `scripts/services.sh
//! redis-cluster`, at `REDIS_CLUSTER_URL`), three replicas sharing one database and one key
//! prefix. The replicas are in-process `TestApp`s that share nothing in-process (each its own
//! state, connections, batcher and background loops); a multi-process harness would be
//! closer to production.
//!
//! - every Lua script of the app runs on the cluster in one flow, and a script file that no
//!   flow here runs fails the test (so a new script is exercised on the cluster, where keys
//!   in two slots answer CROSSSLOT, and by the one-slot check of every debug build);
//! - a coupon drop across the replicas: exactly the cap, one per user; and with the primary
//!   of the campaign's slot SIGKILLed mid-drop: never above the cap, PostgreSQL holds exactly
//!   the users answered 201;
//! - one waiting room across the replicas, one stopped midway: never above maxActiveUsers
//!   (sampled every 10 ms), admitted in join order.
//!
//! The tests share the cluster and one kills a primary: they run one at a time (the
//! `redis-cluster` test group in .config/nextest.toml).

use crate::cluster_support;
use crate::common;
use crate::concerts_support;
use crate::faults;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use cluster_support::{
    RestartNodes, app_scripts, cli, cluster_url, customers, drop_across, holders, primary_of,
    replicas, winners,
};
use common::TestApp;
use concerts_support::{
    admin, concert,
    crowd::{Crowd, Fleet},
    set_config, users,
};
use faults::{campaign, eventually, order_once};
use floodgate_crds::redis_conn::key_slot;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::MIGRATOR;

/// Every script file of the app is run on the cluster by the app's own flows (sign-up and
/// login, goods read/written/sold out, a coupon drop, a random pre-queue opening, a leave,
/// an admission, a replica giving its lease up). Script caches are flushed first, so a
/// script counts only if this run loaded it: a new script file that no flow here runs
/// fails, with its name.
#[sqlx::test(migrator = "MIGRATOR")]
async fn every_script_of_the_app_runs_on_the_cluster(pool: PgPool) {
    let url = cluster_url();
    for node in url.split(',') {
        assert!(cli(node, &["script", "flush"]).contains("OK"), "{node}");
    }
    let apps = replicas(&pool, 2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let admin = admin(a).await;
    // rate limit (login), goods cache fill and invalidation, sold-out gate
    let seller = a.seller().await;
    let buyer = a.customer("buyer@example.com").await;
    a.charge(&buyer, 10_000).await;
    let goods = seller.goods(100, 1).await;
    for app in [a, b, a] {
        assert_eq!(
            app.get(&format!("/api/v1/goods/{goods}"), None)
                .await
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        order_once(b, &buyer, goods, "o-1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        order_once(a, &buyer, goods, "o-2").await.status(),
        StatusCode::CONFLICT
    );
    // orders of several goods: the sold-out gates of goods in different slots are read in
    // one pipeline, which the cluster connection splits per slot
    let gate = |id: i64| key_slot(a.key(&format!("{{so:{id}}}:out")).as_bytes());
    let mut fresh = Vec::new();
    while fresh.len() < 2 {
        let id = seller.goods(100, 5).await;
        if fresh.iter().all(|&f| gate(f) != gate(id)) && gate(id) != gate(goods) {
            fresh.push(id);
        }
    }
    let order = |app: &TestApp, key: &'static str, items: [i64; 2]| {
        app.http
            .post(app.url("/api/v1/orders"))
            .bearer_auth(&buyer)
            .header("idempotency-key", key)
            .json(&json!({"items": [{"goods_id": items[0], "quantity": 1}, {"goods_id": items[1], "quantity": 1}]}))
            .send()
    };
    let res = order(b, "o-3", [fresh[0], fresh[1]]).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = order(a, "o-4", [fresh[0], goods]).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    // coupons: load, issue, settle
    let drop_id = campaign(a, &admin, 5).await;
    let path = format!("/api/v1/coupon-campaigns/{drop_id}/issue");
    assert_eq!(
        b.post_json(&path, &json!({}), Some(&buyer)).await.status(),
        StatusCode::CREATED
    );
    // waiting room: a random pre-queue shuffled at opening, polls, a leave, admissions
    let opens = chrono::Utc::now() + chrono::Duration::seconds(2);
    set_config(a, json!({"queues": {"rnd": {"queueing": "random", "opensAt": opens, "maxActiveUsers": 1000, "admitPerMinute": 6000}}})).await;
    eventually(
        Duration::from_secs(5),
        "both replicas run the config",
        || async { b.state.runtime.get().version == a.state.runtime.get().version },
    )
    .await;
    let people = users(a, 20, 0).await;
    let mut tokens = Vec::new();
    for (i, u) in people.iter().enumerate() {
        let res = concerts_support::join(&apps[i % 2], u, "rnd").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        tokens.push(
            res.json::<serde_json::Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let left = b
        .http
        .delete(b.url("/api/v1/queues/rnd/tokens/me"))
        .header("X-Queue-Token", &tokens[0])
        .send()
        .await
        .unwrap();
    assert!(left.status().is_success(), "{}", left.status());
    eventually(
        Duration::from_secs(10),
        "admissions after the opening",
        || async {
            let me = a
                .http
                .get(a.url("/api/v1/queues/rnd/tokens/me"))
                .header("X-Queue-Token", &tokens[1])
                .send()
                .await
                .unwrap();
            me.json::<serde_json::Value>().await.unwrap()["status"] == "ADMITTED"
        },
    )
    .await;
    // lease release: a replica that stops gives its leases up
    a.shutdown();
    b.shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = url.split(',').next().unwrap();
    // redis-rs loads a script on every node, so one node tells
    let missing: Vec<String> = app_scripts()
        .into_iter()
        .filter(|(_, sha)| cli(first, &["script", "exists", sha]).trim() != "1")
        .map(|(file, _)| file)
        .collect();
    assert!(
        missing.is_empty(),
        "scripts no flow of this test ran on the cluster (add one, so they are checked for keys in one slot): {missing:?}"
    );
}

/// 1,000 users, 300 coupons, three replicas on the cluster: exactly 300 answered 201, 300
/// rows in PostgreSQL, the same users, one each.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_coupon_drop_across_three_replicas_gives_exactly_the_cap(pool: PgPool) {
    let apps: Vec<Arc<TestApp>> = replicas(&pool, 3).await.into_iter().map(Arc::new).collect();
    let admin = admin(&apps[0]).await;
    let cap = 300;
    let drop_id = campaign(&apps[0], &admin, cap).await;
    let (tokens, ids) = customers(&apps[0], 1_000, "cd").await;
    let answers = drop_across(&apps, &tokens, drop_id, cap, async || {}).await;
    let won = winners(&answers, &ids);
    let (held, rows) = holders(&pool, drop_id).await;
    assert_eq!(won.len() as i64, cap, "201s");
    assert_eq!(rows, cap, "coupon rows");
    assert_eq!(held, won, "PostgreSQL holds exactly the users answered 201");
}

/// The same drop with the primary of the campaign's slot SIGKILLed mid-drop (its replica is
/// promoted): never above the cap, and once it settles PostgreSQL holds exactly the users
/// answered 201. The killed node is restarted afterwards (it rejoins as a replica).
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_coupon_drop_survives_its_primary_being_killed(pool: PgPool) {
    let url = cluster_url();
    let apps: Vec<Arc<TestApp>> = replicas(&pool, 3).await.into_iter().map(Arc::new).collect();
    let admin = admin(&apps[0]).await;
    let cap = 300;
    let drop_id = campaign(&apps[0], &admin, cap).await;
    let (tokens, ids) = customers(&apps[0], 1_000, "ck").await;
    let seed = url.split(',').next().unwrap().to_owned();
    let victim = primary_of(&seed, &apps[0].key(&format!("{{cp:{drop_id}}}:holders"))).unwrap();
    let restart = RestartNodes;
    let pid = cli(&format!("redis://{victim}"), &["info", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned();
    let loads_started = Instant::now();
    let answers = drop_across(&apps, &tokens, drop_id, cap, async || {
        eventually(Duration::from_secs(30), "first grants", || async {
            holders(&pool, drop_id).await.1 >= 60
        })
        .await;
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        eprintln!(
            "SIGKILLed primary {victim} (pid {pid}) {:?} into the drop",
            loads_started.elapsed()
        );
        let other = url
            .split(',')
            .find(|n| !n.contains(&victim))
            .unwrap()
            .to_owned();
        let failed_over = eventually(
            Duration::from_secs(30),
            "the cluster is ok again",
            || async {
                cli(&other, &["cluster", "info"]).contains("cluster_state:ok")
                    && primary_of(&other, &format!("{{cp:{drop_id}}}")).is_some_and(|p| p != victim)
            },
        )
        .await;
        eprintln!("replica promoted, cluster ok {failed_over:?} after the kill");
    })
    .await;
    drop(restart);
    let won = winners(&answers, &ids);
    // settled: every grant batch finished (the drop stopped two seconds ago)
    let (held, rows) = holders(&pool, drop_id).await;
    assert!(rows <= cap, "{rows} coupons for a cap of {cap}");
    assert!(won.len() as i64 <= cap);
    assert_eq!(held, won, "PostgreSQL holds exactly the users answered 201");
    eprintln!("{} of {cap} issued across the failover", won.len());
}

/// 600 users through `maxActiveUsers: 40` served by three replicas; one replica stops when
/// half have paid. Never above the cap (sampled every 10 ms), everyone who kept polling
/// admitted and paid, and admitted in join order: session expiries, set at admission, never
/// decrease with the places the joins gave.
#[sqlx::test(migrator = "MIGRATOR")]
async fn one_waiting_room_across_three_replicas_keeps_its_cap_and_order(pool: PgPool) {
    let apps = replicas(&pool, 3).await;
    set_config(&apps[0], json!({"queues": {"crowd": {"maxActiveUsers": 40, "admitPerMinute": 60000, "sessionTtl": "30s", "abandonAfter": "10s"}}})).await;
    for app in &apps {
        eventually(
            Duration::from_secs(5),
            "every replica runs the config",
            || async { app.state.runtime.get().version == apps[0].state.runtime.get().version },
        )
        .await;
    }
    let admin = admin(&apps[0]).await;
    let n = 600;
    let c = concert(&apps[0], &admin, Some("crowd"), n, 1_000).await;
    let people = users(&apps[0], n, 5_000).await;
    let fleet = Fleet::new(apps.iter().collect());
    let crowd = Crowd {
        queue: "crowd",
        people: &people,
        seats: &c.seats,
        schedule: c.schedule,
        cap: 40,
    };
    let started = Instant::now();
    let mut admitted = crowd.across(&fleet, |_| false, |f| f.stop(1)).await;
    eprintln!(
        "{n} users through cap 40 on 3 replicas (one stopped midway) in {:?}",
        started.elapsed()
    );
    assert_eq!(
        admitted.len(),
        n,
        "everyone who kept polling was admitted and paid"
    );
    admitted.sort_by_key(|a| a.position);
    let places: HashSet<u64> = admitted.iter().map(|a| a.position).collect();
    assert_eq!(places.len(), n, "distinct places");
    for pair in admitted.windows(2) {
        assert!(
            pair[0].session_expires_at <= pair[1].session_expires_at,
            "place {} admitted after place {}: {pair:?}",
            pair[0].position,
            pair[1].position
        );
    }
    let sold: i64 = sqlx::query_scalar(
        "select count(*) from seats where schedule_id = $1 and sold_to is not null",
    )
    .bind(c.schedule)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sold, n as i64);
    concerts_support::assert_money_and_seats_consistent(&apps[0]).await;
}
