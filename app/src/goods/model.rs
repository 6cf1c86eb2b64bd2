//! Goods values and the rules a seller's input must meet.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;

use super::images::ImageView;
use crate::{
    auth::UserId,
    error::ApiError,
    platform::{ids::id_type, money::Money},
};

id_type!(GoodsId);

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

/// Input that passed every rule: trimmed, within bounds (its stock fits an `i32`).
#[derive(Debug, Clone)]
pub struct ValidGoods(GoodsInput);

impl std::ops::Deref for ValidGoods {
    type Target = GoodsInput;

    fn deref(&self) -> &GoodsInput {
        &self.0
    }
}

fn trimmed(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl GoodsInput {
    pub fn validate(mut self) -> Result<ValidGoods, ApiError> {
        self.name = self.name.trim().to_owned();
        self.category = trimmed(self.category);
        self.image_url = trimmed(self.image_url);
        self.queue_id = trimmed(self.queue_id);
        self.check_sizes()?;
        self.check_links()?;
        Ok(ValidGoods(self))
    }

    /// Name, description, price, stock and category within their bounds.
    fn check_sizes(&self) -> Result<(), ApiError> {
        if self.name.is_empty() || self.name.chars().count() > 200 {
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
        if self
            .category
            .as_ref()
            .is_some_and(|c| c.chars().count() > 50)
        {
            return Err(ApiError::invalid(
                "category",
                "category must be at most 50 characters",
            ));
        }
        Ok(())
    }

    /// The image link and the waiting room, if given, are well-formed.
    fn check_links(&self) -> Result<(), ApiError> {
        if let Some(url) = &self.image_url
            && (url.len() > 2048
                || !(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(char::is_whitespace))
        {
            return Err(ApiError::invalid(
                "image_url",
                "image_url must be an http(s) URL of at most 2048 characters",
            ));
        }
        if self
            .queue_id
            .as_deref()
            .is_some_and(|q| !floodgate_crds::runtime::is_valid_queue_id(q))
        {
            return Err(ApiError::invalid(
                "queue_id",
                "queue_id must be 1-63 characters of a-z, 0-9 and '-'",
            ));
        }
        Ok(())
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
        type Edit = fn(&mut GoodsInput);
        let cases: [(Edit, &str); 8] = [
            (|g| g.name = "".into(), "name"),
            (|g| g.price = Money::new(-1), "price"),
            (|g| g.price = Money::new(MAX_PRICE.minor() + 1), "price"),
            (|g| g.stock = -1, "stock"),
            (|g| g.stock = MAX_STOCK + 1, "stock"),
            (|g| g.image_url = Some("ftp://x".into()), "image_url"),
            (|g| g.queue_id = Some("Bad Queue".into()), "queue_id"),
            (|g| g.category = Some("c".repeat(51)), "category"),
        ];
        for (edit, field) in cases {
            let mut case = input();
            edit(&mut case);
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
