//! Process configuration from environment variables (and the same names as flags).
//!
//! Every setting has a default that works on a developer's machine with the services that
//! `make run` starts; only the JWT secret is required: in production mode, and on any listen
//! address other than loopback (the built-in development key is public).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::extract::client_ip::Cidr;

/// The private PostgreSQL that `make run` / `make test` start when none is reachable.
pub const DEFAULT_DATABASE_URL: &str = "postgres://floodgate:floodgate@127.0.0.1:54329/floodgate";
/// The private Redis that `make run` / `make test` start when none is reachable.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:63799";
/// Used only in dev mode on a loopback listen address, so a fresh checkout runs without any
/// secret set. It is in the source, so anyone can sign tokens with it.
const DEV_JWT_SECRET: &str = "floodgate-dev-only-secret-change-me-0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Dev,
    Production,
}

/// Where goods images live (`goods::images::storage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImageStoreKind {
    /// A folder on this machine (`FLOODGATE_IMAGE_DIR`): one replica, or a shared volume.
    Local,
    /// An S3 bucket (or an S3-compatible server at `FLOODGATE_IMAGE_S3_ENDPOINT`).
    S3,
}

/// The goods image store and its limits (flattened into [`Settings`]).
#[derive(Clone, Debug, Args)]
pub struct ImageSettings {
    /// `local` (a folder, the default) or `s3`.
    #[arg(
        long,
        env = "FLOODGATE_IMAGE_STORE",
        value_enum,
        default_value = "local"
    )]
    pub image_store: ImageStoreKind,

    /// The folder of the local store (created when missing).
    #[arg(long, env = "FLOODGATE_IMAGE_DIR", default_value = ".data/images")]
    pub image_dir: std::path::PathBuf,

    /// The bucket of the S3 store (required with FLOODGATE_IMAGE_STORE=s3).
    #[arg(long, env = "FLOODGATE_IMAGE_S3_BUCKET")]
    pub image_s3_bucket: Option<String>,

    /// The S3 region.
    #[arg(long, env = "FLOODGATE_IMAGE_S3_REGION", default_value = "us-east-1")]
    pub image_s3_region: String,

    /// An S3-compatible server instead of AWS (MinIO, Ceph, ...), e.g. `http://minio:9000`;
    /// requests are path-style. `http://` endpoints are allowed.
    #[arg(long, env = "FLOODGATE_IMAGE_S3_ENDPOINT")]
    pub image_s3_endpoint: Option<String>,

    /// S3 credentials; unset, the AWS environment's other sources are used (web identity
    /// token, container or instance credentials).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<SecretString>,

    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<SecretString>,

    /// Largest accepted image file, in bytes.
    #[arg(long, env = "FLOODGATE_IMAGE_MAX_BYTES", default_value_t = 5 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1..=(64 * 1024 * 1024)))]
    pub image_max_bytes: u32,

    /// Most images of one goods item.
    #[arg(long, env = "FLOODGATE_IMAGE_MAX_PER_GOODS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub image_max_per_goods: u32,

    /// Longest side of a thumbnail, in pixels (smaller images keep their size).
    #[arg(long, env = "FLOODGATE_IMAGE_THUMB_PX", default_value_t = 320, value_parser = clap::value_parser!(u32).range(16..=2048))]
    pub image_thumb_px: u32,
}

/// What DATABASE_URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DbPooler {
    /// PostgreSQL itself, or a pooler in session mode.
    None,
    /// A transaction-pooling PgBouncer (< 1.21, or without `max_prepared_statements`).
    Transaction,
}

#[derive(Clone, Debug, Args)]
pub struct Settings {
    /// `production` refuses to start without FLOODGATE_JWT_SECRET.
    #[arg(long, env = "FLOODGATE_ENV", value_enum, default_value = "dev")]
    pub env: Environment,

    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: SecretString,

