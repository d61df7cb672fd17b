//! Errors as HTTP responses: every failure, from any domain or from request parsing, leaves as
//! `{"error":{"code","message"}}` with the status its [`ErrorKind`] names. Also the extractors
//! that turn malformed input into such errors (instead of axum's plain-text rejections), and
//! the fallbacks for unknown routes (404) and wrong methods (405).

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::error::ErrorKind;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.code, "request failed: {}", self.message);
        }
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (status, axum::Json(body)).into_response()
    }
}

/// Fallback for paths no route matches.
pub async fn not_found(request: Request) -> Error {
    Error::not_found(
        "route_not_found",
        format!(
            "there is no {} {}; the API's routes are listed in /api/v1/openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Fallback for a known path asked with a method it does not take.
pub async fn method_not_allowed(request: Request) -> Response {
    let err = Error::new(
        ErrorKind::BadRequest,
        "method_not_allowed",
        format!(
            "{} {} is not allowed; see /api/v1/openapi.json for the methods this path takes",
            request.method(),
            request.uri().path()
        ),
    );
    let mut response = err.into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// A JSON body parsed with serde; malformed JSON or a wrong shape is a 400 whose message is
/// serde's description, an oversized body a 413.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON request body into `T`, as [`ApiJson`] does.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request(
            "bad_json",
            format!(
                "the request body is not acceptable JSON: {e}; see /api/v1/openapi.json for its shape"
            ),
        )
    })
}

/// The error for a body that could not be read (too large, broken off).
pub fn body_rejection(rejection: BytesRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            ErrorKind::TooLarge,
            "body_too_large",
            "the request body is larger than this endpoint accepts; send a smaller body",
        )
    } else {
        Error::bad_request(
            "bad_body",
            format!(
                "the request body could not be read ({}); send it again",
                rejection.body_text()
            ),
        )
    }
}

/// Query parameters parsed with serde; a bad value is a 400 naming it.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                Error::bad_request(
                    "bad_query",
                    format!(
                        "the query string is not acceptable ({}); see /api/v1/openapi.json for the parameters",
                        e.body_text()
                    ),
                )
            })
    }
}
