//! The HTTP surface: routes of every domain under `/api/v1`, operations routes, the OpenAPI
//! document and the tower stack around them.

pub mod admission;
pub mod connections;
mod observe;
mod openapi;
mod ops;
mod problem;
mod route_guard;

use std::time::Duration;

use axum::{Router, extract::DefaultBodyLimit};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{platform::api_router::ApiRouter, state::AppState};

/// Every API route, with its OpenAPI description, in two groups: the routes whose writes
/// need PostgreSQL, and the writes each domain marks as needing only Redis (its
/// `redis_only_routes`), which the router leaves open while PostgreSQL's breaker is. The
/// domains register them at their full path under `/api/v1` (`platform::api_router`).
struct ApiRoutes {
    postgres: OpenApiRouter<AppState>,
    redis_only: OpenApiRouter<AppState>,
}

fn api_routes() -> ApiRoutes {
    // one line per domain
    let postgres = ApiRouter::new()
        .merge(crate::auth::routes())
        .merge(crate::admin::routes())
        .merge(crate::wallet::routes())
        .merge(crate::goods::routes())
        .merge(crate::cart::routes())
        .merge(crate::orders::routes())
        .merge(crate::coupons::routes())
        .merge(crate::concerts::routes())
        .merge(crate::reservations::routes())
        .merge(crate::queue::routes());
    let redis_only = ApiRouter::new()
        .merge(crate::coupons::redis_only_routes())
        .merge(crate::queue::redis_only_routes());
    ApiRoutes {
        postgres: postgres.into_inner(),
        redis_only: redis_only.into_inner(),
    }
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let routes = api_routes();
    let mut doc = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes.postgres)
        .merge(routes.redis_only)
        .split_for_parts()
        .1;
    openapi::complete(&mut doc);
    doc
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router(&state);
    let label = route_guard::RouteGuardLayer::label_only();
    let swagger: Router<AppState> = SwaggerUi::new("/docs").url("/openapi.json", doc).into();
    let routes = Router::new()
        .merge(api)
        .merge(ops::routes().route_layer(label.clone()))
        .merge(crate::queue::page_routes().route_layer(label.clone()))
        .merge(swagger.route_layer(label))
        .fallback(problem::no_route)
        .with_state(state.clone());
    with_outer_layers(&state, routes)
}

/// The API routes with their per-route layers, and their OpenAPI document.
fn api_router(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let settings = &state.settings;
    // API routes time out, and are admitted (or shed) by count and bytes before routing
    // (`admission`); operations routes are neither, so /livez and /metrics answer even when
    // the API is saturated. Each `layer` on a Router wraps every
    // route separately and so costs a boxed service clone and a boxed future per request:
    // the per-route layers are as few as the semantics allow (the route guard is a
    // `route_layer` so 405s stay unlabelled and never meet the PostgreSQL breaker).
    let per_route = ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(axum::error_handling::HandleErrorLayer::new(
            problem::tower_error,
        ))
        .timeout(settings.request_timeout());
    let routes = api_routes();
    let postgres_guard = route_guard::RouteGuardLayer::api(state.breakers.clone());
    let (api, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(
            routes
                .postgres
                .layer(per_route.clone())
                .route_layer(postgres_guard),
        )
        .merge(
            routes
                .redis_only
                .layer(per_route)
                .route_layer(route_guard::RouteGuardLayer::label_only()),
        )
        .split_for_parts();
    openapi::complete(&mut doc);
    (api, doc)
}

/// The outer layers wrap the whole router once, not each route.
fn with_outer_layers(state: &AppState, routes: Router) -> Router {
    let settings = &state.settings;
    let outer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(observe::MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observe::request_span)
                .on_failure(admission::log_failure),
        )
        .layer(CatchPanicLayer::custom(problem::panic_problem))
        .layer(observe::ObserveLayer::new(state.metrics.clone()))
        .layer(admission::AdmissionLayer::new(admission::Limits {
            max_in_flight: settings.max_in_flight,
            max_in_flight_bytes: settings.max_in_flight_bytes,
            body_limit: settings.body_limit_bytes,
            upload_body_limit: crate::goods::images::rules::upload_body_limit(
                settings.images.image_max_bytes,
            ),
        }));
    Router::new().fallback_service(outer.service(routes))
}

/// Idle keep-alive connections are closed after this long by graceful shutdown at the latest.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `handler` returns, without calling it.
    fn future_size<Args, F: Future>(_: impl HandlerFn<Args, F>) -> usize {
        std::mem::size_of::<F>()
    }

    trait HandlerFn<Args, F> {}
    impl<A, B, F, H: Fn(A, B) -> F> HandlerFn<(A, B), F> for H {}
    impl<A, B, C, F, H: Fn(A, B, C) -> F> HandlerFn<(A, B, C), F> for H {}
    impl<A, B, C, D, F, H: Fn(A, B, C, D) -> F> HandlerFn<(A, B, C, D), F> for H {}
    impl<A, B, C, D, E, F, H: Fn(A, B, C, D, E) -> F> HandlerFn<(A, B, C, D, E), F> for H {}

    /// The hot handlers' futures stay small: every request moves its handler's future a few
    /// times (into axum's box, through the layers), so a database or Redis call kept inline
    /// — kilobytes of client state — cost each request those kilobytes of copying, even a
    /// cached read or a refusal that never makes the call (they were 2-16 KiB; the calls are
    /// boxed by `platform::db` and `platform::redis`).
    #[test]
    fn the_hot_handlers_futures_stay_small() {
        use crate::{coupons, goods, orders, queue, reservations, wallet};
        macro_rules! sized {
            ($($handler:path),* $(,)?) => { [$((stringify!($handler), future_size($handler))),*] };
        }
        let sizes = sized![
            goods::handlers::list,
            goods::handlers::detail,
            orders::handlers::create,
            coupons::handlers::issue,
            queue::handlers::join,
            queue::handlers::me,
            wallet::handlers::charge,
            reservations::handlers::hold,
            reservations::handlers::pay,
        ];
        let large: Vec<_> = sizes.iter().filter(|(_, n)| *n > 2048).collect();
        assert!(
            large.is_empty(),
            "handler futures over 2 KiB: {large:?} (all: {sizes:?})"
        );
    }

    /// The writes left open while PostgreSQL's breaker is: those the domains mark, no more.
    #[test]
    fn the_domains_mark_their_redis_only_writes() {
        let doc = api_routes().redis_only.split_for_parts().1;
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/api/v1/coupon-campaigns/{id}/issue",
                "/api/v1/queues/{queue_id}/tokens",
                "/api/v1/queues/{queue_id}/tokens/me",
            ]
        );
        let all = openapi();
        for path in paths {
            assert!(all.paths.paths.contains_key(path), "{path} is documented");
        }
    }
}
