//! One waiting room served by three real `floodgate-app serve` processes behind a real nginx
//! (issue 14), with the replica that runs the queue's admission loop SIGKILLed midway: its
//! lease (`{q:<id>}:lease`, queue/lease.rs) is never given up, so another replica must take it
//! over once it lapses. An independent monitor samples the active sessions in Redis every
//! 10 ms; the crowd goes through nginx only. The harness is app/tests/it/support/replicas.rs, the
//! crowd's client app/tests/it/support/waiting_room.rs.

use crate::support::replicas;
use crate::support::shop;
use crate::support::waiting_room;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use floodgate_app::auth::Role;
use futures::{StreamExt, future::join_all, stream};
use redis::AsyncCommands;
use replicas::Replicas;
use reqwest::StatusCode;
use serde_json::json;
use shop::{fund_wallets, post, redis_url, users};
use sqlx::PgPool;
use waiting_room::{Admission, CAP, QUEUE, concert, configure, lease_holder, one_user, replica_of};

use crate::MIGRATOR;

/// 400 users through `maxActiveUsers: 40` served by three replica processes behind nginx.
/// When half have paid, the replica holding the queue's admission lease is SIGKILLed (not
/// restarted). Another replica takes the lease over and admissions go on; never above the cap
/// (sampled every 10 ms, and the cap was reached); everyone admitted and paid; admitted in
/// join order (session expiries, set at admission, never decrease with the places the joins
/// gave); in PostgreSQL every seat sold once and wallets equal their ledgers.
#[sqlx::test(migrator = "MIGRATOR")]
async fn one_waiting_room_across_three_processes_survives_its_admitter_sigkilled(pool: PgPool) {
    const N: usize = 400;
    let mut set = Replicas::start(&pool, 3, &redis_url(), &[]).await;
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let admin = users(
        &pool,
        &set.prefix,
        1,
        "admin",
        &[Role::Customer, Role::Admin],
    )
    .await;
    configure(&set, &mut redis, &admin[0].1).await;
    let (schedule, seats) = concert(&set, &pool, &admin[0].1, N).await;
    let people = users(&pool, &set.prefix, N, "crowd", &[Role::Customer]).await;
    fund_wallets(&set.base(), &people, 5_000).await;

    // the independent monitor: live sessions (expiry after now) in Redis, every 10 ms
    let (max_seen, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let monitor = {
        let (max_seen, done, mut redis) = (max_seen.clone(), done.clone(), redis.clone());
        let key = format!("{}{{q:{QUEUE}}}:active", set.prefix);
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let now = chrono::Utc::now().timestamp_millis();
                let n: u64 = redis.zcount(&key, format!("({now}"), "+inf").await.unwrap();
                max_seen.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(N)
        .build()
        .unwrap();
    let join_url = set.url(&format!("/api/v1/queues/{QUEUE}/tokens"));
    let joined: Vec<(String, u64)> = stream::iter(&people)
        .map(|(_, bearer)| {
            let (http, url) = (&http, &join_url);
            async move {
                let (status, body) = post(http, url, bearer, json!({}), None).await.unwrap();
                assert_eq!(status, StatusCode::CREATED, "{body}");
                (
                    body["token"].as_str().unwrap().to_owned(),
                    body["position"].as_u64().unwrap(),
                )
            }
        })
        .buffered(64)
        .collect()
        .await;
    let started = Instant::now();
    let paid = Arc::new(AtomicU64::new(0));
    let crowd: Vec<_> = people
        .iter()
        .zip(joined)
        .zip(&seats)
        .map(|((person, place), seat)| {
            let (http, base, pool, paid) = (http.clone(), set.base(), pool.clone(), paid.clone());
            let person = person.clone();
            let seat = (schedule, *seat);
            tokio::spawn(async move {
                let a = one_user(http, base, pool, person, place, seat).await;
                paid.fetch_add(1, Ordering::Relaxed);
                a
            })
        })
        .collect();

    while paid.load(Ordering::Relaxed) < N as u64 / 2 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "half the crowd did not pay"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let holder = lease_holder(&mut redis, &set.prefix)
        .await
        .expect("a replica admits");
    let victim = replica_of(&holder);
    set.replica(victim).kill9();
    let killed_at = Instant::now();
    let paid_at_kill = paid.load(Ordering::Relaxed);
    let taker = loop {
        match lease_holder(&mut redis, &set.prefix).await {
            Some(h) if h != holder => break h,
            _ => {}
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "nobody took the lease of {holder} over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let takeover = killed_at.elapsed();
    let paid_at_takeover = paid.load(Ordering::Relaxed);
    let mut admitted: Vec<Admission> = join_all(crowd)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    done.store(true, Ordering::Relaxed);
    monitor.await.unwrap();

    let max = max_seen.load(Ordering::Relaxed);
    let retried: usize = admitted.iter().map(|a| a.retried).sum();
    let stuck: Vec<Duration> = admitted.iter().filter_map(|a| a.in_flight).collect();
    eprintln!(
        "{N} users through cap {CAP} on 3 processes in {:?}; SIGKILLed replica {victim} \
         (the admitter) at {paid_at_kill} paid; {taker} took the lease over {takeover:?} later \
         ({paid_at_takeover} paid by then); max {max} active; {retried} answers retried; \
         payments cut off by the kill, then 409 in flight until their claim lapsed: {stuck:?}",
        started.elapsed()
    );
    assert!(max <= CAP, "{max} sessions at once, cap {CAP}");
    assert_eq!(max, CAP, "the cap was reached, so it held the crowd back");
    assert_ne!(replica_of(&taker), victim);
    assert!(paid_at_kill < N as u64, "the kill came after the crowd");
    assert_eq!(admitted.len(), N, "everyone admitted and paid");
    admitted.sort_by_key(|a| a.position);
    let places: HashSet<u64> = admitted.iter().map(|a| a.position).collect();
    assert_eq!(places.len(), N, "distinct places");
    for pair in admitted.windows(2) {
        assert!(
            pair[0].session_expires_at <= pair[1].session_expires_at,
            "place {} admitted after place {}: {pair:?}",
            pair[0].position,
            pair[1].position
        );
    }
    assert_seats_and_money(&pool, schedule, N).await;
}

/// Every seat of the schedule sold once, each to one payment; every wallet equals its ledger
/// and paid exactly one seat (5,000 - 1,000).
async fn assert_seats_and_money(pool: &PgPool, schedule: i64, n: usize) {
    let (sold, confirmed, payments): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from seats where schedule_id = $1 and sold_to is not null),
                (select count(distinct seat_id) from reservations where schedule_id = $1 and status = 'confirmed'),
                (select count(*) from seat_payments p join reservations r using (reservation_id) where r.schedule_id = $1)",
    )
    .bind(schedule)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (sold, confirmed, payments),
        (n as i64, n as i64, n as i64),
        "sold, confirmed, paid"
    );
    crate::common::assert_wallets_match_ledgers(pool).await;
    let paid_once: i64 = sqlx::query_scalar("select count(*) from wallets where balance = 4000")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(paid_once, n as i64, "every buyer paid exactly one seat");
}
