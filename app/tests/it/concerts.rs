//! Concerts, holds and payment against real PostgreSQL and Redis: the 300-user race for one
//! seat, expiry freeing a seat (reads and the sweeper), payment after expiry, Idempotency-Key
//! replay and conflict, a sold seat never held again, the per-user hold limit, admin-only
//! creation and precise problems for bad input.

use crate::common;
use crate::concerts_support;

use std::time::Duration;

use common::{TestApp, expect_problem};
use concerts_support::{
    admin, assert_money_and_seats_consistent, concert, hold, pay, set_config, users,
};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

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

/// Item 9 of #13: holds, the sweeper and payments take their locks in one order (the
/// reservation, then the seat), so a crowd re-holding seats at the moment their holds lapse,
/// while the sweeper expires those holds and their holders pay, never deadlocks: no 5xx, no
/// `write-conflict`, no failed sweep.
///
/// The window is opened on purpose every round: all holds of a round lapse at one instant;
/// 10 ms later a sweep locks every lapsed reservation at once (its `for update`) and then,
/// paused 20 ms per row by a trigger, reaches their seats one by one over ~800 ms. From
/// 40 ms after the expiry, 200 racers (5 per seat, within 100 ms) try to hold those seats:
/// with the seat locked before the reservation, each racer takes the seat row and waits for
/// the reservation the sweep holds, while the sweep waits for that seat — a deadlock per
/// seat. A third of the holders pay in the 40 ms around the expiry, and sweeps continue for
/// a second. 3 rounds, 600 hold attempts.
#[sqlx::test(migrator = "MIGRATOR")]
async fn holds_sweeps_and_payments_at_hold_expiry_never_deadlock(pool: PgPool) {
    use std::collections::HashMap;
    use tokio::time::Instant;

    const SEATS: usize = 40;
    const RACERS: usize = 5;
    const ROUNDS: usize = 3;
    let app = TestApp::spawn_with(pool.clone(), |s| {
        s.db_pool_size = 48;
        s.db_acquire_timeout_ms = 10_000;
    })
    .await;
    set_config(&app, json!({"ttls": {"seatHold": "1s"}})).await;
    sqlx::raw_sql(
        "create function pause_expiry() returns trigger language plpgsql as
           $$ begin
                if old.status = 'held' and new.status = 'expired' then perform pg_sleep(0.02); end if;
                return new;
              end $$;
         create trigger pause_expiry before update on reservations
           for each row execute function pause_expiry();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let admin = admin(&app).await;
    let c = concert(&app, &admin, None, SEATS, 100).await;
    let mut everyone: HashMap<i64, concerts_support::User> = HashMap::new();
    let mut paid: HashMap<i64, i64> = HashMap::new(); // seat -> buyer
    let mut bad: Vec<String> = Vec::new();

    for round in 0..ROUNDS {
        // every unsold seat under a live hold (last round's winners keep theirs)
        let free: Vec<i64> = sqlx::query_scalar(
            "select seat_id from seats where schedule_id = $1 and sold_to is null
                and (held_by is null or hold_expires_at <= now()) order by seat_id",
        )
        .bind(c.schedule)
        .fetch_all(&pool)
        .await
        .unwrap();
        let holders = users(&app, free.len(), 10_000).await;
        for (u, seat) in holders.iter().zip(&free) {
            let res = hold(&app, u, c.schedule, *seat, None).await;
            assert_eq!(
                res.status(),
                StatusCode::CREATED,
                "round {round}: setup hold"
            );
        }
        everyone.extend(holders.into_iter().map(|u| (u.id.0, u)));
        // every hold of the round lapses at the same instant, 800 ms from now
        let held: Vec<(i64, i64, i64)> = sqlx::query_as(
            "update reservations set expires_at = date_trunc('milliseconds', now()) + interval '800 ms'
              where status = 'held' returning seat_id, reservation_id, user_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        sqlx::query(
            "update seats s set hold_expires_at = r.expires_at from reservations r
              where r.reservation_id = s.hold_reservation_id and r.status = 'held'",
        )
        .execute(&pool)
        .await
        .unwrap();
        let expiry = Instant::now() + Duration::from_millis(800);
        let racers = users(&app, SEATS * RACERS, 10_000).await;
        let unsold: Vec<i64> = c
            .seats
            .iter()
            .copied()
            .filter(|s| !paid.contains_key(s))
            .collect();

        let pays = held
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == 0)
            .map(|(i, (seat, r, u))| {
                let (app, user) = (&app, &everyone[u]);
                async move {
                    // from 250 ms before the expiry to 10 ms after it: the late ones race the
                    // expiry, the early ones still win when a loaded machine delays them all
                    tokio::time::sleep_until(
                        (expiry + Duration::from_millis((i as u64 * 13) % 260))
                            - Duration::from_millis(250),
                    )
                    .await;
                    let res = pay(app, user, *r, &format!("pay-{r}"), None).await;
                    let status = res.status();
                    (*seat, user.id.0, status, res.text().await.unwrap())
                }
            });
        let holds = racers.iter().enumerate().map(|(i, u)| {
            let app = &app;
            let seat = unsold[i % unsold.len()];
            async move {
                tokio::time::sleep_until(expiry + Duration::from_millis(40 + (i as u64 * 3) % 100))
                    .await;
                let res = hold(app, u, c.schedule, seat, None).await;
                let status = res.status();
                (seat, u.id.0, status, res.text().await.unwrap())
            }
        });
        let sweeps = async {
            tokio::time::sleep_until(expiry + Duration::from_millis(10)).await;
            let mut errors = Vec::new();
            while Instant::now() < expiry + Duration::from_millis(1_000) {
                if let Err(e) = floodgate_app::concerts::sweeper::sweep_once(&app.state).await {
                    errors.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        };
        let (pays, holds, sweep_errors) = tokio::join!(join_all(pays), join_all(holds), sweeps);
        for e in sweep_errors {
            bad.push(format!("round {round}: sweep failed: {e}"));
        }
        for (seat, user, status, body) in pays {
            match status {
                StatusCode::CREATED => {
                    paid.insert(seat, user);
                }
                StatusCode::GONE | StatusCode::CONFLICT => {}
                _ => bad.push(format!("round {round}: payment {status} {body}")),
            }
        }
        let mut won = 0;
        for (_, _, status, body) in &holds {
            match *status {
                StatusCode::CREATED => won += 1,
                StatusCode::CONFLICT if body.contains("seat-taken") => {}
                _ => bad.push(format!("round {round}: hold {status} {body}")),
            }
        }
        eprintln!(
            "round {round}: {} holds raced, {won} won, {} seats paid so far",
            holds.len(),
            paid.len()
        );
        everyone.extend(racers.into_iter().map(|u| (u.id.0, u)));

        // the invariants, every round
        let two_holds: i64 = sqlx::query_scalar(
            "select count(*) from (select seat_id from reservations where status = 'held'
                                    group by seat_id having count(*) > 1) d",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(two_holds, 0, "round {round}: a seat with two active holds");
        let seat_disagrees: i64 = sqlx::query_scalar(
            "select count(*) from seats s
              where s.hold_reservation_id is not null and not exists (
                    select 1 from reservations r where r.reservation_id = s.hold_reservation_id
                       and r.status = 'held' and r.user_id = s.held_by and r.seat_id = s.seat_id)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            seat_disagrees, 0,
            "round {round}: a seat's hold is not its held reservation"
        );
        for (seat, buyer) in &paid {
            let sold_to: Option<i64> =
                sqlx::query_scalar("select sold_to from seats where seat_id = $1")
                    .bind(seat)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(
                sold_to,
                Some(*buyer),
                "round {round}: paid seat {seat} changed hands"
            );
        }
        assert_money_and_seats_consistent(&app).await;
    }
    assert!(
        bad.is_empty(),
        "{} failures at hold expiry, first: {:#?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(!paid.is_empty(), "no payment raced the expiry successfully");
}
