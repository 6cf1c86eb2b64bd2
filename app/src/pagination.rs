//! Keyset pagination: `?limit=&cursor=` where the cursor is an opaque token naming the last
//! id of the previous page. Lists are ordered by id descending (newest first).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (default depends on the list).
    #[param(value_type = Option<PageLimit>)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

/// Page size: 1-100. (The schema of every list's `limit`: the rule `PageQuery::parse`
/// enforces; a test keeps it equal to `MAX_LIMIT`.)
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
#[schema(minimum = 1, maximum = 100)]
pub struct PageLimit(u32);

/// An opaque cursor: unpadded base64url, at most 30 characters. Pass `next_cursor`
/// unchanged; one of this shape that names no page is 422 with `field: cursor`.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
#[schema(pattern = "^[A-Za-z0-9_-]*$", max_length = 30)]
pub struct Cursor(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    /// Only ids below this one (None: from the newest).
    pub before: Option<i64>,
}

pub const MAX_LIMIT: u32 = 100;

impl PageQuery {
    pub fn parse(&self, default_limit: u32) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(default_limit);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let before = self
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode)
            .transpose()?;
        Ok(Page {
            limit: i64::from(limit),
            before,
        })
    }
}

pub fn encode(last_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

fn decode(cursor: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "cursor",
            "cursor is malformed; pass next_cursor from the previous page unchanged",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    text.strip_prefix("v1:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(bad)
}

/// A page of items and the cursor of the next one (None on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    /// `rows` was fetched with `limit + 1` to learn whether another page exists.
    pub fn from_rows(mut rows: Vec<T>, page: Page, id: impl Fn(&T) -> i64) -> Self {
        let more = rows.len() as i64 > page.limit;
        rows.truncate(page.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| encode(id(r)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits() {
        let q = |limit| PageQuery {
            limit,
            cursor: None,
        };
        assert_eq!(q(None).parse(15).unwrap().limit, 15);
        assert!(q(Some(0)).parse(15).is_err());
        assert!(q(Some(101)).parse(15).is_err());
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in ["!!!", "djE6", "djE6LTE", "eHg6MTA"] {
            let q = PageQuery {
                limit: None,
                cursor: Some(bad.into()),
            };
            assert!(q.parse(15).is_err(), "{bad}");
        }
    }

    #[test]
    fn documented_limit_is_the_enforced_one() {
        let schema = serde_json::to_value(<PageLimit as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["minimum"], 1);
        assert_eq!(schema["maximum"], MAX_LIMIT);
        let q = |limit| PageQuery {
            limit: Some(limit),
            cursor: None,
        };
        assert!(q(1).parse(15).is_ok() && q(MAX_LIMIT).parse(15).is_ok());
    }

    proptest! {
        /// Every cursor the server hands out fits the documented shape.
        #[test]
        fn cursors_fit_the_documented_shape(id in 1i64..=i64::MAX) {
            let cursor = encode(id);
            prop_assert!(cursor.len() <= 30, "{cursor}");
            prop_assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        }


        #[test]
        fn cursor_round_trips(id in 1i64..i64::MAX) {
            let q = PageQuery { limit: None, cursor: Some(encode(id)) };
            prop_assert_eq!(q.parse(15).unwrap().before, Some(id));
        }
    }
}
