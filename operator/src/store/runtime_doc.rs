//! The runtime document in Redis: compare-and-set on its version (a Lua script, so two
//! writers can never both produce version N), a PUBLISH of the new version, and the count of
//! app replicas that report running it.
//!
//! Every publish (each reconcile calls it, so at the latest every QueueConfig resync) also
//! re-asserts the document: one that disappeared (a Redis flush, a failover to a replica
//! without the key) or that went back to an older version is written again, under a version
//! above every one known to have been in force — the highest this process wrote or read,
//! and the highest the app replicas report in `<prefix>config:applied` — so versions never
//! go back and a replica still running the lost version is not counted as running the new
//! one. The apps keep their last good config meanwhile.

use std::sync::{LazyLock, atomic::Ordering};

use floodgate_crds::runtime::{
    APPLIED_KEY, CHANGED_CHANNEL, CONFIG_KEY, ConfigError, RuntimeConfig,
};

use super::RedisTarget;
use crate::merge::same_content;

static CAS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("cas_config.lua")));

/// Attempts before giving up when other writers keep winning the compare-and-set.
const CAS_ATTEMPTS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("refusing to publish an invalid runtime config: {0}")]
    Invalid(#[from] ConfigError),
    #[error("gave up after {CAS_ATTEMPTS} compare-and-set attempts lost to other writers")]
    Contended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub version: u64,
    /// False when the document already said this and nothing was written.
    pub written: bool,
}

/// The document as stored (not validated: a reader must still learn its version), or `None`.
async fn read_raw(target: &RedisTarget) -> Result<Option<(u64, Option<RuntimeConfig>)>, DocError> {
    let mut conn = target.conn.clone();
    let raw: Option<String> = redis::cmd("GET")
        .arg(target.key(CONFIG_KEY))
        .query_async(&mut conn)
        .await?;
    Ok(raw.map(|raw| {
        let parsed = serde_json::from_str::<RuntimeConfig>(&raw).ok();
        let version = parsed.as_ref().map(|c| c.version).unwrap_or_else(|| {
            serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v["version"].as_u64())
                .unwrap_or(0)
        });
        (version, parsed)
    }))
}

/// The current document, if there is a readable one.
pub async fn read(target: &RedisTarget) -> Result<Option<RuntimeConfig>, DocError> {
    Ok(read_raw(target).await?.and_then(|(_, c)| c))
}

/// The highest version app replicas report running (0 when none report).
async fn highest_applied(target: &RedisTarget) -> Result<u64, DocError> {
    let mut conn = target.conn.clone();
    let all: Vec<String> = redis::cmd("HVALS")
        .arg(target.key(APPLIED_KEY))
        .query_async(&mut conn)
        .await?;
    Ok(all.iter().filter_map(|v| v.parse().ok()).max().unwrap_or(0))
}

/// Writes `content` as the next version unless the stored document already says the same
/// under a version at least as high as any known to have been in force.
pub async fn publish(target: &RedisTarget, content: &RuntimeConfig) -> Result<Published, DocError> {
    content.validate()?;
    for attempt in 0..CAS_ATTEMPTS {
        if attempt > 0 {
            // Two writers in lockstep can keep losing to each other; a jittered pause breaks it.
            let jitter = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
                    % 5_000,
            );
            tokio::time::sleep(std::time::Duration::from_micros(
                jitter + u64::from(attempt.min(10)) * 500,
            ))
            .await;
        }
        let stored = read_raw(target).await?;
        let (found, current) = stored.clone().unwrap_or((0, None));
        let known = target
            .last_version
            .load(Ordering::Relaxed)
            .max(highest_applied(target).await?);
        if found >= known
            && let Some(current) = current.filter(|c| same_content(c, content))
        {
            target.last_version.fetch_max(found, Ordering::Relaxed);
            return Ok(Published {
                version: current.version,
                written: false,
            });
        }
        if stored.is_none() && known > 0 {
            tracing::warn!(
                lost_version = known,
                "runtime config document missing from Redis: re-asserting it"
            );
        } else if found < known {
            tracing::warn!(
                found,
                known,
                "runtime config document older than a version in force: re-asserting it"
            );
        }
        let version = found.max(known) + 1;
        let next = RuntimeConfig {
            version,
            ..content.clone()
        };
        let json = serde_json::to_string(&next)
            .map_err(|e| DocError::Invalid(ConfigError::Malformed(e.to_string())))?;
        let mut conn = target.conn.clone();
        let (won, written): (i64, i64) = CAS
            .key(target.key(CONFIG_KEY))
            .arg(found)
            .arg(json)
            .arg(target.key(CHANGED_CHANNEL))
            .arg(version)
            .invoke_async(&mut conn)
            .await?;
        if won == 1 {
            let written = u64::try_from(written).unwrap_or(0);
            target.last_version.fetch_max(written, Ordering::Relaxed);
            return Ok(Published {
                version: written,
                written: true,
            });
        }
    }
    Err(DocError::Contended)
}

