//! The sold-out gate: once an order finds goods out of stock, later orders for them are
//! answered from Redis without touching PostgreSQL, until stock comes back (a cancellation
//! or a seller's update clears the flag and bumps its generation so a racing "sold out"
//! cannot stick). The flag is only ever an optimisation: PostgreSQL's conditional stock
//! update decides every sale, so a lost or stale flag can cost a retry, never an oversell.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{goods::GoodsId, state::AppState};

static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("soldout.lua")));
const FLAG_TTL: Duration = Duration::from_secs(60);

fn keys(state: &AppState, id: GoodsId) -> (String, String) {
    (
        state.redis.key(&format!("{{so:{}}}:flag", id.0)),
        state.redis.key(&format!("{{so:{}}}:gen", id.0)),
    )
}

/// What the gate knew before an attempt: which goods are flagged, and the generations seen.
#[derive(Clone)]
pub struct Seen {
    pub sold_out: Option<GoodsId>,
    generations: Vec<(GoodsId, String)>,
}

/// One pipelined read for all goods of an order, under the Redis breaker. Redis errors and
/// an open breaker mean "no flag" (fail open at once: PostgreSQL still decides).
pub async fn check(state: &AppState, ids: &[GoodsId]) -> Seen {
    let mut pipe = redis::pipe();
    for id in ids {
        let (flag, generation) = keys(state, *id);
        pipe.get(flag).get(generation);
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
