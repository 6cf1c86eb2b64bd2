//! Auth handlers: parse, rate-limit, call the store, map the result.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    jwt::ACCESS_TTL_SECS,
    rate_limit, refresh,
    refresh::Rotation,
    store,
    types::{Email, Password, Role, parse_name},
};
use crate::{
    error::{ApiError, ApiResult},
    extract::ClientIp,
    state::AppState,
    users::UserView,
};

#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    /// Case-insensitive; stored lower-cased. At most 64 characters before the `@`, and a
    /// dotted domain.
    #[schema(example = "kim@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 8-128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128)]
    pub password: String,
    /// 1-100 characters after trimming, no control characters.
    #[schema(example = "Kim", min_length = 1, max_length = 100)]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "kim@example.com", format = Email, max_length = 254)]
    pub email: String,
    #[schema(example = "correct horse battery", max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 300)]
    pub expires_in: i64,
}

/// The longest password a login will hash; anything longer cannot be a valid password and
/// would only cost CPU.
const MAX_LOGIN_PASSWORD: usize = 1024;

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("email or password is incorrect")
}

fn tokens(state: &AppState, user: &store::UserRow, refresh_token: &str) -> ApiResult<Response> {
    let access_token = state
        .jwt
        .issue(user.user_id, &user.roles())
        .map_err(ApiError::internal)?;
    let body = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
    };
    let mut res = Json(body).into_response();
    let cookie =
        HeaderValue::from_str(&refresh::cookie(Some(refresh_token))).map_err(ApiError::internal)?;
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn clearing_cookie(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&refresh::cookie(None)).expect("static cookie"),
    );
    res
}

/// Create an account (role `customer`).
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, description = "Account created", body = UserView),
        (status = 409, description = "Email already registered", content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule", content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", content_type = "application/problem+json"),
        (status = 503, description = "Every password-hashing slot is busy (`auth-busy`) or a dependency is unavailable; retry after `Retry-After`", content_type = "application/problem+json"),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<SignupRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let email = Email::parse(&req.email).map_err(|m| ApiError::invalid("email", m))?;
    let password = Password::parse(req.password).map_err(|m| ApiError::invalid("password", m))?;
    let name = parse_name(&req.name, "name").map_err(|m| ApiError::invalid("name", m))?;
    let s = &state.settings;
    rate_limit::check(
        &state,
        "signup",
        &format!("signup:ip:{ip}"),
        s.auth_limit_per_ip,
    )
    .await?;
    rate_limit::check(
        &state,
        "signup",
        &format!("signup:email:{}", email.as_str()),
        s.auth_limit_per_email,
    )
    .await?;
    let hash = state.passwords.hash(password.expose().to_owned()).await?;
    let user = state
        .db
        .run(async |c| store::insert(c, &email, &hash, &name, &[Role::Customer]).await)
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Log in: a 5-minute access token in the body, a 30-minute refresh token in an HttpOnly cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie: refresh_token=...`", body = TokenResponse),
        (status = 401, description = "Wrong email or password (the same answer for both)", content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", content_type = "application/problem+json"),
        (status = 503, description = "Every password-hashing slot is busy (`auth-busy`) or a dependency is unavailable; retry after `Retry-After`", content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let email = Email::parse(&req.email).map_err(|m| ApiError::invalid("email", m))?;
    if req.password.len() > MAX_LOGIN_PASSWORD {
        return Err(ApiError::invalid("password", "password is too long"));
    }
    let s = &state.settings;
    rate_limit::check(
        &state,
        "login",
        &format!("login:ip:{ip}"),
        s.auth_limit_per_ip,
    )
    .await?;
    rate_limit::check(
        &state,
        "login",
        &format!("login:email:{}", email.as_str()),
        s.auth_limit_per_email,
    )
    .await?;
    let (user, hash) = match state
        .db
        .run(async |c| store::credentials(c, &email).await)
        .await?
    {
        Some((user, hash)) => (Some(user), hash),
        // verify against a real hash anyway so an unknown email takes as long as a known one
        None => (None, state.dummy_hash.clone()),
    };
    let matches = state.passwords.verify(req.password, hash).await?;
    let user = user.filter(|_| matches).ok_or_else(invalid_credentials)?;
    let refresh_token = state
        .db
        .run(async |c| refresh::issue(c, user.user_id).await)
        .await?;
    tokens(&state, &user, &refresh_token.token)
}

/// Rotate the refresh cookie and get a new access token. A refresh token works once; presenting
/// it again revokes every token descended from the same login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth",
    responses(
        (status = 200, description = "New access token; the refresh cookie is replaced", body = TokenResponse),
        (status = 401, description = "Missing, expired, revoked or reused refresh token", content_type = "application/problem+json"),
    ))]
pub async fn refresh(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let presented = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(refresh::from_cookie_header)
        .ok_or_else(|| ApiError::unauthorized("no refresh_token cookie; log in again"))?;
    let grace = std::time::Duration::from_secs(state.settings.refresh_reuse_grace_secs);
    let (user_id, token) = match state
        .db
        .run(async |c| refresh::rotate(c, presented, grace).await)
        .await?
    {
        Rotation::Rotated { user, token } => (user, token),
        Rotation::Reused => {
            return Ok(clearing_cookie(
                ApiError::unauthorized(
                    "refresh token was already used; every session of this login is revoked",
                )
                .into_response(),
            ));
        }
        Rotation::Invalid => {
            return Ok(clearing_cookie(
                ApiError::unauthorized("refresh token is unknown or expired").into_response(),
            ));
        }
    };
    let user = state
        .db
        .run(async |c| store::by_id(c, user_id).await)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account no longer exists"))?;
    tokens(&state, &user, &token)
}

/// Log out: revokes the refresh token's whole family and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(presented) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(refresh::from_cookie_header)
    {
        state
            .db
            .run(async |c| refresh::revoke_family_of(c, presented).await)
            .await?;
    }
    Ok(clearing_cookie(StatusCode::NO_CONTENT.into_response()))
}
