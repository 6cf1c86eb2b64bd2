//! Idempotency for group-commit batches: the rules of [`super::run`] with a constant number
//! of statements per batch instead of per request.
//!
//! Claims are inserted inside the batch's transaction, in (user, key) order so two batches
//! cannot deadlock on them. Another request with the same key waits for that transaction and
//! then finds the stored response (a replay) or no record (it may run): a batch that rolls
//! back, times out or dies with its process leaves no claim behind to lapse. The batch never
//! locks a record some other request is still working under: a conflicting fresh claim is
//! left alone (`do nothing`) and only lapsed or expired records are taken over.

use std::collections::{HashMap, HashSet};

use axum::{http::StatusCode, response::Response};
use serde_json::Value;
use sqlx::PgConnection;

use super::{
    Claim, IdempotencyKey, LEASE, held, in_flight, respond, take_over_set, take_over_when,
};
use crate::{
    auth::UserId,
    error::{ApiError, ApiResult},
    platform::db::PlannedPerBatch,
    state::AppState,
};

/// One request of a batch, as idempotency sees it.
pub struct Request<'a> {
    pub user: UserId,
    pub key: Option<&'a IdempotencyKey>,
    pub fingerprint: &'a [u8],
}

/// What the claim decided for one request.
pub enum Claimed {
    /// Run the operation (the key, if any, is now held by this transaction).
    Run,
    /// Answered already: a replay, a reused key (422) or a request in flight (409).
    Done(ApiResult<Response>),
}

type KeyOf = (i64, String);

fn key_of(r: &Request<'_>) -> Option<KeyOf> {
    r.key.map(|k| (r.user.0, k.as_str().to_owned()))
}

/// Claims the keys of `requests` in the caller's transaction; one [`Claimed`] per request.
pub async fn claim_many(
    state: &AppState,
    conn: &mut PgConnection,
    requests: &[Request<'_>],
) -> ApiResult<Vec<Claimed>> {
    let keyed: Vec<(KeyOf, &[u8])> = requests
        .iter()
        .filter_map(|r| key_of(r).map(|k| (k, r.fingerprint)))
        .collect();
    if keyed.is_empty() {
        return Ok(requests.iter().map(|_| Claimed::Run).collect());
    }
    let terms = Terms {
        lease: LEASE.as_secs() as f64,
        ttl: state.runtime.get().ttls.idempotency.as_secs() as f64,
    };
    let mut run: HashSet<KeyOf> = claim_rows(&mut *conn, ClaimSql::Insert, &keyed, terms)
        .await?
        .into_iter()
        .collect();

    let held_elsewhere: Vec<(KeyOf, &[u8])> = keyed
        .iter()
        .filter(|(k, _)| !run.contains(k))
        .cloned()
        .collect();
    let mut verdicts: HashMap<KeyOf, ApiResult<Response>> = HashMap::new();
    if !held_elsewhere.is_empty() {
        run.extend(claim_rows(&mut *conn, ClaimSql::TakeOver, &held_elsewhere, terms).await?);
        let still: Vec<(KeyOf, &[u8])> = held_elsewhere
            .into_iter()
            .filter(|(k, _)| !run.contains(k))
            .collect();
        if !still.is_empty() {
            verdicts = held_verdicts(conn, still).await?;
        }
    }
    Ok(requests
        .iter()
        .map(|r| match key_of(r) {
            Some(k) if !run.contains(&k) => {
                Claimed::Done(verdicts.remove(&k).unwrap_or_else(|| Err(in_flight())))
            }
            _ => Claimed::Run,
        })
        .collect())
}

/// The lease and time-to-live of a claim, in seconds.
#[derive(Clone, Copy)]
struct Terms {
    lease: f64,
    ttl: f64,
}

/// The two claim statements.
#[derive(Clone, Copy)]
enum ClaimSql {
    /// Fresh claims; a key someone else holds is left alone. It reads no table but through
    /// the primary key (the conflict check), so its plan cannot go stale as the table grows:
    /// it stays prepared on the connection (planning it took ~70 µs of every batch, #18).
    Insert,
    /// Takes over the lapsed or expired records of these keys: it joins the table, so it is
    /// planned per batch ([`PlannedPerBatch`]).
    TakeOver,
}

const INSERT_CLAIMS: &str =
    "insert into idempotency_keys (user_id, key, fingerprint, locked_until, expires_at)
         select u, k, f, now() + make_interval(secs => $4), now() + make_interval(secs => $5)
           from unnest($1::bigint[], $2::text[], $3::bytea[]) as t(u, k, f)
          order by u, k
         on conflict (user_id, key) do nothing
         returning user_id, key";

const TAKE_OVER_CLAIMS: &str = concat!(
    "update idempotency_keys",
    take_over_set!(),
    "from (select u as user_id, k as key, f as fingerprint,
                  now() + make_interval(secs => $4) as locked_until,
                  now() + make_interval(secs => $5) as expires_at
             from unnest($1::bigint[], $2::text[], $3::bytea[]) as t(u, k, f)) as excluded
      where idempotency_keys.user_id = excluded.user_id and idempotency_keys.key = excluded.key and",
    take_over_when!(),
    "returning idempotency_keys.user_id, idempotency_keys.key"
);

/// Users, keys and fingerprints of `rows`, as the `unnest` columns of the claim statements.
fn columns(rows: &[(KeyOf, &[u8])]) -> (Vec<i64>, Vec<String>, Vec<Vec<u8>>) {
    (
        rows.iter().map(|((u, _), _)| *u).collect(),
        rows.iter().map(|((_, k), _)| k.clone()).collect(),
        rows.iter().map(|(_, f)| f.to_vec()).collect(),
    )
}

