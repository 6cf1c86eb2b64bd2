//! The sold-out gate: once an order finds goods out of stock, later orders for them are
//! answered from Redis without touching PostgreSQL, until stock comes back (a cancellation
//! or a seller's update clears the flag and bumps its generation so a racing "sold out"
//! cannot stick). The flag is only ever an optimisation: PostgreSQL's conditional stock
//! update decides every sale, so a lost or stale flag can cost a retry, never an oversell.
//!
//! Users who already bought the goods pass the gate: a client retrying an order whose 201 it
//! never received must get its stored response replayed (PostgreSQL holds it under the
//! Idempotency-Key), not a sold-out answer for an order it actually has. They are few — at
//! most one per unit sold — so sold-out answers for everyone else stay in Redis.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{auth::UserId, goods::GoodsId, state::AppState};

static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("soldout.lua")));
const FLAG_TTL: Duration = Duration::from_secs(60);
/// How long a buyer is remembered: the Idempotency-Key retention.
const BUYERS_TTL_SECS: i64 = 86_400;

fn keys(state: &AppState, id: GoodsId) -> (String, String) {
    (
        state.redis.key(&format!("{{so:{}}}:flag", id.0)),
        state.redis.key(&format!("{{so:{}}}:gen", id.0)),
    )
}

fn buyers_key(state: &AppState, id: GoodsId) -> String {
    state.redis.key(&format!("{{so:{}}}:buyers", id.0))
}

/// Remembers that `users` bought `goods` (after the commit), so their retries pass the gate.
/// Best effort: without it a retry after sell-out gets 409 instead of its replay.
pub async fn bought(state: &AppState, goods: GoodsId, users: &[UserId]) {
    if users.is_empty() {
        return;
    }
    let key = buyers_key(state, goods);
    let mut pipe = redis::pipe();
    pipe.sadd(&key, users.iter().map(|u| u.0).collect::<Vec<_>>())
        .ignore()
        .expire(&key, BUYERS_TTL_SECS)
        .ignore();
    let mut conn = state.redis.conn();
    let written = state
        .breakers
        .redis
        .run(async { Ok(pipe.query_async::<()>(&mut conn).await?) })
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, goods = goods.0, "could not record buyers for the sold-out gate");
    }
}

/// What the gate knew before an attempt: which goods are flagged, and the generations seen.
#[derive(Clone)]
pub struct Seen {
    pub sold_out: Option<GoodsId>,
    generations: Vec<(GoodsId, String)>,
}

/// One pipelined read for all goods of an order, under the Redis breaker. Redis errors and
/// an open breaker mean "no flag" (fail open at once: PostgreSQL still decides).
pub async fn check(state: &AppState, user: UserId, ids: &[GoodsId]) -> Seen {
    let mut pipe = redis::pipe();
    for id in ids {
        let (flag, generation) = keys(state, *id);
        // a buyer reads as "no flag": their retry goes on to its replay
        pipe.cmd("EVAL")
            .arg("if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return false end return redis.call('GET', KEYS[1])")
            .arg(2)
            .arg(flag)
            .arg(buyers_key(state, *id))
            .arg(user.0)
            .get(generation);
    }
    let mut conn = state.redis.conn();
    let read = state
        .breakers
        .redis
        .run(async { Ok(pipe.query_async(&mut conn).await?) });
    let values: Vec<Option<String>> = match read.await {
        Ok(v) => v,
        Err(_) => {
            return Seen {
                sold_out: None,
                generations: Vec::new(),
            };
        }
    };
    let mut sold_out = None;
    let mut generations = Vec::with_capacity(ids.len());
    for (id, pair) in ids.iter().zip(values.chunks(2)) {
        if pair[0].is_some() && sold_out.is_none() {
            sold_out = Some(*id);
        }
        generations.push((*id, pair.get(1).cloned().flatten().unwrap_or_default()));
    }
    Seen {
        sold_out,
        generations,
    }
}

pub async fn mark(state: &AppState, seen: &Seen, id: GoodsId) {
    let Some((_, generation)) = seen.generations.iter().find(|(g, _)| *g == id) else {
        return;
    };
    let (flag, gen_key) = keys(state, id);
    let mut conn = state.redis.conn();
    let marked = state.breakers.redis.run(async {
        Ok(MARK
            .key(flag)
            .key(gen_key)
            .arg(generation)
            .arg(FLAG_TTL.as_millis() as u64)
            .invoke_async::<i64>(&mut conn)
            .await?)
    });
    // only an optimisation: without the flag, later orders ask PostgreSQL
    let _ = marked.await;
}

/// Stock may be back: drop the flags and bump their generations.
pub async fn clear(state: &AppState, ids: &[GoodsId]) {
    let mut pipe = redis::pipe();
    for id in ids {
        let (flag, generation) = keys(state, *id);
        pipe.del(flag)
            .ignore()
            .incr(&generation, 1)
            .ignore()
            .expire(generation, 86_400)
            .ignore();
    }
    let mut conn = state.redis.conn();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        tracing::warn!(error = %e, "could not clear sold-out flags; they expire within a minute");
    }
}
