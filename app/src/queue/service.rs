//! Waiting-room services: what the handlers (and in-process callers such as the memory test)
//! call. Each reads the queue's settings live from the runtime config.

use chrono::{DateTime, Utc};
use floodgate_crds::runtime::QueueSettings;

use super::{
    pass::{self, PassCheck, PassError, QueueToken},
    registry,
    rules::{self, Phase},
    store::{self, JoinArgs, JoinOutcome, Place, QueueKeys},
    types::{JoinResponse, PlaceStatus, PlaceView, QueueId, QueueView},
};
use crate::{auth::UserId, error::ApiError, platform::metrics::QueueLabels, state::AppState};

/// A verified, admitted pass.
#[derive(Debug, Clone)]
pub struct QueuePass {
    pub queue_id: String,
    pub user: UserId,
    pub position: u64,
    pub session_expires_ms: i64,
}

fn settings(state: &AppState, queue: &str) -> QueueSettings {
    state.runtime.get().queue(queue)
}

/// A waiting place is kept `tokenTtl`; the token lives as long, plus the session, so an
/// admitted user's pass outlives its wait.
fn token_ttl(q: &QueueSettings) -> u64 {
    q.token_ttl.as_secs() + q.session_ttl.as_secs()
}

/// Counted for configured queues only: metric labels never come from what clients send.
fn count_abandoned(state: &AppState, queue: &str) {
    if !registry::is_configured(state, queue) {
        return;
    }
    state
        .metrics
        .queue_abandoned
        .get_or_create(&QueueLabels {
            queue: queue.to_owned(),
        })
        .inc();
}

