//! The waiting room's Redis layout and the scripts that change it.
//!
//! Per queue, under the hash tag `{q:<id>}` (one cluster slot):
//! - `seq` counter of places handed out, `head` the last place taken off the line;
//! - `line` list of user ids in place order (place = head + index + 1): ~10 B per user;
//! - `u:<user/128>` hashes, field `user%128` → `"<place>:<last poll, unix s>"`: the compact
//!   per-user entry, kept in listpack encoding (a few dozen bytes per user);
//! - `n` waiting count, `active` sorted set user → session expiry (ms, at most
//!   `maxActiveUsers` members), `stats` hash (admitted, abandoned, measured rate),
//!   `pre` last pre-queue place, `shuffled` flag, `lease`.
//!
//! Everything per user expires: entries with their bucket a place-ttl after the last write,
//! the line and counters a place-ttl after the last join, sessions at their expiry, and the
//! queue's entry in the registry of joined queues ([`REGISTRY`]) once nobody can still need it.

use std::sync::LazyLock;

use redis::Script;

use super::rules;
use crate::{
    auth::UserId,
    error::ApiError,
    platform::{batch::Batcher, redis::Redis},
};

static JOIN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("join.lua")));
static POLL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("poll.lua")));
static LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("leave.lua")));
static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admit.lua")));
static SHUFFLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("shuffle.lua")));

/// Sorted set queue id → expiry (unix ms) of the queues that were joined, so every replica's
/// loop knows them (see [`super::registry`]).
pub const REGISTRY: &str = "queues:live";
/// The set earlier releases kept (it never shrank); dropped when a loop starts.
const LEGACY_REGISTRY: &str = "queues";
/// Registered queues one discovery reads at most.
const MAX_REGISTERED: i64 = 10_000;
/// Places examined per admission tick at most, so a long run of abandoned places is cleared
/// over a few ticks without blocking Redis.
const MAX_SCAN: u64 = 5_000;

/// The keys of one queue, all under its hash tag: the one home of the `{q:<id>}` format.
pub struct QueueKeys {
    /// `<prefix>{q:<id>}`
    tag: String,
}

impl QueueKeys {
    pub fn new(redis: &Redis, queue: &str) -> Self {
        Self {
            tag: redis.key(&tag(queue)),
        }
    }

    /// The queue's own entry (`<prefix>{q:<id>}`), which names it in this process's memory.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn k(&self, rest: &str) -> String {
        format!("{}:{rest}", self.tag)
    }

    pub fn bucket_prefix(&self) -> String {
        self.k("u:")
    }

    pub fn bucket(&self, user: UserId) -> (String, String) {
        let (b, f) = rules::bucket_of(user.0);
        (format!("{}{b}", self.bucket_prefix()), f.to_string())
    }
}

/// The hash tag of `queue`, below the prefix.
fn tag(queue: &str) -> String {
    format!("{{q:{queue}}}")
}

/// The key of `queue`'s admission lease, below the prefix (for `super::lease::Lease::new`).
pub fn lease_key(queue: &str) -> String {
    format!("{}:lease", tag(queue))
}

pub enum JoinOutcome {
    Waiting { position: u64 },
    Admitted { session_expires_ms: i64 },
    Closed,
}

pub struct JoinArgs {
    pub now_ms: i64,
    pub place_ttl_secs: u64,
    pub pre_queue: bool,
    pub closed: bool,
    pub abandon_secs: u64,
}

