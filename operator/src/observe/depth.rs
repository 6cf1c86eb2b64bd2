//! Where queue depth comes from. The app exports `floodgate_queue_waiting{queue}`; the Redis
//! layout of the waiting room is the app's business and not settled, so a Redis reader is a
//! plug-in behind the same trait, configured with a key template.

use floodgate_crds::redis_conn::RedisConn;
use futures::future::BoxFuture;

use super::{AppScrape, ObserveError};

pub const WAITING_GAUGE: &str = "floodgate_queue_waiting";
/// Every Floodgate app replica exports the runtime config version it runs.
pub const RUNTIME_VERSION_GAUGE: &str = "floodgate_runtime_config_version";

pub trait QueueDepthSource: Send + Sync {
    /// Users waiting in one queue. `scrape` is this resync's scrape of the app, for sources
    /// that read it.
    fn waiting<'a>(
        &'a self,
        queue_id: &'a str,
        scrape: &'a AppScrape,
    ) -> BoxFuture<'a, Result<u64, ObserveError>>;

    /// True for the app's gauge: where a Campaign names a Prometheus, the same gauge is read
    /// from there instead of from the pods.
    fn reads_app_metrics(&self) -> bool {
        false
    }

    /// The same source reading through `conn` (a Campaign's own Redis credentials), for
    /// sources that read Redis; `None` for the others.
    fn through(&self, _conn: RedisConn) -> Option<Box<dyn QueueDepthSource>> {
        None
    }
}

/// A source that cannot be used (its credentials are missing): every read fails with why.
pub struct Unreadable(pub String);

impl QueueDepthSource for Unreadable {
    fn waiting<'a>(
        &'a self,
        _: &'a str,
        _: &'a AppScrape,
    ) -> BoxFuture<'a, Result<u64, ObserveError>> {
        Box::pin(async move { Err(ObserveError::Redis(self.0.clone())) })
    }
}

/// Reads the app's gauge. Every replica reports the same Redis-backed count, so the maximum
/// over pods is taken (a sum would count the queue once per replica).
pub struct AppMetricsDepth;

impl QueueDepthSource for AppMetricsDepth {
    fn reads_app_metrics(&self) -> bool {
        true
    }

    fn waiting<'a>(
        &'a self,
        queue_id: &'a str,
        scrape: &'a AppScrape,
    ) -> BoxFuture<'a, Result<u64, ObserveError>> {
        Box::pin(async move {
            // The app exports the gauge for each queue it runs; a Floodgate app (it reports its
            // runtime config version) without a series for this queue has nobody waiting
            // there yet. Anything else is the wrong endpoint or an app without the gauge.
            if !scrape.exports(WAITING_GAUGE) && !scrape.exports(RUNTIME_VERSION_GAUGE) {
                return Err(ObserveError::MissingMetric(WAITING_GAUGE));
            }
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
    pub conn: RedisConn,
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
    fn through(&self, conn: RedisConn) -> Option<Box<dyn QueueDepthSource>> {
        Some(Box::new(Self {
            conn,
            prefix: self.prefix.clone(),
            key_template: self.key_template.clone(),
        }))
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::exposition::{declared_families, parse};

    fn scrape(text: &str) -> AppScrape {
        AppScrape {
            pods: vec![parse(text).expect("parses")],
            declared: declared_families(text).into_iter().collect(),
        }
    }

    #[tokio::test]
    async fn reads_the_gauge_and_tells_an_idle_app_from_a_wrong_endpoint() {
        let busy =
            scrape("floodgate_runtime_config_version 3\nfloodgate_queue_waiting{queue=\"a\"} 12\n");
        assert_eq!(AppMetricsDepth.waiting("a", &busy).await.expect("read"), 12);
        assert_eq!(AppMetricsDepth.waiting("b", &busy).await.expect("read"), 0);
        // A Floodgate app that runs no queue yet: nobody waits.
        let idle = scrape(
            "# TYPE floodgate_runtime_config_version gauge\nfloodgate_runtime_config_version 0\n",
        );
        assert_eq!(AppMetricsDepth.waiting("a", &idle).await.expect("read"), 0);
        // Something else entirely: unavailable, so the decision falls back instead of shrinking.
        let other = scrape("process_cpu_seconds_total 1\n");
        assert!(AppMetricsDepth.waiting("a", &other).await.is_err());
    }

    #[tokio::test]
    async fn redis_depth_counts_whatever_structure_the_key_holds() {
        let t = crate::store::testing::target("depth").await;
        let depth = RedisDepth {
            conn: t.conn.clone(),
            prefix: t.prefix.clone(),
            key_template: "{prefix}{q:{queue}}:waiting".into(),
        };
        assert_eq!(depth.key("z"), format!("{}{{q:z}}:waiting", t.prefix));
        let mut conn = t.conn.clone();
        let run = |args: Vec<String>| {
            let mut conn = conn.clone();
            async move {
                redis::cmd(&args[0])
                    .arg(&args[1..])
                    .query_async::<()>(&mut conn)
                    .await
                    .expect("seed")
            }
        };
        run(vec![
            "ZADD".into(),
            depth.key("z"),
            "1".into(),
            "a".into(),
            "2".into(),
            "b".into(),
        ])
        .await;
        run(vec![
            "RPUSH".into(),
            depth.key("l"),
            "a".into(),
            "b".into(),
            "c".into(),
        ])
        .await;
        run(vec!["SET".into(), depth.key("n"), "41".into()]).await;
        let empty = AppScrape::default();
        assert_eq!(depth.waiting("z", &empty).await.expect("zset"), 2);
        assert_eq!(depth.waiting("l", &empty).await.expect("list"), 3);
        assert_eq!(depth.waiting("n", &empty).await.expect("counter"), 41);
        assert_eq!(depth.waiting("none", &empty).await.expect("absent"), 0);
        redis::cmd("SET")
            .arg(depth.key("bad"))
            .arg("x")
            .query_async::<()>(&mut conn)
            .await
            .expect("seed");
        assert!(
            depth.waiting("bad", &empty).await.is_err(),
            "a non-numeric counter is an error, not 0"
        );
    }
}
