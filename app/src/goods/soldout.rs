//! The sold-out gate: once an order finds goods out of stock, later orders for them are
//! answered from Redis without touching PostgreSQL, until stock comes back (a cancellation
//! or a seller's update clears the gate and bumps its generation so a racing "sold out"
//! cannot stick). The gate is only ever an optimisation: PostgreSQL's conditional stock
//! update decides every sale, so a lost or stale gate can cost a database trip, never an
//! oversell.
//!
//! Keyed retries of orders that exist pass the gate: a client retrying an order whose 201 it
//! never received (a lost connection, a deadline that fired during COMMIT) must get its stored
//! response replayed (PostgreSQL holds it under the Idempotency-Key), not a sold-out answer
//! for an order it actually has. So the gate is one Redis set that is both the flag and the
//! list of (buyer, Idempotency-Key) pairs of the goods' orders ([`Member`]): it is only ever
//! written ([`mark`]) with every such pair, read from PostgreSQL after the stock was seen at
//! 0 (nobody can buy after that read without a restock, which clears the gate). Whatever
//! Redis loses — the key, its expiry, a whole flush — the flag goes with its members, and the
//! next order that reaches PostgreSQL closes the gate again with the complete list. Whether
//! the buyer's own batch answered, timed out or lost its connection plays no part.
//!
//! Only the exact retry passes: a buyer's new order (another key, or none) is refused from
//! Redis like anyone else's, one round trip, no PostgreSQL work (#18: the 200 buyers of the
//! flash-sale bench kept ordering with new keys, and each refusal cost an idempotency claim
//! in a group-commit batch). An order without a key cannot be replayed, so it has no member.

use std::{sync::LazyLock, time::Duration};

use redis::Script;
use sqlx::PgConnection;

use crate::{
    auth::UserId, goods::GoodsId, idempotency::IdempotencyKey, platform::redis::Redis,
    state::AppState,
};

static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("soldout.lua")));
/// How long a closed gate lasts before an order asks PostgreSQL again (which re-reads the
/// members: a bounded cost, at most one read per goods item and period).
const GATE_TTL: Duration = Duration::from_secs(60);

/// The gate of one goods item: its set (flag and members) and its generation, under the hash
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

/// Who passes a closed gate: the Idempotency-Key of an order and its buyer, as one set
/// member (`<user>:<key>`; the user id has no `:`, so the pair reads back unambiguously).
pub struct Member(String);

impl Member {
    pub fn new(user: UserId, key: &IdempotencyKey) -> Self {
        Self::pair(user, key.as_str())
    }

    fn pair(user: UserId, key: &str) -> Self {
        Self(format!("{}:{key}", user.0))
    }
}

/// Every keyed order (paid or cancelled) for `goods`, as gate members. Read in the transaction
/// that found the stock at 0, so it includes that transaction's own orders and every committed
/// one. Served by `order_lines_goods_idx` and the orders' primary key.
pub async fn members(conn: &mut PgConnection, goods: GoodsId) -> Result<Vec<Member>, sqlx::Error> {
    let pairs: Vec<(UserId, String)> = sqlx::query_as(
        "select o.user_id, o.idempotency_key from order_lines l join orders o using (order_id)
          where l.goods_id = $1 and o.idempotency_key is not null",
    )
    .bind(goods)
    .fetch_all(conn)
    .await?;
    Ok(pairs
        .into_iter()
        .map(|(u, k)| Member::pair(u, &k))
        .collect())
}

/// What the gate knew before an attempt: which goods are flagged, and the generations seen.
#[derive(Clone)]
pub struct Seen {
    pub sold_out: Option<GoodsId>,
    generations: Vec<(GoodsId, String)>,
}

/// One pipelined read for all goods of an order by `user` under `key`, under the Redis
/// breaker. Redis errors and an open breaker mean "no flag" (fail open at once: PostgreSQL
/// still decides).
pub async fn check(
    state: &AppState,
    user: UserId,
    key: Option<&IdempotencyKey>,
    ids: &[GoodsId],
) -> Seen {
    // without a key there is nothing to replay: "" is never a member
    let member = key.map_or_else(String::new, |k| Member::new(user, k).0);
    let mut pipe = redis::pipe();
    for id in ids {
        let GateKeys { gate, generation } = GateKeys::new(&state.redis, *id);
        // no set: open; a keyed retry of an order of the goods reads as open too, so it goes
        // on to its replay
        pipe.cmd("EVAL")
            .arg("if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return false end return '1'")
            .arg(1)
            .arg(gate)
            .arg(&member)
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

/// Closes the gate for `id` with `members` — which must be [`members`] read after the stock
/// was seen at 0 — unless stock came back since `seen` was read.
pub async fn mark(state: &AppState, seen: &Seen, id: GoodsId, members: &[Member]) {
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
    for m in members {
        invocation.arg(&m.0);
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