/// Returns the outcome and whether a stale abandoned place was dropped on the way.
pub async fn join(
    redis: &Redis,
    keys: &QueueKeys,
    user: UserId,
    a: &JoinArgs,
) -> Result<(JoinOutcome, bool), ApiError> {
    let (bucket, field) = keys.bucket(user);
    let mut script = JOIN.key(keys.k("seq"));
    script
        .key(keys.k("head"))
        .key(keys.k("line"))
        .key(keys.k("n"))
        .key(keys.k("active"))
        .key(bucket)
        .key(keys.k("pre"))
        .key(keys.k("stats"))
        .arg(user.0)
        .arg(field)
        .arg(a.now_ms)
        .arg(a.place_ttl_secs.max(1))
        .arg(if a.pre_queue { "1" } else { "0" })
        .arg(if a.closed { "1" } else { "0" })
        .arg(a.abandon_secs);
    let (code, value, dropped): (i64, i64, i64) =
        redis.run(async |c| script.invoke_async(c).await).await?;
    let outcome = match code {
        2 => JoinOutcome::Admitted {
            session_expires_ms: value,
        },
        1 => JoinOutcome::Waiting {
            position: u64::try_from(value).unwrap_or(0),
        },
        _ => JoinOutcome::Closed,
    };
    Ok((outcome, dropped == 1))
}

/// Registers `queue` until `until_ms` (never shortening an entry): see [`super::registry`].
pub async fn register(redis: &Redis, queue: &str, until_ms: i64) -> Result<(), ApiError> {
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(redis.key(REGISTRY))
        .arg("GT")
        .arg(until_ms)
        .arg(queue);
    redis
        .run(async |c| zadd.query_async::<i64>(c).await)
        .await?;
    Ok(())
}

/// The registered queues whose entries have not expired (at most [`MAX_REGISTERED`]); drops
/// the expired ones on the way.
pub async fn registered(redis: &Redis, now_ms: i64) -> Result<Vec<String>, ApiError> {
    let key = redis.key(REGISTRY);
    let mut pipe = redis::pipe();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(now_ms)
        .ignore()
        .cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(MAX_REGISTERED - 1);
    let (live,): (Vec<String>,) = redis.run(async |c| pipe.query_async(c).await).await?;
    Ok(live)
}

/// The registry of releases before expiring entries (a set that only grew); removed once.
pub async fn drop_legacy_registry(redis: &Redis) {
    let mut unlink = redis::cmd("UNLINK");
    unlink.arg(redis.key(LEGACY_REGISTRY));
    let dropped = redis.run(async |c| unlink.query_async::<i64>(c).await);
    if let Err(e) = dropped.await {
        tracing::debug!(error = %e, "could not drop the legacy queue registry");
    }
}

pub enum Place {
    Admitted {
        session_expires_ms: i64,
    },
    Waiting {
        position: u64,
        ahead: u64,
    },
    /// No place; `dropped` when this poll found it abandoned.
    Gone {
        dropped: bool,
    },
}

/// A poll: the user's place, plus the measured admission rate (per second).
pub async fn poll(
    redis: &Redis,
    keys: &QueueKeys,
    user: UserId,
    now_ms: i64,
    abandon_secs: u64,
    place_ttl_secs: u64,
) -> Result<(Place, f64), ApiError> {
    let (bucket, field) = keys.bucket(user);
    // polls are the waiting room's hottest command: batched with the concurrent ones
    let poll = async |batch: &Batcher| {
        batch
            .eval(&POLL, |cmd| {
                cmd.arg(5)
                    .arg(keys.k("active"))
                    .arg(&bucket)
                    .arg(keys.k("head"))
                    .arg(keys.k("n"))
                    .arg(keys.k("stats"))
                    .arg(user.0)
                    .arg(&field)
                    .arg(now_ms)
                    .arg(abandon_secs)
                    .arg(place_ttl_secs.max(1));
            })
            .await
    };
    let (code, a, b, rate): (i64, i64, i64, String) = redis.batched(poll).await?;
    let rate = rate.parse::<f64>().unwrap_or(0.0);
    let place = match code {
        2 => Place::Admitted {
            session_expires_ms: a,
        },
        1 => {
            let position = u64::try_from(a).unwrap_or(0);
            let head = u64::try_from(b).unwrap_or(0);
            Place::Waiting {
                position,
                ahead: position.saturating_sub(head).saturating_sub(1),
            }
        }
        _ => Place::Gone { dropped: a == 1 },
    };
    Ok((place, rate))
}

