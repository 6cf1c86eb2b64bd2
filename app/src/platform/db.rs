//! PostgreSQL pool and migrations.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A lazily connecting pool: the process starts (and reports not-ready) while the database
/// is down, and requests fail fast with 503 once `acquire_timeout` passes.
pub fn pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.database_url.expose_secret().parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.db_pool_size)
        .min_connections(0)
        .acquire_timeout(settings.db_acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options.application_name("floodgate-app").options([(
            "statement_timeout",
            settings.db_statement_timeout_ms.to_string(),
        )])))
}

/// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while it migrates, so
/// replicas starting together apply each migration once.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Retries `migrate` while the database is still coming up (a pod may start before it).
pub async fn migrate_with_retry(pool: &PgPool, attempts: u32) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=attempts {
        match migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < attempts && is_unreachable(&e) => {
                tracing::warn!(attempt, error = %e, "database not reachable yet; retrying migrations");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    anyhow::bail!("database unreachable after {attempts} attempts")
}

fn is_unreachable(e: &sqlx::migrate::MigrateError) -> bool {
    matches!(
        e,
        sqlx::migrate::MigrateError::Execute(
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
        )
    )
}

/// True when the newest embedded migration has been applied successfully.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let Some(latest) = MIGRATOR.iter().map(|m| m.version).max() else {
        return Ok(true);
    };
    let applied: Option<i64> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(pool)
            .await?;
    Ok(applied == Some(latest))
}
