//! Demo data and the admin command. Admins are never created over HTTP.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::{
    auth::{Email, Role, password, store, types::Password},
};

pub const DEMO_ADMIN: &str = "admin@floodgate.local";
pub const DEMO_SELLER: &str = "seller@floodgate.local";
pub const DEMO_CUSTOMER: &str = "customer@floodgate.local";
pub const DEMO_PASSWORD: &str = "floodgate-demo";

/// Creates a user with `roles`, or resets the password and adds the roles if it exists.
pub async fn upsert_user(db: &PgPool, email: &str, password: &SecretString, name: &str, roles: &[Role]) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("invalid email: {m}"))?;
    let pw = Password::parse(password.expose_secret().to_owned()).map_err(|m| anyhow::anyhow!("{m}"))?;
    let hash = password::hash(pw.expose().to_owned()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    match store::insert(db, &email, &hash, name, roles).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == "email-taken" => {
            store::set_password(db, &email, &hash).await?;
            let (user, _) = store::credentials(db, &email).await?.ok_or_else(|| anyhow::anyhow!("user vanished"))?;
            for role in roles {
                store::grant_role(db, user.user_id, *role).await?;
            }
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// `floodgate-app admin create --email EMAIL` with the password from FLOODGATE_ADMIN_PASSWORD.
pub async fn create_admin(db: &PgPool, email: &str, password: &SecretString) -> anyhow::Result<()> {
    upsert_user(db, email, password, "Administrator", &[Role::Customer, Role::Admin]).await
}

/// Demo accounts (and, as domains land, demo catalog data). Safe to run repeatedly.
pub async fn seed(db: &PgPool) -> anyhow::Result<()> {
    let pw = SecretString::from(DEMO_PASSWORD);
    create_admin(db, DEMO_ADMIN, &pw).await?;
    upsert_user(db, DEMO_SELLER, &pw, "Demo Seller", &[Role::Customer, Role::Seller]).await?;
    sqlx::query(
        "insert into sellers (user_id, display_name) select user_id, 'Demo Seller' from users where email = $1
         on conflict (user_id) do nothing",
    )
    .bind(DEMO_SELLER)
    .execute(db)
    .await?;
    upsert_user(db, DEMO_CUSTOMER, &pw, "Demo Customer", &[Role::Customer]).await?;
    Ok(())
}
