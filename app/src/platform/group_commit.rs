//! Group commit: concurrent writes to one hot row share one transaction, so the row's lock
//! and the commit's flush are paid once per batch instead of once per request.
//!
//! The first job for a key starts a worker (a task of its own); the worker collects jobs for
//! at most `window` after the oldest arrived, or until `max` are waiting, runs them in arrival
//! order in one transaction on one connection through the context's [`Db`] (breaker, bulkhead,
//! deadline — one bulkhead slot per batch; the breaker counts one call per job), and
//! answers each caller with its own result. One batch per key runs at a time: jobs arriving
//! meanwhile form the next batch, so batches grow with the load while an idle key adds at
//! most `window` to a request.
//!
//! After a batch the worker stays for up to `window`, and the next batch starts as soon as as
//! many jobs wait as the last one carried (`Slot::start_at`), without waiting out the window:
//! writers that come straight back (a client in a loop, a crowd that was all answered at
//! once) are all there by then, and waiting longer would only idle the row.
//!
//! What callers can rely on:
//! - All or nothing. A batch whose transaction fails, or outlives the deadline, answers every
//!   member with that error (a 503) and writes nothing; a success is only ever sent after the
//!   commit returned.
//! - A caller that goes away before its batch starts is dropped from the queue, untouched. Once
//!   its batch has started it runs to the end without the caller (the worker is not the
//!   caller's task), so its work is committed — with its idempotency record — or not at all.
//! - Jobs with the same exclusive token never share a batch (set-based SQL updates a row once
//!   per statement): the later one waits, in order, for the next batch.
//! - A panic inside a batch fails that batch's members (500); the key's worker carries on.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::PgConnection;
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};

use super::{
    db::Db,
    metrics::{GroupCommitLabels, Metrics},
};
use crate::{
    config::Settings,
    error::{ApiError, ApiResult},
};

/// What a batch runs against: the database its transaction goes through and the metrics its
/// size is recorded in. The application's state is one; `platform` never names it.
pub trait Context: Clone + Send + Sync + 'static {
    fn db(&self) -> &Db;
    fn metrics(&self) -> &Metrics;
}

/// One kind of batchable write: how to run a batch of jobs for one key in a transaction.
pub trait Batch: Send + Sync + 'static {
    /// What `apply` and `committed` are handed (the application's state).
    type Ctx: Context;
    /// The hot row the jobs write (goods id, user id).
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    type Job: Send + Sync + 'static;
    /// What each caller gets back.
    type Reply: Send + 'static;
    /// Jobs with equal tokens never share a batch.
    type Exclusive: Eq + Hash;
    /// What the batch leaves to do once its transaction committed (cache invalidation, ...).
    type Committed: Send + 'static;

    /// The `batch` label of the batch-size metric.
    const NAME: &'static str;

    fn exclusive(job: &Self::Job) -> Option<Self::Exclusive>;

    /// Applies `jobs` (arrival order) inside the open transaction `conn`: one reply per job, in
    /// the same order. An `Err` rolls the whole batch back and answers every job with it.
    fn apply(
        &self,
        ctx: &Self::Ctx,
        conn: &mut PgConnection,
        key: &Self::Key,
        jobs: &[Self::Job],
    ) -> impl Future<Output = ApiResult<Applied<Self::Reply, Self::Committed>>> + Send;

    /// Runs after the commit, before any caller is answered.
    fn committed(
        &self,
        ctx: &Self::Ctx,
        key: &Self::Key,
        done: Self::Committed,
    ) -> impl Future<Output = ()> + Send;
}

/// The result of [`Batch::apply`].
pub struct Applied<R, C> {
    pub replies: Vec<ApiResult<R>>,
    pub committed: C,
}

struct Pending<B: Batch> {
    job: B::Job,
    reply: oneshot::Sender<ApiResult<B::Reply>>,
    arrived: Instant,
}

/// The queue of one key; it exists exactly while the key's worker runs.
struct Slot<B: Batch> {
    queue: VecDeque<Pending<B>>,
    /// The next batch starts once this many jobs wait (or the oldest has waited `window`).
    start_at: usize,
    /// Wakes the worker: the queue reached `start_at`, or a first job came while it lingers.
    wake: Arc<Notify>,
}

struct Shared<B: Batch> {
    batch: B,
    window: Duration,
    max: usize,
    slots: Mutex<HashMap<B::Key, Slot<B>>>,
}

