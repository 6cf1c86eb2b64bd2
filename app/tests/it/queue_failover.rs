//! Admission leader failover: two replicas share one Redis prefix and database; the one
//! holding the queue's lease is crashed (its tasks aborted, so it never gives the lease up)
//! and the other takes admission over within the lease TTL. Both export the queue-wide gauges
//! while only one admits.

use std::time::{Duration, Instant};

use chrono::Utc;
use floodgate_app::{
    auth::UserId,
    config::Settings,
    queue::{QueueId, service},
    server,
    state::AppState,
};
use redis::AsyncCommands;
use serde_json::json;
use sqlx::PgPool;
use tokio::{sync::watch, task::JoinHandle};

use crate::MIGRATOR;

struct Replica {
    state: AppState,
    tasks: Vec<JoinHandle<()>>,
    _stop: watch::Sender<bool>,
}

fn replica(pool: &PgPool, prefix: &str, name: &str) -> Replica {
    let mut settings = Settings::defaults();
    settings.redis_prefix = prefix.to_owned();
    settings.replica_id = Some(name.to_owned());
    let state = server::build_state(settings, pool.clone()).unwrap();
    let (stop, rx) = watch::channel(false);
    let tasks = server::spawn_background(&state, rx);
    Replica {
        state,
        tasks,
        _stop: stop,
    }
}

async fn admitted(state: &AppState) -> u64 {
    let mut conn = state.redis.raw_conn();
    conn.zcard(state.redis.key("{q:fo}:active")).await.unwrap()
}

async fn holder(state: &AppState) -> Option<String> {
    let mut conn = state.redis.raw_conn();
    conn.get(state.redis.key("{q:fo}:lease")).await.unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admission_continues_when_the_lease_holder_crashes(pool: PgPool) {
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let a = replica(&pool, &prefix, "replica-a");
    let b = replica(&pool, &prefix, "replica-b");
    let doc = json!({"version": 1, "queues": {"fo": {"maxActiveUsers": 10000, "admitPerMinute": 600, "sessionTtl": "5m"}}});
    let mut conn = a.state.redis.raw_conn();
    let _: () = conn
        .set(a.state.redis.key("config"), doc.to_string())
        .await
        .unwrap();
    let _: () = conn
        .publish(a.state.redis.key("config:changed"), 1)
        .await
        .unwrap();
    let started = Instant::now();
    while a.state.runtime.get().version != 1 || b.state.runtime.get().version != 1 {
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let q = QueueId::parse("fo").unwrap();
    for i in 0..400 {
        service::join(&a.state, &q, UserId(1_000 + i), Utc::now())
            .await
            .unwrap();
    }
    // admission runs at 10/s under one holder
    let started = Instant::now();
    while admitted(&a.state).await < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "admission did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = holder(&a.state).await.expect("someone holds the lease");
    let (dead, survivor) = if leader.starts_with("replica-a:") {
        (a, b)
    } else {
        (b, a)
    };
    // the follower exports the queue-wide gauges too (the operator takes the max over pods)
    let text = survivor.state.metrics.encode();
    assert!(
        text.contains("floodgate_queue_waiting{queue=\"fo\"}"),
        "{text}"
    );
    assert!(
        !text.contains("floodgate_queue_admitted_total{queue=\"fo\"}"),
        "the follower admitted nobody: {text}"
    );

    // crash the leader: its loop stops without releasing the lease
    for t in &dead.tasks {
        t.abort();
    }
    let crashed_at = Instant::now();
    let before = admitted(&survivor.state).await;
    loop {
        let h = holder(&survivor.state).await;
        if h.as_deref()
            .is_some_and(|h| !h.starts_with(leader.split(':').next().unwrap()))
        {
            break;
        }
        assert!(
            crashed_at.elapsed() < Duration::from_secs(5),
            "the lease was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = crashed_at.elapsed();
    while admitted(&survivor.state).await < before + 10 {
        assert!(
            crashed_at.elapsed() < Duration::from_secs(8),
            "admission did not continue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("lease taken over {takeover:?} after the crash; admission continued");
    assert!(
        takeover < Duration::from_secs(4),
        "failover took {takeover:?}"
    );
    // nobody was admitted twice and the line is consistent
    let waiting = service::view(&survivor.state, &q, Utc::now())
        .await
        .unwrap();
    assert_eq!(waiting.waiting + admitted(&survivor.state).await, 400);
    let text = survivor.state.metrics.encode();
    assert!(
        text.contains("floodgate_queue_admitted_total{queue=\"fo\"}"),
        "{text}"
    );
    drop(dead);
}
