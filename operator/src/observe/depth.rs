//! Where queue depth comes from. The app exports `floodgate_queue_waiting{queue}`; the Redis
//! layout of the waiting room is the app's business and not settled, so a Redis reader is a
//! plug-in behind the same trait, configured with a key template.

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::{AppScrape, ObserveError};

pub const WAITING_GAUGE: &str = "floodgate_queue_waiting";

pub trait QueueDepthSource: Send + Sync {
    /// Users waiting in one queue. `scrape` is this resync's scrape of the app, for sources
    /// that read it.
    fn waiting<'a>(
        &'a self,
        queue_id: &'a str,
        scrape: &'a AppScrape,
    ) -> BoxFuture<'a, Result<u64, ObserveError>>;
}

/// Reads the app's gauge. Every replica reports the same Redis-backed count, so the maximum
/// over pods is taken (a sum would count the queue once per replica).
pub struct AppMetricsDepth;

impl QueueDepthSource for AppMetricsDepth {
    fn waiting<'a>(
        &'a self,
        queue_id: &'a str,
        scrape: &'a AppScrape,
    ) -> BoxFuture<'a, Result<u64, ObserveError>> {
        Box::pin(async move {
            if !scrape.exports(WAITING_GAUGE) {
                return Err(ObserveError::MissingMetric(WAITING_GAUGE));
            }
            // Exported, but not for this queue: the app has nobody waiting there.
            Ok(scrape
                .queue_gauge(WAITING_GAUGE, queue_id)
                .unwrap_or(0.0)
                .max(0.0) as u64)
        })
    }
}

/// Reads a Redis key per queue; `{prefix}` and `{queue}` in the template are replaced. Works
/// whatever structure the app keeps there (sorted set, list, stream, hash or a counter).
pub struct RedisDepth {
    pub conn: ConnectionManager,
    pub prefix: String,
    pub key_template: String,
}

impl RedisDepth {
    pub fn key(&self, queue_id: &str) -> String {
        self.key_template
            .replace("{prefix}", &self.prefix)
            .replace("{queue}", queue_id)
    }
}

impl QueueDepthSource for RedisDepth {
    fn waiting<'a>(
        &'a self,
        queue_id: &'a str,
        _: &'a AppScrape,
    ) -> BoxFuture<'a, Result<u64, ObserveError>> {
        Box::pin(async move {
            let key = self.key(queue_id);
            let mut conn = self.conn.clone();
            let err = |e: redis::RedisError| ObserveError::Redis(e.to_string());
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let cmd = match kind.as_str() {
                "none" => return Ok(0),
                "zset" => "ZCARD",
                "list" => "LLEN",
                "set" => "SCARD",
                "hash" => "HLEN",
                "stream" => "XLEN",
                "string" => "GET",
                other => {
                    return Err(ObserveError::Redis(format!(
                        "{key} is a {other}, not a queue"
                    )));
                }
            };
            let n: Option<i64> = redis::cmd(cmd)
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
        })
    }
}
