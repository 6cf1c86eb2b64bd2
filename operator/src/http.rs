//! The operator's own HTTP endpoints: `/metrics` (OpenMetrics), `/healthz` (the process
//! answers) and `/readyz` (leading and caches synced, or in local mode: running).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get,
};

use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct Health {
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Binds and serves in the background; binding errors are returned at once.
pub async fn spawn(addr: SocketAddr, health: Health) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(health)).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer() {
        let health = Health {
            ready: Arc::default(),
            metrics: Arc::new(Metrics::default()),
        };
        let addr = spawn("127.0.0.1:0".parse().expect("addr"), health.clone())
            .await
            .expect("bind");
        drop(health.metrics.reconcile("Campaign"));
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("request");
            (r.status().as_u16(), r.text().await.expect("body"))
        };
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 503);
        health.ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await.0, 200);
        let (status, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("floodgate_operator_reconciles_total{kind=\"Campaign\"} 1"),
            "{body}"
        );
    }
}
