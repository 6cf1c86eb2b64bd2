//! Demo data and the admin command. Admins are never created over HTTP.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::auth::{Email, Role, password, store, types::Password};

pub const DEMO_ADMIN: &str = "admin@floodgate.local";
pub const DEMO_SELLER: &str = "seller@floodgate.local";
pub const DEMO_CUSTOMER: &str = "customer@floodgate.local";
pub const DEMO_PASSWORD: &str = "floodgate-demo";
pub const DEMO_CONCERT: &str = "Floodgate Winter Gala";

/// Creates a user with `roles`, or resets the password and adds the roles if it exists.
pub async fn upsert_user(
    db: &PgPool,
    email: &str,
    password: &SecretString,
    name: &str,
    roles: &[Role],
) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("invalid email: {m}"))?;
    let pw =
        Password::parse(password.expose_secret().to_owned()).map_err(|m| anyhow::anyhow!("{m}"))?;
    let hash = password::hash(pw.expose().to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match store::insert(db, &email, &hash, name, roles).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == "email-taken" => {
            store::set_password(db, &email, &hash).await?;
            let (user, _) = store::credentials(db, &email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("user vanished"))?;
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
    upsert_user(
        db,
        email,
        password,
        "Administrator",
        &[Role::Customer, Role::Admin],
    )
    .await
}

/// Demo accounts (and, as domains land, demo catalog data). Safe to run repeatedly.
pub async fn seed(db: &PgPool) -> anyhow::Result<()> {
    let pw = SecretString::from(DEMO_PASSWORD);
    create_admin(db, DEMO_ADMIN, &pw).await?;
    upsert_user(
        db,
        DEMO_SELLER,
        &pw,
        "Demo Seller",
        &[Role::Customer, Role::Seller],
    )
    .await?;
    sqlx::query(
        "insert into sellers (user_id, display_name) select user_id, 'Demo Seller' from users where email = $1
         on conflict (user_id) do nothing",
    )
    .bind(DEMO_SELLER)
    .execute(db)
    .await?;
    upsert_user(db, DEMO_CUSTOMER, &pw, "Demo Customer", &[Role::Customer]).await?;
    seed_commerce(db).await?;
    seed_concerts(db).await?;
    Ok(())
}

/// Demo goods of the demo seller, a wallet for the demo customer and an open coupon drop.
/// Each piece is inserted only if missing, so reseeding never duplicates.
async fn seed_commerce(db: &PgPool) -> anyhow::Result<()> {
    let goods: [(&str, &str, i64, i32, &str); 5] = [
        (
            "Floodgate hoodie",
            "Heavyweight cotton, limited run",
            59_000,
            100,
            "apparel",
        ),
        ("Tour poster", "A2, signed print", 15_000, 500, "prints"),
        (
            "Light stick",
            "Official concert light stick",
            35_000,
            1_000,
            "goods",
        ),
        (
            "Flash-sale sneakers",
            "10,000 pairs, first come first served",
            89_000,
            10_000,
            "shoes",
        ),
        (
            "Sticker pack",
            "Twelve vinyl stickers",
            4_000,
            5_000,
            "goods",
        ),
    ];
    for (name, description, price, stock, category) in goods {
        sqlx::query(
            "insert into goods (seller_id, name, description, price, stock, category)
             select u.user_id, $2, $3, $4, $5, $6 from users u
              where u.email = $1 and not exists (select 1 from goods g where g.seller_id = u.user_id and g.name = $2)",
        )
        .bind(DEMO_SELLER)
        .bind(name)
        .bind(description)
        .bind(price)
        .bind(stock)
        .bind(category)
        .execute(db)
        .await?;
    }
    sqlx::query(
        "with u as (select user_id from users where email = $1)
         , w as (insert into wallets (user_id, balance) select user_id, 500000 from u on conflict (user_id) do nothing returning user_id, balance)
         insert into wallet_ledger (user_id, kind, amount, balance_after) select user_id, 'charge', balance, balance from w",
    )
    .bind(DEMO_CUSTOMER)
    .execute(db)
    .await?;
    sqlx::query(
        "insert into coupon_campaigns (name, discount_amount, total_quantity, starts_at, ends_at)
         select 'Welcome drop: 5,000 won off', 5000, 1000, now(), now() + interval '30 days'
          where not exists (select 1 from coupon_campaigns where name = 'Welcome drop: 5,000 won off' and ends_at > now())",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The demo concert behind the `concert-42` waiting room: two dates of 400 seats each.
/// Inserted only if missing, so reseeding never duplicates.
async fn seed_concerts(db: &PgPool) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let existing: Option<i64> =
        sqlx::query_scalar("select concert_id from concerts where queue_id = 'concert-42' and title = $1 order by concert_id limit 1")
            .bind(DEMO_CONCERT)
            .fetch_optional(&mut *tx)
            .await?;
    let concert = match existing {
        Some(id) => id,
        None => {
            sqlx::query_scalar("insert into concerts (title, venue, queue_id) values ($1, 'Floodgate Arena', 'concert-42') returning concert_id")
                .bind(DEMO_CONCERT)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    for day in ["2026-12-24T19:00:00Z", "2026-12-25T19:00:00Z"] {
        let starts_at: chrono::DateTime<chrono::Utc> = day.parse()?;
        sqlx::query("insert into schedules (concert_id, starts_at) values ($1, $2) on conflict (concert_id, starts_at) do nothing")
            .bind(concert)
            .bind(starts_at)
            .execute(&mut *tx)
            .await?;
        // sections A (front, 99,000) and B (66,000), rows 1-10, seats 1-20
        sqlx::query(
            "insert into seats (schedule_id, section, row_label, number, price)
             select s.schedule_id, sec, r::text, n, case sec when 'A' then 99000 else 66000 end
               from schedules s, unnest(array['A', 'B']) sec, generate_series(1, 10) r, generate_series(1, 20) n
              where s.concert_id = $1 and s.starts_at = $2
             on conflict (schedule_id, section, row_label, number) do nothing",
        )
        .bind(concert)
        .bind(starts_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
