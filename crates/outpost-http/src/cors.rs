//! CORS: which browser origins other than the node's own may call the API.
//!
//! The list is [`AppState::cors_origins`] (`OUTPOST_CORS_ORIGINS`), empty by
//! default. It is the same list the browser-safety checks use to decide
//! which cross-site requests to refuse, so an origin either may call the API
//! (and gets the CORS headers that let the browser read the answer) or may
//! not (and gets neither). Preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) are answered here, before the bearer
//! check: a browser never sends credentials on a preflight.
//!
//! Allowed: the methods the API uses (`GET`, `POST`, `PUT`), the headers a
//! client sends (`Authorization` for the bearer token, `Content-Type`,
//! `Last-Event-ID` for the event stream), and credentials (cookies or HTTP
//! authentication the browser holds for the node). A wildcard is never
//! answered: credentials require the exact origin.

use axum::http::{HeaderName, HeaderValue, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;

/// How long a browser may cache a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `state`: only the configured origins, compared
/// exactly (scheme, host and port; a trailing `/` in the setting is
/// ignored). Origins that are not valid header values are skipped with a
/// warning rather than failing the whole server.
pub(crate) fn layer(state: &AppState) -> CorsLayer {
    let origins: Vec<HeaderValue> = state
        .cors_origins
        .iter()
        .filter_map(|o| {
            let o = o.trim().trim_end_matches('/');
            match HeaderValue::from_str(o) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(origin = %o, "OUTPOST_CORS_ORIGINS: not a valid origin, ignored");
                    None
                }
            }
        })
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .allow_credentials(true)
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(MAX_AGE)
}
