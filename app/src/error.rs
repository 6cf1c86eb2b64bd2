//! The HTTP error type: every failure leaves the app as RFC 9457 `application/problem+json`.
//!
//! Handlers and services return [`ApiError`] built from the small constructors below. Server
//! errors are logged with their cause inside the request span and answered without internal
//! detail; dependency failures (pool exhausted, database or Redis unreachable) are 503 with
//! `Retry-After`, never 500.

use std::borrow::Cow;

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://floodgate.dev/problems/";

/// `Clone` so one failure can answer every request of a group-commit batch.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    /// Stable slug of the error kind, the last segment of the problem `type` URI.
    kind: &'static str,
    detail: Cow<'static, str>,
    retry_after: Option<u64>,
    extra: Option<Value>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// The dependency whose failure this is, so a breaker counts only its own dependency's
    /// failures: a Redis error inside a database unit is not a PostgreSQL failure.
    failed_dependency: Option<Dependency>,
}

/// A backing service guarded by a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Postgres,
    Redis,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// RFC 9457 problem details, the body of every error answer (written by `problem_body`).
/// Kinds may add members: `field` for `validation-failed`, `goods_id` for `out-of-stock`, ...
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the documented shape of `problem_body`
pub struct Problem {
    /// `https://floodgate.dev/problems/<kind>`, stable per kind.
    #[schema(
        rename = "type",
        example = "https://floodgate.dev/problems/validation-failed"
    )]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Unprocessable Entity")]
    title: String,
    #[schema(minimum = 400, maximum = 599, example = 422)]
    status: u16,
    #[schema(example = "limit must be between 1 and 100")]
    detail: String,
    /// `validation-failed`: the field or parameter at fault.
    #[schema(example = "limit")]
    field: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            retry_after: None,
            extra: None,
            headers: Vec::new(),
            failed_dependency: None,
        }
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// The body parsed but a value breaks a rule (too short, out of range, ...).
    pub fn invalid(field: &str, detail: impl Into<Cow<'static, str>>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            detail,
        );
        e.extra = Some(serde_json::json!({ "field": field }));
        e
    }

    pub fn unauthorized(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn forbidden(kind: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, kind, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(kind: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, detail)
    }

    pub fn gone(kind: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::GONE, kind, detail)
    }

    pub fn too_many_requests(retry_after: u64, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail).retry_after(retry_after)
    }

    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            detail,
        )
        .retry_after(1)
    }

    /// A server fault: the cause is logged, the client sees a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The kind's own members, as a JSON object: the document carries them after `detail`.
    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Marks this error as a failure of `dependency` (see [`Self::failed_dependency`]).
    pub fn failure_of(mut self, dependency: Dependency) -> Self {
        self.failed_dependency = Some(dependency);
        self
    }

    pub fn failed_dependency(&self) -> Option<Dependency> {
        self.failed_dependency
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// `validation-failed`: the field or parameter at fault.
    pub fn field(&self) -> Option<&str> {
        self.extra.as_ref()?.get("field")?.as_str()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.detail)
    }
}

impl std::error::Error for ApiError {}

