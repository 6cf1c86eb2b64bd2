//! Shared application state handed to every handler.

use std::{
    ops::Deref,
    sync::{Arc, atomic::AtomicBool},
};

use crate::{
    auth::{hs256::Verifier, jwt::JwtKeys, password::HashPool},
    config::Settings,
    coupons::{batch::Grants, directory::Directory},
    goods::images::Images,
    orders::batch::FlashSale,
    platform::{
        cache::Cache, db::Db, group_commit::GroupCommit, metrics::Metrics, redis::Redis,
        resilience::Breakers, runtime_config::RuntimeConfigHandle,
    },
    queue::pass::QueueClaims,
    wallet::batch::Charges,
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    /// PostgreSQL behind its breaker and bulkhead (`platform::db::Db`).
    pub db: Db,
    pub redis: Redis,
    pub metrics: Arc<Metrics>,
    pub runtime: RuntimeConfigHandle,
    pub cache: Cache,
    /// Circuit breakers around PostgreSQL and Redis (`platform::resilience`).
    pub breakers: Arc<Breakers>,
    /// Group commit of the hot write paths (`platform::group_commit`): flash-sale orders per
    /// goods item, charges per wallet.
    pub order_batches: GroupCommit<FlashSale>,
    pub charge_batches: GroupCommit<Charges>,
    /// Coupon grants per campaign, written before the 201 (`coupons::batch`).
    pub coupon_grants: GroupCommit<Grants>,
    /// Campaign ids known to exist or not, and per-campaign reload locks.
    pub coupon_campaigns: Directory,
    pub jwt: JwtKeys,
    /// Waiting-room passes already verified with `jwt`'s key (`queue::pass`).
    pub queue_passes: Verifier<QueueClaims>,
    /// Set on SIGTERM: readiness turns false so load balancers stop sending traffic.
    pub draining: AtomicBool,
    /// See `auth::password::dummy_hash`.
    pub dummy_hash: String,
    /// The bounded argon2 slots of logins and signups (`auth::password`).
    pub passwords: HashPool,
    /// Goods images: the store (local folder or S3), limits, the thumbnail worker's wake-up.
    pub images: Images,
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

/// Group-commit batches run against the application's database and metrics.
impl crate::platform::group_commit::Context for AppState {
    fn db(&self) -> &Db {
        &self.db
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The client address behind trusted proxies (`extract::ClientIp`).
impl crate::extract::client_ip::ProxySettings for AppState {
    fn trusted_proxies(&self) -> &[crate::extract::client_ip::Cidr] {
        &self.settings.trusted_proxies
    }

    fn client_ip_header(&self) -> Option<&str> {
        self.settings.client_ip_header.as_deref()
    }
}