/// A group-commit batcher for one kind of write; cheap to clone.
pub struct GroupCommit<B: Batch>(Arc<Shared<B>>);

impl<B: Batch> Clone for GroupCommit<B> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<B: Batch> GroupCommit<B> {
    /// Window and batch size from `FLOODGATE_GROUP_COMMIT_WINDOW_US` / `_MAX`.
    pub fn new(batch: B, settings: &Settings) -> Self {
        Self::with(
            batch,
            Duration::from_micros(settings.group_commit_window_us),
            settings.group_commit_max,
        )
    }

    pub fn with(batch: B, window: Duration, max: usize) -> Self {
        Self(Arc::new(Shared {
            batch,
            window,
            max: max.max(1),
            slots: Mutex::default(),
        }))
    }

    /// Queues `job` behind the other writes to `key` and waits for its batch's answer.
    pub async fn submit(&self, ctx: &B::Ctx, key: B::Key, job: B::Job) -> ApiResult<B::Reply> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            job,
            reply,
            arrived: Instant::now(),
        };
        let start = {
            let mut slots = self.0.lock();
            let mut start = None;
            let slot = slots.entry(key.clone()).or_insert_with(|| {
                let wake = Arc::new(Notify::new());
                start = Some(wake.clone());
                Slot {
                    queue: VecDeque::new(),
                    start_at: self.0.max,
                    wake,
                }
            });
            slot.queue.push_back(pending);
            if slot.queue.len() == 1 || slot.queue.len() >= slot.start_at {
                slot.wake.notify_one();
            }
            start
        };
        if let Some(wake) = start {
            tokio::spawn(self.0.clone().work(ctx.clone(), key, wake));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::internal(
                "a group-commit batch ended without answering",
            ))
        })
    }
}

impl<B: Batch> Shared<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<B::Key, Slot<B>>> {
        // queue operations cannot panic half-way; a poisoned lock holds consistent data
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key's worker: collect, run, repeat until nothing came for `window` after a batch.
    async fn work(self: Arc<Self>, ctx: B::Ctx, key: B::Key, wake: Arc<Notify>) {
        loop {
            self.collect(&key, &wake).await;
            let batch = {
                let mut slots = self.lock();
                let Some(slot) = slots.get_mut(&key) else {
                    return;
                };
                let batch = take(
                    &mut slot.queue,
                    self.max,
                    |p| B::exclusive(&p.job),
                    |p| p.reply.is_closed(),
                );
                if slot.queue.is_empty() && batch.is_empty() {
                    slots.remove(&key);
                    return;
                }
                if !batch.is_empty() {
                    // as many as came last time: under a steady crowd that is everyone who is
                    // coming; when fewer come, the window still bounds the wait (`take` never
                    // returns more than `max`)
                    slot.start_at = batch.len();
                }
                batch
            };
            if batch.is_empty() {
                continue;
            }
            let run = tokio::spawn(self.clone().run(ctx.clone(), key.clone(), batch));
            if let Err(e) = run.await {
                tracing::error!(batch = B::NAME, error = %e, "group-commit batch panicked");
            }
        }
    }

    /// Waits until the slot's `start_at` jobs are queued or the oldest has waited `window`;
    /// with nothing queued, for a first job during at most `window` (the worker then ends).
    async fn collect(&self, key: &B::Key, wake: &Notify) {
        let idle_until = Instant::now() + self.window;
        loop {
            let deadline = {
                let slots = self.lock();
                let Some(slot) = slots.get(key) else {
                    return;
                };
                match slot.queue.front() {
                    None => idle_until,
                    Some(oldest) if slot.queue.len() < slot.start_at => {
                        oldest.arrived + self.window
                    }
                    Some(_) => return,
                }
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = wake.notified() => {}
            }
        }
    }

