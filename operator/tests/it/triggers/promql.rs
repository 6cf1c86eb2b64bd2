//! PromQL triggers through basic auth and a bearer token.

use super::*;

#[tokio::test]
async fn promql_triggers_read_through_basic_auth_and_say_what_came_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, url) = prometheus_with_basic_auth(dir.path()).await;
    let good = secret(&[("username", "ops"), ("password", "s3cret\n")]);
    let client = client_for(&basic_ref(), Some(&good)).unwrap();
    assert_eq!(trigger::value(&client, &url, "vector(42)").await, Ok(42.0));
    assert_eq!(
        trigger::value(&client, &url, "scalar(vector(7))").await,
        Ok(7.0)
    );

    // Each answer that is not one number says what came back.
    let err = async |q: &str| trigger::value(&client, &url, q).await.expect_err(q);
    assert!(err("vector(1) == 2").await.contains("returned no series"));
    assert!(err("vector(0) / 0").await.contains("returned NaN"));
    assert!(err("vector(1) / 0").await.contains("returned +Inf"));
    let two = r#"label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")"#;
    let many = err(two).await;
    assert!(
        many.contains("2 series") && many.contains(r#""a":"x""#),
        "{many}"
    );
    assert!(err("rate(").await.contains("the query failed: "));

    // Refused credentials, and none at all, are told apart.
    let wrong = secret(&[("username", "ops"), ("password", "guess")]);
    let refused = trigger::value(
        &client_for(&basic_ref(), Some(&wrong)).unwrap(),
        &url,
        "vector(1)",
    )
    .await;
    assert_eq!(
        refused,
        Err(
            "Prometheus answered HTTP 401: the credentials from the authRef Secret were refused"
                .into()
        )
    );
    let anonymous = trigger::value(&PromClient::default(), &url, "vector(1)").await;
    assert_eq!(
        anonymous,
        Err("Prometheus answered HTTP 401: it needs credentials (set authRef)".into())
    );
    // A missing Secret or key: no client, and the message names it (never a value).
    assert_eq!(
        client_for(&basic_ref(), None).err(),
        Some("Secret shop/prom-auth not found".into())
    );
    let no_password = secret(&[("username", "ops")]);
    assert_eq!(
        client_for(&basic_ref(), Some(&no_password)).err(),
        Some(r#"Secret shop/prom-auth has no key "password""#.into())
    );
}

#[tokio::test]
async fn a_bearer_token_from_the_secret_passes_a_proxy_that_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, upstream) = start_prometheus(dir.path(), None, &PromClient::default()).await;
    let proxy_dir = dir.path().join("nginx");
    std::fs::create_dir(&proxy_dir).unwrap();
    let (_nginx, url) = nginx_bearer(&proxy_dir, &upstream, "tok-123");
    let bearer = PrometheusAuthRef {
        secret_name: "prom-token".into(),
        bearer_token_key: Some("token".into()),
        username_key: None,
        password_key: None,
        ca_key: None,
    };
    let good = secret(&[("token", "tok-123")]);
    let client = client_for(&bearer, Some(&good)).unwrap();
    let started = Instant::now();
    let value = loop {
        match trigger::value(&client, &url, "vector(5)").await {
            Ok(v) => break v,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "through nginx: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value, 5.0);
    let wrong = secret(&[("token", "tok-999")]);
    let refused = trigger::value(
        &client_for(&bearer, Some(&wrong)).unwrap(),
        &url,
        "vector(5)",
    )
    .await;
    assert_eq!(
        refused,
        Err(
            "Prometheus answered HTTP 401: the credentials from the authRef Secret were refused"
                .into()
        )
    );
}
