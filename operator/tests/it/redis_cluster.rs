//! The operator's Redis calls on a Redis Cluster (`scripts/services.sh redis-cluster`, at
//! `REDIS_CLUSTER_URL`; a missing cluster fails the test): the runtime document's
//! compare-and-set and its announcement, heard by a subscriber on another node, and a
//! Campaign's memory settings applied to every node and read back. Runs in the
//! `redis-cluster` test group (.config/nextest.toml): one cluster test at a time.

use std::time::Duration;

use floodgate_crds::{
    redis_conn::RedisMode,
    runtime::{CHANGED_CHANNEL, QueueSettings, RuntimeConfig},
    v1alpha1::MaxmemoryPolicy,
};
use floodgate_operator::store::{
    RedisTarget,
    memory::{self, MemoryWanted},
    runtime_doc,
};
use futures::StreamExt;

fn cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_URL").expect(
        "REDIS_CLUSTER_URL is not set: run `scripts/services.sh redis-cluster` and export what `scripts/services.sh env` prints",
    )
}

fn config_get(node: &str, name: &str) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", node, "config", "get", name])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn runtime_document_and_memory_settings_work_on_a_cluster() {
    let url = cluster_url();
    let prefix = format!("fgtest:{}:cluster:", std::process::id());
    let target = RedisTarget::connect(RedisMode::Cluster, &url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("the Redis Cluster at {url} is required: {e}"));

    // an app replica subscribed on the last seed node hears a publish that ran elsewhere
    let last = url.split(',').next_back().expect("a node");
    let client = redis::Client::open(last).expect("url");
    let mut sub = client.get_async_pubsub().await.expect("pubsub");
    sub.subscribe(target.key(CHANGED_CHANNEL))
        .await
        .expect("subscribe");
    let mut doc = RuntimeConfig::default();
    doc.queues.insert(
        "q".into(),
        QueueSettings {
            max_active_users: 7,
            ..Default::default()
        },
    );
    let published = runtime_doc::publish(&target, &doc).await.expect("publish");
    assert!(published.written);
    let heard = tokio::time::timeout(Duration::from_secs(3), sub.on_message().next())
        .await
        .expect("the announcement reached another node")
        .expect("a message");
    assert_eq!(
        heard.get_payload::<u64>().expect("a version"),
        published.version
    );
    let read = runtime_doc::read(&target)
        .await
        .expect("read")
        .expect("a doc");
    assert_eq!(read.version, published.version);
    assert_eq!(read.queues["q"].max_active_users, 7);

    // CONFIG SET reaches every node; used memory is the largest node's
    let before = memory::read(&target).await.expect("read settings");
    let wanted = MemoryWanted {
        maxmemory: Some("300mb".into()),
        policy: Some(MaxmemoryPolicy::Noeviction),
    };
    let applied = memory::apply(&target, &wanted).await;
    let per_node: Vec<String> = url
        .split(',')
        .map(|node| config_get(node, "maxmemory"))
        .collect();
    let used = memory::used_memory(&target).await;
    memory::restore(&target, &before).await.expect("restore");
    assert_eq!(applied.expect("apply").maxmemory, "314572800");
    assert!(
        per_node.iter().all(|m| m == "314572800"),
        "maxmemory per node: {per_node:?}"
    );
    assert!(used.expect("used_memory") > 0);
}

/// A stream trigger's backlog on a cluster: streams in several slots (so on several nodes),
/// each read through the connection a Campaign's (here empty) Redis credentials give.
#[tokio::test]
async fn stream_backlogs_are_read_from_the_node_holding_each_stream() {
    use floodgate_operator::observe::{
        credentials::{Clients, RedisCreds},
        streams::{Backlog, backlog},
    };
    let url = cluster_url();
    let address = floodgate_operator::store::RedisAddress {
        mode: RedisMode::Cluster,
        urls: url.clone(),
        tls: Default::default(),
    };
    let conn = Clients::default()
        .redis(&address, &RedisCreds::default())
        .unwrap_or_else(|e| panic!("the Redis Cluster at {url}: {e}"));
    let mut admin = conn.clone();
    let streams: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| format!("fgtest:{}:stream:{s}", std::process::id()))
        .collect();
    let slots: std::collections::BTreeSet<u16> = streams
        .iter()
        .map(|s| floodgate_crds::redis_conn::key_slot(s.as_bytes()))
        .collect();
    assert!(slots.len() > 1, "the streams share a slot: {slots:?}");
    for (i, stream) in streams.iter().enumerate() {
        for n in 0..(i + 3) {
            redis::cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("n")
                .arg(n)
                .query_async::<String>(&mut admin)
                .await
                .expect("XADD");
        }
        redis::cmd("XGROUP")
            .arg(&["CREATE", stream, "workers", "0"][..])
            .query_async::<()>(&mut admin)
            .await
            .expect("XGROUP CREATE");
        redis::cmd("XREADGROUP")
            .arg(
                &[
                    "GROUP", "workers", "c1", "COUNT", "2", "STREAMS", stream, ">",
                ][..],
            )
            .query_async::<redis::Value>(&mut admin)
            .await
            .expect("XREADGROUP");
    }
    for (i, stream) in streams.iter().enumerate() {
        let pending = backlog(&conn, stream, "workers", Backlog::Pending).await;
        let lag = backlog(&conn, stream, "workers", Backlog::Lag).await;
        assert_eq!((pending, lag), (Ok(2), Ok(i as u64 + 1)), "{stream}");
    }
    for stream in &streams {
        redis::cmd("DEL")
            .arg(stream)
            .query_async::<()>(&mut admin)
            .await
            .expect("DEL");
    }
}
