//! Users in PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use super::types::{Email, Role, UserId};
use crate::error::{ApiError, OnConstraint};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl UserRow {
    pub fn roles(&self) -> Vec<Role> {
        self.roles.iter().filter_map(|r| Role::parse(r)).collect()
    }
}

macro_rules! user_columns {
    () => {
        "user_id, email, name, roles, created_at"
    };
}

/// Inserts a user; a taken email is a 409 (the unique constraint decides, so concurrent
/// signups of one address leave exactly one row).
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    email: &Email,
    password_hash: &str,
    name: &str,
    roles: &[Role],
) -> Result<UserRow, ApiError> {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Ok(sqlx::query_as(concat!(
        "insert into users (email, password_hash, name, roles) values ($1, $2, $3, $4) returning ",
        user_columns!()
    ))
    .bind(email.as_str())
    .bind(password_hash)
    .bind(name)
    .bind(&roles)
    .fetch_one(db)
    .await
    .on_constraint("users_email_key", || {
        ApiError::conflict("email-taken", "an account with this email already exists")
    })?)
}

pub async fn credentials<'e>(
    db: impl PgExecutor<'e>,
    email: &Email,
) -> Result<Option<(UserRow, String)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        password_hash: String,
    }
    let row: Option<Row> = sqlx::query_as(concat!(
        "select ",
        user_columns!(),
        ", password_hash from users where email = $1"
    ))
    .bind(email.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user, r.password_hash)))
}

pub async fn by_id<'e>(
    db: impl PgExecutor<'e>,
    id: UserId,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        user_columns!(),
        " from users where user_id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Adds a role if missing; returns the updated user.
pub async fn grant_role<'e>(
    db: impl PgExecutor<'e>,
    id: UserId,
    role: Role,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "update users set roles = case when $2 = any(roles) then roles else array_append(roles, $2) end
         where user_id = $1 returning ",
        user_columns!()
    ))
    .bind(id)
    .bind(role.as_str())
    .fetch_optional(db)
    .await
}

/// Sets the password of an existing user (admin command); false when there is no such user.
pub async fn set_password<'e>(
    db: impl PgExecutor<'e>,
    email: &Email,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query("update users set password_hash = $2 where email = $1")
        .bind(email.as_str())
        .bind(password_hash)
        .execute(db)
        .await
        .map(|r| r.rows_affected() == 1)
}
