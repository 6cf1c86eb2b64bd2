//! PostgreSQL: the pool, the guarded handle every request goes through, and migrations.

use std::{sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    AssertSqlSafe, Connection, PgConnection, PgPool, Postgres,
    migrate::Migrator,
    postgres::{PgArguments, PgConnectOptions, PgPoolOptions},
    query::{Query, QueryAs, QueryScalar},
};

use super::resilience::Breakers;
use crate::{
    config::{DbPooler, Settings},
    error::{ApiError, ApiResult},
};

/// The database as request paths see it: every unit of work runs under the PostgreSQL
/// breaker (refused at once while it is open), inside its bulkhead (a stalled database holds
/// at most that many requests), on one pooled connection, within the call deadline (a stalled
/// server enforces nothing itself). There is deliberately no `Deref` to the pool: a query
/// that bypasses the guard has to say so with [`Db::pool`].
///
/// Behind a transaction pooler (`FLOODGATE_DB_POOLER=transaction`) every unit is one
/// transaction opened with `begin`, which also sets the statement timeout (the pooler
/// refuses startup options): the pooler keeps a server connection for a whole transaction
/// only, so a statement prepared outside one could be executed on another server.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    breakers: Arc<Breakers>,
    begin: Option<Arc<str>>,
}

impl Db {
    pub fn new(pool: PgPool, breakers: Arc<Breakers>) -> Self {
        Self {
            pool,
            breakers,
            begin: None,
        }
    }

    /// Applies `FLOODGATE_DB_POOLER` (see the type's documentation).
    pub fn behind(self, settings: &Settings) -> Self {
        let begin = (settings.db_pooler == DbPooler::Transaction)
            .then(|| pooled_begin(settings.db_statement_timeout_ms).into());
        Self { begin, ..self }
    }

    /// The raw pool (closing it at shutdown, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// For background loops (which have their own retry) and readiness: `op` on one pooled
    /// connection without the breaker, inside a transaction when behind a pooler.
    pub async fn unguarded<T>(
        &self,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let Some(begin) = &self.begin else {
            return op(&mut conn).await;
        };
        let mut tx = conn.begin_with(AssertSqlSafe(begin.clone())).await?;
        let out = op(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Runs `op` on one pooled connection under the breaker, the bulkhead and the deadline.
    /// The slow-call clock starts once the connection is held: waiting in this process's
    /// own pool queue is local contention, bounded by the acquire timeout.
    pub async fn run<T, E: Into<ApiError>>(
        &self,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> ApiResult<T> {
        self.unit(1, self.begin.is_some(), op).await
    }

    /// Like [`Self::run`], inside one transaction: committed only if `op` succeeds; dropped
    /// (rolled back) on an error or when the deadline passes, so nothing is half-written.
    pub async fn tx<T, E: Into<ApiError>>(
        &self,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> ApiResult<T> {
        self.unit(1, true, op).await
    }

    /// [`Self::tx`] on behalf of `calls` requests (a group-commit batch,
    /// `platform::group_commit`): the breaker counts its outcome once per request, so window
    /// sizes, minimum calls and rates keep meaning requests whether or not they were batched.
    pub async fn tx_for<T, E: Into<ApiError>>(
        &self,
        calls: u32,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> ApiResult<T> {
        self.unit(calls, true, op).await
    }

    async fn unit<T, E: Into<ApiError>>(
        &self,
        calls: u32,
        in_tx: bool,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> ApiResult<T> {
        // boxed: a database call's future is kilobytes (sqlx's and the guard's states), and
        // kept inline it would make every caller's future as large, copied at each level of
        // every request that merely could reach the database (a cached read, a refusal)
        Box::pin(self.breakers.postgres.run_timed_for(calls, async |clock| {
            let mut conn = self.pool.acquire().await?;
            clock.restart();
            if !in_tx {
                return op(&mut conn).await.map_err(Into::into);
            }
            let mut tx = match &self.begin {
                Some(begin) => conn.begin_with(AssertSqlSafe(begin.clone())).await?,
                None => conn.begin().await?,
            };
            let out = op(&mut tx).await.map_err(Into::into)?;
            tx.commit().await?;
            Ok::<_, ApiError>(out)
        }))
        .await
    }
}

/// A batch statement joins a batch's arrays (`unnest($1::bigint[], ..)`, `= any($1)`) to a
/// table that grows with the traffic (idempotency records, wallets, paid sessions, coupons).
/// It is planned at each execution, with the arrays it carries (an unnamed statement), never
/// from a plan cached on the connection: a plan made while the table was small (a new
/// database, the first seconds of a sale, before autovacuum has analysed it) joins by
/// scanning the whole table, and a cached plan kept doing so on every later batch as the
/// table grew. In the hot-wallet bench (P5) that was 897 sequential scans reading 14 million
/// rows of `idempotency_keys` within 20 s, and most of PostgreSQL's CPU per charge (#18).
/// Planning a statement costs tens of µs, once per batch, not per request.
pub trait PlannedPerBatch {
    fn planned_per_batch(self) -> Self;
}

impl PlannedPerBatch for Query<'_, Postgres, PgArguments> {
    fn planned_per_batch(self) -> Self {
        self.persistent(false)
    }
}

impl<O> PlannedPerBatch for QueryAs<'_, Postgres, O, PgArguments> {
    fn planned_per_batch(self) -> Self {
        self.persistent(false)
    }
}

impl<O> PlannedPerBatch for QueryScalar<'_, Postgres, O, PgArguments> {
    fn planned_per_batch(self) -> Self {
        self.persistent(false)
    }
}

/// The statement opening every unit behind a transaction pooler.
fn pooled_begin(statement_timeout_ms: u64) -> String {
    format!("BEGIN; SET LOCAL statement_timeout = {statement_timeout_ms}")
}

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A lazily connecting pool: the process starts (and reports not-ready) while the database
/// is down, and requests fail fast with 503 once `acquire_timeout` passes.
/// TLS comes from the URL (`sslmode=verify-full&sslrootcert=...`, see `platform::tls`).
pub fn pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.database_url.expose_secret().parse()?;
    let options = options.application_name("floodgate-app");
    let options = match settings.db_pooler {
        DbPooler::None => options.options([(
            "statement_timeout",
            settings.db_statement_timeout_ms.to_string(),
        )]),
        // PgBouncer refuses startup options (the timeout is set per transaction instead,
        // see `Db`), and a cached statement would outlive the transaction that prepared it
        DbPooler::Transaction => options.statement_cache_capacity(0),
    };
    Ok(PgPoolOptions::new()
        .max_connections(settings.db_pool_size)
        .min_connections(0)
        .acquire_timeout(settings.db_acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// A pool on PostgreSQL itself, for migrations, seeding and admin commands:
/// FLOODGATE_DB_MIGRATION_URL when set (migrations hold a session advisory lock, which a
/// transaction pooler cannot keep), else the same as [`pool`].
pub fn direct_pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    let Some(url) = &settings.db_migration_url else {
        return pool(settings);
    };
    let options: PgConnectOptions = url.expose_secret().parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .acquire_timeout(settings.db_acquire_timeout())
        .connect_lazy_with(options.application_name("floodgate-migrate")))
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
pub async fn migrations_applied(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let Some(latest) = MIGRATOR.iter().map(|m| m.version).max() else {
        return Ok(true);
    };
    let applied: Option<i64> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(conn)
            .await?;
    Ok(applied == Some(latest))
}