    /// One node's URL, or with `FLOODGATE_REDIS_MODE=cluster` a comma-separated list of
    /// cluster seed nodes (any one that answers is enough; list several).
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL, hide_env_values = true)]
    pub redis_url: SecretString,

    /// `single` (one Redis, or a primary behind a failover proxy/Sentinel-managed address) or
    /// `cluster` (Redis Cluster: slots, MOVED redirections and failovers followed by the client).
    #[arg(long, env = "FLOODGATE_REDIS_MODE", default_value = "single")]
    pub redis_mode: floodgate_crds::redis_conn::RedisMode,

    /// PEM bundle of the CAs a `rediss://` REDIS_URL is verified against, instead of the
    /// system's roots (a private CA). The certificate must name the URL's host.
    #[arg(long, env = "FLOODGATE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) shown to a Redis that asks for one (`tls-auth-clients`);
    /// with FLOODGATE_REDIS_CLIENT_KEY_FILE.
    #[arg(long, env = "FLOODGATE_REDIS_CLIENT_CERT_FILE")]
    pub redis_client_cert_file: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "FLOODGATE_REDIS_CLIENT_KEY_FILE")]
    pub redis_client_key_file: Option<PathBuf>,

    /// `transaction` when DATABASE_URL is a transaction-pooling PgBouncer older than 1.21
    /// (no prepared statements across transactions): statement cache off, every unit of
    /// work in one transaction, the statement timeout set per transaction. See docs/deploy.md.
    #[arg(long, env = "FLOODGATE_DB_POOLER", value_enum, default_value = "none")]
    pub db_pooler: DbPooler,

    /// PostgreSQL itself, for migrations (they hold a session advisory lock, which a
    /// transaction pooler cannot keep). Default: DATABASE_URL.
    #[arg(long, env = "FLOODGATE_DB_MIGRATION_URL", hide_env_values = true)]
    pub db_migration_url: Option<SecretString>,

    /// Prefix of every Redis key (tests use a unique one each for isolation).
    #[arg(long, env = "FLOODGATE_REDIS_PREFIX", default_value = "fg:")]
    pub redis_prefix: String,

    /// HS256 key for access tokens and queue passes; at least 32 bytes.
    #[arg(long, env = "FLOODGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    #[arg(long, env = "FLOODGATE_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Maximum PostgreSQL connections of this process.
    #[arg(long, env = "FLOODGATE_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// How long a request waits for a pooled connection before answering 503.
    #[arg(long, env = "FLOODGATE_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_acquire_timeout_ms: u64,

    /// Server-side limit on one SQL statement (PostgreSQL `statement_timeout`).
    #[arg(
        long,
        env = "FLOODGATE_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub db_statement_timeout_ms: u64,

    /// Client-side deadline of one guarded database unit (acquire + transaction); it also
    /// covers a stalled server, which never enforces its own statement timeout.
    #[arg(long, env = "FLOODGATE_DB_CALL_TIMEOUT_MS", default_value_t = 8_000)]
    pub db_call_timeout_ms: u64,

    /// Client-side deadline of one guarded Redis call (the connection's own response
    /// timeout is 2 s; this also bounds its one retry).
    #[arg(long, env = "FLOODGATE_REDIS_CALL_TIMEOUT_MS", default_value_t = 3_000)]
    pub redis_call_timeout_ms: u64,

    /// Bulkhead: PostgreSQL calls in flight at once in this process (waiting for a pooled
    /// connection included). A call beyond it is refused at once with 503, so a stalled
    /// database can hold at most this share of `FLOODGATE_MAX_IN_FLIGHT`.
    #[arg(long, env = "FLOODGATE_DB_BULKHEAD", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_bulkhead: u32,

    /// Bulkhead: guarded Redis calls in flight at once in this process (see `FLOODGATE_DB_BULKHEAD`).
    #[arg(long, env = "FLOODGATE_REDIS_BULKHEAD", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    pub redis_bulkhead: u32,

    /// Database reads at once that fall through a cache Redis cannot serve, so an outage of
    /// Redis does not stampede PostgreSQL.
    #[arg(long, env = "FLOODGATE_DB_FALLTHROUGH_LIMIT", default_value_t = 8)]
    pub db_fallthrough_limit: usize,

    /// Oldest copy of a cached read served while PostgreSQL is unavailable (stale-while-error).
    #[arg(long, env = "FLOODGATE_STALE_MAX_AGE_SECS", default_value_t = 600)]
    pub stale_max_age_secs: u64,

    /// Most stale copies of cached reads kept in this process; past it the least recently
    /// used are evicted.
    #[arg(long, env = "FLOODGATE_STALE_MAX_ENTRIES", default_value_t = 10_000)]
    pub stale_max_entries: usize,

    /// Most bytes of stale copies kept in this process (values, keys and a fixed per-entry
    /// overhead); past it the least recently used are evicted.
    #[arg(long, env = "FLOODGATE_STALE_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub stale_max_bytes: usize,

    /// Whole-request timeout; past it the client gets 503.
    #[arg(long, env = "FLOODGATE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// API requests admitted at once; beyond it requests are shed at once with 503 +
    /// Retry-After, before any of their body is read.
    #[arg(long, env = "FLOODGATE_MAX_IN_FLIGHT", default_value_t = 4_096)]
    pub max_in_flight: usize,

    /// Bytes of API requests admitted at once: each is charged its head, its declared body
    /// (the body limit when undeclared) and 8 KiB for its handler and response; beyond it
    /// requests are shed at once with 503 + Retry-After.
    #[arg(long, env = "FLOODGATE_MAX_IN_FLIGHT_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_in_flight_bytes: usize,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "FLOODGATE_BODY_LIMIT_BYTES", default_value_t = 65_536)]
    pub body_limit_bytes: usize,

    /// Open HTTP connections at once; past it no more are accepted (they wait in the
    /// kernel's backlog) until one closes.
    #[arg(long, env = "FLOODGATE_MAX_CONNECTIONS", default_value_t = 4_096)]
    pub max_connections: usize,

    /// Largest read buffer of one connection, in bytes (at least 8,192); it also caps a
    /// request's head (method, target, headers): past it, 431.
    #[arg(long, env = "FLOODGATE_CONN_BUFFER_BYTES", default_value_t = 16_384)]
    pub conn_buffer_bytes: usize,

    /// A request head must arrive within this long, or the connection is closed.
    #[arg(
        long,
        env = "FLOODGATE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub header_read_timeout_ms: u64,

    /// Identifies this process in `fg:config:applied` (a pod sets it to its name).
    #[arg(long, env = "FLOODGATE_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// Proxies whose forwarding header is believed (comma-separated CIDRs or addresses, e.g.
    /// the ingress controller's pod CIDR). Empty: the client is the TCP peer and no header is
    /// read. See `extract::client_ip`.
    #[arg(long, env = "FLOODGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Forwarding header read behind a trusted proxy (default `x-forwarded-for`); the client
    /// is its rightmost entry not added by a trusted proxy. Needs FLOODGATE_TRUSTED_PROXIES.
    #[arg(long, env = "FLOODGATE_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,

    /// Login and signup attempts per client IP per minute.
    #[arg(long, env = "FLOODGATE_AUTH_LIMIT_PER_IP", default_value_t = 60)]
    pub auth_limit_per_ip: u32,

    /// Login and signup attempts per email address per minute.
    #[arg(long, env = "FLOODGATE_AUTH_LIMIT_PER_EMAIL", default_value_t = 10)]
    pub auth_limit_per_email: u32,

    /// Password hashes (argon2id, about 19 MiB each) computed at once by this process.
    /// Default: the number of CPUs, at most 8.
    #[arg(long, env = "FLOODGATE_PASSWORD_HASH_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub password_hash_concurrency: Option<u32>,

    /// How long a login or signup waits for a hashing slot before it is answered 503 +
    /// Retry-After (0: at once).
    #[arg(long, env = "FLOODGATE_PASSWORD_HASH_WAIT_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    pub password_hash_wait_ms: u64,

    /// Seconds a rotated refresh token may still be presented (two tabs refreshing at once)
    /// and get a new pair instead of revoking the login as stolen (0: never).
    #[arg(long, env = "FLOODGATE_REFRESH_REUSE_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub refresh_reuse_grace_secs: u64,

    /// Group commit of hot-row writes (flash-sale orders, charges of one wallet): how long
    /// the first write waits for others to share its transaction, in microseconds (0: none).
    #[arg(
        long,
        env = "FLOODGATE_GROUP_COMMIT_WINDOW_US",
        default_value_t = 2_000
    )]
    pub group_commit_window_us: u64,

    /// Most writes one group-commit transaction carries.
    #[arg(long, env = "FLOODGATE_GROUP_COMMIT_MAX", default_value_t = 256)]
    pub group_commit_max: usize,

    /// Largest single wallet charge, in minor units.
    #[arg(long, env = "FLOODGATE_MAX_CHARGE", default_value_t = 10_000_000)]
    pub max_charge: i64,

    /// Seconds between SIGTERM (readiness turns false) and closing the listener, so load
    /// balancers stop routing here before connections are refused.
    #[arg(long, env = "FLOODGATE_SHUTDOWN_DELAY_SECS", default_value_t = 0)]
    pub shutdown_delay_secs: u64,

    #[command(flatten)]
    pub images: ImageSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("FLOODGATE_JWT_SECRET is required when FLOODGATE_ENV=production")]
    MissingJwtSecret,
    #[error("FLOODGATE_JWT_SECRET must be at least 32 bytes")]
    ShortJwtSecret,
    #[error(
        "FLOODGATE_JWT_SECRET is not set and FLOODGATE_LISTEN_ADDR={0} is not a loopback address: \
         the built-in development key is public, so anyone who reaches this address could sign \
         admin tokens. Set FLOODGATE_JWT_SECRET (at least 32 random bytes) or listen on 127.0.0.1"
    )]
    BuiltInSecretOffLoopback(SocketAddr),
    #[error(
        "FLOODGATE_CLIENT_IP_HEADER is set without FLOODGATE_TRUSTED_PROXIES: name the proxies \
         (CIDRs) whose header is believed, or the header would be ignored"
    )]
    ClientIpHeaderWithoutProxies,
    #[error("FLOODGATE_REDIS_PREFIX must be 1-64 characters without spaces, braces or quotes")]
    BadRedisPrefix,
    #[error("FLOODGATE_IMAGE_STORE=s3 needs FLOODGATE_IMAGE_S3_BUCKET")]
    MissingImageBucket,
    #[error("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")]
    HalfImageCredentials,
    #[error(
        "FLOODGATE_REDIS_CA_FILE or a Redis client certificate is set but REDIS_URL is not \
         rediss:// (TLS): use rediss://HOST:PORT or drop the TLS settings"
    )]
    RedisTlsWithoutRediss,
    #[error("FLOODGATE_REDIS_CLIENT_CERT_FILE and FLOODGATE_REDIS_CLIENT_KEY_FILE go together")]
    RedisClientCertHalf,
    #[error(
        "FLOODGATE_DB_POOLER=transaction needs FLOODGATE_DB_MIGRATION_URL (PostgreSQL itself, \
         not the pooler): migrations hold a session advisory lock"
    )]
    PoolerWithoutMigrationUrl,
}