    async fn run(self: Arc<Self>, ctx: B::Ctx, key: B::Key, batch: Vec<Pending<B>>) {
        let (jobs, replies): (Vec<B::Job>, Vec<_>) =
            batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        ctx.metrics()
            .group_commit_batch
            .get_or_create(&GroupCommitLabels { batch: B::NAME })
            .observe(jobs.len() as f64);
        let calls = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        let outcome = ctx
            .db()
            .tx_for(calls, async |conn| {
                let applied = self.batch.apply(&ctx, conn, &key, &jobs).await?;
                if applied.replies.len() != jobs.len() {
                    // rolls the transaction back
                    return Err(ApiError::internal(format!(
                        "{} batch answered {} of {} jobs",
                        B::NAME,
                        applied.replies.len(),
                        jobs.len()
                    )));
                }
                Ok(applied)
            })
            .await;
        match outcome {
            Ok(applied) => {
                self.batch.committed(&ctx, &key, applied.committed).await;
                for (reply, answer) in replies.into_iter().zip(applied.replies) {
                    // a caller that went away no longer listens; its work is done either way
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Takes the next batch from `queue`, in order: at most `max` items, never two with the same
/// exclusive token (the later stays queued, in place), dropping items whose caller is `gone`.
fn take<T, X: Eq + Hash>(
    queue: &mut VecDeque<T>,
    max: usize,
    token: impl Fn(&T) -> Option<X>,
    gone: impl Fn(&T) -> bool,
) -> Vec<T> {
    let mut batch = Vec::new();
    let mut tokens = HashSet::new();
    let mut kept = VecDeque::with_capacity(queue.len());
    while let Some(item) = queue.pop_front() {
        if batch.len() >= max {
            kept.push_back(item);
            kept.append(queue);
            break;
        }
        if gone(&item) {
            continue;
        }
        match token(&item) {
            Some(t) if tokens.contains(&t) => kept.push_back(item),
            Some(t) => {
                tokens.insert(t);
                batch.push(item);
            }
            None => batch.push(item),
        }
    }
    *queue = kept;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (id, exclusive token, caller gone)
    type Item = (usize, Option<u8>, bool);

    fn run_take(items: &[Item], max: usize) -> (Vec<Item>, Vec<Item>) {
        let mut queue: VecDeque<Item> = items.iter().copied().collect();
        let batch = take(&mut queue, max, |i| i.1, |i| i.2);
        (batch, queue.into_iter().collect())
    }

    #[test]
    fn duplicates_wait_for_the_next_batch_in_order() {
        let items = [
            (0, Some(1), false),
            (1, Some(1), false),
            (2, None, false),
            (3, Some(2), false),
            (4, Some(1), false),
        ];
        let (batch, rest) = run_take(&items, 10);
        assert_eq!(batch.iter().map(|i| i.0).collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(rest.iter().map(|i| i.0).collect::<Vec<_>>(), [1, 4]);
    }

    #[test]
    fn gone_callers_are_dropped_and_max_is_kept() {
        let items = [
            (0, None, true),
            (1, None, false),
            (2, None, false),
            (3, None, true),
        ];
        let (batch, rest) = run_take(&items, 1);
        assert_eq!(batch.iter().map(|i| i.0).collect::<Vec<_>>(), [1]);
        // past the limit nothing is looked at, not even whether the caller is gone
        assert_eq!(rest.iter().map(|i| i.0).collect::<Vec<_>>(), [2, 3]);
    }

    proptest! {
        #[test]
        fn take_keeps_order_exclusivity_and_every_live_job(
            raw in proptest::collection::vec((proptest::option::of(0u8..6), any::<bool>()), 0..60),
            max in 1usize..20,
        ) {
            let items: Vec<Item> = raw.iter().enumerate().map(|(i, (t, g))| (i, *t, *g)).collect();
            let (batch, rest) = run_take(&items, max);
            prop_assert!(batch.len() <= max);
            prop_assert!(batch.iter().all(|i| !i.2), "a gone caller was batched");
            let mut seen = HashSet::new();
            for i in &batch {
                if let Some(t) = i.1 {
                    prop_assert!(seen.insert(t), "two jobs with token {} in one batch", t);
                }
            }
            prop_assert!(batch.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(rest.windows(2).all(|w| w[0].0 < w[1].0));
            // nothing live is lost: batched + still queued = every live job (gone ones may stay
            // queued past the limit, to be dropped later)
            let mut all: Vec<usize> = batch.iter().chain(rest.iter()).map(|i| i.0).collect();
            all.sort_unstable();
            let live: Vec<usize> = items.iter().filter(|i| !i.2).map(|i| i.0).collect();
            prop_assert!(live.iter().all(|id| all.contains(id)));
            // a job left queued before the limit was reached is a duplicate of a batched token
            if batch.len() < max {
                for i in &rest {
                    prop_assert!(i.2 || i.1.is_some_and(|t| seen.contains(&t)));
                }
            }
        }
    }
}
