//! The API's routes, registered at their full path under [`PREFIX`]: each domain builds its
//! routes with [`ApiRouter`] instead of `OpenApiRouter`, and the HTTP surface merges them.
//!
//! Why not `nest("/api/v1", ..)`: axum wraps every nested route in `StripPrefix` and
//! `SetNestedPath`, which rebuild the request's URI and extend its `NestedPath` on every request,
//! ~3 % of the CPU of a cached read or a waiting-room poll (#18). Registering the full path
//! gives the same routes, the same matched-path labels and the same OpenAPI paths, once.

use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";

/// An `OpenApiRouter` whose `routes` are registered (and documented) under [`PREFIX`]. A
/// domain's `routes()` returns one, so no API route can be added without the prefix.
pub struct ApiRouter<S>(OpenApiRouter<S>);

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        Self(OpenApiRouter::new())
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the handlers of one `utoipa_axum::routes!` at `PREFIX` + their documented path.
    pub fn routes(self, (schemas, mut paths, method_router): UtoipaMethodRouter<S>) -> Self {
        paths.paths = std::mem::take(&mut paths.paths)
            .into_iter()
            .map(|(path, item)| (format!("{PREFIX}{path}"), item))
            .collect();
        Self(self.0.routes((schemas, paths, method_router)))
    }

    pub fn merge(self, other: Self) -> Self {
        Self(self.0.merge(other.0))
    }

    pub fn into_inner(self) -> OpenApiRouter<S> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, http::Request, routing::get};
    use tower::ServiceExt;
    use utoipa_axum::router::UtoipaMethodRouter;

    fn hello() -> UtoipaMethodRouter {
        let mut paths = utoipa::openapi::path::Paths::new();
        paths.paths.insert("/hello/{id}".into(), Default::default());
        (Vec::new(), paths, get(|| async { "hi" }))
    }

    #[tokio::test]
    async fn a_route_is_served_and_documented_under_the_prefix() {
        let (router, doc) = ApiRouter::new()
            .routes(hello())
            .into_inner()
            .split_for_parts();
        let keys: Vec<_> = doc.paths.paths.keys().cloned().collect();
        assert_eq!(keys, ["/api/v1/hello/{id}"]);
        let status = |uri: &'static str| {
            let router = router.clone();
            async move {
                let req = Request::get(uri).body(Body::empty()).unwrap();
                router.oneshot(req).await.unwrap().status().as_u16()
            }
        };
        assert_eq!(status("/api/v1/hello/7").await, 200);
        assert_eq!(status("/hello/7").await, 404);
    }
}
