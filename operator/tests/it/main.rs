//! The operator's integration tests, one binary: the `run --manifests` mode against a real
//! app, the Redis store against a real redis-server (restarts, TLS, a Redis Cluster) and the
//! extra scaling triggers against real Prometheus, nginx and Redis streams. The Python checks
//! of the CRD examples stay beside this folder (operator/tests/validate_examples.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod local_mode;
mod redis_cluster;
mod redis_restart;
mod tls;
mod triggers;
