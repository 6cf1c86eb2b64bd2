//! P9, the source report's reserve-and-pay flow through the waiting room, one flow per
//! iteration: join → poll until ADMITTED → seats → hold → pay. The report (Locust, 500 users)
//! failed 3,887 of its 4,224 requests (92 %); here every flow is counted as completed or failed.
//!
//! What fails a flow (check `flow completed`, and `flow failed: <step>` naming the step, with
//! the HTTP status and problem type when the step got an answer it did not expect, e.g.
//! `hold (HTTP 409 hold-limit)`):
//! any answer outside 2xx, except a hold's 409 `seat-taken`, which the flow retries with
//! another free seat (up to `seat_tries`, default 5, re-reading the seats when a list runs
//! out and trying the other dates when one is sold out); no free seat left on any date; `EXPIRED`, or not admitted within
//! `admit_timeout` seconds (default 60). A flow that fails after admission leaves the queue,
//! so it does not hold a slot. Request names: `p9-join`, `p9-poll`, `p9-seats`, `p9-hold`,
//! `p9-pay` (per-step latency in the summary's `http_req_duration{name:…}`).
//!
//! Users: `--param tokens_file=FILE` gives pre-minted access tokens (VU n uses line n mod the
//! count; scripts/bench.sh mints them, as signing up thousands of users would measure argon2);
//! without it each VU signs up and logs in once. Each user funds its wallet once
//! (`wallet-charge`, outside the flow). `schedule_ids=1,2,…` picks the dates a flow chooses
//! from (default: the concert's dates with free seats, read once in setup).

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use serde_json::{Value, json};

use super::api::{ensure_logged_in, fund_once, id_of, idempotency_key, list_of, number_at};
use super::order::id_value;
use crate::{client::Response, vu::Vu};

pub fn setup(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        super::queue::setup(vu).await?;
        if let Some(file) = vu.param("tokens_file") {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("tokens_file {file}: {e}"))?;
            let tokens: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            anyhow::ensure!(!tokens.is_empty(), "tokens_file {file} holds no token");
            vu.ctx().set_param("tokens", tokens.join("\n"));
        }
        if vu.param("schedule_ids").is_none() {
            let cid = vu.param("concert_id").unwrap_or_default();
            let r = vu
                .get(format!("/api/v1/concerts/{cid}/schedules?available=true"))
                .name("setup-schedules")
                .anonymous()
                .send()
                .await;
            let ids: Vec<String> = list_of(&r.value())
                .map(|l| {
                    l.iter()
                        .filter_map(|s| id_of(s, &["schedule_id"]))
                        .collect()
                })
                .unwrap_or_default();
            anyhow::ensure!(
                !ids.is_empty(),
                "concert {cid} has no date with a free seat (GET /concerts/{cid}/schedules answered {})",
                r.status
            );
            vu.ctx().set_param("schedule_ids", ids.join(","));
        }
        Ok(())
    })
}

/// This VU's user: a pre-minted token (`tokens_file`) or its own signup; funded once.
async fn ensure_user(vu: &mut Vu) -> anyhow::Result<()> {
    if vu.state.access_token.is_none()
        && let Some(tokens) = vu.param("tokens")
    {
        let lines: Vec<&str> = tokens.lines().collect();
        vu.state.access_token = Some(lines[(vu.id % lines.len() as u64) as usize].to_string());
    }
    ensure_logged_in(vu).await?;
    fund_once(vu, 5_000_000).await;
    Ok(())
}

pub fn flow(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        ensure_user(vu).await?;
        vu.group("reserve and pay");
        let outcome = one_flow(vu).await;
        vu.check("flow completed", outcome.is_ok());
        if let Err(failed) = outcome {
            vu.check(&format!("flow failed: {failed}"), false);
        }
        vu.end_group();
        Ok(())
    })
}

/// Why a flow failed: the step, and the status of the answer it did not expect (0: no
/// answer at all, e.g. a timeout) with its problem type's last segment (`hold-limit`).
#[derive(Debug, PartialEq)]
struct Failed {
    step: &'static str,
    status: Option<u16>,
    kind: Option<String>,
}

impl Failed {
    fn answered(step: &'static str, r: &Response) -> Self {
        Self {
            step,
            status: Some(r.status),
            kind: r.problem_kind(),
        }
    }
}

impl From<&'static str> for Failed {
    fn from(step: &'static str) -> Self {
        Self {
            step,
            status: None,
            kind: None,
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, &self.kind) {
            (None, _) => f.write_str(self.step),
            (Some(0), _) => write!(f, "{} (no answer)", self.step),
            (Some(status), None) => write!(f, "{} (HTTP {status})", self.step),
            (Some(status), Some(kind)) => write!(f, "{} (HTTP {status} {kind})", self.step),
        }
    }
}

async fn one_flow(vu: &mut Vu) -> Result<(), Failed> {
    let qid = vu.param("queue_id").unwrap_or_default();
    let r = vu
        .post(format!("/api/v1/queues/{qid}/tokens"))
        .name("p9-join")
        .send()
        .await;
    if !(200..300).contains(&r.status) {
        return Err(Failed::answered("join", &r));
    }
    let v = r.value();
    let token = v.get("token").and_then(Value::as_str).unwrap_or_default();
    vu.state.queue_token = Some(token.to_string());
    let status = v.get("status").and_then(Value::as_str).unwrap_or("WAITING");
    wait_admitted(vu, &qid, token, status.to_string()).await?;
    let bought = reserve_and_pay(vu, token).await;
    if bought.is_err() {
        // give the slot back at once rather than holding it until the session lapses
        let _ = vu
            .delete(format!("/api/v1/queues/{qid}/tokens/me"))
            .name("p9-leave")
            .header("x-queue-token", token)
            .send()
            .await;
    }
    bought
}

