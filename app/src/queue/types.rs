//! Typed waiting-room values: a [`QueueId`] that exists is a valid DNS-label queue id.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// A waiting-room id: 1-63 characters of a-z, 0-9 and '-', not starting with '-'. (The rule
/// of `QueueId::parse`; a test keeps the two equal.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    pattern = "^[a-z0-9][a-z0-9-]*$",
    min_length = 1,
    max_length = 63,
    example = "concert-42"
)]
pub struct QueueId(String);

impl QueueId {
    /// Same rule as the runtime config and the `QueueConfig` name, so every id a client can
    /// use is one the operator can configure.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if floodgate_crds::runtime::is_valid_queue_id(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid(
                "queue_id",
                "queue id must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PlaceStatus {
    Waiting,
    Admitted,
    Expired,
}

/// 201 answer of a join.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct JoinResponse {
    /// The signed token naming queue, user and position; send it as `X-Queue-Token`.
    pub token: String,
    pub position: u64,
    pub status: PlaceStatus,
    pub poll_after_seconds: u64,
}

/// A user's place as seen by `GET /queues/{id}/tokens/me`.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct PlaceView {
    pub status: PlaceStatus,
    /// Current position (1 = first ever to join); absent once admitted or expired.
    pub position: Option<u64>,
    /// People still ahead in the line (places not yet reached, abandoned ones included until skipped).
    pub ahead: Option<u64>,
    /// Estimated wait from the measured admission rate; absent while unknown (paused, not open).
    pub eta_seconds: Option<u64>,
    /// When to poll next; grows with the distance to the front.
    pub poll_after_seconds: Option<u64>,
    /// When the admitted session ends (unix seconds).
    pub session_expires_at: Option<i64>,
    /// Why nobody is admitted right now: `paused`, `not-open`, or absent.
    pub hold_reason: Option<&'static str>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct QueueView {
    pub queue_id: QueueId,
    pub waiting: u64,
    pub active: u64,
    /// Measured admissions per second over the last few seconds.
    pub admit_per_second: f64,
    pub max_active: u32,
    /// `open`, `paused`, `not-open` (before `opensAt`) or `closed` (after `closesAt`).
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn documented() -> serde_json::Value {
        serde_json::to_value(<QueueId as utoipa::PartialSchema>::schema()).unwrap()
    }

    #[test]
    fn documented_length_is_the_enforced_one() {
        let doc = documented();
        assert_eq!(
            (doc["minLength"].as_u64(), doc["maxLength"].as_u64()),
            (Some(1), Some(63))
        );
        assert!(QueueId::parse(&"a".repeat(63)).is_ok());
        assert!(QueueId::parse(&"a".repeat(64)).is_err());
        assert!(QueueId::parse("").is_err());
    }

    proptest! {
        /// What the document's pattern allows (within its lengths), the server accepts ...
        #[test]
        fn documented_ids_are_accepted(id in "[a-z0-9][a-z0-9-]{0,62}") {
            let doc = documented();
            prop_assert_eq!(doc["pattern"].as_str(), Some("^[a-z0-9][a-z0-9-]*$"));
            prop_assert!(QueueId::parse(&id).is_ok(), "{id}");
        }

        /// ... and what it refuses, the server refuses.
        #[test]
        fn undocumented_ids_are_refused(id in "([A-Z_.]|-)[a-z0-9-]{0,10}|[a-z0-9]{1,5}[A-Z_. /][a-z0-9]{0,5}") {
            prop_assert!(QueueId::parse(&id).is_err(), "{id}");
        }
    }
}
