//! Helpers of app/tests/it/redis_cluster.rs: the cluster's URL (a missing cluster fails),
//! replicas on it, its topology through redis-cli, the app's script files, and a coupon
//! drop across replicas with the checks its tests share.

use std::{collections::HashSet, sync::Arc, time::Duration};

use floodgate_crds::redis_conn::{RedisMode, key_slot};
use reqwest::StatusCode;
use sqlx::PgPool;

use crate::{
    common::TestApp,
    faults::{CouponDrop, eventually},
};

/// The cluster's seed nodes; the test fails (never skips) without a cluster.
pub fn cluster_url() -> String {
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
pub async fn replicas(pool: &PgPool, n: usize) -> Vec<TestApp> {
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

pub fn cli(node: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", node])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `host:port` of the primary serving `key`'s slot, as a node of the cluster sees it (none
/// while that primary has failed and no replica has taken over yet).
pub fn primary_of(seed: &str, key: &str) -> Option<String> {
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
pub struct RestartNodes;

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
pub fn app_scripts() -> Vec<(String, String)> {
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

/// Runs a 3-replica drop of `cap` coupons for `n` users until it is sold out or `during`
/// has done its part, and returns every (user, status) answered.
pub async fn drop_across(
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
pub fn winners(answers: &[(usize, StatusCode)], ids: &[i64]) -> HashSet<i64> {
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

pub async fn holders(pool: &PgPool, drop_id: i64) -> (HashSet<i64>, i64) {
    let rows: Vec<i64> = sqlx::query_scalar("select user_id from coupons where campaign_id = $1")
        .bind(drop_id)
        .fetch_all(pool)
        .await
        .unwrap();
    let n = rows.len() as i64;
    (rows.into_iter().collect(), n)
}

pub async fn customers(app: &TestApp, n: usize, tag: &str) -> (Arc<Vec<String>>, Vec<i64>) {
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
