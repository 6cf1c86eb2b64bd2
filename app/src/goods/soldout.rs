//! The sold-out gate: once an order finds goods out of stock, later orders for them are
//! answered from Redis without touching PostgreSQL, until stock comes back (a cancellation
//! or a seller's update clears the gate and bumps its generation so a racing "sold out"
//! cannot stick). The gate is only ever an optimisation: PostgreSQL's conditional stock
//! update decides every sale, so a lost or stale gate can cost a database trip, never an
//! oversell.
//!
//! Users who bought the goods pass the gate: a client retrying an order whose 201 it never
//! received (a lost connection, a deadline that fired during COMMIT) must get its stored
//! response replayed (PostgreSQL holds it under the Idempotency-Key), not a sold-out answer
//! for an order it actually has. So the gate is one Redis set that is both the flag and the
//! list of buyers: it is only ever written ([`mark`]) with every user holding an order for the
//! goods, read from PostgreSQL after the stock was seen at 0 (nobody can buy after that read
//! without a restock, which clears the gate). Whatever Redis loses — the key, its expiry, a
//! whole flush — the flag goes with its buyers, and the next order that reaches PostgreSQL
//! closes the gate again with the complete list. Whether the buyer's own batch answered,
//! timed out or lost its connection plays no part. Buyers are few (at most one per unit
//! sold), and refusals of everyone else stay one Redis round trip.

use std::{sync::LazyLock, time::Duration};

use redis::Script;
use sqlx::PgConnection;

use crate::{auth::UserId, goods::GoodsId, platform::redis::Redis, state::AppState};

static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("soldout.lua")));
/// How long a closed gate lasts before an order asks PostgreSQL again (which re-reads the
/// buyers: a bounded cost, at most one read per goods item and period).
const GATE_TTL: Duration = Duration::from_secs(60);

/// The gate of one goods item: its set (flag and buyers) and its generation, under the hash
/// tag `{so:<goods>}`.
struct GateKeys {
    gate: String,
    generation: String,
}

impl GateKeys {
    fn new(redis: &Redis, id: GoodsId) -> Self {
        Self {
            gate: redis.key(&format!("{{so:{}}}:out", id.0)),
            generation: redis.key(&format!("{{so:{}}}:gen", id.0)),
        }
    }
}

/// Every user with an order (paid or cancelled) for `goods`: the members of a closed gate.
/// Read in the transaction that found the stock at 0, so it includes that transaction's own
/// orders and every committed one. Served by `order_lines_goods_idx`.
pub async fn buyers(conn: &mut PgConnection, goods: GoodsId) -> Result<Vec<UserId>, sqlx::Error> {
    sqlx::query_scalar(
        "select distinct o.user_id from order_lines l join orders o using (order_id)
          where l.goods_id = $1",
    )
    .bind(goods)
    .fetch_all(conn)
    .await
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
        let GateKeys { gate, generation } = GateKeys::new(&state.redis, *id);
        // no set: open; a buyer reads as open too, so their retry goes on to its replay
        pipe.cmd("EVAL")
            .arg("if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return false end return '1'")
            .arg(1)
            .arg(gate)
            .arg(user.0)
            .get(generation);
    }
    let read = state.redis.run(async |conn| pipe.query_async(conn).await);
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

/// Closes the gate for `id` with `buyers` — which must be [`buyers`] read after the stock was
/// seen at 0 — unless stock came back since `seen` was read.
pub async fn mark(state: &AppState, seen: &Seen, id: GoodsId, buyers: &[UserId]) {
    let Some((_, generation)) = seen.generations.iter().find(|(g, _)| *g == id) else {
        return;
    };
    let keys = GateKeys::new(&state.redis, id);
    let mut invocation = MARK.prepare_invoke();
    invocation
        .key(keys.gate)
        .key(keys.generation)
        .arg(generation)
        .arg(GATE_TTL.as_millis() as u64);
    for b in buyers {
        invocation.arg(b.0);
    }
    let marked = state
        .redis
        .run(async |conn| invocation.invoke_async::<i64>(conn).await);
    // only an optimisation: while the gate is open, later orders ask PostgreSQL
    let _ = marked.await;
}

/// Stock may be back: drop the flags and bump their generations. Under the Redis breaker like
/// every gate call: while it is open the clear is skipped at once (the gate fails open then,
/// and a closed gate expires within [`GATE_TTL`]).
pub async fn clear(state: &AppState, ids: &[GoodsId]) {
    let mut pipe = redis::pipe();
    for id in ids {
        let GateKeys { gate, generation } = GateKeys::new(&state.redis, *id);
        pipe.del(gate)
            .ignore()
            .incr(&generation, 1)
            .ignore()
            .expire(generation, 86_400)
            .ignore();
    }
    let cleared = state
        .redis
        .run(async |conn| pipe.query_async::<()>(conn).await);
    if let Err(e) = cleared.await {
        tracing::warn!(error = %e, "could not clear the sold-out gate; it expires within a minute");
    }
}
