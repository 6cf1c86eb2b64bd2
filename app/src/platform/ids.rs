//! Every ID is a newtype made by [`id_type!`]: `Copy`, ordered, hashable, shown as its
//! number, and exactly a bare `bigint` to PostgreSQL and a bare number in JSON (sqlx and
//! serde transparent), so typing an ID never changes what is stored or sent.
//!
//! The IDs several domains share live here, below every domain; a domain's own IDs are made
//! in the domain with the same macro.

/// Makes an ID newtype over `i64`: `id_type!(/// docs\n OrderId);`.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            ::serde::Serialize,
            ::serde::Deserialize,
            ::sqlx::Type,
            ::utoipa::ToSchema,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

pub(crate) use id_type;

id_type!(
    /// An order (`orders.order_id`); coupons and the wallet ledger refer to it too.
    OrderId
);
id_type!(
    /// A coupon campaign (`coupon_campaigns.campaign_id`).
    CampaignId
);
id_type!(
    /// One issued coupon (`coupons.coupon_id`); an order may redeem it.
    CouponId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_bare_number_in_json() {
        assert_eq!(serde_json::to_string(&OrderId(42)).unwrap(), "42");
        assert_eq!(
            serde_json::from_str::<CampaignId>("7").unwrap(),
            CampaignId(7)
        );
        assert_eq!(CouponId(-3).to_string(), "-3");
        assert!(serde_json::from_str::<OrderId>("\"42\"").is_err());
    }

    /// What axum answers for `/orders/abc`: a typed ID's path rejection is word for word a
    /// bare `i64`'s (the problem+json layer keeps that text as `detail`).
    async fn path_rejection<T>(uri: &str) -> (axum::http::StatusCode, String)
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        use axum::{Router, body::Body, extract::Path, http::Request, routing::get};
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let app = Router::new().route("/orders/{id}", get(|Path(_): Path<T>| async {}));
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_bad_path_id_is_refused_as_a_bare_number_is() {
        for uri in ["/orders/abc", "/orders/1.5", "/orders/99999999999999999999"] {
            let typed = path_rejection::<OrderId>(uri).await;
            assert_eq!(typed.0, axum::http::StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(typed, path_rejection::<i64>(uri).await, "{uri}");
        }
    }
}
