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
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;
mod concerts_support;
#[path = "faults/procs.rs"]
mod procs;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/support.rs"]
mod support;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use common::TestApp;
use concerts_support::{
    admin, concert,
    crowd::{Crowd, Fleet},
    set_config, users,
};
use floodgate_crds::redis_conn::{RedisMode, key_slot};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use support::{CouponDrop, campaign, charge, eventually, new_goods, order_once};

const MIGRATOR: &sqlx::migrate::Migrator = &floodgate_app::platform::db::MIGRATOR;

/// The cluster's seed nodes; the test fails (never skips) without a cluster.
fn cluster_url() -> String {
    let url = std::env::var("REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        panic!("REDIS_CLUSTER_URL is not set: run `scripts/services.sh redis-cluster` and export what `scripts/services.sh env` prints")
    });
    let first = url.split(',').next().unwrap().to_owned();
    let ok = std::process::Command::new("redis-cli")
        .args(["-u", &first, "cluster", "info"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        .unwrap_or(false);
    assert!(
        ok,
        "the Redis Cluster at {first} is not in cluster_state:ok"
    );
    url
}

/// Three replicas on the cluster with one key prefix.
async fn replicas(pool: &PgPool, n: usize) -> Vec<TestApp> {
    let url = cluster_url();
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let mut apps = Vec::new();
    for i in 0..n {
        apps.push(
            TestApp::spawn_with(pool.clone(), |s| {
                s.redis_mode = RedisMode::Cluster;
                s.redis_url = url.clone().into();
                s.redis_prefix = prefix.clone();
                s.replica_id = Some(format!("cluster-replica-{i}"));
                s.db_pool_size = 20;
            })
            .await,
        );
    }
    apps
}

fn cli(node: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", node])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `host:port` of the primary serving `key`'s slot, as a node of the cluster sees it (none
/// while that primary has failed and no replica has taken over yet).
fn primary_of(seed: &str, key: &str) -> Option<String> {
    let slot = key_slot(key.as_bytes());
    for line in cli(seed, &["cluster", "nodes"]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !f[2].contains("master") || f[2].contains("fail") {
            continue;
        }
        for range in &f[8..] {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                && (lo..=hi).contains(&slot)
            {
                return Some(f[1].split('@').next().unwrap().to_owned());
            }
        }
    }
    None
}

/// Brings killed nodes back when dropped (also when the test fails): `services.sh
/// redis-cluster` restarts them and they rejoin as replicas.
struct RestartNodes;

impl Drop for RestartNodes {
    fn drop(&mut self) {
        let restarted = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/services.sh"
            ))
            .arg("redis-cluster")
            .status();
        if !std::thread::panicking() {
            assert!(
                restarted.unwrap().success(),
                "the killed node did not come back"
            );
        }
    }
}

/// SHA1 of every Lua script file of the app: what `SCRIPT LOAD` names them.
fn app_scripts() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "lua") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() >= 12, "{files:?}");
    files
        .into_iter()
        .map(|p| {
            let code = std::fs::read_to_string(&p).unwrap();
            let sha = redis::Script::new(&code).get_hash().to_owned();
            (p.display().to_string(), sha)
        })
        .collect()
}

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
    let seller = a
        .user_with_roles("seller@example.com", &["customer", "seller"])
        .await;
    let buyer = a.customer("buyer@example.com").await;
    charge(a, &buyer, 10_000).await;
    let goods = new_goods(a, &seller, 100, 1).await;
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

/// Runs a 3-replica drop of `cap` coupons for `n` users until it is sold out or `during`
/// has done its part, and returns every (user, status) answered.
async fn drop_across(
    apps: &[Arc<TestApp>],
    tokens: &Arc<Vec<String>>,
    drop_id: i64,
    cap: i64,
    during: impl AsyncFnOnce(),
) -> Vec<(usize, StatusCode)> {
    let loads: Vec<CouponDrop> = apps
        .iter()
        .map(|app| CouponDrop::start(app, tokens, drop_id, 24, Duration::from_millis(5)))
        .collect();
    during().await;
    eventually(Duration::from_secs(60), "the drop sold out", || async {
        loads.iter().map(CouponDrop::granted).sum::<i64>() >= cap
    })
    .await;
    // a few more rounds over everyone: late answers are sold out or already held
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut answers = Vec::new();
    for load in loads {
        answers.extend(load.stop().await);
    }
    answers
}

/// The winners (answered 201), checking nobody won twice and every other answer is one a
/// client of a drop expects.
fn winners(answers: &[(usize, StatusCode)], ids: &[i64]) -> HashSet<i64> {
    let mut won = HashSet::new();
    for (u, s) in answers {
        match *s {
            StatusCode::CREATED => assert!(won.insert(ids[*u]), "user {u} answered 201 twice"),
            StatusCode::CONFLICT | StatusCode::GONE | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("unexpected {other}"),
        }
    }
    won
}

async fn holders(pool: &PgPool, drop_id: i64) -> (HashSet<i64>, i64) {
    let rows: Vec<i64> = sqlx::query_scalar("select user_id from coupons where campaign_id = $1")
        .bind(drop_id)
        .fetch_all(pool)
        .await
        .unwrap();
    let n = rows.len() as i64;
    (rows.into_iter().collect(), n)
}

async fn customers(app: &TestApp, n: usize, tag: &str) -> (Arc<Vec<String>>, Vec<i64>) {
    let tokens = app.bulk_customers(n, tag).await;
    let ids: Vec<i64> =
        sqlx::query_scalar("select user_id from users where email like $1 || '%' order by user_id")
            .bind(tag)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(ids.len(), n);
    (Arc::new(tokens), ids)
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
