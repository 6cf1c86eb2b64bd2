//! Infrastructure every domain uses: the PostgreSQL pool and migrations, the Redis
//! connection, metrics, the runtime-config reader, group commit of hot-row writes and
//! background-task plumbing, and the `Money` type.

pub mod api_router;
pub mod batch;
pub mod breaker;
pub mod cache;
pub mod db;
pub mod group_commit;
pub mod ids;
pub mod metrics;
pub mod money;
pub mod redis;
pub mod resilience;
pub mod runtime_config;
pub mod stale;
pub mod tls;
