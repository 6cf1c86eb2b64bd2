//! The Kubernetes front end: controllers for both resources with finalizers and an error
//! policy, the API-backed [`platform::KubePlatform`], and leader election on a Lease.

pub mod controller;
#[cfg(test)]
mod fixture_calls;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod platform;
pub mod rollout;
#[cfg(test)]
mod tests;
