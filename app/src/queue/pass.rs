//! The signed waiting-room token: an HS256 JWT with its own audience, naming queue, user and
//! position. The same token is the admitted pass once the user's session is live, so a client
//! keeps one value in `X-Queue-Token` from joining to paying.

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::{
    auth::{
        UserId,
        hs256::{Registered, Rules, Verifier},
    },
    error::ApiError,
    state::AppState,
};

pub const HEADER: &str = "x-queue-token";
pub const AUDIENCE: &str = "floodgate-queue";
const ISSUER: &str = "floodgate";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueClaims {
    pub sub: String,
    /// Queue id.
    pub q: String,
    /// Position at join time (0 when issued to someone already admitted).
    pub pos: u64,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

impl Registered for QueueClaims {
    fn registered(&self) -> (i64, &str, &str) {
        (self.exp, &self.iss, &self.aud)
    }
}

/// Why a token was refused; each becomes its own 403 problem kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassError {
    Missing,
    Forged,
    Expired,
    WrongQueue,
    WrongUser,
}

impl PassError {
    pub fn into_api(self) -> ApiError {
        match self {
            Self::Missing => ApiError::forbidden(
                "queue-pass-missing",
                "this endpoint needs an admitted waiting-room pass in X-Queue-Token",
            ),
            Self::Forged => ApiError::forbidden(
                "queue-pass-forged",
                "the X-Queue-Token is not a pass this service signed",
            ),
            Self::Expired => ApiError::forbidden(
                "queue-pass-expired",
                "the waiting-room pass has expired; join the queue again",
            ),
            Self::WrongQueue => ApiError::forbidden(
                "queue-pass-wrong-queue",
                "the waiting-room pass is for another queue",
            ),
            Self::WrongUser => ApiError::forbidden(
                "queue-pass-wrong-user",
                "the waiting-room pass belongs to another user",
            ),
        }
    }
}

pub fn sign(
    state: &AppState,
    queue: &str,
    user: UserId,
    pos: u64,
    now: DateTime<Utc>,
    ttl_secs: u64,
) -> Result<String, ApiError> {
    let iat = now.timestamp();
    let claims = QueueClaims {
        sub: user.to_string(),
        q: queue.to_owned(),
        pos,
        iat,
        exp: iat.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2)),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
    };
    state.jwt.key().sign(&claims).map_err(ApiError::internal)
}

/// The passes' verifier (`AppState::queue_passes`). Passes are short-lived session
/// credentials: no leeway beyond a second of skew.
pub fn verifier() -> Verifier<QueueClaims> {
    Verifier::new(Rules::new(ISSUER, AUDIENCE, 1))
}

/// Verifies signature, algorithm, audience, expiry and queue; returns the user it names.
pub fn verify(
    state: &AppState,
    token: &str,
    queue: &str,
) -> Result<(UserId, QueueClaims), PassError> {
    let claims = decode_claims(state, token)?;
    if claims.q != queue {
        return Err(PassError::WrongQueue);
    }
    let user = claims
        .sub
        .parse()
        .map(UserId)
        .map_err(|_| PassError::Forged)?;
    Ok((user, claims))
}

/// Verifies signature, algorithm, audience and expiry; returns the claims, for any queue
/// (`auth::hs256`: a pass verified before is only checked for expiry again).
pub fn decode_claims(state: &AppState, token: &str) -> Result<QueueClaims, PassError> {
    state
        .queue_passes
        .verify(state.jwt.key(), token)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => PassError::Expired,
            _ => PassError::Forged,
        })
}

/// A pass checked before it is known which waiting room (if any) the goods need: group-commit
/// orders check it before queueing, so no Redis call runs inside the batch's transaction.
#[derive(Debug)]
pub enum PassCheck {
    /// No `X-Queue-Token`.
    Missing,
    /// An admitted session of this queue; `session_expires_ms` (fixed at admission) tells one
    /// session of the user from the next.
    Admitted {
        queue: String,
        session_expires_ms: i64,
    },
    /// Refused for the queue the token names (`None`: the token could not be read at all).
    Refused {
        queue: Option<String>,
        error: ApiError,
    },
}

impl PassCheck {
    /// What [`super::require_pass`] would answer for goods behind `queue`.
    pub fn for_queue(&self, queue: &str) -> Result<(), ApiError> {
        match self {
            Self::Missing => Err(PassError::Missing.into_api()),
            Self::Admitted { queue: q, .. } | Self::Refused { queue: Some(q), .. }
                if q != queue =>
            {
                Err(PassError::WrongQueue.into_api())
            }
            Self::Admitted { .. } => Ok(()),
            Self::Refused { error, .. } => Err(error.clone()),
        }
    }
}

/// The `X-Queue-Token` header, read like `IdempotencyKey` (use as `Option<QueueToken>`), so
/// no service takes the request headers. A header that is empty or not ASCII reads as absent:
/// where a pass is needed, that is `queue-pass-missing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueToken(String);

impl QueueToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for QueueToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(from_headers(&parts.headers).ok().map(Self::new))
    }
}

/// The token from the request headers, or `Missing`.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Result<&str, PassError> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(PassError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_checked_ahead_answers_like_require_pass() {
        let kind = |c: &PassCheck, q: &str| c.for_queue(q).err().map(|e| e.kind());
        assert_eq!(kind(&PassCheck::Missing, "q1"), Some("queue-pass-missing"));
        let admitted = PassCheck::Admitted {
            queue: "q1".into(),
            session_expires_ms: 1,
        };
        assert_eq!(kind(&admitted, "q1"), None);
        assert_eq!(kind(&admitted, "q2"), Some("queue-pass-wrong-queue"));
        let not_admitted = PassCheck::Refused {
            queue: Some("q1".into()),
            error: ApiError::forbidden("queue-pass-not-admitted", "not yet"),
        };
        assert_eq!(kind(&not_admitted, "q1"), Some("queue-pass-not-admitted"));
        // the queue is checked before the session, as require_pass does
        assert_eq!(kind(&not_admitted, "q2"), Some("queue-pass-wrong-queue"));
        let forged = PassCheck::Refused {
            queue: None,
            error: PassError::Forged.into_api(),
        };
        assert_eq!(kind(&forged, "q1"), Some("queue-pass-forged"));
    }

    #[tokio::test]
    async fn the_token_header_reads_like_from_headers() {
        use axum::extract::OptionalFromRequestParts;
        let read = |value: Option<&'static [u8]>| async move {
            let mut req = axum::http::Request::builder();
            if let Some(v) = value {
                req = req.header(HEADER, axum::http::HeaderValue::from_bytes(v).unwrap());
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            let token = QueueToken::from_request_parts(&mut parts, &())
                .await
                .unwrap();
            token.map(|t| t.as_str().to_owned())
        };
        assert_eq!(read(None).await, None);
        assert_eq!(read(Some(b"  ")).await, None, "blank is absent");
        assert_eq!(
            read(Some(b"caf\xc3\xa9")).await,
            None,
            "not ASCII is absent"
        );
        assert_eq!(read(Some(b" abc.def ")).await.as_deref(), Some("abc.def"));
    }
}
