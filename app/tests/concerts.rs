//! Concerts, holds and payment against real PostgreSQL and Redis: the 300-user race for one
//! seat, expiry freeing a seat (reads and the sweeper), payment after expiry, Idempotency-Key
//! replay and conflict, a sold seat never held again, the per-user hold limit, admin-only
//! creation and precise problems for bad input.
#![allow(clippy::unwrap_used)]

mod common;
mod concerts_support;

use std::time::Duration;

use common::{TestApp, expect_problem};
use concerts_support::{
    admin, assert_money_and_seats_consistent, concert, hold, pay, set_config, users,
};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATOR: &sqlx::migrate::Migrator = &floodgate_app::platform::db::MIGRATOR;

async fn available_seats(app: &TestApp, schedule: i64) -> Vec<i64> {
    let res = app
        .get(
            &format!("/api/v1/schedules/{schedule}/seats?available=true"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

async fn available_schedules(app: &TestApp, concert: i64) -> Vec<i64> {
    let res = app
        .get(
            &format!("/api/v1/concerts/{concert}/schedules?available=true"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn three_hundred_users_race_for_one_seat_and_exactly_one_holds(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = admin(&app).await;
    let c = concert(&app, &admin, None, 1, 5_000).await;
    let seat = c.seats[0];
    // warm both caches: the hold must invalidate them
    assert_eq!(available_seats(&app, c.schedule).await, vec![seat]);
    assert_eq!(available_schedules(&app, c.id).await, vec![c.schedule]);

    let racers = users(&app, 300, 10_000).await;
    let answers = join_all(racers.iter().map(|u| hold(&app, u, c.schedule, seat, None))).await;
    let mut created = Vec::new();
    for (i, res) in answers.into_iter().enumerate() {
        match res.status() {
            StatusCode::CREATED => created.push((i, res.json::<Value>().await.unwrap())),
            StatusCode::CONFLICT => {
                let body = expect_problem(res, StatusCode::CONFLICT).await;
                assert!(
                    body["type"].as_str().unwrap().ends_with("/seat-taken"),
                    "{body}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one hold");
    let held: i64 = sqlx::query_scalar(
        "select count(*) from reservations where seat_id = $1 and status = 'held'",
    )
    .bind(seat)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(held, 1);
    assert!(
        available_seats(&app, c.schedule).await.is_empty(),
        "a held seat is never offered"
    );
    assert!(
        available_schedules(&app, c.id).await.is_empty(),
        "the only date has nothing left"
    );

    // the holder lets it lapse (moved into the past rather than waiting five minutes)
    let (winner, first) = &created[0];
    sqlx::query(
        "update seats set hold_expires_at = now() - interval '1 second' where seat_id = $1",
    )
    .bind(seat)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "update reservations set expires_at = now() - interval '1 second' where seat_id = $1",
    )
    .bind(seat)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    let late = pay(
        &app,
        &racers[*winner],
        first["id"].as_i64().unwrap(),
        "late-key",
        None,
    )
    .await;
    let body = expect_problem(late, StatusCode::GONE).await;
    assert!(
        body["type"].as_str().unwrap().ends_with("/hold-expired"),
        "{body}"
    );

    // another user holds the now-free seat and pays
    let next = &racers[(winner + 1) % racers.len()];
    let res = hold(&app, next, c.schedule, seat, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let r: Value = res.json().await.unwrap();
    let paid = pay(&app, next, r["id"].as_i64().unwrap(), "pay-1", None).await;
    assert_eq!(paid.status(), StatusCode::CREATED);

    // a paid seat can never be held again, by anyone, even in a race
    let again = join_all(
        racers
            .iter()
            .take(100)
            .map(|u| hold(&app, u, c.schedule, seat, None)),
    )
    .await;
    assert!(again.iter().all(|r| r.status() == StatusCode::CONFLICT));
    let res = app
        .get(&format!("/api/v1/schedules/{}/seats", c.schedule), None)
        .await;
    let all: Value = res.json().await.unwrap();
    assert_eq!(all["items"][0]["status"], "sold");
    assert_money_and_seats_consistent(&app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_expired_hold_frees_the_seat_and_payment_is_idempotent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    set_config(&app, json!({"ttls": {"seatHold": "1s"}})).await;
    let admin = admin(&app).await;
    let c = concert(&app, &admin, None, 2, 7_000).await;
    let seat = c.seats[0];
    let people = users(&app, 3, 10_000).await;
    let (a, b, other) = (&people[0], &people[1], &people[2]);
    assert_eq!(available_seats(&app, c.schedule).await.len(), 2);

    let res = hold(&app, a, c.schedule, seat, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let ra: Value = res.json().await.unwrap();
    assert_eq!(ra["status"], "held");
    assert!(!available_seats(&app, c.schedule).await.contains(&seat));
    // one active hold per user per schedule
    let second = hold(&app, a, c.schedule, c.seats[1], None).await;
    let body = expect_problem(second, StatusCode::CONFLICT).await;
    assert!(
        body["type"].as_str().unwrap().ends_with("/hold-limit"),
        "{body}"
    );
    let taken = hold(&app, b, c.schedule, seat, None).await;
    expect_problem(taken, StatusCode::CONFLICT).await;

    // after the TTL the seat is offered again without anyone acting
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        available_seats(&app, c.schedule).await.contains(&seat),
        "an expired hold reads as free"
    );
    let res = app
        .get(
            &format!("/api/v1/reservations/{}", ra["id"]),
            Some(&a.token),
        )
        .await;
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["status"], "expired");
    let late = pay(&app, a, ra["id"].as_i64().unwrap(), "a-key", None).await;
    expect_problem(late, StatusCode::GONE).await;

    // the sweeper tidies the row within a couple of seconds
    let mut swept = false;
    for _ in 0..40 {
        let status: String =
            sqlx::query_scalar("select status from reservations where reservation_id = $1")
                .bind(ra["id"].as_i64().unwrap())
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
        if status == "expired" {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swept, "the sweeper expired the hold");

    // B holds and pays; the same key replays, a new key conflicts
    set_config(&app, json!({"ttls": {"seatHold": "5m"}})).await;
    let res = hold(&app, b, c.schedule, seat, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let rb: Value = res.json().await.unwrap();
    let id = rb["id"].as_i64().unwrap();
    let first = pay(&app, b, id, "b-key", None).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["balance"], 3_000);
    assert_eq!(first["reservation"]["status"], "confirmed");
    let replay = pay(&app, b, id, "b-key", None).await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    let again = pay(&app, b, id, "b-key-2", None).await;
    let body = expect_problem(again, StatusCode::CONFLICT).await;
    assert!(
        body["type"].as_str().unwrap().ends_with("/already-paid"),
        "{body}"
    );
    // paid once: one debit, one payment row
    let debits: i64 = sqlx::query_scalar(
        "select count(*) from wallet_ledger where user_id = $1 and kind = 'seat_payment'",
    )
    .bind(b.id)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(debits, 1);
    // other users cannot see or pay it
    let res = app
        .get(&format!("/api/v1/reservations/{id}"), Some(&other.token))
        .await;
    expect_problem(res, StatusCode::NOT_FOUND).await;
    let res = pay(&app, other, id, "x", None).await;
    expect_problem(res, StatusCode::NOT_FOUND).await;
    let res = hold(&app, other, c.schedule, seat, None).await;
    expect_problem(res, StatusCode::CONFLICT).await;
    assert_money_and_seats_consistent(&app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn insufficient_balance_is_a_clear_conflict_and_keeps_the_hold(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = admin(&app).await;
    let c = concert(&app, &admin, None, 1, 9_000).await;
    let poor = &users(&app, 1, 100).await[0];
    let res = hold(&app, poor, c.schedule, c.seats[0], None).await;
    let r: Value = res.json().await.unwrap();
    let res = pay(&app, poor, r["id"].as_i64().unwrap(), "k", None).await;
    let body = expect_problem(res, StatusCode::CONFLICT).await;
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("/insufficient-balance"),
        "{body}"
    );
    let status: String =
        sqlx::query_scalar("select status from reservations where reservation_id = $1")
            .bind(r["id"].as_i64().unwrap())
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(status, "held", "a failed payment changes nothing");
    // a payment needs an Idempotency-Key
    let res = app
        .http
        .post(app.url(&format!("/api/v1/reservations/{}/payment", r["id"])))
        .bearer_auth(&poor.token)
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::BAD_REQUEST).await;
    assert_money_and_seats_consistent(&app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admin_creation_and_bad_input(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = admin(&app).await;
    let customer = &users(&app, 1, 0).await[0];
    let body = json!({"title": "Gala", "schedules": []});
    let res = app
        .post_json("/api/v1/concerts", &body, Some(&customer.token))
        .await;
    expect_problem(res, StatusCode::FORBIDDEN).await;
    let res = app
        .post_json(
            "/api/v1/concerts",
            &json!({"title": "", "schedules": []}),
            Some(&admin),
        )
        .await;
    let p = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["field"], "title");
    let res = app
        .post_json(
            "/api/v1/concerts",
            &json!({"title": "Gala", "queue_id": "Not A Queue"}),
            Some(&admin),
        )
        .await;
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let c = concert(&app, &admin, Some("gala-q"), 3, 100).await;

    // more schedules and seats in bulk; duplicates are conflicts
    let res = app
        .post_json(
            &format!("/api/v1/concerts/{}/schedules", c.id),
            &json!({"starts_at": "2026-12-25T19:00:00Z"}),
            Some(&admin),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let s: Value = res.json().await.unwrap();
    let seats = json!({"seats": [{"section": "B", "row": "1", "number": 1, "price": 10}, {"section": "B", "row": "1", "number": 2, "price": 10}]});
    let res = app
        .post_json(
            &format!("/api/v1/schedules/{}/seats", s["id"]),
            &seats,
            Some(&admin),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["created"], 2);
    let res = app
        .post_json(
            &format!("/api/v1/schedules/{}/seats", s["id"]),
            &seats,
            Some(&admin),
        )
        .await;
    expect_problem(res, StatusCode::CONFLICT).await;
    let res = app
        .post_json(
            &format!("/api/v1/concerts/{}/schedules", c.id),
            &json!({"starts_at": "2026-12-25T19:00:00Z"}),
            Some(&admin),
        )
        .await;
    expect_problem(res, StatusCode::CONFLICT).await;
    let bad = json!({"seats": [{"section": "B", "row": "1", "number": 0, "price": 10}]});
    let res = app
        .post_json(
            &format!("/api/v1/schedules/{}/seats", s["id"]),
            &bad,
            Some(&admin),
        )
        .await;
    let p = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["field"], "seats[0].number");
    let res = app
        .post_json("/api/v1/schedules/999999/seats", &seats, Some(&admin))
        .await;
    expect_problem(res, StatusCode::NOT_FOUND).await;
    assert_eq!(
        available_schedules(&app, c.id).await.len(),
        2,
        "the new schedule shows at once"
    );
    // a burst of cold reads shares one load and sees one answer
    let burst = join_all((0..100).map(|_| available_seats(&app, s["id"].as_i64().unwrap()))).await;
    assert!(burst.iter().all(|ids| ids.len() == 2 && *ids == burst[0]));

    // reads: filters, unknown ids, the queue filter
    let res = app
        .get("/api/v1/concerts/999999/schedules?available=true", None)
        .await;
    expect_problem(res, StatusCode::NOT_FOUND).await;
    let res = app.get("/api/v1/schedules/999999/seats", None).await;
    expect_problem(res, StatusCode::NOT_FOUND).await;
    let res = app
        .get("/api/v1/schedules/1/seats?available=maybe", None)
        .await;
    expect_problem(res, StatusCode::BAD_REQUEST).await;
    let res = app.get("/api/v1/concerts?queue_id=gala-q", None).await;
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["queue_id"], "gala-q");

    // a concert behind a waiting room refuses holds without a pass
    let res = hold(&app, customer, c.schedule, c.seats[0], None).await;
    let p = expect_problem(res, StatusCode::FORBIDDEN).await;
    assert!(
        p["type"].as_str().unwrap().ends_with("/queue-pass-missing"),
        "{p}"
    );
    let res = hold(&app, customer, 999_999, c.seats[0], None).await;
    expect_problem(res, StatusCode::NOT_FOUND).await;
    let res = app
        .post_json(
            "/api/v1/reservations",
            &json!({"schedule_id": "x"}),
            Some(&customer.token),
        )
        .await;
    assert!(res.status().is_client_error());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_demo_concert_sits_behind_concert_42_and_reseeding_adds_nothing(pool: PgPool) {
    floodgate_app::seed::seed(&pool).await.unwrap();
    floodgate_app::seed::seed(&pool).await.unwrap();
    let (concerts, schedules, seats): (i64, i64, i64) = sqlx::query_as(
        "select count(distinct c.concert_id), count(distinct s.schedule_id), count(st.seat_id)
           from concerts c join schedules s using (concert_id) join seats st using (schedule_id)
          where c.queue_id = 'concert-42'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((concerts, schedules, seats), (1, 2, 800));
}
