//! The current user, from `Authorization: Bearer <access token>`, and the role guard.

use axum::{extract::FromRequestParts, http::request::Parts};

use super::types::{Role, UserId};
use crate::{error::ApiError, state::AppState};

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub roles: Vec<Role>,
}

impl CurrentUser {
    /// The one-line authorization check: `user.require(Role::Seller)?`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.roles.contains(&role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "missing-role",
                format!("this action requires the {} role", role.as_str()),
            ))
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing Authorization header with a Bearer access token")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("Authorization header must be 'Bearer <access token>'")
            })?;
        let claims = state.jwt.verify(token).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            ApiError::unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "access token expired; refresh it",
                ErrorKind::InvalidAudience => "access token is for another audience",
                ErrorKind::InvalidIssuer => "access token has an unknown issuer",
                ErrorKind::InvalidAlgorithm => "access token algorithm not accepted",
                _ => "access token is invalid",
            })
        })?;
        let id = claims
            .sub
            .parse()
            .map(UserId)
            .map_err(|_| ApiError::unauthorized("access token is invalid"))?;
        Ok(Self {
            id,
            roles: claims.roles,
        })
    }
}
