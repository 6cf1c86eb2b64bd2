//! Stream backlogs with an ACL user's credentials from a Secret.

use super::*;

fn redis_ref() -> RedisAuthRef {
    RedisAuthRef {
        secret_name: "redis-auth".into(),
        username_key: Some("username".into()),
        password_key: Some("password".into()),
        ca_key: None,
    }
}

fn stream(
    conn: Result<floodgate_crds::redis_conn::RedisConn, String>,
    group: &str,
    backlog: Backlog,
    target: f64,
) -> Trigger {
    Trigger {
        name: format!("{group}-{backlog:?}").to_lowercase(),
        source: Source::Stream {
            conn,
            stream: "orders".into(),
            group: group.into(),
            backlog,
        },
        target,
        activation: None,
    }
}

#[tokio::test]
async fn stream_backlogs_read_with_an_acl_user_from_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, url) = redis_with_a_stream(dir.path()).await;
    let address = RedisAddress {
        mode: RedisMode::Single,
        urls: url,
        tls: Default::default(),
    };
    let clients = Clients::default();
    let conn_for = |pairs: &[(&str, &str)]| {
        let data = secret(pairs);
        let found = Found {
            namespace: "shop",
            name: "redis-auth",
            data: Some(&data),
        };
        credentials::redis(&redis_ref(), &found).and_then(|c| clients.redis(&address, &c))
    };
    let good = conn_for(&[("username", "fg"), ("password", "fg-pw")]);
    let Ok(conn) = good.clone() else {
        panic!("no connection")
    };
    assert_eq!(
        backlog(&conn, "orders", "workers", Backlog::Pending).await,
        Ok(3)
    );
    assert_eq!(
        backlog(&conn, "orders", "workers", Backlog::Lag).await,
        Ok(2)
    );
    let missing = backlog(&conn, "orders", "nobody", Backlog::Lag)
        .await
        .unwrap_err();
    assert_eq!(missing, "stream orders has no consumer group nobody");
    let missing = backlog(&conn, "orders", "nobody", Backlog::Pending)
        .await
        .unwrap_err();
    assert!(
        missing.starts_with("stream orders or its consumer group nobody does not exist"),
        "{missing}"
    );

    // Through the trigger reader: values, and a refused password as an unavailable trigger.
    let wrong = conn_for(&[("username", "fg"), ("password", "nope")]);
    let (readings, problems) = triggers::read(&[
        stream(good.clone(), "workers", Backlog::Pending, 1.0),
        stream(good, "workers", Backlog::Lag, 1.0),
        stream(wrong, "workers", Backlog::Pending, 1.0),
    ])
    .await;
    let values: Vec<_> = readings.iter().map(|r| r.value).collect();
    assert_eq!(values, [Some(3.0), Some(2.0), None]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "trigger workers-pending: Redis refused the credentials for stream orders"
        ),
        "{problems:?}"
    );
    assert!(
        !problems[0].contains("nope"),
        "a password in a message: {problems:?}"
    );
    let no_key = conn_for(&[("username", "fg")])
        .err()
        .expect("no password key");
    assert_eq!(no_key, r#"Secret shop/redis-auth has no key "password""#);
}
