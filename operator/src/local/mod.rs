//! `floodgate-operator run --manifests DIR`: the same reconcilers without a cluster. Resources
//! come from YAML files (re-read when they change), Redis and the app's `/metrics` are real,
//! and the Deployment scaling is reported (log, metrics, status file) instead of applied.

pub mod manifests;
pub mod platform;
pub mod run;
