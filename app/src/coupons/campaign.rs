//! A new campaign, parsed: the request body as it arrives ([`CreateCampaign`]) becomes a
//! [`NewCampaign`] that cannot hold a broken rule (no name, two discounts or none, an empty or
//! oversized total, an end before the start). Handlers and the store only see the parsed type.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{auth::types::parse_name, error::ApiError, platform::money::Money};

/// The most coupons one campaign may offer.
pub const MAX_TOTAL: i64 = 10_000_000;
/// The largest fixed discount: the largest price goods may have.
pub const MAX_DISCOUNT: Money = crate::goods::model::MAX_PRICE;

#[derive(Deserialize, ToSchema)]
pub struct CreateCampaign {
    #[schema(example = "Black Friday 10,000 won off")]
    pub name: String,
    /// Exactly one of discount_amount and discount_percent.
    #[schema(value_type = Option<i64>)]
    pub discount_amount: Option<Money>,
    pub discount_percent: Option<i32>,
    #[schema(example = 1000)]
    pub total_quantity: i64,
    /// Only 1 is supported: one coupon per user per campaign.
    pub per_user_limit: Option<i32>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// What a campaign gives off an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignDiscount {
    /// A fixed amount, 1..=[`MAX_DISCOUNT`].
    Amount(Money),
    /// A percentage, 1..=100.
    Percent(i32),
}

/// A valid campaign, ready to insert: built only by [`NewCampaign::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    name: String,
    discount: CampaignDiscount,
    total_quantity: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

