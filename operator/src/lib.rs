//! The Floodgate operator: reconciles `Campaign` and `QueueConfig` resources into the app
//! Deployment's replica count, Redis memory settings and the runtime document the app reads.
//!
//! Shaped like kube-rs's controller-rs (reconcile + error_policy + finalizer, metrics, a
//! mocked API server in `fixtures`), with each reconcile a Stackable-style pipeline:
//! observe → decide (pure, in [`scaling`], [`phase`] and [`merge`]) → act → status.

pub mod cluster;
pub mod crd;
pub mod http;
pub mod local;
pub mod merge;
pub mod observe;
pub mod phase;
pub mod reconcile;
pub mod scaling;
pub mod store;
pub mod telemetry;
pub mod window;
