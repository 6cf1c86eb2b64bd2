//! A restarted Redis forgets `CONFIG SET`; the operator re-applies on the next resync through
//! the same reconnecting connection. This test runs its own redis-server (never the shared
//! one) on a free port, kills it and starts it again.

use std::time::Duration;

use floodgate_crds::v1alpha1::MaxmemoryPolicy;
use floodgate_operator::store::{
    RedisTarget,
    memory::{self, MemoryWanted},
};

use crate::support;

use support::{Server, free_port};

fn start(port: u16) -> Server {
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed for this test");
    Server(child)
}

async fn wait_ready(url: &str) {
    for _ in 0..100 {
        if let Ok(client) = redis::Client::open(url)
            && let Ok(mut c) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server at {url} did not come up");
}

#[tokio::test]
async fn config_set_is_reapplied_after_a_redis_restart() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = start(port);
    wait_ready(&url).await;
    let target = RedisTarget::connect(floodgate_crds::redis_conn::RedisMode::Single, &url, "fg:")
        .await
        .expect("connect");
    let wanted = MemoryWanted {
        maxmemory: Some("1gb".into()),
        policy: Some(MaxmemoryPolicy::Noeviction),
    };

    let applied = memory::apply(&target, &wanted).await.expect("apply");
    assert_eq!(
        (
            applied.maxmemory.as_str(),
            applied.maxmemory_policy.as_str()
        ),
        ("1073741824", "noeviction")
    );

    drop(server);
    let _server = start(port);
    wait_ready(&url).await;

    let probe = RedisTarget::connect(floodgate_crds::redis_conn::RedisMode::Single, &url, "fg:")
        .await
        .expect("connect");
    assert_eq!(
        memory::read(&probe).await.expect("read").maxmemory,
        "0",
        "restart forgot it"
    );

    // The restart forgot the settings; the next resync's apply (same connection manager,
    // which reconnects on its own) puts them back. Retry like resyncs would.
    let mut last = None;
    for _ in 0..50 {
        match memory::apply(&target, &wanted).await {
            Ok(a) => {
                last = Some(a);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let reapplied = last.expect("re-applied after restart");
    assert_eq!(reapplied, applied);

    // And a fresh connection sees them too: they are in Redis, not in a client cache.
    let fresh = RedisTarget::connect(floodgate_crds::redis_conn::RedisMode::Single, &url, "fg:")
        .await
        .expect("connect");
    assert_eq!(memory::read(&fresh).await.expect("read"), applied);
}
