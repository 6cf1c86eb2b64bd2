//! Waiting-room memory: 200,000 joins against a Redis of its own started with a low
//! `maxmemory` (and `noeviction`, so nothing is silently dropped to make room). Every join
//! must succeed (the source report's service failed with 500s at ~500 stored tokens), every
//! place must be kept, and Redis memory per waiting user is measured from `used_memory`
//! before and after (target: ≤ 100 bytes, PERFORMANCE.md P4).
//!
//! Joins go through `queue::service::join`, the function the HTTP handler calls, in process:
//! 200,000 HTTP round trips would measure the test client, not the layout.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::Utc;
use floodgate_app::{
    auth::UserId,
    config::Settings,
    platform::runtime_config::{PollOutcome, Reader},
    queue::{QueueId, service, types::PlaceStatus},
    server,
};
use futures::{StreamExt, stream};

const JOINS: i64 = 200_000;
const MAXMEMORY: &str = "16mb";

/// A private redis-server on a free port, killed on drop.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    /// Starts redis-server on a free port. If another process took the port between the
    /// probe and the bind, redis-server exits at once and we try another port, so the test
    /// can never end up talking to somebody else's Redis.
    fn start() -> Self {
        for _ in 0..10 {
            let port = crate::faults::procs::free_port();
            let mut child = Command::new("redis-server")
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
                .args(["--maxmemory", MAXMEMORY, "--maxmemory-policy", "noeviction"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/services.sh installs it)");
            std::thread::sleep(Duration::from_millis(300));
            if child.try_wait().unwrap().is_none() {
                return Self { child, port };
            }
        }
        panic!("could not start a private redis-server");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_joins_fit_in_a_small_redis() {
    let redis = OwnRedis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let client = redis::Client::open(url.as_str()).unwrap();
    let started = Instant::now();
    let mut conn = loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("own redis-server did not start: {e}"),
        }
    };
    let mut settings = Settings::defaults();
    settings.redis_url = url.clone().into();
    settings.redis_prefix = "fgm:".into();
    // joining never touches PostgreSQL; the pool is never connected
    let pool = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1:1/unused").unwrap();
    let state = server::build_state(settings, pool).unwrap();
    let q = QueueId::parse("concert-42").unwrap();
    // the queue is configured (only configured or referenced queues can be joined), read the
    // way the app's config reader does
    let _: () = redis::cmd("SET")
        .arg("fgm:config")
        .arg(r#"{"version": 1, "queues": {"concert-42": {}}}"#)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut reader = Reader::new(
        state.runtime.clone(),
        state.redis.clone(),
        state.metrics.clone(),
        "memory-test".into(),
    );
    assert_eq!(reader.poll_once().await.unwrap(), PollOutcome::Applied(1));

    // the first join loads the scripts and creates the queue's fixed keys
    service::join(&state, &q, UserId(1), Utc::now())
        .await
        .unwrap();
    let before = used_memory(&mut conn).await;
    let started = Instant::now();
    let results = stream::iter(2..=JOINS + 1)
        .map(|i| {
            let (state, q) = (state.clone(), q.clone());
            async move {
                service::join(&state, &q, UserId(i), Utc::now())
                    .await
                    .map(|r| (i, r.position))
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    // joins run 256 at a time, so places are handed out in completion order, not id order:
    // what must hold is that every joiner got a place of its own
    let mut places: Vec<(i64, u64)> = results.into_iter().filter_map(Result::ok).collect();
    let last_user_place = places
        .iter()
        .find(|(u, _)| *u == JOINS + 1)
        .map(|(_, p)| *p);
    places.sort_unstable_by_key(|(_, p)| *p);
    assert!(
        places
            .iter()
            .enumerate()
            .all(|(k, (_, p))| *p == k as u64 + 2),
        "places are not exactly 2..={}",
        JOINS + 1
    );
    assert!(
        failures.is_empty(),
        "{} joins failed, first: {}",
        failures.len(),
        failures[0]
    );
    let after = used_memory(&mut conn).await;
    let per_user = (after - before) as f64 / JOINS as f64;
    eprintln!(
        "{JOINS} joins in {elapsed:?} ({:.0}/s); used_memory {before} -> {after}: {per_user:.1} bytes per waiting user (maxmemory {MAXMEMORY})",
        JOINS as f64 / elapsed.as_secs_f64()
    );
    assert!(
        per_user <= 100.0,
        "{per_user:.1} bytes per waiting user exceeds the 100-byte target"
    );

    // every place was kept: the count, and a joiner's place is still theirs
    let view = service::view(&state, &q, Utc::now()).await.unwrap();
    let diag: (Option<i64>, i64, std::collections::HashMap<String, String>) = redis::pipe()
        .get("fgm:{q:concert-42}:seq")
        .llen("fgm:{q:concert-42}:line")
        .hgetall("fgm:{q:concert-42}:stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        view.waiting,
        JOINS as u64 + 1,
        "seq, line length, stats: {diag:?}"
    );
    let again = service::join(&state, &q, UserId(JOINS + 1), Utc::now())
        .await
        .unwrap();
    assert_eq!(again.status, PlaceStatus::Waiting);
    assert_eq!(
        Some(again.position),
        last_user_place,
        "joining again gives the same place"
    );
    let place = service::me(&state, &q, &again.token, Utc::now())
        .await
        .unwrap();
    assert_eq!(place.ahead, Some(again.position - 1));
    // a Redis that is really full refuses politely: 503 with Retry-After, never a 500
    let used = used_memory(&mut conn).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used / 2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = service::join(&state, &q, UserId(JOINS + 10), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(
        e.status(),
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "{e}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(MAXMEMORY)
        .query_async(&mut conn)
        .await
        .unwrap();
    // and everything per user expires
    let ttl: i64 = redis::cmd("TTL")
        .arg("fgm:{q:concert-42}:u:0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "entry buckets expire");
    let ttl: i64 = redis::cmd("TTL")
        .arg("fgm:{q:concert-42}:line")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "the line expires");
}
