//! Redis-backed rate limits, so a limit holds across every replica.
//!
//! One fixed window per key, decided by one Lua script (INCR and expiry atomically). Login
//! and signup fail closed: if Redis cannot answer, the attempt is refused with 503 rather
//! than let unlimited password guessing through — at once while the Redis breaker is open.
//! (Reads have no limit here, so they keep working without Redis.)

use std::sync::LazyLock;

use redis::Script;

use crate::{
    error::ApiError,
    platform::{metrics::LimitLabels, redis::Redis},
    state::AppState,
};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rate_limit.lua")));

const WINDOW_MS: u64 = 60_000;

/// The counter of one limited key: `<prefix>{rl:<key>}`.
struct LimitKey(String);

impl LimitKey {
    fn new(redis: &Redis, key: &str) -> Self {
        Self(redis.key(&format!("{{rl:{key}}}")))
    }
}

/// Counts one attempt against `key` (already namespaced by the caller, e.g. `login:ip:1.2.3.4`)
/// and refuses it with 429 + `Retry-After` when more than `limit` fall in the window.
pub async fn check(
    state: &AppState,
    limit_name: &'static str,
    key: &str,
    limit: u32,
) -> Result<(), ApiError> {
    let mut script = SCRIPT.key(LimitKey::new(&state.redis, key).0);
    script.arg(WINDOW_MS);
    let (count, ttl_ms): (u64, i64) = state
        .redis
        .run(async |conn| script.invoke_async(conn).await)
        .await?;
    if count > u64::from(limit) {
        state
            .metrics
            .rate_limited
            .get_or_create(&LimitLabels { limit: limit_name })
            .inc();
        let retry = u64::try_from(ttl_ms).unwrap_or(0).div_ceil(1000).max(1);
        return Err(ApiError::too_many_requests(
            retry,
            format!("too many {limit_name} attempts; retry in {retry} s"),
        ));
    }
    Ok(())
}
