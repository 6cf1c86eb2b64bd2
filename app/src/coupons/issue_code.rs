//! The replies of `issue.lua`, typed: the script answers a one-element array holding one of
//! the numbers below, and nothing else reaches the service as a bare number.

use crate::error::ApiError;

/// What the issue script decided for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// `1`: Redis accepted the grant; PostgreSQL has yet to write it.
    Accepted,
    /// `0`: the user already holds a coupon of the campaign.
    AlreadyHolds,
    /// `-1`: Redis does not have the campaign (new, lost, or no such campaign).
    NotLoaded,
    /// `-2`: the campaign has not started.
    NotStarted,
    /// `-3`: the campaign has ended.
    Ended,
    /// `-4`: every coupon is granted.
    SoldOut,
}

/// A reply the script never gives: a newer or older script than this build knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from the coupon issue script: {0}")]
pub struct UnknownIssueReply(pub String);

impl TryFrom<i64> for IssueCode {
    type Error = UnknownIssueReply;

    fn try_from(code: i64) -> Result<Self, UnknownIssueReply> {
        Ok(match code {
            1 => Self::Accepted,
            0 => Self::AlreadyHolds,
            -1 => Self::NotLoaded,
            -2 => Self::NotStarted,
            -3 => Self::Ended,
            -4 => Self::SoldOut,
            other => return Err(UnknownIssueReply(other.to_string())),
        })
    }
}

impl IssueCode {
    /// Reads the script's reply (`{code}`). Anything else is a server fault (500, logged),
    /// never a panic.
    pub fn from_reply(reply: &[redis::Value]) -> Result<Self, ApiError> {
        let [value] = reply else {
            return Err(ApiError::internal(UnknownIssueReply(format!("{reply:?}"))));
        };
        let code: i64 = redis::from_redis_value_ref(value)
            .map_err(|_| ApiError::internal(UnknownIssueReply(format!("{value:?}"))))?;
        Self::try_from(code).map_err(ApiError::internal)
    }
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    #[test]
    fn every_code_of_the_script_is_known() {
        let codes = [
            (1, IssueCode::Accepted),
            (0, IssueCode::AlreadyHolds),
            (-1, IssueCode::NotLoaded),
            (-2, IssueCode::NotStarted),
            (-3, IssueCode::Ended),
            (-4, IssueCode::SoldOut),
        ];
        for (n, code) in codes {
            assert_eq!(IssueCode::try_from(n), Ok(code));
            assert_eq!(IssueCode::from_reply(&[Value::Int(n)]).unwrap(), code);
            // the script returns `{n}`: every number it names is one of these
            assert!(include_str!("issue.lua").contains(&format!("return {{{n}}}")));
        }
    }

    #[test]
    fn an_unknown_reply_is_an_error() {
        assert_eq!(IssueCode::try_from(7), Err(UnknownIssueReply("7".into())));
        for reply in [
            vec![],
            vec![Value::Int(2)],
            vec![Value::Int(1), Value::Int(1)],
            vec![Value::Nil],
            vec![Value::SimpleString("one".into())],
        ] {
            let e = IssueCode::from_reply(&reply).expect_err("must be refused");
            assert_eq!(e.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
