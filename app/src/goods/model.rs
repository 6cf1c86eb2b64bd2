//! Goods values and the rules a seller's input must meet.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;

use super::images::ImageView;
use crate::{auth::UserId, error::ApiError, platform::money::Money};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
    ToSchema,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct GoodsId(pub i64);

pub const MAX_PRICE: Money = Money::new(1_000_000_000_000);
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct GoodsView {
    #[sqlx(rename = "goods_id")]
    pub id: GoodsId,
    pub seller_id: UserId,
    pub name: String,
    pub description: String,
    /// Minor units.
    #[schema(value_type = i64)]
    pub price: Money,
    pub stock: i32,
    pub category: Option<String>,
    /// A link the seller gave; uploaded images are in `images`.
    pub image_url: Option<String>,
    /// Uploaded images, oldest first (list and detail; other answers leave it empty).
    #[sqlx(skip)]
    pub images: Vec<ImageView>,
    /// Orders before this instant are refused (409).
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// Orders need an admitted pass of this waiting room.
    pub queue_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a seller sends to create or replace goods.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct GoodsInput {
    #[schema(example = "Limited hoodie")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(value_type = i64, example = 39000)]
    pub price: Money,
    #[schema(example = 100)]
    pub stock: i64,
    pub category: Option<String>,
    pub image_url: Option<String>,
    pub sale_starts_at: Option<DateTime<Utc>>,
    pub queue_id: Option<String>,
}

/// Input that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGoods {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i32,
    pub category: Option<String>,
    pub image_url: Option<String>,
    pub sale_starts_at: Option<DateTime<Utc>>,
    pub queue_id: Option<String>,
}

fn trimmed(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl GoodsInput {
    pub fn validate(self) -> Result<ValidGoods, ApiError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid("name", "name must be 1-200 characters"));
        }
        if self.description.chars().count() > 5000 {
            return Err(ApiError::invalid(
                "description",
                "description must be at most 5000 characters",
            ));
        }
        if !(Money::ZERO..=MAX_PRICE).contains(&self.price) {
            return Err(ApiError::invalid(
                "price",
                format!("price must be between 0 and {MAX_PRICE}"),
            ));
        }
        if !(0..=MAX_STOCK).contains(&self.stock) {
            return Err(ApiError::invalid(
                "stock",
                format!("stock must be between 0 and {MAX_STOCK}"),
            ));
        }
        let category = trimmed(self.category);
        if category.as_ref().is_some_and(|c| c.chars().count() > 50) {
            return Err(ApiError::invalid(
                "category",
                "category must be at most 50 characters",
            ));
        }
        let image_url = trimmed(self.image_url);
        if let Some(url) = &image_url
            && (url.len() > 2048
                || !(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(char::is_whitespace))
        {
            return Err(ApiError::invalid(
                "image_url",
                "image_url must be an http(s) URL of at most 2048 characters",
            ));
        }
        let queue_id = trimmed(self.queue_id);
        if queue_id
            .as_deref()
            .is_some_and(|q| !floodgate_crds::runtime::is_valid_queue_id(q))
        {
            return Err(ApiError::invalid(
                "queue_id",
                "queue_id must be 1-63 characters of a-z, 0-9 and '-'",
            ));
        }
        Ok(ValidGoods {
            name,
            description: self.description,
            price: self.price,
            stock: self.stock as i32,
            category,
            image_url,
            sale_starts_at: self.sale_starts_at,
            queue_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> GoodsInput {
        GoodsInput {
            name: " Hoodie ".into(),
            description: String::new(),
            price: Money::new(100),
            stock: 5,
            category: Some("  ".into()),
            image_url: None,
            sale_starts_at: None,
            queue_id: None,
        }
    }

    #[test]
    fn valid_input_is_normalised() {
        let v = input().validate().unwrap();
        assert_eq!(v.name, "Hoodie");
        assert_eq!(v.category, None);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(GoodsInput, &str)> = vec![
            (
                GoodsInput {
                    name: "".into(),
                    ..input()
                },
                "name",
            ),
            (
                GoodsInput {
                    price: Money::new(-1),
                    ..input()
                },
                "price",
            ),
            (
                GoodsInput {
                    price: Money::new(MAX_PRICE.minor() + 1),
                    ..input()
                },
                "price",
            ),
            (
                GoodsInput {
                    stock: -1,
                    ..input()
                },
                "stock",
            ),
            (
                GoodsInput {
                    stock: MAX_STOCK + 1,
                    ..input()
                },
                "stock",
            ),
            (
                GoodsInput {
                    image_url: Some("ftp://x".into()),
                    ..input()
                },
                "image_url",
            ),
            (
                GoodsInput {
                    queue_id: Some("Bad Queue".into()),
                    ..input()
                },
                "queue_id",
            ),
            (
                GoodsInput {
                    category: Some("c".repeat(51)),
                    ..input()
                },
                "category",
            ),
        ];
        for (case, field) in cases {
            let err = case.validate().unwrap_err();
            assert_eq!(
                err.status(),
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{field}"
            );
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }
}
