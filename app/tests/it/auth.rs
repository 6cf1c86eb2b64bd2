//! Accounts through HTTP: signup, login, refresh rotation and reuse detection, logout,
//! token verification, role guard, concurrency of duplicate signups, rate limits.

use crate::common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use common::{PASSWORD, TestApp, expect_problem, refresh_cookie};
use floodgate_app::auth::{
    Role,
    jwt::{AUDIENCE, Claims, ISSUER},
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

async fn refresh_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/auth/refresh"))
        .header(header::COOKIE, format!("refresh_token={token}"))
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn signup_login_refresh_logout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let res = app.signup("  Kim@Example.COM ").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], "kim@example.com");
    assert_eq!(user["roles"], json!(["customer"]));
    assert!(user.get("password_hash").is_none());

    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "KIM@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/v1/auth",
        "Max-Age=1800",
    ] {
        assert!(cookie.contains(attr), "cookie {cookie} lacks {attr}");
    }
    let first_refresh = refresh_cookie(&res).unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let access = body["access_token"].as_str().unwrap().to_owned();

    let me: Value = app
        .get("/api/v1/users/me", Some(&access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "kim@example.com");

    // rotation: the new cookie works, the old one is dead
    let res = refresh_with(&app, &first_refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second_refresh = refresh_cookie(&res).unwrap();
    assert_ne!(second_refresh, first_refresh);
    let new_access: Value = res.json().await.unwrap();
    assert_eq!(
        app.get("/api/v1/users/me", new_access["access_token"].as_str())
            .await
            .status(),
        StatusCode::OK
    );

    // logout revokes the family and clears the cookie
    let res = app
        .http
        .post(app.url("/api/v1/auth/logout"))
        .header(header::COOKIE, format!("refresh_token={second_refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(refresh_cookie(&res).as_deref(), Some(""));
    expect_problem(
        refresh_with(&app, &second_refresh).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn reusing_a_rotated_refresh_token_revokes_the_family(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signup("thief@example.com").await;
    let (_, stolen) = app.login("thief@example.com").await;
    let res = refresh_with(&app, &stolen).await;
    let legit = refresh_cookie(&res).unwrap();
    // the thief comes back after the reuse grace (concurrent tabs) has passed
    let grace = app.state.settings.refresh_reuse_grace_secs;
    sqlx::query("update refresh_tokens set used_at = used_at - make_interval(secs => $1) where used_at is not null")
        .bind((grace + 1) as f64)
        .execute(&pool)
        .await
        .unwrap();

    let body = expect_problem(refresh_with(&app, &stolen).await, StatusCode::UNAUTHORIZED).await;
    assert!(
        body["detail"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    // the legitimate, never-used descendant is revoked too
    expect_problem(refresh_with(&app, &legit).await, StatusCode::UNAUTHORIZED).await;
    let live: i64 =
        sqlx::query_scalar("select count(*) from refresh_tokens where revoked_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 0);
    // a new login starts a new, working family
    let (_, fresh) = app.login("thief@example.com").await;
    assert_eq!(refresh_with(&app, &fresh).await.status(), StatusCode::OK);
    expect_problem(
        refresh_with(&app, "not-a-token").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = app
        .http
        .post(app.url("/api/v1/auth/refresh"))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNAUTHORIZED).await;
}

/// Browser tabs refreshing with the same cookie at the same moment all get a working pair
/// and the login stays alive: a token reused within the grace after its rotation
/// (`FLOODGATE_REFRESH_REUSE_GRACE_SECS`) is not theft.
#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_refreshes_of_one_cookie_keep_the_login(pool: PgPool) {
    const TABS: usize = 4;
    let app = TestApp::spawn(pool.clone()).await;
    app.signup("tabs@example.com").await;
    let (_, mut cookie) = app.login("tabs@example.com").await;
    for round in 0..3 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TABS));
        let tabs = (0..TABS).map(|_| {
            let (http, url, cookie, barrier) = (
                app.http.clone(),
                app.url("/api/v1/auth/refresh"),
                cookie.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(url)
                    .header(header::COOKIE, format!("refresh_token={cookie}"))
                    .send()
                    .await
                    .unwrap()
            })
        });
        let mut next = Vec::new();
        for res in futures::future::join_all(tabs).await {
            let res = res.unwrap();
            let status = res.status();
            let new_cookie = refresh_cookie(&res);
            let body: Value = res.json().await.unwrap();
            assert_eq!(
                status,
                StatusCode::OK,
                "round {round}: a concurrent refresh of one cookie was refused: {body}"
            );
            let access = body["access_token"].as_str().unwrap();
            assert_eq!(
                app.get("/api/v1/users/me", Some(access)).await.status(),
                StatusCode::OK
            );
            next.push(new_cookie.filter(|c| !c.is_empty()).unwrap());
        }
        // whichever cookie the browser kept, the login goes on
        cookie = next.pop().unwrap();
    }
    assert_eq!(refresh_with(&app, &cookie).await.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_access_tokens_are_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let good = app.customer("tokens@example.com").await;
    let now = Utc::now().timestamp();
    let claims = |exp: i64, aud: &str| Claims {
        sub: "1".into(),
        roles: vec![Role::Admin],
        iat: now,
        exp,
        iss: ISSUER.into(),
        aud: aud.into(),
    };
    let expired = app.state.jwt.sign(&claims(now - 60, AUDIENCE)).unwrap();
    let wrong_aud = app.state.jwt.sign(&claims(now + 60, "other-api")).unwrap();
    let forged = {
        let other = floodgate_app::auth::jwt::JwtKeys::new(
            &"some-other-secret-of-32-bytes-xxxxx".to_owned().into(),
        );
        other.sign(&claims(now + 60, AUDIENCE)).unwrap()
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now + 60, AUDIENCE)).unwrap())
    );
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    for (name, token) in [
        ("expired", expired),
        ("wrong audience", wrong_aud),
        ("forged", forged),
        ("alg none", none),
        ("tampered", tampered),
        ("garbage", "abc".into()),
    ] {
        let res = app.get("/api/v1/users/me", Some(&token)).await;
        assert_eq!(
            res.headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{name}"
        );
        expect_problem(res, StatusCode::UNAUTHORIZED).await;
    }
    expect_problem(
        app.get("/api/v1/users/me", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = app
        .http
        .get(app.url("/api/v1/users/me"))
        .header(header::AUTHORIZATION, "Basic abc")
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&good)).await.status(),
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn role_guard_and_becoming_a_seller(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let customer = app.customer("c@example.com").await;
    let body = expect_problem(
        app.get("/api/v1/admin/runtime-config", Some(&customer))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("admin"), "{body}");

    let res = app
        .post_json(
            "/api/v1/users/me/seller",
            &json!({"display_name": "C's Shop"}),
            Some(&customer),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["roles"], json!(["customer", "seller"]));
    // repeat is idempotent: the role is not added twice
    let token = body["access_token"].as_str().unwrap();
    let res = app
        .post_json(
            "/api/v1/users/me/seller",
            &json!({"display_name": "Renamed"}),
            Some(token),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["roles"], json!(["customer", "seller"]));
    let res = app
        .post_json(
            "/api/v1/users/me/seller",
            &json!({"display_name": "  "}),
            Some(token),
        )
        .await;
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;

    let admin = app
        .user_with_roles("a@example.com", &["customer", "admin"])
        .await;
    let view: Value = app
        .get("/api/v1/admin/runtime-config", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["version"], 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn fifty_concurrent_signups_of_one_email_leave_one_row(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let attempts = (0..50).map(|i| {
        let email = if i % 2 == 0 {
            "race@example.com".to_owned()
        } else {
            "RACE@Example.com".to_owned()
        };
        let app = &app;
        async move { app.signup(&email).await.status() }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        49,
        "{statuses:?}"
    );
    let rows: i64 =
        sqlx::query_scalar("select count(*) from users where email = 'race@example.com'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 1);
    let body = expect_problem(app.signup("race@example.com").await, StatusCode::CONFLICT).await;
    assert!(body["type"].as_str().unwrap().ends_with("/email-taken"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_email_and_wrong_password_get_the_same_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.signup("known@example.com").await;
    let wrong = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "known@example.com", "password": "wrong password"}),
            None,
        )
        .await;
    let unknown = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "nobody@example.com", "password": "wrong password"}),
            None,
        )
        .await;
    let a = expect_problem(wrong, StatusCode::UNAUTHORIZED).await;
    let b = expect_problem(unknown, StatusCode::UNAUTHORIZED).await;
    assert_eq!(a, b);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_is_rate_limited_per_email_across_the_redis_window(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.auth_limit_per_email = 3).await;
    app.signup("limited@example.com").await;
    for _ in 0..3 {
        let res = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": "limited@example.com", "password": "nope nope"}),
                None,
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // the fourth attempt in the window is refused even with the right password
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "limited@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    let retry: u64 = res
        .headers()
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    expect_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    // another email is unaffected
    app.signup("other@example.com").await;
    app.login("other@example.com").await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admin_command_creates_an_admin_who_can_log_in(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    floodgate_app::seed::create_admin(
        &pool,
        "Root@Example.com",
        &"an admin password".to_owned().into(),
    )
    .await
    .unwrap();
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "root@example.com", "password": "an admin password"}),
            None,
        )
        .await;
    let token: Value = res.json().await.unwrap();
    let res = app
        .get(
            "/api/v1/admin/runtime-config",
            token["access_token"].as_str(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // rerunning resets the password instead of failing
    floodgate_app::seed::create_admin(
        &pool,
        "root@example.com",
        &"a new admin password".to_owned().into(),
    )
    .await
    .unwrap();
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "root@example.com", "password": "a new admin password"}),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
