//! The hold sweeper: expired holds free their seats without anyone acting. One replica at a
//! time sweeps (Redis lease), every second, in batches; reads already treat an expired hold
//! as free, so the sweep only tidies rows and refreshes cached lists.

use std::time::Duration;

use tokio::sync::watch;

use super::{
    cache,
    types::{ConcertId, ScheduleId},
};
use crate::{queue::lease::Lease, state::AppState};

const EVERY: Duration = Duration::from_secs(1);
const BATCH: i64 = 1_000;

/// Expires up to `BATCH` lapsed holds and frees their seats (unless already re-held or
/// sold); returns the schedules touched.
///
/// Lock order, as everywhere (`reservations/service.rs`): the reservations first (all of the
/// batch, skipping those a hold or payment has locked), then their seats. A hold takes the
/// lapsed reservation before its seat too, so it waits for the sweep instead of deadlocking it.
pub async fn sweep_once(state: &AppState) -> Result<Vec<(ScheduleId, ConcertId)>, sqlx::Error> {
    state.db.unguarded(async |c| sqlx::query_as(
        "with expired as (
            update reservations set status = 'expired'
             where reservation_id in (select reservation_id from reservations
                                       where status = 'held' and expires_at <= now()
                                       order by expires_at limit $1 for update skip locked)
            returning reservation_id, seat_id, schedule_id),
         freed as (
            update seats s set held_by = null, hold_expires_at = null, hold_reservation_id = null
              from expired e
             where s.seat_id = e.seat_id and s.hold_reservation_id = e.reservation_id
            returning s.seat_id)
         select distinct e.schedule_id, sc.concert_id from expired e join schedules sc using (schedule_id)",
    )
    .bind(BATCH)
    .fetch_all(c)
    .await).await
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let holder = format!(
        "{}:{}",
        state.settings.replica_id(),
        uuid::Uuid::new_v4().simple()
    );
    let lease = Lease::new(&state.redis, "{sweep:holds}:lease", &holder);
    loop {
        if lease.hold(&state.redis).await {
            match sweep_once(&state).await {
                Ok(touched) => {
                    if !touched.is_empty() {
                        tracing::debug!(schedules = touched.len(), "expired holds swept");
                    }
                    for (schedule, concert) in touched {
                        cache::invalidate(&state, schedule, concert).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "hold sweep failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
    lease.release(&state.redis).await;
}