/// Builds a problem response; also used for errors produced outside handlers (rejections,
/// timeouts, load shedding, panics).
pub fn problem_response(
    status: StatusCode,
    kind: &str,
    detail: &str,
    extra: Option<&Value>,
) -> Response {
    let mut res = Response::new(Body::from(problem_body(status, kind, detail, extra)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

/// The problem document: `type`, `title`, `status`, `detail`, then the members of `extra` (an
/// object; `with_extra`). Written member by member: a derived `Serialize` with
/// `#[serde(flatten)]` goes through serde's map path, ~3 % of a refused order's CPU (#18).
fn problem_body(status: StatusCode, kind: &str, detail: &str, extra: Option<&Value>) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
        serde_json::to_writer(out, value).expect("strings and JSON values serialize");
    }
    let mut out = Vec::with_capacity(128 + detail.len());
    out.extend_from_slice(br#"{"type":"#);
    put(&mut out, &format_args!("{TYPE_BASE}{kind}"));
    out.extend_from_slice(br#","title":"#);
    put(&mut out, status.canonical_reason().unwrap_or("Error"));
    out.extend_from_slice(br#","status":"#);
    put(&mut out, &status.as_u16());
    out.extend_from_slice(br#","detail":"#);
    put(&mut out, detail);
    if let Some(Value::Object(members)) = extra {
        for (name, value) in members {
            out.push(b',');
            put(&mut out, name);
            out.push(b':');
            put(&mut out, value);
        }
    }
    out.push(b'}');
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = problem_response(self.status, self.kind, &self.detail, self.extra.as_ref());
        let headers = res.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        res
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        let err = match &e {
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool exhausted");
                Self::unavailable("the database is busy; retry shortly")
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_) => {
                tracing::warn!(error = %e, "database unreachable");
                Self::unavailable("the database is unavailable; retry shortly")
            }
            sqlx::Error::RowNotFound => Self::not_found("resource"),
            // 40P01 deadlock_detected, 40001 serialization_failure: PostgreSQL aborted this
            // transaction to let a concurrent one finish. Nothing was written and a retry
            // succeeds; not a failure of the database, so no breaker counts it.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                tracing::warn!(error = %e, "transaction aborted by a concurrent one");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "write-conflict",
                    "a concurrent write got in the way; retry",
                )
                .retry_after(1);
            }
            // 22021 character_not_in_repertoire, 22P05 untranslatable_character: text
            // PostgreSQL cannot store, in practice a NUL (JSON's `\u0000`) in a string field.
            // Bad input like any other, and not a failure of the database.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                let mut e = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation-failed",
                    "a text value contains a NUL character (U+0000), which cannot be stored",
                );
                e.extra = Some(serde_json::json!({ "field": "body" }));
                return e;
            }
            // class 08, connection exception: the server (or a pooler in front of it, such as
            // PgBouncer refusing a startup parameter) refused the connection
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08")) => {
                tracing::warn!(error = %e, "database refused the connection");
                Self::unavailable("the database is unavailable; retry shortly")
            }
            // 57014 query_canceled: statement_timeout fired, the database is overloaded
            sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
                tracing::warn!(error = %e, "database statement timed out");
                Self::unavailable("the database is slow; retry shortly")
            }
            _ => return Self::internal(e),
        };
        err.failure_of(Dependency::Postgres)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "redis call failed");
        Self::unavailable("a backing service is unavailable; retry shortly")
            .failure_of(Dependency::Redis)
    }
}

/// A database failure on its way to an [`ApiError`]: the constraint violations a call site
/// expects are mapped to its own answers first ([`OnConstraint::on_constraint`]); anything
/// else becomes an `ApiError` as every database error does (`?` converts either).
#[derive(Debug)]
pub enum DbFailure {
    Sqlx(sqlx::Error),
    Mapped(ApiError),
}

impl From<sqlx::Error> for DbFailure {
    fn from(e: sqlx::Error) -> Self {
        Self::Sqlx(e)
    }
}

impl From<DbFailure> for ApiError {
    fn from(e: DbFailure) -> Self {
        match e {
            DbFailure::Sqlx(e) => e.into(),
            DbFailure::Mapped(e) => e,
        }
    }
}

/// Names the answer to a unique, check or foreign-key constraint violation, in the manner of
/// realworld-axum-sqlx: `insert(..).await.on_constraint("users_email_key", || conflict)?`.
/// Calls chain, one per constraint; the first that matches wins.
pub trait OnConstraint<T> {
    fn on_constraint(self, name: &str, answer: impl FnOnce() -> ApiError) -> Result<T, DbFailure>;
}

impl<T, E: Into<DbFailure>> OnConstraint<T> for Result<T, E> {
    fn on_constraint(self, name: &str, answer: impl FnOnce() -> ApiError) -> Result<T, DbFailure> {
        self.map_err(|e| match e.into() {
            DbFailure::Sqlx(sqlx::Error::Database(db)) if db.constraint() == Some(name) => {
                DbFailure::Mapped(answer())
            }
            other => other,
        })
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
