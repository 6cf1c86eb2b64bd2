//! Accounts: the user id, roles, e-mail and name rules, and the account rows. Below
//! authentication (`auth`), which signs users in and serves `/users/me` with them.

pub mod store;
pub mod types;

pub use types::{Email, Role, UserId};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

// An account as its owner sees it (the body of `/users/me`).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
}

impl From<store::UserRow> for UserView {
    fn from(u: store::UserRow) -> Self {
        let roles = u.roles();
        Self {
            id: u.user_id,
            email: u.email,
            name: u.name,
            roles,
            created_at: u.created_at,
        }
    }
}
