//! The concert reports' flow: join the waiting room, poll until admitted, then schedules →
//! seats → hold → pay; and the token-issue stress test. Afterwards no seat may have been
//! paid for twice.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use rand::Rng;
use serde_json::{Value, json};

use super::Invariant;
use super::api::{
    discover_concert, ensure_logged_in, first_id, fund_once, id_of, idempotency_key, list_of,
    number_at,
};
use super::order::id_value;
use crate::metrics::Metrics;
use crate::vu::Vu;

pub fn setup(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        if vu.param("queue_id").is_none() || vu.param("concert_id").is_none() {
            let (concert, queue) = discover_concert(vu).await?;
            for (key, found) in [("concert_id", concert), ("queue_id", queue)] {
                if vu.param(key).is_none() {
                    let v = found.ok_or_else(|| {
                        anyhow::anyhow!(
                            "no {key}: pass --param {key}=... (GET /concerts found none)"
                        )
                    })?;
                    vu.ctx().set_param(key, v);
                }
            }
        }
        Ok(())
    })
}

/// Joins the queue and keeps the token as per-VU state.
async fn join_queue(vu: &mut Vu) -> anyhow::Result<Option<Value>> {
    ensure_logged_in(vu).await?;
    let qid = vu.param("queue_id").unwrap_or_default();
    let r = vu
        .post(format!("/api/v1/queues/{qid}/tokens"))
        .name("queue-join")
        .send()
        .await;
    let ok = vu.check("queue join 2xx", (200..300).contains(&r.status));
    if r.status == 401 {
        vu.state.access_token = None;
    }
    if !ok {
        return Ok(None);
    }
    let body = r.value();
    vu.state.queue_token = body.get("token").and_then(Value::as_str).map(String::from);
    Ok(Some(body))
}

/// The Locust token stress: one join per iteration, then `between(1, 5)`.
pub fn join(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let joined = join_queue(vu).await?;
        vu.check(
            "queue token returned",
            joined.is_some() && vu.state.queue_token.is_some(),
        );
        vu.between(1.0, 5.0).await;
        Ok(())
    })
}

/// Polls with the queue pass until ADMITTED, honouring the server's `poll_after_seconds`
/// (the k6 script gave up after 15 polls).
async fn wait_admitted(vu: &mut Vu, mut status: String) -> bool {
    let qid = vu.param("queue_id").unwrap_or_default();
    let max_polls: u32 = vu
        .param("max_polls")
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    let token = vu.state.queue_token.clone().unwrap_or_default();
    let mut polls = 0;
    while status != "ADMITTED" && polls < max_polls {
        let r = vu
            .get(format!("/api/v1/queues/{qid}/tokens/me"))
            .name("queue-poll")
            .header("x-queue-token", &token)
            .send()
            .await;
        vu.check("queue poll 200", r.status == 200);
        let v = r.value();
        status = v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if status == "ADMITTED" || status == "EXPIRED" {
            break;
        }
        let wait = number_at(&v, "/poll_after_seconds")
            .unwrap_or(2)
            .clamp(0, 5);
        vu.sleep(wait as f64).await;
        polls += 1;
    }
    status == "ADMITTED"
}

pub fn flow(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        ensure_logged_in(vu).await?;
        // Seats are paid from the wallet; fund each user once.
        fund_once(vu, 500_000).await;
        // k6 groups: the waiting room, then the purchase, each with its own sub-metrics.
        vu.group("waiting room");
        let Some(joined) = join_queue(vu).await? else {
            return Ok(());
        };
        let status = joined
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("WAITING")
            .to_string();
        let admitted = wait_admitted(vu, status).await;
        vu.check("admitted from the queue", admitted);
        if admitted {
            vu.group("reserve and pay");
            reserve_and_pay(vu).await;
        }
        vu.end_group();
        vu.sleep(1.0).await;
        Ok(())
    })
}

async fn reserve_and_pay(vu: &mut Vu) {
    let cid = vu.param("concert_id").unwrap_or_default();
    let token = vu.state.queue_token.clone().unwrap_or_default();
    let r = vu
        .get(format!("/api/v1/concerts/{cid}/schedules?available=true"))
        .name("schedules")
        .header("x-queue-token", &token)
        .send()
        .await;
    vu.check("schedules 200", r.status == 200);
    let Some(sid) = first_id(&r.value(), &["schedule_id"]) else {
        return;
    };
    let r = vu
        .get(format!("/api/v1/schedules/{sid}/seats?available=true"))
        .name("seats")
        .header("x-queue-token", &token)
        .send()
        .await;
    vu.check("seats 200", r.status == 200);
    let v = r.value();
    let seats: Vec<String> = list_of(&v)
        .map(|l| l.iter().filter_map(|s| id_of(s, &["seat_id"])).collect())
        .unwrap_or_default();
    if seats.is_empty() {
        return;
    }
    // Spread choices over the first seats so VUs do not all collide on seat one.
    let seat = seats[vu.rng.random_range(0..seats.len().min(20))].clone();
    let body = json!({ "schedule_id": id_value(&sid), "seat_id": id_value(&seat) });
    let r = vu
        .post("/api/v1/reservations")
        .name("reserve")
        .header("x-queue-token", &token)
        .json(&body)
        .expect(&[201, 409])
        .send()
        .await;
    vu.check("reserve 201 or 409 taken", matches!(r.status, 201 | 409));
    let Some(rid) = (r.status == 201)
        .then(|| id_of(&r.value(), &["reservation_id"]))
        .flatten()
    else {
        return;
    };
    let key = idempotency_key(vu);
    let r = vu
        .post(format!("/api/v1/reservations/{rid}/payment"))
        .name("pay")
        .header("x-queue-token", &token)
        .header("idempotency-key", &key)
        .send()
        .await;
    if vu.check("payment 2xx", (200..300).contains(&r.status)) {
        vu.ctx().record_fact("paid_seat", format!("{sid}:{seat}"));
    }
}

pub fn verify<'a>(
    vu: &'a mut Vu,
    _m: &'a Metrics,
) -> BoxFuture<'a, anyhow::Result<Vec<Invariant>>> {
    Box::pin(async move {
        let mut paid: BTreeMap<String, u64> = BTreeMap::new();
        for seat in vu.ctx().facts("paid_seat") {
            *paid.entry(seat).or_default() += 1;
        }
        let twice: Vec<&String> = paid
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| s)
            .collect();
        Ok(vec![Invariant::new(
            "no seat paid twice",
            twice.is_empty(),
            format!("{} seats paid, sold twice: {twice:?}", paid.len()),
        )])
    })
}
