//! Floodgate API helpers shared by scenarios: sign up and log in, pull ids out of list
//! responses whatever their envelope, and find setup data when no `--param` names it.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::vu::Vu;

pub const PASSWORD: &str = "loadtest-password-1";

/// A random idempotency key per logical operation (retries would reuse it). It names the run:
/// a VU's random numbers repeat from run to run (seeded by its id), and a user that a later
/// run reuses (`tokens_file`) would otherwise send an earlier run's key with a new request,
/// which the server rightly refuses (422).
pub fn idempotency_key(vu: &mut Vu) -> String {
    use rand::Rng;
    let run = vu.param("run_id").unwrap_or_default();
    format!("lt-{run}-{}-{:032x}", vu.id, vu.rng.random::<u128>())
}

/// An email unique to this run, VU and slot.
pub fn email_for(vu: &Vu, slot: &str) -> String {
    let run = vu.param("run_id").unwrap_or_else(|| "run".into());
    format!("lt-{run}-{slot}@example.com")
}

/// A stable client address per user for `X-Forwarded-For`: auth is rate limited per IP
/// (60 a minute by default), and an app that trusts the generator as a proxy
/// (`FLOODGATE_TRUSTED_PROXIES=<its address>/32`) then sees each user as its own client,
/// as the reports' thousands of real users would be.
pub fn client_ip(email: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in email.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("10.{}.{}.{}", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff)
}

/// Signs `email` up (an existing account is fine) and logs in, storing the access token.
pub async fn login_as(vu: &mut Vu, email: &str) -> anyhow::Result<String> {
    vu.state.access_token = None;
    let ip = client_ip(email);
    let body = json!({ "email": email, "password": PASSWORD, "name": "Load Test" });
    let r = vu
        .post("/api/v1/auth/signup")
        .name("auth-signup")
        .header("x-forwarded-for", &ip)
        .json(&body)
        .expect(&[201, 409])
        .anonymous()
        .send()
        .await;
    vu.check("signup 201 or 409", r.status == 201 || r.status == 409);
    let r = vu
        .post("/api/v1/auth/login")
        .name("auth-login")
        .header("x-forwarded-for", &ip)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .anonymous()
        .send()
        .await;
    vu.check("login 200", r.status == 200);
    if r.status != 200 {
        bail!(
            "login of {email} answered {} {}",
            r.status,
            r.error.as_deref().unwrap_or("")
        );
    }
    let token = r
        .field("/access_token")
        .and_then(|v| v.as_str().map(String::from))
        .context("login without access_token")?;
    vu.state.access_token = Some(token.clone());
    vu.state.email = Some(email.to_string());
    Ok(token)
}

/// Logs this VU in as its own user once; later iterations reuse the session.
pub async fn ensure_logged_in(vu: &mut Vu) -> anyhow::Result<()> {
    if vu.state.access_token.is_none() {
        let email = email_for(vu, &format!("vu{}", vu.id));
        login_as(vu, &email).await?;
    }
    Ok(())
}

/// Funds this VU's wallet once (`wallet-charge`, outside any flow); later iterations skip it.
pub async fn fund_once(vu: &mut Vu, amount: i64) {
    if vu.state.data.contains_key("funded") {
        return;
    }
    let key = idempotency_key(vu);
    let r = vu
        .post("/api/v1/wallet/charges")
        .name("wallet-charge")
        .header("idempotency-key", &key)
        .json(&json!({ "amount": amount }))
        .send()
        .await;
    vu.check("wallet charge 2xx", (200..300).contains(&r.status));
    vu.state.data.insert("funded".into(), Value::Bool(true));
}

/// The list inside a response: a bare array or the first array under a usual envelope key.
pub fn list_of(v: &Value) -> Option<&Vec<Value>> {
    if let Some(a) = v.as_array() {
        return Some(a);
    }
    [
        "items",
        "data",
        "goods",
        "results",
        "seats",
        "schedules",
        "concerts",
        "transactions",
    ]
    .iter()
    .find_map(|k| v.get(*k).and_then(Value::as_array))
}

