//! Coalesces concurrent single Redis commands into pipelines.
//!
//! On the one multiplexed connection, every command is its own message to the connection's
//! driver task, and tokio runs a task it just woke next (the LIFO slot): the driver wakes,
//! writes that one command and flushes before the next request has even been parsed. So 64
//! concurrent cache reads became 64 writes, 64 reads and 64 wake-ups on each side, and
//! Redis, on the same core, spent more time in system calls than in commands.
//!
//! Here commands queue for one task that takes everything queued since it last ran — after
//! yielding once, so requests that are already runnable get to queue theirs — and sends it
//! as one pipeline (non-transactional: each command keeps its own reply or error, as if sent
//! alone). One pipeline is in flight at a time; what arrives meanwhile forms the next one.
//! At low load a command waits only for that one yield.
//!
//! On a Redis Cluster a pipeline must stay in one slot (redis-rs sends it to the first
//! command's node and refuses a mix), so a batch is split by slot: one pipeline per slot,
//! sent side by side. The hot commands (one queue's polls, one campaign's issues) share
//! their entity's slot, so they still travel together.

use std::{collections::HashMap, sync::OnceLock};

use floodgate_crds::redis_conn::{RedisConn, RedisMode, cmd_slot};
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, Script, ServerErrorKind, Value,
};
use tokio::sync::{mpsc, oneshot};

/// Most commands in one pipeline; more wait for the next.
const MAX_BATCH: usize = 256;

struct Job {
    cmd: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// A handle on the batching task (started on first use, in the runtime that uses it).
pub struct Batcher {
    conn: RedisConn,
    tx: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl Batcher {
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            tx: OnceLock::new(),
        }
    }

    /// Runs `cmd` in the next pipeline and converts its reply.
    pub async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> RedisResult<T> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(self.conn.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = tx.send(Job { cmd, reply }) {
            // the task's runtime is gone (a handle outliving it): no batching, same answer.
            // Boxed, as the reload below: the client's future is kilobytes, and inline it
            // would be copied with every batched call's future though it is never taken.
            return Box::pin(job.cmd.query_async(&mut self.conn.clone())).await;
        }
        let value = answer
            .await
            .map_err(|_| RedisError::from((ErrorKind::Io, "the redis batching task stopped")))??;
        Ok(redis::from_redis_value(value)?)
    }

    /// Runs a Lua script by its hash in the next pipeline; `args` adds the key count, the
    /// keys and the arguments, as after `EVALSHA <sha1>`. A server that does not know the
    /// script yet (first use, restart, `SCRIPT FLUSH`) gets it loaded and the call repeated,
    /// as `Script::invoke_async` does.
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        args: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        let call = || {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(script.get_hash());
            args(&mut cmd);
            cmd
        };
        match self.query(call()).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Box::pin(script.load_async(&mut self.conn.clone())).await?;
                self.query(call()).await
            }
            other => other,
        }
    }
}

async fn run(conn: RedisConn, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        tokio::task::yield_now().await;
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if conn.mode() == RedisMode::Single {
            send(conn.clone(), std::mem::take(&mut jobs)).await;
            continue;
        }
        let mut by_slot: HashMap<Option<u16>, Vec<Job>> = HashMap::new();
        for job in jobs.drain(..) {
            by_slot.entry(cmd_slot(&job.cmd)).or_default().push(job);
        }
        let sends = by_slot.into_iter().map(|(slot, group)| {
            let conn = conn.clone();
            async move {
                if slot.is_some() {
                    send(conn, group).await;
                } else {
                    // keyless commands go wherever the cluster routes each one
                    for job in group {
                        send(conn.clone(), vec![job]).await;
                    }
                }
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// Sends `jobs` as one pipeline (or the single command alone) and hands out the replies.
async fn send(mut conn: RedisConn, mut jobs: Vec<Job>) {
    if let [job] = jobs.as_mut_slice() {
        let result = job.cmd.query_async::<Value>(&mut conn).await;
        if let Some(job) = jobs.pop() {
            let _ = job.reply.send(result);
        }
        return;
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for job in &mut jobs {
        pipe.add_command(std::mem::replace(&mut job.cmd, Cmd::new()));
    }
    match pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn).await {
        Ok(results) if results.len() == jobs.len() => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Ok(_) => {
            let e = RedisError::from((ErrorKind::Parse, "pipeline reply count mismatch"));
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}
