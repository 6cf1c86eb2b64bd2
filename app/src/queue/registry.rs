//! Which waiting rooms exist, and how every replica's admission loop learns of them.
//!
//! A queue exists when the runtime config publishes it (a `QueueConfig`), or when goods or a
//! concert reference it (their `queue_id`, checked in PostgreSQL with an index probe and
//! remembered for [`REFERENCE_MEMORY`]). A join to any other id is a 404 that touches nothing
//! in Redis, so joins to made-up ids cannot make the admission loop's work grow.
//!
//! The registry (`<prefix>queues:live`, see [`store::REGISTRY`]) names the queues that were
//! joined, each with an expiry: `tokenTtl + sessionTtl` (the longest a place and then its
//! session can still need the loop) plus one refresh period after the join that refreshed
//! it. A replica refreshes an entry at most once per period (a tenth of that lifetime, at
//! most [`REFRESH_EVERY`]) while joins keep coming, so a queue nobody joins any more leaves
//! the loop once its last user can have nothing left to wait for (2 h 10 min 30 s with the
//! default TTLs). Configured queues are ticked whatever the registry says.
//!
//! What this process remembers ([`SEEN`]) is keyed by the queue's Redis key, so apps that
//! share a process (the tests) but not a Redis prefix never share it, and it only ever holds
//! queues that exist (bounded by [`SEEN_CAP`]).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use floodgate_crds::runtime::QueueSettings;

use super::{store, types::QueueId};
use crate::{error::ApiError, state::AppState};

/// How long a reference found in PostgreSQL is trusted without asking again.
pub const REFERENCE_MEMORY: Duration = Duration::from_secs(60);
/// The longest refresh period of a queue's registry entry (per replica).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Entries remembered per process at most; past it the memory starts over.
const SEEN_CAP: usize = 10_000;

#[derive(Clone, Copy, Default)]
struct Seen {
    referenced: Option<Instant>,
    registered: Option<Instant>,
}

static SEEN: LazyLock<Mutex<HashMap<String, Seen>>> = LazyLock::new(Mutex::default);

fn seen(state: &AppState, queue: &QueueId) -> (String, Seen) {
    let key = store::QueueKeys::new(&state.redis, queue.as_str())
        .tag()
        .to_owned();
    let seen = SEEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .copied()
        .unwrap_or_default();
    (key, seen)
}

fn remember(key: String, update: impl FnOnce(&mut Seen)) {
    let mut map = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= SEEN_CAP && !map.contains_key(&key) {
        map.clear();
    }
    update(map.entry(key).or_default());
}

/// True when the runtime config in force publishes `queue`.
pub fn is_configured(state: &AppState, queue: &str) -> bool {
    state.runtime.get().queues.contains_key(queue)
}

fn not_found(queue: &QueueId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "queue-not-found",
        format!(
            "no waiting room {queue}: it is neither in the runtime config nor referenced by goods or a concert"
        ),
    )
}

/// Ok when `queue` exists (configured or referenced); 404 `queue-not-found` otherwise.
pub async fn require_known(state: &AppState, queue: &QueueId) -> Result<(), ApiError> {
    if is_configured(state, queue.as_str()) {
        return Ok(());
    }
    let (key, seen) = seen(state, queue);
    if seen
        .referenced
        .is_some_and(|at| at.elapsed() < REFERENCE_MEMORY)
    {
        return Ok(());
    }
    let id = queue.as_str().to_owned();
    let referenced: bool = state
        .db
        .run(async move |conn| {
            sqlx::query_scalar(
                "select exists(select 1 from goods where queue_id = $1 and deleted_at is null)
                     or exists(select 1 from concerts where queue_id = $1)",
            )
            .bind(&id)
            .fetch_one(&mut *conn)
            .await
        })
        .await?;
    if !referenced {
        return Err(not_found(queue));
    }
    remember(key, |s| s.referenced = Some(Instant::now()));
    Ok(())
}

/// Makes a joined queue known to every replica's admission loop, or extends its entry;
/// skipped when this replica did so less than a refresh period ago (a tenth of the queue's
/// lifetime, at most [`REFRESH_EVERY`]). The entry lives the lifetime plus that period past
/// the join that refreshed it, so it outlives every later join's users too.
pub async fn register(
    state: &AppState,
    queue: &QueueId,
    q: &QueueSettings,
    now_ms: i64,
) -> Result<(), ApiError> {
    let lifetime = Duration::from_millis(q.token_ttl.as_millis())
        .saturating_add(Duration::from_millis(q.session_ttl.as_millis()));
    let period = (lifetime / 10).min(REFRESH_EVERY);
    let (key, seen) = seen(state, queue);
    if seen.registered.is_some_and(|at| at.elapsed() < period) {
        return Ok(());
    }
    let keep = i64::try_from(lifetime.saturating_add(period).as_millis()).unwrap_or(i64::MAX);
    store::register(&state.redis, queue.as_str(), now_ms.saturating_add(keep)).await?;
    remember(key, |s| s.registered = Some(Instant::now()));
    Ok(())
}
