//! `Idempotency-Key` (IETF draft semantics), one mechanism for every POST that moves money or
//! stock.
//!
//! - Keys are scoped per user; the request fingerprint (route + canonical body) is stored.
//! - Same key + same request: the stored status and body are replayed with
//!   `Idempotent-Replayed: true`. Same key + different request: 422. Same key while the first
//!   request is still running: 409 with `Retry-After`.
//! - The operation runs in a transaction that also records its response, so a response is
//!   stored if and only if the operation committed. A crash mid-operation rolls both back and
//!   the claim lapses after [`LEASE`], so a retry can never apply the operation twice.
//! - Only successful (2xx) responses are stored; a failed attempt releases the key so the
//!   client can retry after fixing the cause (e.g. topping up the wallet).
//! - Records expire after `ttls.idempotency` from the runtime config (24 h by default).
//! - Group-commit batches ([`claim_many`], [`finish_many`]) keep the same rules with one
//!   statement per batch; their claims live in the batch's transaction, so a failed or
//!   crashed batch leaves no claim behind.

use std::time::Duration;

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::{
    auth::UserId,
    error::{ApiError, ApiResult},
    state::AppState,
};

mod batch;
pub use batch::{Claimed, Request, claim_many, finish_many};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a claim protects an in-flight request; longer than the request timeout.
pub const LEASE: Duration = Duration::from_secs(30);

/// 1-255 visible ASCII characters (`!` to `~`); absent, the request is not idempotent.
/// (Use as `Option<IdempotencyKey>`. Also the header's schema in the document; a test keeps it
/// equal to `IdempotencyKey::parse`.)
#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[schema(
    pattern = "^[!-~]+$",
    min_length = 1,
    max_length = 255,
    example = "order-7f3c2a"
)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok = !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::bad_request(
                "Idempotency-Key must be 1-255 visible ASCII characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match parts.headers.get(HEADER) {
            None => Ok(None),
            Some(v) => {
                let s = v
                    .to_str()
                    .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII"))?;
                Self::parse(s).map(Some)
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as axum::extract::OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(|| {
                ApiError::bad_request("this endpoint requires an Idempotency-Key header")
            })
    }
}

/// Fingerprint of a request: route plus canonical JSON body.
pub fn fingerprint(route: &str, body: &impl serde::Serialize) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().to_vec()
}

fn respond(status: StatusCode, body: Value, replayed: bool) -> Response {
    let mut res = (status, Json(body)).into_response();
    if replayed {
        res.headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    res
}

enum Claim {
    Owned,
    Replay(StatusCode, Value),
}

/// Taking over an existing record (`excluded` is the new claim), shared with the batched
/// claim ([`batch`]): allowed once it expired, or when its holder died mid-request (lease
/// lapsed, nothing stored) and the request is the same.
macro_rules! take_over_set {
    () => {
        " set fingerprint = excluded.fingerprint, locked_until = excluded.locked_until,
              expires_at = excluded.expires_at, status = null, response = null, created_at = now() "
    };
}
macro_rules! take_over_when {
    () => {
        " (idempotency_keys.expires_at < now()
             or (idempotency_keys.status is null and idempotency_keys.locked_until < now()
                 and idempotency_keys.fingerprint = excluded.fingerprint)) "
    };
}
use {take_over_set, take_over_when};

/// What a record someone else holds means for a request with fingerprint `fp`: a replay, a
/// reused key (422) or a request still in flight (409).
fn held(
    fp: &[u8],
    stored_fp: &[u8],
    status: Option<i16>,
    response: Option<Value>,
) -> ApiResult<Claim> {
    if stored_fp != fp {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was already used with a different request",
        ));
    }
    match (status, response) {
        (Some(s), Some(body)) => {
            let status = StatusCode::from_u16(s as u16).map_err(ApiError::internal)?;
            Ok(Claim::Replay(status, body))
        }
        _ => Err(in_flight()),
    }
}

fn in_flight() -> ApiError {
    ApiError::conflict(
        "idempotency-key-in-flight",
        "a request with this Idempotency-Key is still being processed",
    )
    .retry_after(1)
}