impl NewCampaign {
    /// Checks the rules in the order the API has always reported them; the first broken one is
    /// a 422 `validation-failed` naming its field.
    pub fn parse(req: CreateCampaign) -> Result<Self, ApiError> {
        let name = parse_name(&req.name, "name").map_err(|m| ApiError::invalid("name", m))?;
        let discount = parse_discount(req.discount_amount, req.discount_percent)?;
        if !(1..=MAX_TOTAL).contains(&req.total_quantity) {
            return Err(ApiError::invalid(
                "total_quantity",
                format!("total_quantity must be between 1 and {MAX_TOTAL}"),
            ));
        }
        if req.per_user_limit.is_some_and(|l| l != 1) {
            return Err(ApiError::invalid(
                "per_user_limit",
                "per_user_limit must be 1",
            ));
        }
        if req.ends_at <= req.starts_at {
            return Err(ApiError::invalid(
                "ends_at",
                "ends_at must be after starts_at",
            ));
        }
        Ok(Self {
            name,
            discount,
            // within 1..=MAX_TOTAL, which fits an i32
            total_quantity: req.total_quantity as i32,
            starts_at: req.starts_at,
            ends_at: req.ends_at,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn discount_amount(&self) -> Option<Money> {
        match self.discount {
            CampaignDiscount::Amount(a) => Some(a),
            CampaignDiscount::Percent(_) => None,
        }
    }

    pub fn discount_percent(&self) -> Option<i32> {
        match self.discount {
            CampaignDiscount::Percent(p) => Some(p),
            CampaignDiscount::Amount(_) => None,
        }
    }

    pub fn total_quantity(&self) -> i32 {
        self.total_quantity
    }

    pub fn starts_at(&self) -> DateTime<Utc> {
        self.starts_at
    }

    pub fn ends_at(&self) -> DateTime<Utc> {
        self.ends_at
    }
}

impl TryFrom<CreateCampaign> for NewCampaign {
    type Error = ApiError;

    fn try_from(req: CreateCampaign) -> Result<Self, ApiError> {
        Self::parse(req)
    }
}

fn parse_discount(
    amount: Option<Money>,
    percent: Option<i32>,
) -> Result<CampaignDiscount, ApiError> {
    match (amount, percent) {
        (Some(a), None) if a.is_positive() && a <= MAX_DISCOUNT => Ok(CampaignDiscount::Amount(a)),
        (None, Some(p)) if (1..=100).contains(&p) => Ok(CampaignDiscount::Percent(p)),
        (Some(_), None) => Err(ApiError::invalid(
            "discount_amount",
            "discount_amount must be positive",
        )),
        (None, Some(_)) => Err(ApiError::invalid(
            "discount_percent",
            "discount_percent must be between 1 and 100",
        )),
        _ => Err(ApiError::invalid(
            "discount_amount",
            "give exactly one of discount_amount and discount_percent",
        )),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn req() -> CreateCampaign {
        let now = Utc::now();
        CreateCampaign {
            name: "  Black Friday ".into(),
            discount_amount: Some(Money::new(1000)),
            discount_percent: None,
            total_quantity: 100,
            per_user_limit: None,
            starts_at: now,
            ends_at: now + Duration::hours(1),
        }
    }

    /// The field and detail of the 422 a broken request gets.
    fn refusal(r: CreateCampaign) -> (String, String) {
        let e = NewCampaign::parse(r).expect_err("must be refused");
        assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.kind(), "validation-failed");
        let field = e.field().unwrap_or_default().to_owned();
        (field, e.detail().to_owned())
    }

    #[test]
    fn a_valid_request_parses_with_a_trimmed_name() {
        let c = NewCampaign::parse(req()).unwrap();
        assert_eq!(c.name(), "Black Friday");
        assert_eq!(c.discount_amount(), Some(Money::new(1000)));
        assert_eq!(c.discount_percent(), None);
        assert_eq!(c.total_quantity(), 100);
        let pct = NewCampaign::try_from(CreateCampaign {
            discount_amount: None,
            discount_percent: Some(100),
            per_user_limit: Some(1),
            total_quantity: MAX_TOTAL,
            ..req()
        })
        .unwrap();
        assert_eq!(
            (pct.discount_amount(), pct.discount_percent()),
            (None, Some(100))
        );
        assert_eq!(pct.total_quantity(), MAX_TOTAL as i32);
    }

    #[test]
    fn exactly_one_discount_within_its_range() {
        let both = CreateCampaign {
            discount_percent: Some(5),
            ..req()
        };
        let none = CreateCampaign {
            discount_amount: None,
            ..req()
        };
        let one_of = "give exactly one of discount_amount and discount_percent";
        assert_eq!(refusal(both), ("discount_amount".into(), one_of.into()));
        assert_eq!(refusal(none), ("discount_amount".into(), one_of.into()));
        for bad in [0, -5, MAX_DISCOUNT.minor() + 1] {
            let r = CreateCampaign {
                discount_amount: Some(Money::new(bad)),
                ..req()
            };
            assert_eq!(
                refusal(r),
                (
                    "discount_amount".into(),
                    "discount_amount must be positive".into()
                )
            );
        }
        assert!(
            NewCampaign::parse(CreateCampaign {
                discount_amount: Some(MAX_DISCOUNT),
                ..req()
            })
            .is_ok()
        );
        for bad in [0, 101, -1] {
            let r = CreateCampaign {
                discount_amount: None,
                discount_percent: Some(bad),
                ..req()
            };
            assert_eq!(
                refusal(r),
                (
                    "discount_percent".into(),
                    "discount_percent must be between 1 and 100".into()
                )
            );
        }
    }

    #[test]
    fn name_total_limit_and_window_are_checked() {
        let (field, detail) = refusal(CreateCampaign {
            name: "   ".into(),
            ..req()
        });
        assert_eq!(
            (field.as_str(), detail.as_str()),
            ("name", "name must be 1-100 characters")
        );
        for bad in [0, -1, MAX_TOTAL + 1] {
            assert_eq!(
                refusal(CreateCampaign {
                    total_quantity: bad,
                    ..req()
                }),
                (
                    "total_quantity".into(),
                    "total_quantity must be between 1 and 10000000".into()
                )
            );
        }
        assert_eq!(
            refusal(CreateCampaign {
                per_user_limit: Some(2),
                ..req()
            }),
            ("per_user_limit".into(), "per_user_limit must be 1".into())
        );
        let r = req();
        let backwards = CreateCampaign {
            ends_at: r.starts_at - Duration::seconds(1),
            ..req()
        };
        for bad in [
            CreateCampaign {
                ends_at: r.starts_at,
                ..r
            },
            backwards,
        ] {
            assert_eq!(
                refusal(bad),
                ("ends_at".into(), "ends_at must be after starts_at".into())
            );
        }
    }

    #[test]
    fn the_first_broken_rule_is_the_one_reported() {
        // a bad name and a bad discount: the name is reported, as the API always did
        let r = CreateCampaign {
            name: String::new(),
            discount_amount: None,
            total_quantity: 0,
            ..req()
        };
        assert_eq!(refusal(r).0, "name");
        let r = CreateCampaign {
            discount_amount: None,
            total_quantity: 0,
            ..req()
        };
        assert_eq!(refusal(r).0, "discount_amount");
        let r = CreateCampaign {
            total_quantity: 0,
            per_user_limit: Some(3),
            ..req()
        };
        assert_eq!(refusal(r).0, "total_quantity");
    }
}
