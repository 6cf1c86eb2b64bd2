//! Balance get and charge on a few hot users (the e-commerce report used 4 user ids), then
//! a check that each hot user's balance equals the sum of their ledger.

use futures::future::BoxFuture;
use rand::Rng;
use serde_json::{Value, json};

use super::Invariant;
use super::api::{email_for, idempotency_key, list_of, login_as, number_at};
use crate::metrics::Metrics;
use crate::vu::Vu;

pub const HOT_USERS: usize = 4;

/// Signs up and logs in the hot users once; VUs share their tokens as the report's VUs
/// shared 4 user ids.
pub fn setup(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let users: usize = vu
            .param("hot_users")
            .and_then(|n| n.parse().ok())
            .unwrap_or(HOT_USERS)
            .max(1);
        vu.ctx().set_param("hot_users", users.to_string());
        for i in 0..users {
            let email = email_for(vu, &format!("hot{i}"));
            let token = login_as(vu, &email).await?;
            vu.ctx().set_param(&format!("hot_email_{i}"), email);
            vu.ctx().set_param(&format!("hot_token_{i}"), token);
        }
        Ok(())
    })
}

/// Becomes a random hot user for this iteration; returns its index.
pub async fn as_hot_user(vu: &mut Vu) -> usize {
    let users: usize = vu
        .param("hot_users")
        .and_then(|n| n.parse().ok())
        .unwrap_or(HOT_USERS)
        .max(1);
    let i = vu.rng.random_range(0..users);
    vu.state.access_token = vu.param(&format!("hot_token_{i}"));
    i
}

/// After a 401 (tokens live 5 minutes) the hot user logs in again for everyone.
async fn refresh(vu: &mut Vu, i: usize) -> anyhow::Result<()> {
    let email = vu.param(&format!("hot_email_{i}")).unwrap_or_default();
    let token = login_as(vu, &email).await?;
    vu.ctx().set_param(&format!("hot_token_{i}"), token);
    Ok(())
}

/// The e-commerce balance script: sleep(1), GET, sleep(1).
pub fn get(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let i = as_hot_user(vu).await;
        vu.sleep(1.0).await;
        let r = vu.get("/api/v1/wallet").name("balance-get").send().await;
        vu.check("balance get 200", r.status == 200);
        if r.status == 401 {
            refresh(vu, i).await?;
        }
        vu.sleep(1.0).await;
        Ok(())
    })
}

/// The e-commerce charge script: one charge, then sleep(1).
pub fn charge(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let i = as_hot_user(vu).await;
        let amount: i64 = vu
            .param("amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or(1000);
        let key = idempotency_key(vu);
        let r = vu
            .post("/api/v1/wallet/charges")
            .name("balance-charge")
            .header("idempotency-key", &key)
            .json(&json!({ "amount": amount }))
            .send()
            .await;
        vu.check("charge 2xx", (200..300).contains(&r.status));
        if r.status == 401 {
            refresh(vu, i).await?;
        }
        vu.sleep(1.0).await;
        Ok(())
    })
}

/// A ledger entry's signed effect on the balance: negative amounts count as sent; positive
/// ones count negative when the entry is a payment (order or seat), positive otherwise.
pub fn signed_amount(entry: &Value) -> Option<i64> {
    let amount = number_at(entry, "/amount")?;
    if amount < 0 {
        return Some(amount);
    }
    let kind = ["type", "kind"]
        .iter()
        .find_map(|k| entry.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_ascii_lowercase();
    let debit = (kind.contains("payment") || kind.contains("order") || kind.contains("debit"))
        && !kind.contains("refund");
    Some(if debit { -amount } else { amount })
}

/// Sums the whole ledger, page by page (`limit` ≤ 100, `next_cursor`).
async fn ledger_sum(vu: &mut Vu) -> Option<i64> {
    let mut sum = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/wallet/transactions?limit=100&cursor={c}"),
            None => "/api/v1/wallet/transactions?limit=100".to_string(),
        };
        let r = vu.get(path).name("verify-ledger").send().await;
        if r.status != 200 {
            return None;
        }
        let page = r.value();
        sum += list_of(&page)?
            .iter()
            .filter_map(signed_amount)
            .sum::<i64>();
        cursor = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(String::from);
        if cursor.is_none() {
            return Some(sum);
        }
    }
}

pub fn verify<'a>(
    vu: &'a mut Vu,
    _m: &'a Metrics,
) -> BoxFuture<'a, anyhow::Result<Vec<Invariant>>> {
    Box::pin(async move {
        let users: usize = vu
            .param("hot_users")
            .and_then(|n| n.parse().ok())
            .unwrap_or(HOT_USERS);
        let mut out = Vec::new();
        for i in 0..users {
            let email = vu.param(&format!("hot_email_{i}")).unwrap_or_default();
            login_as(vu, &email).await?;
            let balance = vu
                .get("/api/v1/wallet")
                .name("verify-wallet")
                .send()
                .await
                .value();
            let balance = number_at(&balance, "/balance");
            let sum = ledger_sum(vu).await;
            let ok = balance.is_some() && balance == sum;
            out.push(Invariant::new(
                "balance = ledger",
                ok,
                format!("hot user {i}: balance {balance:?}, ledger sum {sum:?}"),
            ));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_count_against_the_balance() {
        assert_eq!(
            signed_amount(&json!({ "amount": 500, "type": "CHARGE" })),
            Some(500)
        );
        assert_eq!(
            signed_amount(&json!({ "amount": 300, "type": "order_payment" })),
            Some(-300)
        );
        assert_eq!(
            signed_amount(&json!({ "amount": 300, "kind": "refund" })),
            Some(300)
        );
        assert_eq!(signed_amount(&json!({ "amount": -200 })), Some(-200));
        assert_eq!(signed_amount(&json!({})), None);
    }
}
