//! The app's integration tests, one binary: each module is one area, run against real
//! PostgreSQL (one `#[sqlx::test]` database per test), real Redis (one key prefix per app)
//! and, where a test needs them, real processes (the `floodgate-app` binary, redis-server,
//! nginx, PgBouncer, a Redis Cluster, moto, Chromium). nextest runs every test in its own
//! process, so statics stay per test; select a module with `-E 'test(/^orders::/)'`.
#![allow(clippy::unwrap_used)]

/// The migrations every `#[sqlx::test(migrator = "MIGRATOR")]` database gets.
pub const MIGRATOR: &sqlx::migrate::Migrator = &floodgate_app::platform::db::MIGRATOR;

// shared support: the in-process app and its builders, then the helpers of some areas
mod cluster_support;
mod common;
mod concerts_support;
mod faults;
mod goods_images_support;
mod support;

mod abuse;
mod auth;
mod concerts;
mod config_loss;
mod coupons;
mod coupons_faults;
mod faults_app;
mod faults_postgres;
mod faults_redis;
mod goods;
mod goods_cache_bounds;
mod goods_images;
mod group_commit;
mod group_commit_faults;
mod orders;
mod overload;
mod pgbouncer;
mod platform;
mod queue;
mod queue_abandon;
mod queue_browser;
mod queue_crowd;
mod queue_failover;
mod queue_memory;
mod queue_registry;
mod readiness;
mod redis_cluster;
mod replicas;
mod replicas_queue;
mod tls;
mod wallet;