/// Polls at the server's `poll_after_seconds` (at most 5 s) until ADMITTED.
async fn wait_admitted(
    vu: &mut Vu,
    qid: &str,
    token: &str,
    mut status: String,
) -> Result<(), Failed> {
    let limit: u64 = vu
        .param("admit_timeout")
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(limit);
    while status != "ADMITTED" {
        if status == "EXPIRED" {
            return Err("expired in the queue".into());
        }
        if Instant::now() >= deadline {
            return Err("not admitted in time".into());
        }
        let r = vu
            .get(format!("/api/v1/queues/{qid}/tokens/me"))
            .name("p9-poll")
            .header("x-queue-token", token)
            .send()
            .await;
        if r.status != 200 {
            return Err(Failed::answered("poll", &r));
        }
        let v = r.value();
        status = v.get("status").and_then(Value::as_str).unwrap_or("").into();
        if status == "WAITING" {
            let wait = number_at(&v, "/poll_after_seconds")
                .unwrap_or(1)
                .clamp(1, 5);
            vu.sleep(wait as f64).await;
        }
    }
    Ok(())
}

async fn free_seats(vu: &mut Vu, sid: &str, token: &str) -> Result<Vec<String>, Failed> {
    let r = vu
        .get(format!("/api/v1/schedules/{sid}/seats?available=true"))
        .name("p9-seats")
        .header("x-queue-token", token)
        .send()
        .await;
    if r.status != 200 {
        return Err(Failed::answered("seats", &r));
    }
    let v = r.value();
    Ok(list_of(&v)
        .map(|l| {
            l.iter()
                .filter(|s| s.get("status").and_then(Value::as_str).unwrap_or("free") == "free")
                .filter_map(|s| id_of(s, &["seat_id"]))
                .collect()
        })
        .unwrap_or_default())
}

async fn reserve_and_pay(vu: &mut Vu, token: &str) -> Result<(), Failed> {
    let schedules: Vec<String> = vu
        .param("schedule_ids")
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    let tries: u32 = vu
        .param("seat_tries")
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut sid = schedules[vu.rng.random_range(0..schedules.len())].clone();
    let mut seats = free_seats(vu, &sid, token).await?;
    for _ in 0..tries {
        if seats.is_empty() {
            seats = free_seats(vu, &sid, token).await?;
        }
        // a sold-out date: another one, as a user would (each date at most once)
        let mut other_dates: Vec<String> =
            schedules.iter().filter(|s| **s != sid).cloned().collect();
        while seats.is_empty() && !other_dates.is_empty() {
            sid = other_dates.swap_remove(vu.rng.random_range(0..other_dates.len()));
            seats = free_seats(vu, &sid, token).await?;
        }
        if seats.is_empty() {
            return Err("no free seat".into());
        }
        // a random free seat, so that concurrent flows seldom pick the same one
        let seat = seats.swap_remove(vu.rng.random_range(0..seats.len()));
        let body = json!({ "schedule_id": id_value(&sid), "seat_id": id_value(&seat) });
        let r = vu
            .post("/api/v1/reservations")
            .name("p9-hold")
            .header("x-queue-token", token)
            .json(&body)
            .expect(&[201, 409])
            .send()
            .await;
        match r.status {
            201 => {
                let rid = id_of(&r.value(), &["reservation_id"])
                    .ok_or(Failed::from("hold without id"))?;
                return pay(vu, token, &sid, &seat, &rid).await;
            }
            409 if r.problem_kind().as_deref() == Some("seat-taken") => continue,
            _ => return Err(Failed::answered("hold", &r)),
        }
    }
    Err("no seat after seat_tries holds".into())
}

async fn pay(vu: &mut Vu, token: &str, sid: &str, seat: &str, rid: &str) -> Result<(), Failed> {
    let key = idempotency_key(vu);
    let r = vu
        .post(format!("/api/v1/reservations/{rid}/payment"))
        .name("p9-pay")
        .header("x-queue-token", token)
        .header("idempotency-key", &key)
        .send()
        .await;
    if !(200..300).contains(&r.status) {
        return Err(Failed::answered("pay", &r));
    }
    vu.ctx().record_fact("paid_seat", format!("{sid}:{seat}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Failed, Response};

    fn answer(status: u16, body: &'static str) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: body.into(),
            error: None,
        }
    }

    #[test]
    fn a_failure_names_its_step_the_status_and_the_problem_it_got() {
        assert_eq!(Failed::from("no free seat").to_string(), "no free seat");
        assert_eq!(
            Failed::answered("join", &answer(503, "")).to_string(),
            "join (HTTP 503)"
        );
        let problem = r#"{"type":"https://floodgate.dev/problems/hold-limit","status":409}"#;
        assert_eq!(
            Failed::answered("hold", &answer(409, problem)).to_string(),
            "hold (HTTP 409 hold-limit)"
        );
        assert_eq!(
            Failed::answered("pay", &Response::failed("timed out".into())).to_string(),
            "pay (no answer)"
        );
    }
}
