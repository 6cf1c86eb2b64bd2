//! TLS to the dependencies, all through rustls with the ring provider.
//!
//! - PostgreSQL: DATABASE_URL's own parameters, read by sqlx: `sslmode=verify-full` checks the
//!   chain against `sslrootcert=` (a PEM bundle) and the host name; `sslcert=`/`sslkey=` add
//!   a client certificate. Nothing here.
//! - Redis: a `rediss://` REDIS_URL (every seed of a cluster), verified against
//!   FLOODGATE_REDIS_CA_FILE (else the system's roots), with an optional client certificate:
//!   [`redis_tls`], applied by `floodgate_crds::redis_conn` (shared with the operator).

use floodgate_crds::redis_conn::RedisTls;

use crate::config::Settings;

/// The Redis TLS files the settings name.
pub fn redis_tls(settings: &Settings) -> RedisTls {
    RedisTls {
        ca_file: settings.redis_ca_file.clone(),
        client_cert_file: settings.redis_client_cert_file.clone(),
        client_key_file: settings.redis_client_key_file.clone(),
    }
}
