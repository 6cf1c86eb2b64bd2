//! The innermost per-route layer: the route label, and the PostgreSQL fast-fail of writes.
//!
//! Which writes need only Redis is said by the domains themselves: each domain that has such
//! writes serves them from its own `redis_only_routes()`, which the router guards with
//! [`RouteGuardLayer::label_only`] instead of [`RouteGuardLayer::api`] (see `http::router`).

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    response::{IntoResponse, Response},
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::platform::resilience::{Breakers, circuit_open};

/// The innermost per-route layer: copies the matched route template into the response so
/// the outer `Observe` layer can label by route (`/api/v1/goods/{id}`) instead of by raw
/// path; on API routes whose writes need PostgreSQL it also refuses those writes while
/// PostgreSQL's breaker is open: 503 `circuit-open` with the remaining open time as `Retry-After`, before any
/// extractor or handler runs. Reads go on: cached ones are served (stale if need be) and the
/// others fail fast at their own guard.
#[derive(Clone)]
pub struct RouteGuardLayer {
    postgres_circuit: Option<Arc<Breakers>>,
}

impl RouteGuardLayer {
    /// API routes: route label and the PostgreSQL fast-fail of their writes.
    pub fn api(breakers: Arc<Breakers>) -> Self {
        Self {
            postgres_circuit: Some(breakers),
        }
    }

    /// Operations routes, and the API writes a domain marks as needing only Redis (they keep
    /// working while PostgreSQL's breaker is open): the route label only.
    pub fn label_only() -> Self {
        Self {
            postgres_circuit: None,
        }
    }
}

impl<S> Layer<S> for RouteGuardLayer {
    type Service = RouteGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteGuard {
            inner,
            postgres_circuit: self.postgres_circuit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RouteGuard<S> {
    inner: S,
    postgres_circuit: Option<Arc<Breakers>>,
}

/// A write, while PostgreSQL's breaker refuses calls: 503 `circuit-open` with `Retry-After`.
fn refused_by_postgres_circuit(breakers: &Breakers, method: &Method) -> Option<Response> {
    if method.is_safe() {
        return None;
    }
    let wait = breakers.postgres.refusing_for()?;
    Some(circuit_open("postgres", wait).into_response())
}

impl<S> Service<Request> for RouteGuard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteGuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let matched = req.extensions().get::<MatchedPath>().cloned();
        if let Some(breakers) = &self.postgres_circuit
            && let Some(refused) = refused_by_postgres_circuit(breakers, req.method())
        {
            return RouteGuardFuture::Refused {
                res: Some(with_route(refused, matched)),
            };
        }
        RouteGuardFuture::Running {
            fut: self.inner.call(req),
            matched,
        }
    }
}

fn with_route(mut res: Response, matched: Option<MatchedPath>) -> Response {
    if let Some(m) = matched {
        res.extensions_mut().insert(m);
    }
    res
}

pin_project! {
    #[project = RouteGuardProj]
    pub enum RouteGuardFuture<F> {
        Running { #[pin] fut: F, matched: Option<MatchedPath> },
        Refused { res: Option<Response> },
    }
}

impl<F> Future for RouteGuardFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouteGuardProj::Running { fut, matched } => {
                let Ok(res) = ready!(fut.poll(cx));
                Poll::Ready(Ok(with_route(res, matched.take())))
            }
            RouteGuardProj::Refused { res } => Poll::Ready(Ok(res
                .take()
                .expect("RouteGuardFuture polled after completion"))),
        }
    }
}
