//! The HTTP surface: routes of every domain under `/api/v1`, operations routes, the OpenAPI
//! document and the tower stack around them.

pub mod admission;
pub mod client_ip;
pub mod connections;
mod layers;
mod openapi;
mod ops;

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

use crate::state::AppState;

/// Every API route, with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    // one line per domain
    let v1 = OpenApiRouter::new()
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
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).nest("/api/v1", v1)
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().split_for_parts().1;
    openapi::complete(&mut doc);
    doc
}

pub fn router(state: AppState) -> Router {
    let settings = &state.settings;
    let (api, mut doc) = api_routes().split_for_parts();
    openapi::complete(&mut doc);
    // API routes time out, and are admitted (or shed) by count and bytes before routing
    // (`admission`); operations routes are neither, so /livez and /metrics answer even when
    // the API is saturated. Each `layer` on a Router wraps every
    // route separately and so costs a boxed service clone and a boxed future per request:
    // the per-route layers are as few as the semantics allow (the route guard is a
    // `route_layer` so 405s stay unlabelled and never meet the PostgreSQL breaker).
    let api = api
        .layer(
            ServiceBuilder::new()
                .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
                .layer(axum::error_handling::HandleErrorLayer::new(
                    layers::tower_error,
                ))
                .timeout(settings.request_timeout()),
        )
        .route_layer(layers::RouteGuardLayer::api(state.clone()));
    let label = layers::RouteGuardLayer::label_only();
    let swagger: Router<AppState> = SwaggerUi::new("/docs").url("/openapi.json", doc).into();

    let routes = Router::new()
        .merge(api)
        .merge(ops::routes().route_layer(label.clone()))
        .merge(crate::queue::page_routes().route_layer(label.clone()))
        .merge(swagger.route_layer(label))
        .fallback(layers::no_route)
        .with_state(state.clone());

    // The outer layers wrap the whole router once, not each route.
    let outer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(layers::MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(layers::request_span)
                .on_failure(admission::log_failure),
        )
        .layer(CatchPanicLayer::custom(layers::panic_problem))
        .layer(layers::ObserveLayer::new(state.metrics.clone()))
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
