//! Building the state, starting background loops, serving and draining.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{net::TcpListener, sync::watch};

use crate::{
    auth::{jwt::JwtKeys, password},
    config::Settings,
    coupons::{batch::Grants, directory::Directory},
    goods::images::{self, Images},
    http,
    orders::batch::FlashSale,
    platform::{
        cache::Cache,
        db::{self, Db},
        group_commit::GroupCommit,
        metrics::Metrics,
        redis::Redis,
        resilience::{Breakers, CallLimits},
        runtime_config::{Reader, RuntimeConfigHandle},
        stale::StaleBounds,
    },
    state::{AppState, Inner},
    wallet::batch::Charges,
};

/// Builds the state from settings and an existing pool (tests pass their own database).
pub fn build_state(settings: Settings, db: sqlx::PgPool) -> anyhow::Result<AppState> {
    let secret = settings.validate()?;
    if settings.uses_built_in_secret() {
        tracing::warn!(
            listen_addr = %settings.listen_addr,
            "FLOODGATE_JWT_SECRET is not set: tokens are signed with the built-in development key, \
             which is public (anyone who can reach this address can mint admin tokens). Allowed \
             only on a loopback address; set FLOODGATE_JWT_SECRET for anything else"
        );
    }
    let images = Images::from_settings(&settings.images)?;
    let metrics = Arc::new(Metrics::new());
    let runtime = RuntimeConfigHandle::default();
    let breakers = Arc::new(Breakers::new(
        &runtime,
        &metrics,
        CallLimits {
            timeout: Duration::from_millis(settings.db_call_timeout_ms),
            bulkhead: settings.db_bulkhead as usize,
        },
        CallLimits {
            timeout: Duration::from_millis(settings.redis_call_timeout_ms),
            bulkhead: settings.redis_bulkhead as usize,
        },
    ));
    let redis = Redis::connect(&settings, breakers.clone())?;
    let cache = Cache::new(
        settings.db_fallthrough_limit,
        settings.db_acquire_timeout(),
        Duration::from_secs(settings.stale_max_age_secs),
        StaleBounds {
            max_entries: settings.stale_max_entries,
            max_bytes: settings.stale_max_bytes,
        },
    );
    let passwords = password::HashPool::new(
        settings.password_hash_concurrency(),
        Duration::from_millis(settings.password_hash_wait_ms),
        metrics.clone(),
    );
    Ok(AppState::new(Inner {
        jwt: JwtKeys::new(&secret),
        queue_passes: crate::queue::pass::verifier(),
        db: Db::new(db, breakers.clone()).behind(&settings),
        redis,
        metrics,
        runtime,
        cache,
        breakers,
        order_batches: GroupCommit::new(FlashSale, &settings),
        charge_batches: GroupCommit::new(Charges, &settings),
        coupon_grants: GroupCommit::new(Grants, &settings),
        coupon_campaigns: Directory::default(),
        draining: false.into(),
        dummy_hash: password::dummy_hash(),
        passwords,
        images,
        settings,
    }))
}

/// Background loops of one replica; they stop when `shutdown` flips to true.
pub fn spawn_background(
    state: &AppState,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let reader = Reader::new(
        state.runtime.clone(),
        state.redis.clone(),
        state.metrics.clone(),
        state.settings.replica_id(),
    );
    vec![
        tokio::spawn(reader.run(shutdown.clone())),
        tokio::spawn(crate::queue::admission::run(
            state.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(crate::concerts::sweeper::run(
            state.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(purge_idempotency(state.db.clone(), shutdown.clone())),
        tokio::spawn(state.breakers.clone().watch(shutdown.clone())),
        tokio::spawn(cache_resync(state.clone(), shutdown.clone())),
        tokio::spawn(images::thumbnails::run(state.clone(), shutdown.clone())),
        tokio::spawn(crate::coupons::reconciler::run(state.clone(), shutdown)),
    ]
}

/// Expired Idempotency-Key records are deleted every minute (any replica may do it).
async fn purge_idempotency(db: crate::platform::db::Db, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = db.unguarded(crate::idempotency::purge_expired).await {
            tracing::debug!(error = %e, "idempotency purge failed");
        }
    }
}

/// Replays cache invalidations that missed Redis (see `platform::cache`).
async fn cache_resync(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        state.cache.resync(&state.redis).await;
    }
}

/// Serves on `listener` until `shutdown` flips, then drains in-flight requests.
pub async fn serve_on(
    state: AppState,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = http::router(state.clone());
    let delay = Duration::from_secs(state.settings.shutdown_delay_secs);
    let limits = http::connections::ConnLimits {
        max_connections: state.settings.max_connections,
        max_buf_size: state.settings.conn_buffer_bytes,
        header_read_timeout: Duration::from_millis(state.settings.header_read_timeout_ms),
    };
    let flag = state.clone();
    let draining = move || flag.draining.load(Ordering::Relaxed);
    http::connections::serve(listener, app, limits, draining, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        state.draining.store(true, Ordering::Relaxed);
        tracing::info!(delay_secs = delay.as_secs(), "draining: readiness is false");
        tokio::time::sleep(delay).await;
    })
    .await
}

/// `floodgate-app serve`: migrate, start loops, serve until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let pool = db::pool(&settings)?;
    if settings.db_migration_url.is_some() {
        let direct = db::direct_pool(&settings)?;
        db::migrate_with_retry(&direct, 30).await?;
        direct.close().await;
    } else {
        db::migrate_with_retry(&pool, 30).await?;
    }
    let state = build_state(settings, pool)?;
    let listener = TcpListener::bind(state.settings.listen_addr).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = spawn_background(&state, stop_rx.clone());
    tracing::info!(
        addr = %listener.local_addr()?,
        startup_ms = started.elapsed().as_millis() as u64,
        "floodgate-app listening"
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    serve_on(state.clone(), listener, stop_rx).await?;
    for t in tasks {
        t.abort();
    }
    state.db.pool().close().await;
    tracing::info!("floodgate-app stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
