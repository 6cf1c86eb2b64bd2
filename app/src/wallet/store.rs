//! Wallet SQL. Every change is one statement: the conditional balance update and the ledger
//! row it produces.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use utoipa::ToSchema;

use super::LedgerKind;
use crate::{
    auth::UserId,
    error::{ApiError, OnConstraint},
    pagination::Page,
    platform::{db::PlannedPerBatch, ids::OrderId, money::Money},
};

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct LedgerEntry {
    #[sqlx(rename = "ledger_id")]
    pub id: i64,
    #[schema(value_type = LedgerKind)]
    pub kind: String,
    /// Positive for credits, negative for debits (minor units).
    #[schema(value_type = i64)]
    pub amount: Money,
    #[schema(value_type = i64)]
    pub balance_after: Money,
    /// The order or reservation this entry belongs to.
    pub reference_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// Adds `amount` (> 0) and returns the ledger entry.
pub async fn credit(
    conn: &mut PgConnection,
    user: UserId,
    amount: Money,
    kind: LedgerKind,
    reference: Option<i64>,
) -> Result<LedgerEntry, ApiError> {
    Ok(sqlx::query_as(
        "with w as (
            insert into wallets (user_id, balance) values ($1, $2)
            on conflict (user_id) do update set balance = wallets.balance + excluded.balance, updated_at = now()
            returning balance)
         insert into wallet_ledger (user_id, kind, amount, balance_after, reference_id)
         select $1, $3, $2, balance, $4 from w
         returning ledger_id, kind, amount, balance_after, reference_id, created_at",
    )
    .bind(user)
    .bind(amount)
    .bind(kind.as_str())
    .bind(reference)
    .fetch_one(conn)
    .await
    .on_constraint("wallets_balance_max", super::balance_limit)?)
}

/// Takes `amount` (> 0) if the balance covers it; 409 `insufficient-balance` otherwise.
/// Returns the new balance.
pub async fn debit(
    conn: &mut PgConnection,
    user: UserId,
    amount: Money,
    kind: LedgerKind,
    reference: Option<i64>,
) -> Result<Money, ApiError> {
    let balance: Option<Money> = sqlx::query_scalar(
        "with w as (
            update wallets set balance = balance - $2, updated_at = now()
             where user_id = $1 and balance >= $2
            returning balance)
         insert into wallet_ledger (user_id, kind, amount, balance_after, reference_id)
         select $1, $3, -$2, balance, $4 from w
         returning balance_after",
    )
    .bind(user)
    .bind(amount)
    .bind(kind.as_str())
    .bind(reference)
    .fetch_optional(conn)
    .await?;
    balance.ok_or_else(|| super::insufficient_balance(amount))
}

/// Takes each `(user, amount, order)` of `debits` (amounts > 0, users distinct, wallets
/// locked by the caller and covering them) in one statement, with its ledger row; returns
/// how many were taken, so the caller can roll back on a mismatch.
pub async fn debit_many(
    conn: &mut PgConnection,
    debits: &[(UserId, Money, OrderId)],
    kind: LedgerKind,
) -> Result<u64, sqlx::Error> {
    let users: Vec<UserId> = debits.iter().map(|d| d.0).collect();
    let amounts: Vec<i64> = debits.iter().map(|d| d.1.minor()).collect();
    let references: Vec<OrderId> = debits.iter().map(|d| d.2).collect();
    sqlx::query(
        "with req as (
            select * from unnest($1::bigint[], $2::bigint[], $3::bigint[]) as t(user_id, amount, reference_id)
         ), w as (
            update wallets set balance = wallets.balance - req.amount, updated_at = now()
              from req where wallets.user_id = req.user_id and wallets.balance >= req.amount
            returning wallets.user_id, wallets.balance
         )
         insert into wallet_ledger (user_id, kind, amount, balance_after, reference_id)
         select w.user_id, $4, -req.amount, w.balance, req.reference_id from w join req using (user_id)",
    )
    .planned_per_batch()
    .bind(&users)
    .bind(&amounts)
    .bind(&references)
    .bind(kind.as_str())
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

/// Locks the user's wallet, opening an empty one first if there is none; returns its balance.
pub async fn lock_one(conn: &mut PgConnection, user: UserId) -> Result<Money, sqlx::Error> {
    loop {
        let balance: Option<Money> =
            sqlx::query_scalar("select balance from wallets where user_id = $1 for no key update")
                .bind(user)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(b) = balance {
            return Ok(b);
        }
        sqlx::query("insert into wallets (user_id) values ($1) on conflict (user_id) do nothing")
            .bind(user)
            .execute(&mut *conn)
            .await?;
    }
}

/// Locks the wallets of `users` in user-id order — the order of every multi-wallet write, so
/// two of them cannot deadlock — and returns their balances (no wallet, no entry).
pub async fn lock_many(
    conn: &mut PgConnection,
    users: &[UserId],
) -> Result<HashMap<UserId, Money>, sqlx::Error> {
    let rows: Vec<(UserId, Money)> = sqlx::query_as(
        "select user_id, balance from wallets where user_id = any($1)
          order by user_id for no key update",
    )
    .planned_per_batch()
    .bind(users)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Sets the locked wallet of `user` to `balance` and appends one ledger row per
/// (amount, balance after), in order, in one statement; returns the rows in that order.
pub async fn credit_many(
    conn: &mut PgConnection,
    user: UserId,
    balance: Money,
    entries: &[(Money, Money)],
    kind: LedgerKind,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    let amounts: Vec<Money> = entries.iter().map(|e| e.0).collect();
    let after: Vec<Money> = entries.iter().map(|e| e.1).collect();
    sqlx::query_as(
        "with w as (update wallets set balance = $2, updated_at = now() where user_id = $1 returning user_id)
         insert into wallet_ledger (user_id, kind, amount, balance_after, reference_id)
         select w.user_id, $3, t.amount, t.balance_after, null
           from w, unnest($4::bigint[], $5::bigint[]) with ordinality as t(amount, balance_after, n)
          order by t.n
         returning ledger_id, kind, amount, balance_after, reference_id, created_at",
    )
    .bind(user)
    .bind(balance)
    .bind(kind.as_str())
    .bind(&amounts)
    .bind(&after)
    .fetch_all(conn)
    .await
}

pub async fn balance<'e>(db: impl PgExecutor<'e>, user: UserId) -> Result<Money, sqlx::Error> {
    let b: Option<Money> = sqlx::query_scalar("select balance from wallets where user_id = $1")
        .bind(user)
        .fetch_optional(db)
        .await?;
    Ok(b.unwrap_or(Money::ZERO))
}

pub async fn ledger<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    page: Page,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    sqlx::query_as(
        "select ledger_id, kind, amount, balance_after, reference_id, created_at from wallet_ledger
         where user_id = $1 and ($2::bigint is null or ledger_id < $2)
         order by ledger_id desc limit $3",
    )
    .bind(user)
    .bind(page.before)
    .bind(page.limit + 1)
    .fetch_all(db)
    .await
}