/// Joins `queue` (or returns the user's existing place) and signs the token; 404 for a
/// queue that is neither configured nor referenced ([`registry`]).
pub async fn join(
    state: &AppState,
    queue: &QueueId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<JoinResponse, ApiError> {
    registry::require_known(state, queue).await?;
    let q = settings(state, queue.as_str());
    let phase = rules::phase(&q, now);
    let args = JoinArgs {
        now_ms: now.timestamp_millis(),
        place_ttl_secs: q.token_ttl.as_secs(),
        pre_queue: phase == Phase::NotOpen,
        closed: phase == Phase::Closed,
        abandon_secs: q.abandon_after.as_secs(),
    };
    let keys = QueueKeys::new(&state.redis, queue.as_str());
    let (outcome, dropped) = store::join(&state.redis, &keys, user, &args).await?;
    if dropped {
        count_abandoned(state, queue.as_str());
    }
    let (position, status) = match outcome {
        JoinOutcome::Closed => {
            return Err(ApiError::conflict(
                "queue-closed",
                "this waiting room no longer accepts new joins",
            ));
        }
        JoinOutcome::Waiting { position } => {
            // make the queue known to every replica's loop, until its last user is done
            registry::register(state, queue, &q, args.now_ms).await?;
            (position, PlaceStatus::Waiting)
        }
        JoinOutcome::Admitted { .. } => (0, PlaceStatus::Admitted),
    };
    let token = pass::sign(state, queue.as_str(), user, position, now, token_ttl(&q))?;
    // The head of the line is not known here; the position bounds the people ahead, which
    // is enough for the first hint (the first poll returns the exact one).
    let ahead = position.saturating_sub(1);
    let eta = rules::eta_seconds(ahead, 0.0, &q, rules::hold_reason(&q, now).is_some());
    let poll_after_seconds = if status == PlaceStatus::Waiting {
        rules::poll_after_seconds(eta, ahead, &q)
    } else {
        1
    };
    Ok(JoinResponse {
        token,
        position,
        status,
        poll_after_seconds,
    })
}

/// `GET …/tokens/me`: the place named by a token, which also counts as proof of life.
pub async fn me(
    state: &AppState,
    queue: &QueueId,
    token: &str,
    now: DateTime<Utc>,
) -> Result<PlaceView, ApiError> {
    let user = match pass::verify(state, token, queue.as_str()) {
        Ok((user, _)) => user,
        Err(PassError::Expired) => return Ok(expired_view()),
        Err(e) => return Err(e.into_api()),
    };
    let q = settings(state, queue.as_str());
    let (place, rate) = store::poll(
        &state.redis,
        &QueueKeys::new(&state.redis, queue.as_str()),
        user,
        now.timestamp_millis(),
        q.abandon_after.as_secs(),
        q.token_ttl.as_secs(),
    )
    .await?;
    Ok(match place {
        Place::Admitted { session_expires_ms } => PlaceView {
            status: PlaceStatus::Admitted,
            position: None,
            ahead: None,
            eta_seconds: Some(0),
            poll_after_seconds: None,
            session_expires_at: Some(session_expires_ms / 1000),
            hold_reason: None,
        },
        Place::Waiting { position, ahead } => {
            let hold = rules::hold_reason(&q, now);
            let eta = rules::eta_seconds(ahead, rate, &q, hold.is_some());
            PlaceView {
                status: PlaceStatus::Waiting,
                position: Some(position),
                ahead: Some(ahead),
                eta_seconds: eta,
                poll_after_seconds: Some(rules::poll_after_seconds(eta, ahead, &q)),
                session_expires_at: None,
                hold_reason: hold,
            }
        }
        Place::Gone { dropped } => {
            if dropped {
                count_abandoned(state, queue.as_str());
            }
            expired_view()
        }
    })
}

fn expired_view() -> PlaceView {
    PlaceView {
        status: PlaceStatus::Expired,
        position: None,
        ahead: None,
        eta_seconds: None,
        poll_after_seconds: None,
        session_expires_at: None,
        hold_reason: None,
    }
}

/// `DELETE …/tokens/me`: leave the line or end the session.
pub async fn leave_with_token(
    state: &AppState,
    queue: &QueueId,
    token: &str,
) -> Result<(), ApiError> {
    let (user, _) = pass::verify(state, token, queue.as_str()).map_err(PassError::into_api)?;
    let keys = QueueKeys::new(&state.redis, queue.as_str());
    store::leave(&state.redis, &keys, user).await?;
    Ok(())
}

/// Checks the admitted pass in `X-Queue-Token` for `queue_id` and `user`: 403 with a problem
/// kind saying whether it is missing, forged, expired, for another queue or user, or not
/// (yet, or any longer) an admitted session.
pub async fn require_pass(
    state: &AppState,
    token: Option<&QueueToken>,
    queue_id: &str,
    user: UserId,
) -> Result<QueuePass, ApiError> {
    let token = token
        .ok_or(PassError::Missing)
        .map_err(PassError::into_api)?;
    let token = token.as_str();
    let (holder, claims) = pass::verify(state, token, queue_id).map_err(PassError::into_api)?;
    if holder != user {
        return Err(PassError::WrongUser.into_api());
    }
    let now_ms = Utc::now().timestamp_millis();
    let keys = QueueKeys::new(&state.redis, queue_id);
    match store::session(&state.redis, &keys, user, now_ms).await? {
        Some(session_expires_ms) => Ok(QueuePass {
            queue_id: queue_id.to_owned(),
            user,
            position: claims.pos,
            session_expires_ms,
        }),
        None => Err(ApiError::forbidden(
            "queue-pass-not-admitted",
            "the waiting-room pass has no live session: not admitted yet, or the session ended or expired",
        )),
    }
}

/// The caller's pass checked before knowing which queue, if any, it must be for: the queue
/// the token itself names. Never fails; [`PassCheck::for_queue`] gives the answer once the
/// goods are known.
pub async fn check_pass_ahead(
    state: &AppState,
    token: Option<&QueueToken>,
    user: UserId,
) -> PassCheck {
    let Some(token) = token else {
        return PassCheck::Missing;
    };
    match pass::decode_claims(state, token.as_str()) {
        Err(e) => PassCheck::Refused {
            queue: None,
            error: e.into_api(),
        },
        Ok(claims) => match require_pass(state, Some(token), &claims.q, user).await {
            Ok(pass) => PassCheck::Admitted {
                queue: claims.q,
                session_expires_ms: pass.session_expires_ms,
            },
            Err(error) => PassCheck::Refused {
                queue: Some(claims.q),
                error,
            },
        },
    }
}

/// Ends the user's admitted session (after payment) so the next person is admitted.
pub async fn end_session(state: &AppState, queue_id: &str, user: UserId) -> Result<(), ApiError> {
    let keys = QueueKeys::new(&state.redis, queue_id);
    store::leave(&state.redis, &keys, user).await?;
    Ok(())
}

pub async fn view(
    state: &AppState,
    queue: &QueueId,
    now: DateTime<Utc>,
) -> Result<QueueView, ApiError> {
    let q = settings(state, queue.as_str());
    let keys = QueueKeys::new(&state.redis, queue.as_str());
    let (counts, rate) = store::peek(&state.redis, &keys, now.timestamp_millis()).await?;
    Ok(QueueView {
        queue_id: queue.clone(),
        waiting: counts.waiting,
        active: counts.active,
        admit_per_second: rate,
        max_active: q.max_active_users,
        status: rules::status_label(&q, now),
    })
}
