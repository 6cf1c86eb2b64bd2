//! TLS to the dependencies, all through rustls with the ring provider.
//!
//! - PostgreSQL: DATABASE_URL's own parameters, read by sqlx: `sslmode=verify-full` checks the
//!   chain against `sslrootcert=` (a PEM bundle) and the host name; `sslcert=`/`sslkey=` add
//!   a client certificate. Nothing here.
//! - Redis: a `rediss://` REDIS_URL, verified against FLOODGATE_REDIS_CA_FILE (else the
//!   system's roots), with an optional client certificate. The same certificates serve a
//!   cluster client ([`redis_certificates`]).

use std::path::Path;

use redis::{Client, ClientTlsConfig, ErrorKind, RedisError, RedisResult, TlsCertificates};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// The Redis client for REDIS_URL with the TLS settings applied.
pub fn redis_client(settings: &Settings) -> RedisResult<Client> {
    let url = settings.redis_url.expose_secret();
    match redis_certificates(settings)? {
        Some(certs) => Client::build_with_tls(url, certs),
        None => Client::open(url),
    }
}

/// The CA bundle and client certificate from the settings (`None`: neither is set, so a
/// `rediss://` URL is verified against the system's roots).
pub fn redis_certificates(settings: &Settings) -> RedisResult<Option<TlsCertificates>> {
    let root_cert = settings
        .redis_ca_file
        .as_deref()
        .map(read_pem)
        .transpose()?;
    let client_tls = match (
        &settings.redis_client_cert_file,
        &settings.redis_client_key_file,
    ) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(cert)?,
            client_key: read_pem(key)?,
        }),
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn read_pem(path: &Path) -> RedisResult<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read a Redis TLS file",
            format!("{}: {e}", path.display()),
        ))
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "a Redis TLS file is not PEM",
            path.display().to_string(),
        )));
    }
    Ok(bytes)
}
