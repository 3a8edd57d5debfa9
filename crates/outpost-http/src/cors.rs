//! CORS: which browser origins other than the node's own may call the API.
//!
//! The list is [`AppState::cors_origins`] (`OUTPOST_CORS_ORIGINS`), empty by
//! default. It is the same list the browser-safety checks use to decide
//! which cross-site requests to refuse, so an origin either may call the API
//! (and gets the CORS headers that let the browser read the answer) or may
//! not (and gets neither). Origins are compared exactly: scheme, host and
//! port (a trailing `/` in the setting is ignored).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! is answered here, before the bearer check: a browser never sends
//! credentials on one. A listed origin gets 204 with the methods the API
//! uses (`GET`, `POST`, `PUT`), the headers a client sends (`Authorization`
//! for the bearer token, `Content-Type`, `Last-Event-ID`) and credentials
//! allowed; any other origin gets 403 with the error naming the setting, and
//! the browser stops there. A wildcard is never answered: credentials
//! require the exact origin. An `OPTIONS` that is not a preflight goes on to
//! the router (405, like any method the API does not have).
//!
//! Written as a small middleware rather than tower-http's `CorsLayer`,
//! which treats every `OPTIONS` as a preflight.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

const ALLOW_METHODS: &str = "GET, POST, PUT";
const ALLOW_HEADERS: &str = "authorization, content-type, last-event-id";
/// How long (s) a browser may cache a preflight's answer.
const MAX_AGE: &str = "600";

/// Whether `origin` is in `list` (exact, ignoring a trailing `/` there).
pub(crate) fn listed(list: &[String], origin: &str) -> bool {
    list.iter()
        .any(|o| o.trim().trim_end_matches('/') == origin)
}

/// The middleware: answers preflights, and adds the CORS headers to the
/// answers of listed origins.
pub(crate) async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let listed = origin
        .as_deref()
        .is_some_and(|o| listed(&state.cors_origins, o));
    if let (true, Some(origin)) = (preflight, origin.as_deref()) {
        let mut response = if listed {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE),
            );
            r
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "the origin {origin} may not call this node: add it to OUTPOST_CORS_ORIGINS"
                ),
            )
            .into_response()
        };
        decorate(&mut response, listed.then_some(origin));
        return response;
    }
    let mut response = next.run(request).await;
    decorate(&mut response, origin.as_deref().filter(|_| listed));
    response
}

/// The headers of an answer: `Vary: Origin` always (the answer depends on
/// it), and for a listed origin the origin itself and credentials allowed.
fn decorate(response: &mut Response, listed: Option<&str>) {
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(v) = listed.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("www-authenticate"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::listed;

    #[test]
    fn origins_compare_exactly() {
        let list = [
            "http://localhost:3000/".to_string(),
            "https://app.example".to_string(),
        ];
        let ok = |o: &str| listed(&list, o);
        assert!(ok("http://localhost:3000"));
        assert!(ok("https://app.example"));
        assert!(!ok("http://localhost:3001"));
        assert!(!ok("https://localhost:3000"));
        assert!(!ok("https://app.example.evil"));
    }
}
