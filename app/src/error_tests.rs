//! Unit tests of `error.rs`: how database failures become problem answers, and the bytes of a
//! problem document.

use std::borrow::Cow;

use axum::http::StatusCode;
use sqlx::error::{DatabaseError, ErrorKind};

use super::*;

/// A PostgreSQL error as sqlx reports it: a SQLSTATE and the violated constraint.
#[derive(Debug)]
struct PgViolation {
    code: &'static str,
    constraint: Option<&'static str>,
}

impl std::fmt::Display for PgViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "violation of {:?}", self.constraint)
    }
}

impl std::error::Error for PgViolation {}

impl DatabaseError for PgViolation {
    fn message(&self) -> &str {
        "violation"
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.into())
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn constraint(&self) -> Option<&str> {
        self.constraint
    }
    fn kind(&self) -> ErrorKind {
        ErrorKind::UniqueViolation
    }
}

fn violation(constraint: Option<&'static str>) -> Result<(), sqlx::Error> {
    Err(sqlx::Error::Database(Box::new(PgViolation {
        code: "23505",
        constraint,
    })))
}

fn taken() -> ApiError {
    ApiError::conflict("email-taken", "taken")
}

fn answer(r: Result<(), DbFailure>) -> ApiError {
    ApiError::from(r.expect_err("an error"))
}

#[test]
fn a_named_constraint_gets_its_answer() {
    let e = answer(violation(Some("users_email_key")).on_constraint("users_email_key", taken));
    assert_eq!(
        (e.status(), e.kind()),
        (StatusCode::CONFLICT, "email-taken")
    );
}

#[test]
fn chained_names_map_each_their_own_and_the_first_match_wins() {
    let chain = |name| {
        answer(
            violation(Some(name))
                .on_constraint("a_key", || ApiError::conflict("a", "a"))
                .on_constraint("b_fkey", || ApiError::not_found("b"))
                .on_constraint("b_fkey", || ApiError::conflict("never", "never")),
        )
    };
    assert_eq!(chain("a_key").kind(), "a");
    assert_eq!(chain("b_fkey").status(), StatusCode::NOT_FOUND);
}

#[test]
fn other_failures_convert_as_before() {
    // another constraint, none, or no database error at all: the usual conversion
    let e = answer(violation(Some("other_key")).on_constraint("users_email_key", taken));
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let e = answer(violation(None).on_constraint("users_email_key", taken));
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let e = answer(Err::<(), _>(sqlx::Error::PoolTimedOut).on_constraint("users_email_key", taken));
    assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(e.failed_dependency(), Some(Dependency::Postgres));
    assert!(
        Ok::<_, sqlx::Error>(())
            .on_constraint("users_email_key", taken)
            .is_ok()
    );
}

#[test]
fn the_field_of_a_validation_failure_is_readable() {
    assert_eq!(ApiError::invalid("limit", "bad").field(), Some("limit"));
    assert_eq!(ApiError::not_found("x").field(), None);
}

#[test]
fn the_problem_body_has_its_members_in_order_and_escaped() {
    let extra = serde_json::json!({ "goods_id": 7, "note": "a \"quoted\"\nline" });
    let body = problem_body(
        StatusCode::CONFLICT,
        "out-of-stock",
        "goods 7 is \"sold\" out",
        Some(&extra),
    );
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(
        text,
        r#"{"type":"https://floodgate.dev/problems/out-of-stock","title":"Conflict","status":409,"detail":"goods 7 is \"sold\" out","goods_id":7,"note":"a \"quoted\"\nline"}"#
    );
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed["note"], "a \"quoted\"\nline");
    let plain = problem_body(StatusCode::NOT_FOUND, "not-found", "no such goods", None);
    assert_eq!(
        std::str::from_utf8(&plain).unwrap(),
        r#"{"type":"https://floodgate.dev/problems/not-found","title":"Not Found","status":404,"detail":"no such goods"}"#
    );
}