/// The id of a JSON object, whichever of the usual names it uses.
pub fn id_of(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .chain(["id"].iter())
        .find_map(|k| match v.get(*k)? {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
}

/// The first item's id of a list response.
pub fn first_id(v: &Value, keys: &[&str]) -> Option<String> {
    list_of(v)?.iter().find_map(|item| id_of(item, keys))
}

/// A setup parameter: from `--param`/environment, else discovered by `discover`.
pub async fn param_or<F>(vu: &mut Vu, key: &str, discover: F) -> anyhow::Result<String>
where
    F: AsyncFnOnce(&mut Vu) -> anyhow::Result<Option<String>>,
{
    if let Some(v) = vu.param(key) {
        return Ok(v);
    }
    match discover(vu).await? {
        Some(v) => {
            tracing::info!(key, value = %v, "discovered scenario parameter");
            vu.ctx().set_param(key, v.clone());
            Ok(v)
        }
        None => bail!("no {key}: pass --param {key}=... (discovery found none)"),
    }
}

/// The newest goods item's id (`GET /goods?limit=1`).
pub async fn discover_goods(vu: &mut Vu) -> anyhow::Result<Option<String>> {
    let r = vu
        .get("/api/v1/goods?limit=1")
        .name("setup-goods")
        .anonymous()
        .send()
        .await;
    Ok(first_id(&r.value(), &["goods_id"]))
}

/// The first concert's id and, if it has one, its queue (`GET /concerts`).
pub async fn discover_concert(vu: &mut Vu) -> anyhow::Result<(Option<String>, Option<String>)> {
    let r = vu
        .get("/api/v1/concerts")
        .name("setup-concerts")
        .anonymous()
        .send()
        .await;
    let v = r.value();
    let concerts = list_of(&v).cloned().unwrap_or_default();
    let with_queue = concerts
        .iter()
        .find(|c| c.get("queue_id").is_some_and(|q| !q.is_null()));
    let pick = with_queue.or(concerts.first());
    Ok((
        pick.and_then(|c| id_of(c, &["concert_id"])),
        pick.and_then(|c| id_of(c, &["queue_id"])),
    ))
}

/// A number field by JSON pointer, whether sent as a number or a string.
pub fn number_at(v: &Value, pointer: &str) -> Option<i64> {
    match v.pointer(pointer)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vu_of_run(run: &str) -> Vu {
        let ctx = std::sync::Arc::new(crate::vu::RunContext {
            target: crate::client::Target::parse("http://127.0.0.1:9").expect("target"),
            recorder: std::sync::Arc::new(crate::recorder::Recorder::new(
                std::time::Instant::now(),
                None,
            )),
            params: std::sync::RwLock::new([("run_id".to_string(), run.to_string())].into()),
            request_timeout: std::time::Duration::from_secs(1),
            facts: Default::default(),
        });
        Vu::new(7, ctx, "s", None)
    }

    #[test]
    fn the_same_vu_in_another_run_sends_other_idempotency_keys() {
        let (mut a, mut b) = (vu_of_run("r1"), vu_of_run("r2"));
        let (ka, kb) = (idempotency_key(&mut a), idempotency_key(&mut b));
        assert_ne!(ka, kb, "a reused user would replay an earlier run's key");
        assert_ne!(ka, idempotency_key(&mut a), "one key per operation");
    }

    #[test]
    fn finds_ids_in_any_envelope() {
        assert_eq!(first_id(&json!([{ "id": 3 }]), &[]), Some("3".into()));
        assert_eq!(
            first_id(&json!({ "items": [{ "goods_id": "g1" }] }), &["goods_id"]),
            Some("g1".into())
        );
        assert_eq!(first_id(&json!({ "data": [] }), &[]), None);
        assert_eq!(
            number_at(&json!({ "balance": "120" }), "/balance"),
            Some(120)
        );
    }
}