/// Runs one claim statement over `rows`: the keys it claimed.
async fn claim_rows(
    conn: &mut PgConnection,
    sql: ClaimSql,
    rows: &[(KeyOf, &[u8])],
    terms: Terms,
) -> Result<Vec<KeyOf>, sqlx::Error> {
    let (users, keys, fps) = columns(rows);
    let query = match sql {
        ClaimSql::Insert => sqlx::query_as(INSERT_CLAIMS),
        ClaimSql::TakeOver => sqlx::query_as(TAKE_OVER_CLAIMS).planned_per_batch(),
    };
    query
        .bind(&users)
        .bind(&keys)
        .bind(&fps)
        .bind(terms.lease)
        .bind(terms.ttl)
        .fetch_all(conn)
        .await
}

/// The answers for keys another request still holds: a replay of its stored response, or
/// 409 while it is in flight (also when the record is gone since: its holder failed).
async fn held_verdicts(
    conn: &mut PgConnection,
    still: Vec<(KeyOf, &[u8])>,
) -> ApiResult<HashMap<KeyOf, ApiResult<Response>>> {
    let (users, keys, _) = columns(&still);
    type Row = (i64, String, Vec<u8>, Option<i16>, Option<Value>);
    let rows: Vec<Row> = sqlx::query_as(
        "select i.user_id, i.key, i.fingerprint, i.status, i.response
           from idempotency_keys i
           join unnest($1::bigint[], $2::text[]) as t(u, k) on i.user_id = t.u and i.key = t.k",
    )
    .planned_per_batch()
    .bind(&users)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    let mut stored: HashMap<KeyOf, Row> =
        rows.into_iter().map(|r| ((r.0, r.1.clone()), r)).collect();
    let mut verdicts = HashMap::new();
    for (k, fp) in still {
        // gone since the insert (its holder failed and released it): retry soon
        let verdict = match stored.remove(&k) {
            Some((_, _, stored_fp, status, response)) => {
                match held(fp, &stored_fp, status, response) {
                    Ok(Claim::Replay(status, body)) => Ok(respond(status, body, true)),
                    Ok(Claim::Owned) => Err(in_flight()),
                    Err(e) => Err(e),
                }
            }
            None => Err(in_flight()),
        };
        verdicts.insert(k, verdict);
    }
    Ok(verdicts)
}

/// Settles a batch: for each request, its claim's answer, or the outcome of running it. The
/// responses of keyed successes (2xx) are stored, the claims of keyed failures released —
/// all in the caller's transaction, so they commit (or not) with the work itself.
///
/// `outcomes[i]` must be `Some` exactly where `claims[i]` is [`Claimed::Run`].
pub async fn finish_many(
    conn: &mut PgConnection,
    requests: &[Request<'_>],
    claims: Vec<Claimed>,
    outcomes: Vec<Option<ApiResult<(StatusCode, Value)>>>,
) -> ApiResult<Vec<ApiResult<Response>>> {
    let mut store: (Vec<i64>, Vec<String>, Vec<i16>, Vec<Value>) = Default::default();
    let mut release: (Vec<i64>, Vec<String>) = Default::default();
    let mut answers = Vec::with_capacity(requests.len());
    for ((request, claim), outcome) in requests.iter().zip(claims).zip(outcomes) {
        let outcome = match (claim, outcome) {
            (Claimed::Done(answer), _) => {
                answers.push(answer);
                continue;
            }
            (Claimed::Run, Some(outcome)) => outcome,
            (Claimed::Run, None) => {
                return Err(ApiError::internal("a claimed request has no outcome"));
            }
        };
        match (key_of(request), &outcome) {
            (Some((u, k)), Ok((status, body))) if status.is_success() => {
                store.0.push(u);
                store.1.push(k);
                store.2.push(status.as_u16() as i16);
                store.3.push(body.clone());
            }
            (Some((u, k)), _) => {
                release.0.push(u);
                release.1.push(k);
            }
            (None, _) => {}
        }
        answers.push(outcome.map(|(status, body)| respond(status, body, false)));
    }
    if store.0.is_empty() && release.0.is_empty() {
        return Ok(answers);
    }
    let (stored, _released): (i64, i64) = sqlx::query_as(
        "with stored as (
            update idempotency_keys i set status = t.s, response = t.r
              from unnest($1::bigint[], $2::text[], $3::smallint[], $4::jsonb[]) as t(u, k, s, r)
             where i.user_id = t.u and i.key = t.k
            returning 1),
         released as (
            delete from idempotency_keys i using unnest($5::bigint[], $6::text[]) as t(u, k)
             where i.user_id = t.u and i.key = t.k and i.status is null
            returning 1)
         select (select count(*) from stored), (select count(*) from released)",
    )
    .planned_per_batch()
    .bind(&store.0)
    .bind(&store.1)
    .bind(&store.2)
    .bind(&store.3)
    .bind(&release.0)
    .bind(&release.1)
    .fetch_one(&mut *conn)
    .await?;
    if stored != store.0.len() as i64 {
        // the claims are this transaction's own: anything else is a bug, so roll back
        return Err(ApiError::internal(format!(
            "stored {stored} of {} idempotent responses",
            store.0.len()
        )));
    }
    Ok(answers)
}
