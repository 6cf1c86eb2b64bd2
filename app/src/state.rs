//! Shared application state handed to every handler.

use std::{
    ops::Deref,
    sync::{Arc, atomic::AtomicBool},
};

use sqlx::PgPool;

use crate::{
    auth::jwt::JwtKeys,
    config::Settings,
    platform::{
        cache::Cache, metrics::Metrics, redis::Redis, resilience::Breakers,
        runtime_config::RuntimeConfigHandle,
    },
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: PgPool,
    pub redis: Redis,
    pub metrics: Arc<Metrics>,
    pub runtime: RuntimeConfigHandle,
    pub cache: Cache,
    /// Circuit breakers around PostgreSQL and Redis (`platform::resilience`).
    pub breakers: Arc<Breakers>,
    pub jwt: JwtKeys,
    /// Set on SIGTERM: readiness turns false so load balancers stop sending traffic.
    pub draining: AtomicBool,
    /// See `auth::password::dummy_hash`.
    pub dummy_hash: String,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
