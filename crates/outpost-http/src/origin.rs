//! Browser safety: what a web page the user happens to open may not do.
//!
//! A page on another origin can send requests to a node on `127.0.0.1`
//! without reading the answers: a `fetch(…, {mode: 'no-cors'})` or a form
//! post is a "simple" request that needs no CORS preflight, so it reaches
//! the handler and its side effects happen. Two rules stop that before any
//! work, for every route including the page:
//!
//! 1. **Origin.** A request whose `Origin` is neither the node's own (its
//!    authority equals the `Host` the request was sent to) nor one of
//!    [`AppState::cors_origins`] (`OUTPOST_CORS_ORIGINS`) is refused with
//!    403, and so is one without `Origin` that the browser marks
//!    `Sec-Fetch-Site: cross-site` — except a top-level `GET`/`HEAD`
//!    navigation (a link to the page), which reads and changes nothing.
//!    With no admin token the node is meant for this machine only, so the
//!    `Host` itself must be a loopback name or address: a DNS-rebound name
//!    (`evil.example` resolving to `127.0.0.1`) would otherwise count as
//!    the node's own origin.
//! 2. **Content type.** A state-changing request (`POST`, `PUT`, `PATCH`,
//!    `DELETE`) must say `Content-Type: application/json`, with or without
//!    a body: a browser sends that type cross-origin only after a CORS
//!    preflight, which only the origins above pass. Answered 415. Checked
//!    by [`json_writes`], a route layer, so a method or path the API does
//!    not serve still answers 405 or 404.
//!
//! Clients that are not browsers (curl, the application's server) send no
//! `Origin` and no `Sec-Fetch-Site`, so only rule 2 concerns them. The CORS
//! headers themselves (answers to preflights) come from the `cors` module.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::is_json;

/// Refuses cross-origin requests (module doc, rule 1).
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(refusal) = check(&state, request.method(), request.headers()) {
        return refusal.into_response();
    }
    next.run(request).await
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message)
}

fn check(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = header_str(headers, header::HOST.as_str());
    if state.admin_token.is_none()
        && let Some(host) = host
        && !is_loopback_host(host)
    {
        return Err(forbidden(format!(
            "Host {host:?} is not this machine: without OUTPOST_ADMIN_TOKEN the node answers \
             only requests sent to localhost or a loopback address"
        )));
    }
    match header_str(headers, header::ORIGIN.as_str()) {
        Some(origin) => {
            let own = host.is_some_and(|h| authority(origin).eq_ignore_ascii_case(h));
            let listed = state
                .cors_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')));
            if !own && !listed {
                return Err(forbidden(format!(
                    "requests from the web origin {origin:?} are refused: it is not this node's \
                     own and not in OUTPOST_CORS_ORIGINS"
                )));
            }
        }
        None => {
            let cross_site = header_str(headers, "sec-fetch-site") == Some("cross-site");
            let navigation = header_str(headers, "sec-fetch-mode") == Some("navigate")
                && (method == Method::GET || method == Method::HEAD);
            if cross_site && !navigation {
                return Err(forbidden(
                    "a cross-site request from a web page (Sec-Fetch-Site: cross-site) is refused"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// State-changing requests must say `Content-Type: application/json`
/// (bodyless ones too). A route layer that checks only a method and path
/// the API declares ([`crate::ROUTES`]), so an undeclared method still
/// answers 405 and an unknown path 404.
pub(crate) async fn json_writes(request: Request, next: Next) -> Response {
    let declared = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|path| {
            crate::ROUTES
                .iter()
                .any(|r| r.path == path.as_str() && r.method == request.method().as_str())
        });
    if declared && let Err(refusal) = check_content_type(request.method(), request.headers()) {
        return refusal.into_response();
    }
    next.run(request).await
}

fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let changes_state = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if changes_state {
        match header_str(headers, header::CONTENT_TYPE.as_str()) {
            Some(ct) if is_json(ct) => {}
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
                    format!(
                        "{method} needs Content-Type: application/json, even without a body; \
                         none was given"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `host:port` of `scheme://host:port` (the whole text when it has no
/// scheme).
fn authority(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    rest.trim_end_matches('/')
}

/// `localhost`, `*.localhost`, `127.0.0.0/8` or `[::1]`, with or without a
/// port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:3000",
            "127.0.0.1",
            "localhost:3000",
            "app.localhost",
            "[::1]:3000",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:3000",
            "10.0.0.2:3000",
            "[::2]:3000",
            "0.0.0.0:3000",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn authority_of_an_origin() {
        assert_eq!(authority("http://127.0.0.1:3102"), "127.0.0.1:3102");
        assert_eq!(authority("http://localhost:3102/"), "localhost:3102");
        assert_eq!(authority("null"), "null");
    }
}