async fn claim(
    state: &AppState,
    conn: &mut PgConnection,
    user: UserId,
    key: &IdempotencyKey,
    fp: &[u8],
) -> ApiResult<Claim> {
    let ttl = state.runtime.get().ttls.idempotency.as_secs() as f64;
    let owned: Option<bool> = sqlx::query_scalar(concat!(
        "insert into idempotency_keys (user_id, key, fingerprint, locked_until, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4), now() + make_interval(secs => $5))
         on conflict (user_id, key) do update",
        take_over_set!(),
        "where",
        take_over_when!(),
        " returning true"
    ))
    .bind(user)
    .bind(key.as_str())
    .bind(fp)
    .bind(LEASE.as_secs() as f64)
    .bind(ttl)
    .fetch_optional(&mut *conn)
    .await?;
    if owned.is_some() {
        return Ok(Claim::Owned);
    }
    let (stored_fp, status, response): (Vec<u8>, Option<i16>, Option<Value>) =
        sqlx::query_as("select fingerprint, status, response from idempotency_keys where user_id = $1 and key = $2")
            .bind(user)
            .bind(key.as_str())
            .fetch_one(&mut *conn)
            .await?;
    held(fp, &stored_fp, status, response)
}

/// Runs `op` inside a transaction, at most once per (user, key). Without a key it simply
/// runs `op` in a transaction.
///
/// The whole unit runs through `state.db` (breaker, bulkhead, deadline): while the breaker
/// is open it answers 503 `circuit-open` without touching the database, and a stalled
/// database cannot hold the request past the deadline (the transaction is dropped
/// uncommitted, so nothing is half-written).
pub async fn run(
    state: &AppState,
    user: UserId,
    key: Option<IdempotencyKey>,
    fingerprint: &[u8],
    op: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<(StatusCode, Value)>,
) -> ApiResult<Response> {
    // one connection for the claim, the transaction and the release
    state
        .db
        .run(async |conn| run_unguarded(state, conn, user, key, fingerprint, op).await)
        .await
}

async fn run_unguarded(
    state: &AppState,
    conn: &mut PgConnection,
    user: UserId,
    key: Option<IdempotencyKey>,
    fingerprint: &[u8],
    op: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<(StatusCode, Value)>,
) -> ApiResult<Response> {
    let Some(key) = key else {
        let mut tx = conn.begin().await?;
        let (status, body) = op(&mut tx).await?;
        tx.commit().await?;
        return Ok(respond(status, body, false));
    };
    if let Claim::Replay(status, body) = claim(state, &mut *conn, user, &key, fingerprint).await? {
        return Ok(respond(status, body, true));
    }
    let mut tx = conn.begin().await?;
    let outcome = op(&mut tx).await;
    match outcome {
        Ok((status, body)) if status.is_success() => {
            sqlx::query("update idempotency_keys set status = $3, response = $4 where user_id = $1 and key = $2")
                .bind(user)
                .bind(key.as_str())
                .bind(status.as_u16() as i16)
                .bind(&body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(respond(status, body, false))
        }
        other => {
            drop(tx);
            release(conn, user, &key).await;
            other.map(|(status, body)| respond(status, body, false))
        }
    }
}

async fn release(conn: &mut PgConnection, user: UserId, key: &IdempotencyKey) {
    let released = sqlx::query(
        "delete from idempotency_keys where user_id = $1 and key = $2 and status is null",
    )
    .bind(user)
    .bind(key.as_str())
    .execute(conn)
    .await;
    if let Err(e) = released {
        // the lease lets the key be reclaimed after LEASE anyway
        tracing::warn!(error = %e, "could not release idempotency key");
    }
}

/// Deletes expired records; run periodically by one background task per replica.
pub async fn purge_expired(db: &mut sqlx::PgConnection) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "delete from idempotency_keys where ctid in
           (select ctid from idempotency_keys where expires_at < now() limit 10000)",
    )
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert!(IdempotencyKey::parse("order-2026-11-22-0001").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    proptest::proptest! {
        /// Every key the document allows (visible ASCII, `!` to `~`, 1-255 of them) is accepted.
        #[test]
        fn documented_keys_are_accepted(key in "[!-~]{1,255}") {
            let doc = serde_json::to_value(<IdempotencyKey as utoipa::PartialSchema>::schema()).unwrap();
            proptest::prop_assert_eq!(doc["pattern"].as_str(), Some("^[!-~]+$"));
            proptest::prop_assert_eq!((doc["minLength"].as_u64(), doc["maxLength"].as_u64()), (Some(1), Some(255)));
            proptest::prop_assert!(IdempotencyKey::parse(&key).is_ok(), "{key}");
        }
    }

    #[test]
    fn fingerprint_depends_on_route_and_body() {
        let a = fingerprint("/wallet/charges", &serde_json::json!({"amount": 1}));
        assert_eq!(
            a,
            fingerprint("/wallet/charges", &serde_json::json!({"amount": 1}))
        );
        assert_ne!(
            a,
            fingerprint("/wallet/charges", &serde_json::json!({"amount": 2}))
        );
        assert_ne!(a, fingerprint("/orders", &serde_json::json!({"amount": 1})));
    }
}