impl Settings {
    /// Settings with every default, for tests and tools.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        // Only defaults and the environment; a bad environment is a startup error anyway.
        Wrapper::parse_from(["floodgate-app"]).settings
    }

    /// Checks what clap cannot; returns the JWT key to use.
    pub fn validate(&self) -> Result<SecretString, SettingsError> {
        let p = &self.redis_prefix;
        if p.is_empty()
            || p.len() > 64
            || p.chars().any(|c| c.is_whitespace() || "{}\"'".contains(c))
        {
            return Err(SettingsError::BadRedisPrefix);
        }
        self.validate_redis_tls()?;
        if self.db_pooler == DbPooler::Transaction && self.db_migration_url.is_none() {
            return Err(SettingsError::PoolerWithoutMigrationUrl);
        }
        if self.client_ip_header.is_some() && self.trusted_proxies.is_empty() {
            return Err(SettingsError::ClientIpHeaderWithoutProxies);
        }
        let images = &self.images;
        if images.image_store == ImageStoreKind::S3 && images.image_s3_bucket.is_none() {
            return Err(SettingsError::MissingImageBucket);
        }
        if images.aws_access_key_id.is_some() != images.aws_secret_access_key.is_some() {
            return Err(SettingsError::HalfImageCredentials);
        }
        let secret = match (&self.jwt_secret, self.env) {
            (Some(s), _) => s.clone(),
            (None, Environment::Production) => return Err(SettingsError::MissingJwtSecret),
            (None, Environment::Dev) if !self.listen_addr.ip().is_loopback() => {
                return Err(SettingsError::BuiltInSecretOffLoopback(self.listen_addr));
            }
            (None, Environment::Dev) => SecretString::from(DEV_JWT_SECRET),
        };
        if secret.expose_secret().len() < 32 {
            return Err(SettingsError::ShortJwtSecret);
        }
        Ok(secret)
    }

    fn validate_redis_tls(&self) -> Result<(), SettingsError> {
        let cert = self.redis_client_cert_file.is_some();
        if cert != self.redis_client_key_file.is_some() {
            return Err(SettingsError::RedisClientCertHalf);
        }
        let tls = self.redis_url.expose_secret().starts_with("rediss");
        if (cert || self.redis_ca_file.is_some()) && !tls {
            return Err(SettingsError::RedisTlsWithoutRediss);
        }
        Ok(())
    }

    /// True when tokens are signed with the public development key (dev mode, loopback,
    /// no secret): fine on a developer's machine, and said loudly at startup.
    pub fn uses_built_in_secret(&self) -> bool {
        self.jwt_secret.is_none() && self.env == Environment::Dev
    }

    /// See `FLOODGATE_PASSWORD_HASH_CONCURRENCY`.
    pub fn password_hash_concurrency(&self) -> usize {
        self.password_hash_concurrency.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            |n| n as usize,
        )
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn replica_id(&self) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
