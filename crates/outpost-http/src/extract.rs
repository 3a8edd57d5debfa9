//! [`ApiJson`]: a JSON body extractor whose rejections are [`ApiError`]s.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use std::time::Duration;

use crate::error::ApiError;

/// The largest request body accepted (1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// How long a request body may take to arrive, all of it: a client that
/// trickles its body is answered 408 and the connection closes.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON request body. It needs `Content-Type: application/json` (or
/// `…+json`) unless the body is empty, in which case `T` is read from `{}`.
/// Rejections: 415 (content type), 413 (over [`BODY_LIMIT`]), 400 (malformed
/// JSON), 422 (well-formed JSON of the wrong shape, or not an object).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

pub(crate) fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)").to_string());
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state));
        let read = read.await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        })?;
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
            }
        })?;
        // No body (or JSON's own whitespace only) means no arguments; a form
        // feed, which Rust's ASCII whitespace includes and JSON does not, is
        // a body that is not JSON.
        let text: &[u8] = if bytes
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            b"{}"
        } else {
            match content_type.as_deref() {
                Some(ct) if is_json(ct) => &bytes,
                Some(ct) => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        format!("expected Content-Type: application/json, got {ct:?}"),
                    ));
                }
                None => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        "expected Content-Type: application/json; none was given",
                    ));
                }
            }
        };
        let json: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        // Every body of this API is an object; serde would also read a
        // struct from an array, which no client means.
        if !json.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    "the request body must be a JSON object; got {}",
                    match json {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Number(_) => "a number",
                        serde_json::Value::String(_) => "a string",
                        serde_json::Value::Array(_) => "an array",
                        serde_json::Value::Object(_) => "an object",
                    }
                ),
            ));
        }
        let value = serde_json::from_value(json).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("the request body does not have the expected shape: {e}"),
            )
        })?;
        Ok(ApiJson(value))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
