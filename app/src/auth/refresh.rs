//! Refresh tokens: random opaque values, stored as SHA-256 hashes with a family id.
//!
//! Rotation marks the presented token used with one conditional UPDATE, so of two concurrent
//! refreshes with the same token exactly one rotates it. The others (two browser tabs sharing
//! the cookie) present a token used moments ago: within the reuse grace
//! (`FLOODGATE_REFRESH_REUSE_GRACE_SECS`, as Auth0's reuse interval and Okta's grace period)
//! each gets a new token of the same family instead. Presenting a used token after the grace,
//! or a revoked one, is theft: the whole family is revoked, so the thief's rotated token dies
//! too.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::types::UserId;

pub const REFRESH_TTL_SECS: i64 = 1800;
pub const COOKIE_NAME: &str = "refresh_token";
pub const COOKIE_PATH: &str = "/api/v1/auth";

pub struct NewToken {
    pub token: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    Rotated {
        user: UserId,
        token: String,
    },
    /// A used or revoked token came back: its family is now revoked.
    Reused,
    /// Unknown or expired.
    Invalid,
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

async fn insert<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    user: UserId,
    family: Uuid,
) -> Result<NewToken, sqlx::Error> {
    let token = generate();
    sqlx::query(
        "insert into refresh_tokens (family_id, user_id, token_hash, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(family)
    .bind(user)
    .bind(hash(&token))
    .bind(REFRESH_TTL_SECS as f64)
    .execute(db)
    .await?;
    Ok(NewToken { token })
}

/// Starts a new family (a login).
pub async fn issue(db: &mut PgConnection, user: UserId) -> Result<NewToken, sqlx::Error> {
    insert(db, user, Uuid::new_v4()).await
}

pub async fn rotate(
    db: &mut PgConnection,
    presented: &str,
    reuse_grace: std::time::Duration,
) -> Result<Rotation, sqlx::Error> {
    let h = hash(presented);
    let mut tx = db.begin().await?;
    let live: Option<(Uuid, UserId)> = sqlx::query_as(
        "update refresh_tokens set used_at = now()
         where token_hash = $1 and used_at is null and revoked_at is null and expires_at > now()
         returning family_id, user_id",
    )
    .bind(&h)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((family, user)) = live {
        let new = insert(&mut *tx, user, family).await?;
        tx.commit().await?;
        return Ok(Rotation::Rotated {
            user,
            token: new.token,
        });
    }
    // Locked, so a logout or a theft verdict on the family cannot slip between the check
    // and the new token.
    let known: Option<(Uuid, UserId, bool, bool)> = sqlx::query_as(
        "select family_id, user_id,
                (used_at is not null or revoked_at is not null),
                (revoked_at is null and expires_at > now()
                   and used_at > now() - make_interval(secs => $2))
         from refresh_tokens where token_hash = $1 for update",
    )
    .bind(&h)
    .bind(reuse_grace.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match known {
        Some((family, user, _, true)) => {
            // rotated moments ago (another tab): a sibling of its successor
            let new = insert(&mut *tx, user, family).await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated {
                user,
                token: new.token,
            });
        }
        Some((family, _, true, false)) => {
            revoke_family_in(&mut *tx, family).await?;
            tracing::warn!(%family, "refresh token reuse detected; family revoked");
            Rotation::Reused
        }
        _ => Rotation::Invalid,
    };
    tx.commit().await?;
    Ok(outcome)
}

async fn revoke_family_in<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    family: Uuid,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "update refresh_tokens set revoked_at = now() where family_id = $1 and revoked_at is null",
    )
    .bind(family)
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}

/// Logout: revokes the family of the presented token (unknown tokens are ignored).
pub async fn revoke_family_of(db: &mut PgConnection, presented: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update refresh_tokens set revoked_at = now()
         where revoked_at is null
           and family_id = (select family_id from refresh_tokens where token_hash = $1)",
    )
    .bind(hash(presented))
    .execute(db)
    .await?;
    Ok(())
}

/// `Set-Cookie` value for a refresh token (or, with `None`, one that clears it).
pub fn cookie(token: Option<&str>) -> String {
    match token {
        Some(t) => format!(
            "{COOKIE_NAME}={t}; Max-Age={REFRESH_TTL_SECS}; Path={COOKIE_PATH}; HttpOnly; Secure; SameSite=Strict"
        ),
        None => format!(
            "{COOKIE_NAME}=; Max-Age=0; Path={COOKIE_PATH}; HttpOnly; Secure; SameSite=Strict"
        ),
    }
}

/// The refresh token from a `Cookie` header, if present.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cookie_among_others() {
        assert_eq!(
            from_cookie_header("a=1; refresh_token=abc; b=2"),
            Some("abc")
        );
        assert_eq!(from_cookie_header("a=1"), None);
        assert_eq!(from_cookie_header("refresh_token="), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = cookie(Some("t"));
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/api/v1/auth",
            "Max-Age=1800",
        ] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        assert!(cookie(None).contains("Max-Age=0"));
    }
}
