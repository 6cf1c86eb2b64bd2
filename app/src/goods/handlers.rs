//! Goods handlers.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;

use super::{
    cache_families, images,
    model::{GoodsId, GoodsInput, GoodsView},
    store,
};
use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, ApiResult},
    pagination::{PageQuery, Paged},
    platform::cache::Lookup,
    state::AppState,
};

fn json_bytes(bytes: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn to_bytes(v: &impl serde::Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

/// Newest goods first, 15 per page by default.
#[utoipa::path(get, path = "/goods", tag = "goods", params(PageQuery),
    responses((status = 200, body = Paged<GoodsView>), (status = 422, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let page = q.parse(15)?;
    let load = || async {
        let rows = state
            .db
            .run(async |c| {
                let mut rows = store::page(&mut *c, page).await?;
                images::attach(c, &mut rows).await?;
                Ok::<_, sqlx::Error>(rows)
            })
            .await?;
        to_bytes(&Paged::from_rows(rows, page, |g| g.id.0))
    };
    // Only first pages are cached (at most one field per limit, 1-100): a cursor is any id
    // the client picks, so caching cursor pages would let a client mint cache entries at
    // will. Deeper pages are an index range scan of `limit + 1` rows under the database's
    // own guard and bulkhead.
    if page.before.is_some() {
        return Ok(json_bytes(load().await?));
    }
    let field = page.limit.to_string();
    cached(&state, ("goods_list", "goods:list", &field), load).await
}

/// A catalog answer through the cache-aside layer (`(cache, family, field)`, kept for the
/// catalog TTL), loaded by `load` on a miss.
async fn cached<F, Fut>(
    state: &AppState,
    at: (&'static str, &str, &str),
    load: F,
) -> ApiResult<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, ApiError>>,
{
    let (cache, family, field) = at;
    let lookup = Lookup {
        cache,
        family,
        field,
        ttl: state.runtime.get().ttls.catalog_cache.as_duration(),
    };
    let bytes = state
        .cache
        .get_or_load(&state.redis, &state.metrics, lookup, load)
        .await?;
    Ok(json_bytes(bytes))
}

/// One goods item.
#[utoipa::path(get, path = "/goods/{id}", tag = "goods", params(("id" = i64, Path)),
    responses((status = 200, body = GoodsView), (status = 404, content_type = "application/problem+json")))]
pub async fn detail(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Response> {
    let family = format!("goods:{id}");
    cached(&state, ("goods_detail", &family, "v1"), || async {
        let g = state
            .db
            .run(async |c| {
                let Some(g) = store::find(&mut *c, GoodsId(id)).await? else {
                    return Ok(None);
                };
                let mut one = [g];
                images::attach(c, &mut one).await?;
                let [g] = one;
                Ok::<_, sqlx::Error>(Some(g))
            })
            .await?
            .ok_or_else(|| ApiError::not_found("goods"))?;
        to_bytes(&g)
    })
    .await
}

/// Create goods (sellers only).
#[utoipa::path(post, path = "/goods", tag = "goods", security(("bearer" = ["seller"])), request_body = GoodsInput,
    responses((status = 201, body = GoodsView), (status = 403, content_type = "application/problem+json"),
              (status = 422, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(input): Json<GoodsInput>,
) -> ApiResult<(StatusCode, Json<GoodsView>)> {
    user.require(Role::Seller)?;
    let valid = input.validate()?;
    let g = state
        .db
        .run(async |c| store::insert(c, user.id, &valid).await)
        .await?;
    state
        .cache
        .invalidate(&state.redis, &cache_families([]))
        .await;
    Ok((StatusCode::CREATED, Json(g)))
}

/// Replace goods (the owning seller only).
#[utoipa::path(put, path = "/goods/{id}", tag = "goods", security(("bearer" = ["seller"])), params(("id" = i64, Path)), request_body = GoodsInput,
    responses((status = 200, body = GoodsView), (status = 403, content_type = "application/problem+json"),
              (status = 404, content_type = "application/problem+json"), (status = 422, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(input): Json<GoodsInput>,
) -> ApiResult<Json<GoodsView>> {
    user.require(Role::Seller)?;
    let valid = input.validate()?;
    let id = GoodsId(id);
    let Some(g) = state
        .db
        .run(async |c| store::update(c, id, user.id, &valid).await)
        .await?
    else {
        return Err(not_owned(&state, id).await);
    };
    super::stock_changed(&state, &[id], super::StockMove::Returned).await;
    Ok(Json(g))
}

/// Soft-delete goods (the owning seller only); they vanish from lists at once, and their
/// images (rows and stored objects) are deleted.
#[utoipa::path(delete, path = "/goods/{id}", tag = "goods", security(("bearer" = ["seller"])), params(("id" = i64, Path)),
    responses((status = 204), (status = 403, content_type = "application/problem+json"), (status = 404, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Role::Seller)?;
    let id = GoodsId(id);
    let deleted = state
        .db
        .tx(async |c| {
            if !store::soft_delete(&mut *c, id, user.id).await? {
                return Ok(false);
            }
            images::delete_rows(c, id).await?;
            Ok::<_, ApiError>(true)
        })
        .await?;
    if !deleted {
        return Err(not_owned(&state, id).await);
    }
    state
        .cache
        .invalidate(&state.redis, &cache_families([id]))
        .await;
    images::remove_objects(&state, id).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn not_owned(state: &AppState, id: GoodsId) -> ApiError {
    match state.db.run(async |c| store::owner(c, id).await).await {
        Ok(Some(_)) => ApiError::forbidden(
            "not-owner",
            "only the seller who listed these goods may change them",
        ),
        Ok(None) => ApiError::not_found("goods"),
        Err(e) => e,
    }
}