/// The session expiry (ms) of an admitted user, if the session is live.
pub async fn session(
    redis: &Redis,
    keys: &QueueKeys,
    user: UserId,
    now_ms: i64,
) -> Result<Option<i64>, ApiError> {
    let mut zscore = redis::cmd("ZSCORE");
    zscore.arg(keys.k("active")).arg(user.0);
    let score: Option<f64> = redis.run(async |c| zscore.query_async(c).await).await?;
    Ok(score.map(|s| s as i64).filter(|&s| s > now_ms))
}

pub async fn leave(redis: &Redis, keys: &QueueKeys, user: UserId) -> Result<bool, ApiError> {
    let (bucket, field) = keys.bucket(user);
    let mut script = LEAVE.key(keys.k("active"));
    script.key(bucket).key(keys.k("n")).arg(user.0).arg(field);
    let removed: i64 = redis.run(async |c| script.invoke_async(c).await).await?;
    Ok(removed == 1)
}

pub struct AdmitArgs {
    pub now_ms: i64,
    pub budget: u64,
    pub max_active: u32,
    pub session_ms: u64,
    pub abandon_secs: u64,
    pub measured_rate: f64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub admitted: u64,
    pub abandoned: u64,
    pub active: u64,
    pub waiting: u64,
}

pub async fn admit(redis: &Redis, keys: &QueueKeys, a: &AdmitArgs) -> Result<Counts, ApiError> {
    let mut script = ADMIT.key(keys.k("line"));
    script
        .key(keys.k("head"))
        .key(keys.k("n"))
        .key(keys.k("active"))
        .key(keys.k("stats"))
        .arg(a.now_ms)
        .arg(a.budget)
        .arg(a.max_active)
        .arg(a.session_ms)
        .arg(a.abandon_secs)
        .arg(MAX_SCAN)
        .arg(keys.bucket_prefix())
        .arg(rules::BUCKET_SIZE)
        .arg(format!("{:.3}", a.measured_rate));
    let (admitted, abandoned, active, waiting, _head): (u64, u64, u64, i64, i64) =
        redis.run(async |c| script.invoke_async(c).await).await?;
    Ok(Counts {
        admitted,
        abandoned,
        active,
        waiting: u64::try_from(waiting).unwrap_or(0),
    })
}

/// Queue-wide counts without changing anything (replicas that do not hold the lease), and
/// the measured rate.
pub async fn peek(redis: &Redis, keys: &QueueKeys, now_ms: i64) -> Result<(Counts, f64), ApiError> {
    let mut pipe = redis::pipe();
    pipe.get(keys.k("n"))
        .zcount(keys.k("active"), format!("({now_ms}"), "+inf")
        .hget(keys.k("stats"), "rate");
    let (waiting, active, rate): (Option<i64>, u64, Option<String>) =
        redis.run(async |c| pipe.query_async(c).await).await?;
    let counts = Counts {
        waiting: u64::try_from(waiting.unwrap_or(0)).unwrap_or(0),
        active,
        ..Counts::default()
    };
    Ok((counts, rate.and_then(|r| r.parse().ok()).unwrap_or(0.0)))
}

pub async fn shuffle_pre_queue(
    redis: &Redis,
    keys: &QueueKeys,
    seed: u32,
    flag_ttl_secs: u64,
) -> Result<i64, ApiError> {
    let mut script = SHUFFLE.key(keys.k("line"));
    script
        .key(keys.k("head"))
        .key(keys.k("pre"))
        .key(keys.k("shuffled"))
        .arg(seed)
        .arg(keys.bucket_prefix())
        .arg(rules::BUCKET_SIZE)
        .arg(flag_ttl_secs.max(1));
    redis.run(async |c| script.invoke_async(c).await).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_keys_keep_their_format() {
        let redis = Redis::lazy_for_tests("fg:");
        let keys = QueueKeys::new(&redis, "concert-42");
        assert_eq!(keys.tag(), "fg:{q:concert-42}");
        assert_eq!(keys.k("line"), "fg:{q:concert-42}:line");
        assert_eq!(keys.bucket_prefix(), "fg:{q:concert-42}:u:");
        assert_eq!(lease_key("concert-42"), "{q:concert-42}:lease");
    }
}
