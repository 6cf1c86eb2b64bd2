//! argon2id hashing, run on the blocking pool so a burst of logins cannot stall the async
//! workers, and bounded so it cannot exhaust memory: each hash holds about 19 MiB (argon2's
//! default m = 19456 KiB) for its whole run, so at most `FLOODGATE_PASSWORD_HASH_CONCURRENCY`
//! hashes run at once. A request that finds every slot taken waits at most
//! `FLOODGATE_PASSWORD_HASH_WAIT_MS`, then gets 503 + `Retry-After` without hashing.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{error::ApiError, platform::metrics::Metrics};

/// The hashing slots of this process.
pub struct HashPool {
    slots: Arc<Semaphore>,
    wait: Duration,
    metrics: Arc<Metrics>,
}

/// One occupied slot; it travels into the blocking task, so the slot stays taken until the
/// hash is done even when the request that asked for it has gone away.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.password_hashes_in_flight.dec();
    }
}

impl HashPool {
    pub fn new(concurrency: usize, wait: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
            metrics,
        }
    }

    async fn slot(&self) -> Result<Slot, ApiError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if self.wait.is_zero() => None,
            Err(_) => tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        };
        let Some(permit) = permit else {
            self.metrics.password_hash_rejected.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth-busy",
                "too many sign-ins are being checked at once; retry in a second",
            )
            .retry_after(1));
        };
        let now = self.metrics.password_hashes_in_flight.inc() + 1;
        self.metrics
            .password_hashes_in_flight_peak
            .inner()
            .fetch_max(now, Ordering::Relaxed);
        Ok(Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            hash_now(&password)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    }

    /// True when `password` matches `hash`. A malformed stored hash counts as a mismatch.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, ApiError> {
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(ApiError::internal)
    }
}

fn hash_now(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// One hash outside any pool, for the command line (`admin create`, `seed`), which runs one
/// at a time.
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// A real hash of a random password, verified against when the email is unknown so that
/// "no such user" costs the same time as "wrong password".
pub fn dummy_hash() -> String {
    hash_now(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
}
