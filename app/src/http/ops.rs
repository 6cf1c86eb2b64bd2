//! Operations routes: liveness, readiness, metrics.

use std::sync::atomic::Ordering;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{error::ApiError, platform::db, state::AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn livez() -> &'static str {
    "ok"
}

/// Ready when PostgreSQL and Redis answer, migrations are applied, and we are not draining.
async fn readyz(State(state): State<AppState>) -> Response {
    let draining = state.draining.load(Ordering::Relaxed);
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            state.db.unguarded(db::migrations_applied)
        ),
        state.redis.ping()
    );
    let (postgres_ok, migrations_ok) = match postgres {
        Ok(Ok(applied)) => (true, applied),
        _ => (false, false),
    };
    let checks = json!({ "postgres": postgres_ok, "redis": redis, "migrations": migrations_ok, "draining": draining });
    if postgres_ok && redis && migrations_ok && !draining {
        axum::Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "a dependency is unavailable or the replica is draining",
        )
        .with_extra(json!({ "checks": checks }))
        .retry_after(1)
        .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
