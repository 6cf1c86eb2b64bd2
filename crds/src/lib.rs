//! Types shared by `floodgate-app` and `floodgate-operator`.
//!
//! - [`runtime`]: the operator → app runtime-configuration contract (the `fg:config` document).
//! - [`duration`]: the human duration strings (`250ms`, `30s`, `5m`, `2h`) used in both the
//!   custom resources and the runtime document.
//!
//! With the `kube` feature the crate also carries the `Campaign` and `QueueConfig` custom
//! resources ([`v1alpha1`]); the app builds without it. With `redis`, [`redis_conn`]: the
//! Redis connection (single node or cluster) both processes use.

pub mod duration;
#[cfg(feature = "redis")]
pub mod redis_conn;
pub mod runtime;
#[cfg(feature = "kube")]
pub mod v1alpha1;

pub use duration::Dur;
pub use runtime::{
    BreakerSettings, BreakerState, CircuitBreakers, ConfigError, QueueSettings, Queueing,
    RuntimeConfig, SlidingWindow, SlidingWindowType, Ttls,
};