/// App replicas whose applied version is `version` or newer.
pub async fn applied_by(target: &RedisTarget, version: u64) -> Result<u32, DocError> {
    let mut conn = target.conn.clone();
    let all: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(target.key(APPLIED_KEY))
        .query_async(&mut conn)
        .await?;
    let n = all
        .values()
        .filter(|v| v.parse::<u64>().is_ok_and(|v| v >= version))
        .count();
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use floodgate_crds::runtime::QueueSettings;
    use futures::StreamExt;

    fn doc(queue: &str, max: u32) -> RuntimeConfig {
        let mut c = RuntimeConfig::default();
        c.queues.insert(
            queue.into(),
            QueueSettings {
                max_active_users: max,
                ..Default::default()
            },
        );
        c
    }

    #[tokio::test]
    async fn publishes_new_versions_only_when_content_changes() {
        let t = testing::target("doc-publish").await;
        let client = redis::Client::open(testing::url()).expect("url");
        let mut sub = client.get_async_pubsub().await.expect("pubsub");
        sub.subscribe(t.key(CHANGED_CHANNEL))
            .await
            .expect("subscribe");

        assert_eq!(
            publish(&t, &doc("q", 10)).await.expect("first"),
            Published {
                version: 1,
                written: true
            }
        );
        assert_eq!(
            publish(&t, &doc("q", 10)).await.expect("same"),
            Published {
                version: 1,
                written: false
            }
        );
        assert_eq!(
            publish(&t, &doc("q", 11)).await.expect("changed"),
            Published {
                version: 2,
                written: true
            }
        );

        let mut messages = sub.on_message();
        for expected in ["1", "2"] {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(2), messages.next())
                .await
                .expect("published in time")
                .expect("a message");
            assert_eq!(msg.get_payload::<String>().expect("payload"), expected);
        }
        let stored = read(&t).await.expect("read").expect("a document");
        assert_eq!(stored.version, 2);
        assert_eq!(
            RuntimeConfig::parse(&serde_json::to_string(&stored).expect("json"))
                .expect("app accepts it"),
            stored
        );
    }

    #[tokio::test]
    async fn invalid_documents_are_not_written() {
        let t = testing::target("doc-invalid").await;
        assert!(matches!(
            publish(&t, &doc("q", 0)).await,
            Err(DocError::Invalid(_))
        ));
        assert_eq!(read(&t).await.expect("read"), None);
    }

    #[tokio::test]
    async fn two_concurrent_writers_never_lose_or_duplicate_a_version() {
        let prefix = testing::unique_prefix("doc-cas");
        let a = RedisTarget::connect(
            floodgate_crds::redis_conn::RedisMode::Single,
            &testing::url(),
            &prefix,
        )
        .await
        .expect("redis");
        let b = RedisTarget::connect(
            floodgate_crds::redis_conn::RedisMode::Single,
            &testing::url(),
            &prefix,
        )
        .await
        .expect("redis");
        const WRITES: u32 = 40;
        let writer = |t: RedisTarget, queue: &'static str| {
            tokio::spawn(async move {
                let mut versions = Vec::new();
                for i in 1..=WRITES {
                    let p = publish(&t, &doc(queue, i)).await.expect("publish");
                    assert!(p.written, "every document differs from the last");
                    versions.push(p.version);
                }
                versions
            })
        };
        let (va, vb) = tokio::join!(writer(a.clone(), "a"), writer(b, "b"));
        let mut all: Vec<u64> = va.expect("a").into_iter().chain(vb.expect("b")).collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=u64::from(2 * WRITES)).collect::<Vec<_>>(),
            "each version written exactly once"
        );
        assert_eq!(
            read(&a).await.expect("read").expect("doc").version,
            u64::from(2 * WRITES)
        );
    }

    /// A lost document (Redis flushed, or a failover to a replica without it) comes back
    /// above every version known to have been in force: the one this writer last wrote, and
    /// the ones the app replicas report (a restarted operator knows only those).
    #[tokio::test]
    async fn a_lost_document_is_republished_above_every_version_in_force() {
        let prefix = testing::unique_prefix("doc-lost");
        let writer = RedisTarget::connect(
            floodgate_crds::redis_conn::RedisMode::Single,
            &testing::url(),
            &prefix,
        )
        .await
        .expect("redis");
        for max in [10, 11, 12] {
            publish(&writer, &doc("q", max)).await.expect("publish");
        }
        let mut conn = writer.conn.clone();
        let del = async || -> i64 {
            redis::cmd("DEL")
                .arg(writer.key(CONFIG_KEY))
                .query_async(&mut writer.conn.clone())
                .await
                .expect("del")
        };
        assert_eq!(del().await, 1);
        let again = publish(&writer, &doc("q", 12)).await.expect("re-assert");
        assert_eq!(
            again,
            Published {
                version: 4,
                written: true
            },
            "the same writer re-asserts above the version it lost"
        );

        // A restarted operator: only the app replicas' reports say what was in force.
        redis::cmd("HSET")
            .arg(writer.key(APPLIED_KEY))
            .arg(&["app-1", "4", "app-2", "3"])
            .query_async::<()>(&mut conn)
            .await
            .expect("hset");
        assert_eq!(del().await, 1);
        let restarted = RedisTarget::connect(
            floodgate_crds::redis_conn::RedisMode::Single,
            &testing::url(),
            &prefix,
        )
        .await
        .expect("redis");
        let again = publish(&restarted, &doc("q", 12)).await.expect("re-assert");
        assert_eq!(again.version, 5, "above what the replicas report");
        assert_eq!(
            applied_by(&restarted, again.version).await.expect("count"),
            0
        );
    }

    #[tokio::test]
    async fn counts_replicas_running_the_version_or_newer() {
        let t = testing::target("doc-applied").await;
        let mut conn = t.conn.clone();
        redis::cmd("HSET")
            .arg(t.key(APPLIED_KEY))
            .arg(&["app-1", "3", "app-2", "2", "app-3", "5"])
            .query_async::<()>(&mut conn)
            .await
            .expect("hset");
        assert_eq!(applied_by(&t, 3).await.expect("count"), 2);
        assert_eq!(applied_by(&t, 6).await.expect("count"), 0);
    }
}
